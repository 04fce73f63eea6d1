"""django-filter FilterSets for the curation API."""
import django_filters
from django.db.models import TextField
from django.db.models.functions import Cast

from .choices import ExampleStatus, Split
from .models import Example


class ExampleFilter(django_filters.FilterSet):
    """Filter examples by dataset, state, author, assignee, import, snapshot split, and text."""

    # distinct=False: a plain column needs no DISTINCT, which would sort the whole filtered table.
    status = django_filters.MultipleChoiceFilter(choices=ExampleStatus.choices, distinct=False)
    author = django_filters.CharFilter(field_name="author__username")
    assignee = django_filters.CharFilter(field_name="assignee__username")
    snapshot = django_filters.NumberFilter(field_name="snapshot_items__snapshot", distinct=True)
    split = django_filters.ChoiceFilter(choices=Split.choices, method="filter_split",
                                        help_text="With snapshot: examples frozen into this split of it.")
    search = django_filters.CharFilter(method="filter_search", help_text="Case-insensitive text in any message.")

    class Meta:
        model = Example
        fields = ["dataset", "status", "author", "assignee", "import_batch", "snapshot", "split", "search"]

    def filter_split(self, queryset, name, value):
        snapshot = self.form.cleaned_data.get("snapshot")
        lookup = {"snapshot_items__split": value}
        if snapshot is not None:
            lookup["snapshot_items__snapshot"] = snapshot
        return queryset.filter(**lookup).distinct()

    def filter_search(self, queryset, name, value):
        # The JSON text of the conversation; good for curation-sized tables (a trigram index
        # or full-text search is the next step for millions of rows).
        return queryset.annotate(messages_text=Cast("messages", TextField())).filter(messages_text__icontains=value)
