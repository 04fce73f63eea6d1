"""Reads that need thought: dataset progress for the admin and the API; a snapshot split's inputs and
the scoring options its frozen settings ask for (eval runs, and the GGUF export's parity check, read both)."""
from datetime import timedelta

from django.db.models import Avg, Count, Max, Q
from django.utils import timezone

from ftplatform.errors import ServiceError
from ftplatform.rest import parse_id

from .choices import ExampleStatus, ReviewDecision, SnapshotStatus, SuggestionOutcome
from .formats import input_messages
from .models import Dataset, Example, Review, Snapshot, Suggestion


def dataset_named(name_or_id: str) -> Dataset | None:
    """The dataset called ``name_or_id``, else, when it is a database id (ASCII digits), the dataset with
    that id; None when neither exists. A name wins over an id, so a dataset named "12" is found by its name.
    What the report command's --decision, the decision-report API and its admin page take."""
    dataset = Dataset.objects.filter(name=name_or_id).first()
    dataset_id = parse_id(name_or_id or "")
    if dataset is None and dataset_id is not None:
        dataset = Dataset.objects.filter(pk=dataset_id).first()
    return dataset


def snapshot_by_reference(reference: str, *, status: str = SnapshotStatus.APPROVED) -> Snapshot:
    """The snapshot a command line names: its id, or a dataset's name for that dataset's newest
    snapshot with ``status`` (approved by default: what training and evaluation take), so that a
    sequence of commands needs no id.

    Raises:
        ServiceError: no snapshot with that id, no dataset of that name, or none of its snapshots
            has ``status`` (the message names them).
    """
    reference = str(reference).strip()
    if reference.isdigit():
        snapshot = Snapshot.objects.filter(pk=int(reference)).first()
        if snapshot is None:
            raise ServiceError(f"no snapshot {reference}")
        return snapshot
    dataset = Dataset.objects.filter(name=reference).first()
    if dataset is None:
        raise ServiceError(f"no snapshot {reference!r}: give a snapshot id or a dataset name")
    snapshot = dataset.snapshots.filter(status=status).order_by("-created_at", "-id").first()
    if snapshot is None:
        raise ServiceError(f"dataset {reference!r} has no snapshot {SnapshotStatus(status).label.lower()}")
    return snapshot


def split_inputs(snapshot: Snapshot, split: str) -> list[dict]:
    """Distinct inputs of a split with all their references: [{input_hash, input_messages, references}]."""
    grouped: dict[str, dict] = {}
    for input_hash, messages in snapshot.items.filter(split=split).order_by("id").values_list("input_hash", "messages"):
        entry = grouped.setdefault(input_hash, {"input_hash": input_hash, "input_messages": input_messages(messages),
                                                "references": []})
        entry["references"].append(messages[-1].get("content") or "")
    return list(grouped.values())


def scoring_options(snapshot: Snapshot) -> dict:
    """The scoring keywords of ftml.metrics.score_corpus and compare_systems for ``snapshot``,
    from its frozen settings: ``language``, ``output_schema``, ``regex_checks`` and ``json_output``
    (JSON validity is scored when the output schema or the primary metric asks for it)."""
    return {"language": snapshot.language or "en", "output_schema": snapshot.output_json_schema,
            "regex_checks": snapshot.regex_checks or None, "json_output": snapshot.primary_metric == "json_valid"}


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


def suggestion_statistics(dataset: Dataset | None = None) -> list[dict]:
    """Edit effort per model version over the suggestions annotators started from (prefilled), in
    ``dataset`` or everywhere: one row per model version, by name, with

    ``model_version_id``, ``model_name``, ``suggestions`` (prefilled), ``submitted`` (judged at first
    submission), ``accepted``/``edited``/``rewritten`` counts, ``acceptance_rate`` (accepted unchanged /
    submitted), ``rewritten_share`` (rewritten / submitted), ``mean_normalized_distance`` (0..1) and
    ``mean_edit_distance`` (characters) over the submitted ones, and ``mean_confidence`` (mean token
    log-probability). Rates and means are None while nothing was submitted.
    """
    suggestions = Suggestion.objects.filter(prefilled=True)
    if dataset is not None:
        suggestions = suggestions.filter(example__dataset=dataset)
    rows = (suggestions.values("model_version_id", "model_name")
            .annotate(suggestions=Count("id"), submitted=Count("id", filter=~Q(outcome="")),
                      **{outcome: Count("id", filter=Q(outcome=outcome)) for outcome in SuggestionOutcome.values},
                      mean_normalized_distance=Avg("normalized_distance"), mean_edit_distance=Avg("edit_distance"),
                      mean_confidence=Avg("confidence"))
            .order_by("model_name", "model_version_id"))
    return [{**row, "acceptance_rate": row["accepted"] / row["submitted"] if row["submitted"] else None,
             "rewritten_share": row["rewritten"] / row["submitted"] if row["submitted"] else None}
            for row in rows]
