"""Comparing two eval runs of the same snapshot split: paired bootstrap and McNemar's test."""
from ftml.metrics import compare_systems
from ftplatform.errors import ServiceError
from ftplatform.jobrows import JobStatus

from .models import EvalRun
from .scoring import primary_metric, scoring_options


def check_comparable(a: EvalRun, b: EvalRun) -> None:
    """The one rule for putting two eval runs side by side (automatic comparisons and blind pairs):
    two different runs, both succeeded, on the same snapshot split.

    Raises:
        ServiceError: naming the runs and what differs.
    """
    if a.pk == b.pk:
        raise ServiceError("compare two different eval runs")
    for run in (a, b):
        if run.status != JobStatus.SUCCEEDED:
            raise ServiceError(f"eval run {run.pk} is {run.status}; only succeeded runs can be compared")
    if (a.snapshot_id, a.split) != (b.snapshot_id, b.split):
        raise ServiceError(f"eval runs {a.pk} and {b.pk} are on different snapshots or splits "
                           f"(snapshot {a.snapshot_id} [{a.split}] vs snapshot {b.snapshot_id} [{b.split}]): "
                           "their scores are not comparable")


def compare_eval_runs(a: EvalRun, b: EvalRun, *, resamples: int = 1000, seed: int = 0) -> dict:
    """System B against system A (e.g. the fine-tuned model against the prompted base) on the
    inputs both answered, scored as their eval runs were (the snapshot's scoring_options: its
    language, output schema and checks): per metric the two corpus scores, the difference b - a
    with its 95 % paired-bootstrap interval and p-value (Koehn 2004;
    ftml.metrics.compare_systems), and McNemar's exact test for each binary metric, with the
    snapshot's primary metric, the number of inputs, resamples and seed.

    Raises:
        ServiceError: the runs are the same, not both succeeded, or on different snapshots or
            splits (the message names both), or share no input.
    """
    check_comparable(a, b)
    b_outputs = dict(b.predictions.values_list("input_hash", "output"))
    rows = [(h, out, refs) for h, out, refs in a.predictions.order_by("id").values_list("input_hash", "output",
                                                                                         "references")
            if h in b_outputs]
    if not rows:
        raise ServiceError(f"eval runs {a.pk} and {b.pk} share no input")
    metrics = compare_systems([out for _, out, _ in rows], [b_outputs[h] for h, _, _ in rows],
                              [refs for _, _, refs in rows], resamples=resamples, seed=seed,
                              **scoring_options(a.snapshot))
    return {
        "a": {"eval_run_id": a.pk, "model_version_id": a.model_version_id, "model_version": str(a.model_version)},
        "b": {"eval_run_id": b.pk, "model_version_id": b.model_version_id, "model_version": str(b.model_version)},
        "snapshot_id": a.snapshot_id, "snapshot_hash": a.snapshot.content_hash, "split": a.split,
        "primary_metric": primary_metric(a.snapshot), "n": len(rows), "resamples": resamples, "seed": seed,
        "metrics": metrics,
    }
