"""DRF plumbing loaded from settings: the exception handler and the JSON parser.

Kept apart from ftplatform/api.py (the router), which imports views: settings-loaded
classes must not import DRF's views, or DRF's settings import themselves in a circle.
"""
from rest_framework.exceptions import ParseError
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .errors import ServiceError


def exception_handler(exc, context):
    """Service errors become 400/403/409 with their message; the rest is DRF's handling."""
    if isinstance(exc, ServiceError):
        return Response({"detail": str(exc)}, status=exc.status_code)
    return drf_exception_handler(exc, context)


class DepthSafeJSONParser(JSONParser):
    """JSONParser that answers 400, not 500, to bodies nested too deeply for Python's parser."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply") from None


class IdCursorPagination(CursorPagination):
    """Oldest first by id; a cursor page costs the same at any depth (no OFFSET)."""

    ordering = "id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

