"""Change history (django-simple-history) as API data: who changed what, when, and why."""
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import action

from .rest import IntegerCursorPagination

HISTORY_TYPES = {"+": "created", "~": "changed", "-": "deleted"}


def history_entry(record) -> dict:
    """One historical record: type, user, reason, and the fields it changed (old -> new)."""
    previous = record.prev_record
    changes = []
    if previous is not None:
        changes = [{"field": c.field, "old": c.old, "new": c.new} for c in record.diff_against(previous).changes]
    return {
        "id": record.history_id,
        "date": record.history_date,
        "type": HISTORY_TYPES.get(record.history_type, record.history_type),
        "user": str(record.history_user) if record.history_user_id else None,
        "reason": record.history_change_reason or "",
        "changes": changes,
    }


class HistoryPagination(IntegerCursorPagination):
    """Newest first; a cursor stays stable however deep the history is."""

    ordering = "-history_id"
    page_size = 50


HISTORY_ENTRIES_SCHEMA = inline_serializer("HistoryEntry", many=True, fields={
    "id": serializers.IntegerField(),
    "date": serializers.DateTimeField(),
    "type": serializers.ChoiceField(choices=list(HISTORY_TYPES.values())),
    "user": serializers.CharField(allow_null=True),
    "reason": serializers.CharField(),
    "changes": serializers.ListField(child=serializers.DictField()),
})


class HistoryMixin:
    """Adds ``GET <object>/history/`` to a viewset whose model has ``history = HistoricalRecords()``."""

    # Its own cursor pagination and no filters: the schema then shows ?cursor= and {next, previous, results}.
    @extend_schema(responses=HISTORY_ENTRIES_SCHEMA)
    @action(detail=True, methods=["get"], pagination_class=HistoryPagination, filter_backends=[])
    def history(self, request, pk=None):
        page = self.paginate_queryset(self.get_object().history.select_related("history_user"))
        return self.get_paginated_response([history_entry(record) for record in page])
