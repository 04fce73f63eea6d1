"""Reads that need thought: dataset progress for the admin and the API."""
from datetime import timedelta

from django.db.models import Count, Max, Q
from django.utils import timezone

from .choices import ExampleStatus, ReviewDecision
from .models import Dataset, Example, Review


def dataset_progress(dataset: Dataset, now=None) -> dict:
    """Counts by state, and per-annotator and per-reviewer throughput.

    Returns ``{"by_status": {status: n}, "total": n, "annotators": [...], "reviewers": [...]}``;
    each annotator row has ``examples`` and counts per state, each reviewer row has
    ``decisions``, ``approvals``, ``rejections``, decisions in the last 24 hours and 7 days,
    and the time of the last decision. Rows are sorted by volume, largest first.
    """
    now = now or timezone.now()
    examples = Example.objects.filter(dataset=dataset)
    by_status = {status: 0 for status in ExampleStatus.values}
    by_status.update(dict(examples.values_list("status").annotate(n=Count("id")).order_by()))
    annotators = list(
        examples.values("author__username")
        .annotate(examples=Count("id"),
                  **{status: Count("id", filter=Q(status=status)) for status in ExampleStatus.values})
        .order_by("-examples", "author__username")
    )
    reviewers = list(
        Review.objects.filter(example__dataset=dataset)
        .values("reviewer__username")
        .annotate(
            decisions=Count("id"),
            approvals=Count("id", filter=Q(decision=ReviewDecision.APPROVE)),
            rejections=Count("id", filter=Q(decision=ReviewDecision.REJECT)),
            last_24h=Count("id", filter=Q(created_at__gte=now - timedelta(days=1))),
            last_7d=Count("id", filter=Q(created_at__gte=now - timedelta(days=7))),
            last_decision_at=Max("created_at"),
        )
        .order_by("-decisions", "reviewer__username")
    )
    rename = {"author__username": "annotator", "reviewer__username": "reviewer"}
    return {
        "by_status": by_status,
        "total": sum(by_status.values()),
        "annotators": [{rename.get(k, k): v for k, v in row.items()} for row in annotators],
        "reviewers": [{rename.get(k, k): v for k, v in row.items()} for row in reviewers],
    }
