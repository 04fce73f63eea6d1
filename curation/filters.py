"""django-filter FilterSets for the curation API."""
import django_filters
from django.db.models import TextField
from django.db.models.functions import Cast

from .choices import ExampleStatus
from .models import Example


class ExampleFilter(django_filters.FilterSet):
    """Filter examples by dataset, state, author, assignee, import, and text.

    Examples are always shown as they are now; what a snapshot froze is at
    ``GET snapshots/{id}/items/`` (curation.api.SnapshotViewSet.items)."""

    # distinct=False: a plain column needs no DISTINCT, which would sort the whole filtered table.
    status = django_filters.MultipleChoiceFilter(choices=ExampleStatus.choices, distinct=False)
    author = django_filters.CharFilter(field_name="author__username")
    assignee = django_filters.CharFilter(field_name="assignee__username")
    search = django_filters.CharFilter(method="filter_search", help_text="Case-insensitive text in any message.")

    class Meta:
        model = Example
        fields = ["dataset", "status", "author", "assignee", "import_batch", "search"]

    def filter_search(self, queryset, name, value):
        # The JSON text of the conversation; good for curation-sized tables (a trigram index
        # or full-text search is the next step for millions of rows).
        return queryset.annotate(messages_text=Cast("messages", TextField())).filter(messages_text__icontains=value)
