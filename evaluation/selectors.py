"""Reads that need thought: model versions side by side on one snapshot split, input by input.

The admin's side-by-side page and ``GET /api/v1/side-by-side/`` both call ``side_by_side``: which
eval runs are compared, how inputs are matched, how differences are signed, sorted, filtered and
paged is decided here once."""
import math
from dataclasses import dataclass

from django.core.paginator import EmptyPage, Paginator

from curation.choices import Split
from curation.models import Snapshot
from curation.selectors import split_inputs
from ftml.metrics import metric_spec
from ftplatform.errors import ServiceError
from training.models import ModelVersion

from .decision import newest_eval
from .ratings import judgeable_eval_runs
from .scoring import prediction_scores, primary_metric, report_metric, snapshot_metrics

SIDE_LABELS = "ABCDEFGH"  # A is the reference; every other side's difference is taken against it
MAX_VERSIONS = len(SIDE_LABELS)
# How rows may be sorted; a difference order puts inputs without a difference (a side missing) last.
ORDERS = {"input": "the split's order", "difference": "difference, most negative first",
          "-difference": "difference, most positive first", "-abs_difference": "largest difference first"}
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 20, 100


@dataclass(frozen=True)
class SideBySideQuery:
    """What to put side by side: ``versions`` (model version ids, A first), the ``metric`` (None: the
    snapshot's primary metric) and ``side`` (the label whose difference with A sorts and filters;
    None: B), ``order`` (one of ORDERS), an inclusive difference range, and the page."""

    snapshot: Snapshot
    split: str
    versions: tuple[int, ...]
    metric: str | None = None
    side: str | None = None
    order: str = "input"
    min_difference: float | None = None
    max_difference: float | None = None
    page: int = 1
    page_size: int = DEFAULT_PAGE_SIZE


def _check(query: SideBySideQuery) -> None:
    if query.split not in Split.values:
        raise ServiceError(f"split must be one of {', '.join(Split.values)}, got {query.split!r}", field="split")
    if not 2 <= len(query.versions) <= MAX_VERSIONS:
        raise ServiceError(f"choose from 2 to {MAX_VERSIONS} model versions, got {len(query.versions)}",
                           field="versions")
    if len(set(query.versions)) != len(query.versions):
        raise ServiceError("a model version is chosen twice; choose each once", field="versions")
    if query.order not in ORDERS:
        raise ServiceError(f"order must be one of {', '.join(ORDERS)}, got {query.order!r}", field="order")
    for name in ("min_difference", "max_difference"):
        value = getattr(query, name)
        if value is not None and not math.isfinite(value):
            raise ServiceError(f"{name} must be a finite number, got {value!r}", field=name)
    if None not in (query.min_difference, query.max_difference) and query.min_difference > query.max_difference:
        raise ServiceError(f"min_difference ({query.min_difference:g}) is above max_difference "
                           f"({query.max_difference:g}): no input can match", field="min_difference")
    if query.page < 1 or not 1 <= query.page_size <= MAX_PAGE_SIZE:
        raise ServiceError(f"page starts at 1 and page_size is 1 to {MAX_PAGE_SIZE}", field="page_size")


def _eval_runs(query: SideBySideQuery) -> list:
    """The newest succeeded eval run of each version on the snapshot split, in the order chosen.
    Raises ServiceError naming every unknown version and every version without such a run."""
    versions = ModelVersion.objects.in_bulk(query.versions)
    unknown = [str(pk) for pk in query.versions if pk not in versions]
    if unknown:
        raise ServiceError(f"no model version with id {', '.join(unknown)}", field="versions")
    runs = [newest_eval(pk, query.snapshot.pk, query.split) for pk in query.versions]
    lacking = [f"{versions[pk].name} (model version {pk})" for pk, run in zip(query.versions, runs, strict=True)
               if run is None]
    if lacking:
        raise ServiceError(f"{'; '.join(lacking)}: no finished (succeeded) eval run on snapshot {query.snapshot.pk} "
                           f"[{query.split}]; evaluate {'it' if len(lacking) == 1 else 'them'} on this split first, "
                           "or choose versions evaluated there", field="versions")
    return runs


def _sort_key(order: str):
    """Sort key of rows for ``order``: inputs without a difference (missing in a run) always last."""
    if order == "input":
        return lambda row: row["position"]
    sign = {"difference": 1, "-difference": -1}

    def key(row):
        value = row["difference"]
        if value is None:
            return (1, 0.0, row["position"])
        return (0, -abs(value) if order == "-abs_difference" else sign[order] * value, row["position"])

    return key


def side_by_side(query: SideBySideQuery) -> dict:
    """Each model version's output for each distinct input of the snapshot split, with its stored
    per-example scores (0-100) and the input's references, from the newest succeeded eval run of
    each version on that split (only those: runs of other snapshots or splits are never matched).

    Sides are labelled A, B, C... in the order of ``query.versions``; on ``metric`` each side's
    ``difference`` is its score minus A's (positive: that side scored higher than A). Inputs a run
    did not answer are kept, with that side ``missing`` and no difference; a difference filter
    leaves them out and says how many (``left_out_missing``). Scores of runs made before the
    snapshot asked for ``metric`` are rescored from their outputs (evaluation.scoring.prediction_scores).

    Returns ``{"snapshot_id", "snapshot_hash", "split", "metric", "metric_label", "primary_metric",
    "metrics", "sides": [{label, model_version_id, model_version, eval_run_id, answered, missing,
    mean, rateable}], "side", "sign", "order", "min_difference", "max_difference", "inputs",
    "matching", "left_out_missing", "page", "page_size", "pages", "rows": [{position, input_hash,
    input_messages, references, difference, outputs: [{label, eval_run_id, prediction_id, output,
    scores, score, difference, missing}]}]}``; a side's ``mean`` is the mean of its per-example
    scores on ``metric`` (not the corpus score: corpus BLEU is not a mean); ``rateable`` says
    whether raters may judge that side against A blind (its dataset has rating criteria:
    evaluation.ratings.judgeable_eval_runs).

    Raises:
        ServiceError: an unknown split, order, metric or side, fewer than two or repeated versions,
            an unknown version, a version without a succeeded run on the split (all named), an
            empty or reversed difference range, or a page past the last one.
    """
    _check(query)
    snapshot = query.snapshot
    metric = report_metric(snapshot, query.metric)
    runs = _eval_runs(query)
    labels = SIDE_LABELS[:len(runs)]
    side = query.side or "B"
    if side not in labels[1:]:
        raise ServiceError(f"side must be one of {', '.join(labels[1:])} (the versions compared with A), "
                           f"got {side!r}", field="side")
    predictions = [{row["input_hash"]: row for row in run.predictions.values("id", "input_hash", "output", "scores")}
                   for run in runs]
    on_metric = [prediction_scores(run, metric) for run in runs]
    run_ids = [run.pk for run in runs]
    rows = [_row(position, entry, labels, run_ids, predictions, on_metric, side)
            for position, entry in enumerate(split_inputs(snapshot, query.split))]
    rateable = set(judgeable_eval_runs().filter(pk__in=run_ids).values_list("pk", flat=True))
    sides = [_side(label, run, index, rows, rateable)
             for index, (label, run) in enumerate(zip(labels, runs, strict=True))]
    matching = rows
    if query.min_difference is not None or query.max_difference is not None:
        low = -math.inf if query.min_difference is None else query.min_difference
        high = math.inf if query.max_difference is None else query.max_difference
        matching = [row for row in rows if row["difference"] is not None and low <= row["difference"] <= high]
    left_out_missing = sum(row["difference"] is None for row in rows) if matching is not rows else 0
    matching = sorted(matching, key=_sort_key(query.order))
    paginator = Paginator(matching, query.page_size)  # an empty selection has one empty page
    try:
        page = paginator.page(query.page)
    except EmptyPage:
        raise ServiceError(f"page {query.page} is past the last page ({paginator.num_pages})", field="page") from None
    label = metric_spec(metric).label
    return {
        "snapshot_id": snapshot.pk, "snapshot_hash": snapshot.content_hash, "split": query.split,
        "metric": metric, "metric_label": label, "primary_metric": primary_metric(snapshot),
        "metrics": snapshot_metrics(snapshot), "sides": sides, "side": side,
        "sign": f"difference = {side} − A on {label} (per input, 0-100 scale); positive: {side} scored higher "
                f"than A, negative: A scored higher",
        "order": query.order, "min_difference": query.min_difference, "max_difference": query.max_difference,
        "inputs": len(rows), "matching": len(matching), "left_out_missing": left_out_missing,
        "page": query.page, "page_size": query.page_size, "pages": paginator.num_pages if matching else 0,
        "rows": list(page.object_list),
    }


def _row(position: int, entry: dict, labels: str, run_ids: list[int], predictions: list[dict],
         on_metric: list[dict], side: str) -> dict:
    """One input's row: each side's output and scores, or ``missing``; differences against A."""
    input_hash = entry["input_hash"]
    reference_score = on_metric[0].get(input_hash)
    outputs = []
    for label, run_id, by_input, scores in zip(labels, run_ids, predictions, on_metric, strict=True):
        prediction = by_input.get(input_hash)
        score = scores.get(input_hash)
        difference = None
        if label != "A" and score is not None and reference_score is not None:
            difference = score - reference_score
        outputs.append({"label": label, "eval_run_id": run_id, "missing": prediction is None,
                        "prediction_id": prediction["id"] if prediction else None,
                        "output": prediction["output"] if prediction else None,
                        "scores": prediction["scores"] if prediction else None,
                        "score": score, "difference": difference})
    return {"position": position + 1, "input_hash": input_hash, "input_messages": entry["input_messages"],
            "references": entry["references"], "outputs": outputs,
            "difference": next(output["difference"] for output in outputs if output["label"] == side)}


def _side(label: str, run, index: int, rows: list[dict], rateable: set[int]) -> dict:
    scores = [row["outputs"][index]["score"] for row in rows if not row["outputs"][index]["missing"]]
    return {"label": label, "model_version_id": run.model_version_id, "model_version": run.model_version.name,
            "eval_run_id": run.pk, "answered": len(scores), "missing": len(rows) - len(scores),
            "mean": sum(scores) / len(scores) if scores else None,
            "rateable": label != "A" and run.pk in rateable}
