"""How a snapshot's outputs are scored, and which metric its reports and verdicts lead with: the one
place eval runs, comparisons, reports, admin pages and commands take both from. ``scoring_options``
itself lives in curation.selectors (the GGUF export's parity check in training scores with it too)."""
from curation.models import Snapshot
from curation.selectors import scoring_options
from ftml.metrics import FREE_TEXT_METRIC, metric_spec, per_example_scores, scored_metrics
from ftplatform.errors import ServiceError


def snapshot_metrics(snapshot: Snapshot) -> list[str]:
    """Names of the metrics every eval run on ``snapshot`` scores, in report order."""
    return scored_metrics(**scoring_options(snapshot))


def prediction_scores(run, metric: str) -> dict[str, float]:
    """{input hash: eval run ``run``'s per-example ``metric`` score (0-100)}: as its job stored them, or,
    for a run scored before its snapshot's settings asked for ``metric`` (runs from before the snapshot
    froze its primary metric lack JSON validity or a check), rescored from its outputs and references with
    the snapshot's scoring options, as comparisons score them; never a missing score read as 0.

    ``metric`` is one of snapshot_metrics(run.snapshot) (else KeyError)."""
    stored = dict(run.predictions.values_list("input_hash", "scores"))
    if all(metric in (scores or {}) for scores in stored.values()):
        return {input_hash: scores[metric] for input_hash, scores in stored.items()}
    rows = list(run.predictions.values_list("input_hash", "output", "references"))
    rescored = per_example_scores([output for _, output, _ in rows], [references for _, _, references in rows],
                                  **scoring_options(run.snapshot))
    return {row[0]: scores[metric] for row, scores in zip(rows, rescored, strict=True)}


def primary_metric(snapshot: Snapshot) -> str:
    """The snapshot's frozen primary metric (chrF for a row written without one)."""
    return snapshot.primary_metric or FREE_TEXT_METRIC


def report_metric(snapshot: Snapshot, requested: str | None = None) -> str:
    """The metric a report or verdict on ``snapshot`` is decided on: ``requested`` when given, else
    the snapshot's primary metric.

    Raises:
        ServiceError: ``requested`` is not a metric evaluations of this snapshot score (the message
            lists those).
    """
    if not requested:
        return primary_metric(snapshot)
    names = snapshot_metrics(snapshot)
    if requested not in names:
        raise ServiceError(f"metric must be one of {', '.join(names)} (what evaluations of snapshot {snapshot.pk} "
                           f"score), got {requested!r}")
    return requested


def metric_labels(names) -> dict[str, str]:
    """{name: label} of metric ``names`` (ftml.metrics.METRICS), in the given order."""
    return {name: metric_spec(name).label for name in names}
