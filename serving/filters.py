import django_filters
from django.db.models.fields.json import KeyTextTransform

from .models import RequestLog


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
        fields = ["deployment", "deployment_name", "answered_by", "status", "fell_back", "stream", "api_key",
                  "end_user"]

    def filter_tag(self, queryset, name, value):
        key, separator, wanted = value.partition(":")
        if not separator or not key:
            from rest_framework.exceptions import ValidationError

            raise ValidationError({"tag": ["Use key:value, e.g. team:support."]})
        # KeyTextTransform takes the key literally (a key holding "__" is not read as a lookup).
        return queryset.annotate(_tag=KeyTextTransform(key, "tags")).filter(_tag=wanted)
