"""The evaluation results a model version's Hub model card carries (training.hub_export asks for them through
its provider registry; registered in EvaluationConfig.ready, so training never imports evaluation)."""
from ftml.metrics import METRICS, metric_spec
from ftplatform.jobrows import JobStatus

from .models import EvalRun

# The Hub's metric ids (model-index ``metrics[].type``) where ours differ; others keep our name.
HUB_METRIC_TYPES = {"rouge_l": "rouge"}


def model_index_results(version) -> list[dict]:
    """One ftml.model_card ``eval_results`` entry per snapshot and split ``version`` was evaluated on: the latest
    succeeded eval run's corpus scores (0-100, rounded to 2 places), each with the metric's label, the dataset
    named with its snapshot, and the snapshot's content hash as the dataset revision."""
    runs = (EvalRun.objects.filter(model_version=version, status=JobStatus.SUCCEEDED)
            .select_related("snapshot__dataset").order_by("-finished_at", "-id"))
    results, seen = [], set()
    for run in runs:
        if (run.snapshot_id, run.split) in seen:
            continue
        seen.add((run.snapshot_id, run.split))
        metrics = [{"type": HUB_METRIC_TYPES.get(name, name), "name": metric_spec(name).label,
                    "value": round(run.metrics[name], 2)}
                   for name in sorted(run.metrics.get("confidence_intervals", {}), key=_report_order)
                   if run.metrics.get(name) is not None]
        if not metrics:
            continue
        dataset = run.snapshot.dataset
        results.append({
            "task_type": "text-generation",
            "dataset_name": f"{dataset.name} (snapshot {run.snapshot_id})",
            "dataset_type": dataset.name,
            "dataset_revision": run.snapshot.content_hash,
            "dataset_split": run.split,
            "source_name": f"ftplatform eval run {run.pk}",
            "metrics": metrics,
        })
    return results


def _report_order(name: str) -> tuple:
    """The registry's order (a JSON column on PostgreSQL keeps no key order), then the dataset's checks by name."""
    order = list(METRICS)
    return (order.index(name), "") if name in order else (len(order), name)
