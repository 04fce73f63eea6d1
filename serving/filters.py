import re

import django_filters
from rest_framework.exceptions import ValidationError

from .models import RequestLog

TAG_KEY = re.compile(r"(?!.*__)[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class RequestLogFilter(django_filters.FilterSet):
    """Engineers' questions of the request log: which deployment, which model answered, when, how sure,
    routed or not, tagged how."""

    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    confidence_below = django_filters.NumberFilter(field_name="confidence", lookup_expr="lt")
    confidence_at_least = django_filters.NumberFilter(field_name="confidence", lookup_expr="gte")
    tag = django_filters.CharFilter(method="filter_tag", help_text="key:value of the request's metadata, e.g. "
                                                                   "team:support")

    class Meta:
        model = RequestLog
        fields = ["request_id", "deployment", "deployment_name", "answered_by", "status", "fell_back", "stream",
                  "api_key", "end_user"]

    def filter_tag(self, queryset, name, value):
        key, separator, wanted = value.partition(":")
        # The key becomes part of a lookup (tags__<key>): letters, digits, - and . only, never "__" (another lookup).
        if not separator or not TAG_KEY.fullmatch(key):
            raise ValidationError({"tag": ["Use key:value, e.g. team:support (the key: letters, digits, - . and "
                                           "single _)."]})
        return queryset.filter(**{f"tags__{key}": wanted})
