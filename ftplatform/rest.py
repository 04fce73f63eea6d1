"""DRF plumbing loaded from settings: the exception handler and the JSON parser.

Kept apart from config/api.py (the router), which imports views: settings-loaded
classes must not import DRF's views, or DRF's settings import themselves in a circle.
"""
from rest_framework.exceptions import NotFound, ParseError
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

from .errors import ServiceError


def exception_handler(exc, context):
    """Service errors become 400/403/409 with their message (and the field and position it concerns,
    when known: ServiceError.as_dict); the rest is DRF's handling."""
    # Imported here: DRF's views module reads DEFAULT_PARSER_CLASSES (this module) when it loads,
    # and the admin imports this module (id_param) before DRF's views are loaded.
    from rest_framework.views import exception_handler as drf_exception_handler

    if isinstance(exc, ServiceError):
        return Response(exc.as_dict(), status=exc.status_code)
    return drf_exception_handler(exc, context)


class DepthSafeJSONParser(JSONParser):
    """JSONParser that answers 400, not 500, to bodies nested too deeply for Python's parser."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply") from None


class IntegerCursorPagination(CursorPagination):
    """CursorPagination over an integer column: a cursor whose position is not an integer
    (a hand-made or tampered one) is "Invalid cursor" (404), not a database error (500)."""

    def decode_cursor(self, request):
        cursor = super().decode_cursor(request)
        if cursor is not None and cursor.position is not None:
            if not (cursor.position.isascii() and cursor.position.lstrip("-").isdigit()):
                raise NotFound(self.invalid_cursor_message)
        return cursor


class IdCursorPagination(IntegerCursorPagination):
    """Oldest first by id; a cursor page costs the same at any depth (no OFFSET).

    A page is chosen on ids alone, then its rows are fetched by id. On ids, PostgreSQL
    answers from an index holding the filter's columns and the id (for examples:
    dataset, status, id) without visiting the table. Asked for whole rows ordered by id
    with a LIMIT, its planner prefers walking the primary key and filtering, assuming
    matches are spread evenly; when the filtered rows come after many others (a large
    dataset imported after other datasets) that walk reads all those others first:
    215 ms instead of 0.1 ms for the first page in bench/curation_bench.py's 1M-row table.
    """

    ordering = "id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

    def paginate_queryset(self, queryset, request, view=None):
        ids = super().paginate_queryset(queryset.prefetch_related(None).values("id"), request, view)
        if ids is None:
            return None
        rows = queryset.in_bulk([row["id"] for row in ids])
        return [rows[row["id"]] for row in ids]


def parse_id(value: str) -> int | None:
    """``value`` as a database id (ASCII digits only, fitting a bigint), or None when it is not one.
    str.isdigit alone also accepts digits int() refuses ("²"), which made views answer 500."""
    return int(value) if value.isascii() and value.isdigit() and len(value) < 19 else None


def id_param(request, name: str) -> int | None:
    """Query parameter ``name`` of a DRF or a plain Django request as a database id (a non-negative
    integer that fits a bigint), or None when it is missing or not one; views answer 400 naming it
    then, admin pages show their chooser."""
    return parse_id(getattr(request, "query_params", request.GET).get(name, ""))
