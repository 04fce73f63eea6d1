"""Learning curves: one base model fine-tuned on growing, nested shares of a snapshot's train split
(training runs with a train_fraction), each resulting model version evaluated on one split, and
quality plotted against the number of train examples, so a team sees whether annotating more data
is worth it.

Chained without polling: each run is created with ``follow_up_job`` naming
evaluate_learning_curve_point, which training.jobs.finish_run enqueues (after the commit that
creates the model version) once the run succeeds, whichever attempt succeeds; that job starts the
evaluation through start_eval_run, as the curve's creator.
"""
from django.db import transaction

from curation.choices import Split
from curation.models import Snapshot
from ftml.metrics import metric_spec
from ftplatform.charts import PALETTE, Series, line_chart_svg
from ftplatform.errors import ServiceError
from ftplatform.jobrows import FINISHED_STATUSES, JobStatus
from ftplatform.roles import require_permission
from training.models import BaseModel
from training.runs import start_training_run, subset_size

from .comparisons import compare_eval_runs
from .models import LearningCurve, LearningCurvePoint
from .scoring import primary_metric
from .services import start_eval_run, validate_generation

DEFAULT_PERCENTAGES = (10, 25, 50, 100)
FOLLOW_UP_JOB = "evaluation.learning_curves.evaluate_learning_curve_point"


def parse_percentages(text: str) -> list[float]:
    """``"10,25,50,100"`` as [10.0, 25.0, 50.0, 100.0]. Raises ServiceError naming an entry that is no number."""
    values = []
    for position, entry in enumerate(text.split(","), start=1):
        try:
            values.append(float(entry.strip()))
        except ValueError:
            raise ServiceError(f"fractions: entry {position} ({entry.strip()!r}) is not a number; give percentages "
                               "of the train split separated by commas, e.g. 10,25,50,100", field="fractions") from None
    return values


def checked_percentages(percentages) -> list[float]:
    """The percentages of a curve, ascending. Raises ServiceError: none, not a number, outside (0, 100], or twice."""
    values = list(percentages or [])
    if not values:
        raise ServiceError("fractions: give at least one percentage of the train split, e.g. 10,25,50,100",
                           field="fractions")
    for value in values:
        if not (isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 100):
            raise ServiceError(f"fractions: {value!r} is not a percentage above 0 and at most 100", field="fractions")
    if len(set(values)) != len(values):
        raise ServiceError("fractions: each percentage once", field="fractions")
    return sorted(float(value) for value in values)


@transaction.atomic
def start_learning_curve(snapshot: Snapshot, base_model: BaseModel, *, by, percentages=DEFAULT_PERCENTAGES,
                         split: str = Split.VALIDATION, hyperparameters: dict | None = None, seed: int = 0,
                         generation: dict | None = None) -> LearningCurve:
    """Create a LearningCurve and, for each percentage p (of the train split's distinct inputs), a
    queued training run on that nested share (training.runs.start_training_run with train_fraction
    p / 100 and ``seed``), each of whose model versions will be evaluated on ``split`` with
    ``generation`` once it exists (evaluate_learning_curve_point). Every run and evaluation
    shares ``hyperparameters``.

    Raises:
        NotAllowed: ``by`` lacks 'evaluation.add_learningcurve', 'evaluation.add_evalrun' or
            'training.add_trainingrun' (engineers hold them).
        ServiceError: bad percentages, two of them keeping the same number of inputs (the
            message says how many the train split has), the train split or an unknown or empty
            evaluation split, max_train_examples among the hyperparameters, bad generation settings,
            or anything start_training_run refuses (unapproved snapshot, pre-flight problems).
    """
    require_permission(by, "evaluation.add_learningcurve", "start learning curves")
    require_permission(by, "evaluation.add_evalrun", "start evaluation runs")  # the points' evaluations run as `by`
    values = checked_percentages(percentages)
    if split not in Split.values:
        raise ServiceError(f"split must be one of {', '.join(Split.values)}, got {split!r}", field="split")
    if split == Split.TRAIN:
        raise ServiceError("split: evaluate on validation or test; the train split is what the models learn from",
                           field="split")
    if not snapshot.split_counts.get(split):
        raise ServiceError(f"snapshot {snapshot.pk} has no {split} examples", field="split")
    if isinstance(hyperparameters, dict) and hyperparameters.get("max_train_examples"):
        raise ServiceError("hyperparameters: max_train_examples would cap every point of the curve at the same "
                           "size; leave it out", field="hyperparameters")
    generation = validate_generation(generation)
    sizes = {value: subset_size(snapshot, Split.TRAIN, value / 100, seed)[0] for value in values}
    for smaller, larger in zip(values, values[1:], strict=False):
        if sizes[smaller] == sizes[larger]:
            total = subset_size(snapshot, Split.TRAIN, 1.0, seed)[0]
            raise ServiceError(f"fractions: {smaller:g} % and {larger:g} % of snapshot {snapshot.pk}'s {total} train "
                               f"inputs both keep {sizes[larger]}; use fewer, more distant fractions or a bigger "
                               "train split", field="fractions")
    curve = LearningCurve.objects.create(snapshot=snapshot, base_model=base_model, split=split,
                                         hyperparameters=hyperparameters or {}, seed=seed, generation=generation,
                                         created_by=by)
    for value in values:
        run = start_training_run(snapshot, base_model, by=by, hyperparameters=hyperparameters,
                                 train_fraction=value / 100, subset_seed=seed, follow_up_job=FOLLOW_UP_JOB)
        LearningCurvePoint.objects.create(curve=curve, train_fraction=value / 100, training_run=run)
    return curve


def evaluate_learning_curve_point(training_run_id: int) -> None:
    """The follow-up job of a learning curve's training run (training.jobs.finish_run enqueues it once
    the run succeeded and its model version exists): _start_point_evaluation as the curve's creator.
    Does nothing for a run of no curve."""
    point = (LearningCurvePoint.objects.filter(training_run_id=training_run_id)
             .select_related("curve__created_by").first())
    if point is not None:
        _start_point_evaluation(point.pk, by=point.curve.created_by)


def _start_point_evaluation(point_id: int, *, by) -> bool:
    """Start the evaluation of a point's model version on its curve's split (start_eval_run, as ``by``) and
    record it on the point, unless the point's evaluation is queued, running or succeeded already (a job
    run twice starts one evaluation); a failed or cancelled one is replaced. Where it cannot start (no
    model version yet, ``by`` lacks the permission, ...), the point records why. Returns whether it started."""
    with transaction.atomic():
        point = (LearningCurvePoint.objects.select_for_update(of=("self",))
                 .select_related("curve__snapshot", "training_run", "eval_run").get(pk=point_id))
        if point.eval_run is not None and point.eval_run.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
            return False
        curve = point.curve
        version = getattr(point.training_run, "model_version", None)
        try:
            if version is None:
                raise ServiceError(f"training run {point.training_run_id} has no model version")
            point.eval_run = start_eval_run(version, curve.snapshot, by=by, split=curve.split,
                                            generation=curve.generation)
            point.error = ""
        except ServiceError as exc:
            point.error = f"the evaluation could not start: {exc}"
        point.save(update_fields=["eval_run", "error"])
        return not point.error


def evaluate_missing_points(curve: LearningCurve, *, by) -> int:
    """Start, as ``by``, the evaluations a curve lacks: of every point whose training run succeeded and whose
    evaluation never started (it could not, or its job was lost with Redis down), failed or was cancelled.
    Returns how many started. Raises NotAllowed: ``by`` lacks 'evaluation.add_evalrun'."""
    require_permission(by, "evaluation.add_evalrun", "start evaluation runs")
    points = curve.points.filter(training_run__status=JobStatus.SUCCEEDED).values_list("pk", flat=True)
    return sum(_start_point_evaluation(point_id, by=by) for point_id in points)


def _point_row(point: LearningCurvePoint, metric: str) -> dict:
    run, evaluation = point.training_run, point.eval_run
    scored = evaluation is not None and evaluation.status == JobStatus.SUCCEEDED and metric in evaluation.metrics
    interval = evaluation.metrics.get("confidence_intervals", {}).get(metric, {}) if scored else {}
    problem = point.error or (run.error if run.status in FINISHED_STATUSES else "") or (
        evaluation.error if evaluation is not None else "")
    return {
        "percent": round(point.train_fraction * 100, 6), "train_fraction": point.train_fraction,
        "train_examples": run.train_examples, "training_run": run.pk, "training_status": run.status,
        "model_version": getattr(getattr(run, "model_version", None), "pk", None),
        "eval_run": evaluation.pk if evaluation is not None else None,
        "eval_status": evaluation.status if evaluation is not None else None,
        "score": evaluation.metrics[metric] if scored else None,
        "ci_low": interval.get("ci_low"), "ci_high": interval.get("ci_high"), "error": problem,
    }


def _state(rows: list[dict]) -> str:
    """"succeeded" when every point is scored, "failed" when a point's run or evaluation ended
    otherwise (or could not start), else "running"."""
    if rows and all(row["score"] is not None for row in rows):
        return "succeeded"
    if any(row["training_status"] in (JobStatus.FAILED, JobStatus.CANCELLED)
           or row["eval_status"] in (JobStatus.FAILED, JobStatus.CANCELLED)
           or (row["training_status"] == JobStatus.SUCCEEDED and row["eval_run"] is None and row["error"])
           for row in rows):
        return "failed"
    return "running"


def _last_step(points: list[LearningCurvePoint], rows: list[dict], metric: str) -> dict | None:
    """The change of ``metric`` between the two largest shares, once both are scored: the difference
    with its 95 % paired-bootstrap interval on the inputs both answered (compare_eval_runs), and a
    plain reading of it (not a forecast)."""
    if len(rows) < 2 or rows[-1]["score"] is None or rows[-2]["score"] is None:
        return None
    comparison = compare_eval_runs(points[-2].eval_run, points[-1].eval_run)
    change = comparison["metrics"][metric]
    label = metric_spec(metric).label
    interval = f"{change['difference']:+.2f} (95 % paired-bootstrap interval {change['ci_low']:+.2f} to " \
               f"{change['ci_high']:+.2f}, {comparison['n']} inputs)"
    step = f"from {rows[-2]['train_examples']} to {rows[-1]['train_examples']} train examples"
    if change["ci_low"] > 0:
        reading = f"still rising: {label} changed by {interval} {step}"
    elif change["ci_high"] < 0:
        reading = f"falling: {label} changed by {interval} {step}"
    else:
        reading = f"no clear change: {label} changed by {interval} {step}; the interval includes 0"
    return {"from_train_examples": rows[-2]["train_examples"], "to_train_examples": rows[-1]["train_examples"],
            "difference": change["difference"], "ci_low": change["ci_low"], "ci_high": change["ci_high"],
            "p_value": change["p_value"], "n": comparison["n"], "rising": change["ci_low"] > 0, "reading": reading}


def learning_curve_report(curve: LearningCurve, *, last_step: bool = True) -> dict:
    """Where a curve stands: its state ("running", "succeeded", "failed"), the snapshot's primary metric
    (name and label), one row per point in ascending share (percent, train examples, the training run
    and its status, the model version, the evaluation and its status, the score with its 95 %
    interval once evaluated, and any error), and ``last_step`` (_last_step; null until the two
    largest shares are scored, and without ``last_step``: lists skip its bootstrap)."""
    metric = primary_metric(curve.snapshot)
    points = list(curve.points.select_related("training_run__model_version", "eval_run__snapshot",
                                              "eval_run__model_version").order_by("train_fraction"))
    rows = [_point_row(point, metric) for point in points]
    return {"state": _state(rows), "primary_metric": metric, "primary_metric_label": metric_spec(metric).label,
            "points": rows, "last_step": _last_step(points, rows, metric) if last_step else None}


def learning_curve_chart(curve: LearningCurve, report: dict | None = None) -> str:
    """An SVG line chart of a curve's primary metric against the number of train examples, one marker
    per scored point (its tooltip: share, examples, score and interval), with its 95 % interval as
    dashed lines; plain text while no point is scored."""
    report = report or learning_curve_report(curve)
    label = report["primary_metric_label"]
    scored = [row for row in report["points"] if row["score"] is not None]
    with_interval = [row for row in scored if row["ci_low"] is not None and row["ci_high"] is not None]
    series = [
        Series(label, [(row["train_examples"], row["score"]) for row in scored], markers=True, titles=[
            f"{row['percent']:g} % ({row['train_examples']} examples): {label} {row['score']:.2f}"
            + (f", 95 % interval {row['ci_low']:.2f}-{row['ci_high']:.2f}" if row in with_interval else "")
            for row in scored]),
        Series("95 % low", [(row["train_examples"], row["ci_low"]) for row in with_interval],
               colour=PALETTE[0], dashes="4 3"),
        Series("95 % high", [(row["train_examples"], row["ci_high"]) for row in with_interval],
               colour=PALETTE[0], dashes="1 3"),
    ]
    return line_chart_svg(series, title=f"Learning curve {curve.pk}: {label} on {curve.split} by train examples",
                          x_label="train examples", y_label=label, css_class="learning-curve", integer_x=True,
                          empty="no point evaluated yet")
