"""Human-rating summaries, the pairwise leaderboard, and the decision report: fine-tune or prompt?

The decision report puts a dataset's newest fine-tuned model version next to every prompted
baseline evaluated on the same snapshot split: quality with confidence intervals and a paired
significance test, latency, cost per 1,000 requests, the break-even volume, a hybrid-routing
curve, and a plain-language verdict with its reason.
"""
from collections import defaultdict

import numpy as np

from curation.choices import Split
from curation.models import Dataset
from ftml.metrics import metric_spec
from ftml.stats import (
    bradley_terry,
    cohen_kappa,
    krippendorff_alpha,
)
from ftplatform.jobrows import JobStatus
from training.choices import ModelVersionKind

from .choices import Verdict
from .comparisons import compare_eval_runs
from .costs import UNKNOWN_COST, Pricing, break_even, cost_per_1k_requests, training_cost
from .models import EvalRun, HumanRating, PairwiseJudgment
from .routing import RoutingPoint, known_confidence, route_at, routing_curve, suggest_threshold
from .scoring import prediction_scores, primary_metric, report_metric, snapshot_metrics
from .verdicts import MIN_TEST_INPUTS, baseline_verdict, overall_verdict

BASELINE_KINDS = (ModelVersionKind.PROMPTED_BASE, ModelVersionKind.OPENAI_COMPATIBLE)

# Sections other apps add to the decision report: {name: (section(dataset, report) -> JSON-ready value,
# lines(value) -> terminal lines)}. The serving app adds "production" (what its deployments measured):
# evaluation does not import serving.
REPORT_SECTIONS: dict = {}


def register_report_section(name: str, section, lines) -> None:
    """Have ``decision_report`` add ``report[name] = section(dataset, report)`` to every full report, and
    ``format_decision_report`` print ``lines(report[name])`` after the verdict."""
    REPORT_SECTIONS[name] = (section, lines)


def rating_summary(eval_run: EvalRun) -> dict:
    """Per criterion: mean Likert score, the number of ratings and raters, and agreement between
    raters (Cohen's kappa, quadratic weights, when exactly two raters rated common predictions;
    Krippendorff's alpha, ordinal, for any number), each with a reason instead of NaN when
    undefined. Returns {} when nobody rated this run."""
    rows = list(HumanRating.objects.filter(prediction__eval_run=eval_run)
                .values_list("criterion__name", "rater_id", "prediction_id", "score"))
    by_criterion = defaultdict(list)
    for criterion, rater, prediction, score in rows:
        by_criterion[criterion].append((rater, prediction, score))
    summary = {}
    for criterion, ratings in sorted(by_criterion.items()):
        raters = sorted({r for r, _, _ in ratings})
        predictions = sorted({p for _, p, _ in ratings})
        matrix = np.full((len(raters), len(predictions)), np.nan)
        for rater, prediction, score in ratings:
            matrix[raters.index(rater), predictions.index(prediction)] = score
        entry = {"mean": float(np.mean([s for _, _, s in ratings])), "ratings": len(ratings), "raters": len(raters),
                 "krippendorff_alpha": (
                     krippendorff_alpha(matrix, level="ordinal", value_domain=[1, 2, 3, 4, 5]) if len(raters) > 1
                     else {"alpha": None, "percent_agreement": None, "raters": 1, "items": len(predictions),
                           "pairable_items": 0, "level": "ordinal",
                           "reason": "one rater so far: agreement needs at least two"})}
        if len(raters) == 2:
            both = ~np.isnan(matrix).any(axis=0)
            entry["cohen_kappa"] = (cohen_kappa(matrix[0, both].astype(int).tolist(),
                                                matrix[1, both].astype(int).tolist(), weights="quadratic",
                                                labels=[1, 2, 3, 4, 5])
                                    if both.any() else {"kappa": None, "reason": "the two raters share no item"})
        summary[criterion] = entry
    return summary


def leaderboard(dataset: Dataset, *, resamples: int = 200, seed: int = 0) -> dict:
    """Bradley–Terry ratings of the model versions judged pairwise on ``dataset`` (ties as half
    wins; ftml.stats.bradley_terry), best first, with bootstrap intervals."""
    rows = list(PairwiseJudgment.objects.filter(prediction_a__eval_run__snapshot__dataset=dataset)
                .values_list("prediction_a__eval_run__model_version_id", "prediction_b__eval_run__model_version_id",
                             "outcome"))
    if not rows:
        return {"judgments": 0, "ratings": []}
    items = sorted({a for a, _, _ in rows} | {b for _, b, _ in rows})
    return {"judgments": len(rows), **bradley_terry(rows, items, resamples=resamples, seed=seed)}


def pricing_of(version) -> Pricing:
    """A model version's prices (per GPU-hour, per million input and output tokens; any may be None)."""
    return Pricing(version.price_per_gpu_hour, version.price_per_million_input_tokens,
                   version.price_per_million_output_tokens)


def eval_run_cost_per_1k(run: EvalRun) -> float | None:
    """Cost of 1,000 requests like the eval run's (its mean latency, or its median for runs
    evaluated before the mean was recorded; mean tokens) at its model version's prices
    (evaluation.costs.cost_per_1k_requests); None without a price, or when the run did not record
    a figure the price needs."""
    metrics = run.metrics
    return cost_per_1k_requests(pricing_of(run.model_version),
                                mean_latency_ms=metrics.get("latency_mean_ms", metrics.get("latency_p50_ms")),
                                mean_input_tokens=metrics.get("mean_input_tokens"),
                                mean_output_tokens=metrics.get("mean_output_tokens"))


# The splits a verdict is decided on, in order of preference: the held-out test split first; validation, where
# routing thresholds are chosen, last.
VERDICT_SPLITS = (Split.TEST, Split.TRAIN, Split.VALIDATION)


def _trained_on(run: EvalRun) -> bool:
    """Whether ``run`` answered the inputs its fine-tuned model was trained on: its run's snapshot's train split."""
    training_run = run.model_version.training_run
    return run.split == Split.TRAIN and training_run is not None and training_run.snapshot_id == run.snapshot_id


def decision_report(dataset: Dataset, *, metric: str | None = None, target_quality: float | None = None,
                    resamples: int = 1000, seed: int = 0, min_inputs: int = MIN_TEST_INPUTS) -> dict:
    """The fine-tuned model against its prompted baseline(s) on the dataset's newest evaluated split.

    Picks the newest succeeded eval of a fine-tuned (LoRA) version of this dataset on inputs it was
    not trained on (never the train split of its own run's snapshot): on the test split when there
    is one, then another split, on validation (where routing thresholds are chosen) only when there
    is no other (VERDICT_SPLITS); and every newest succeeded eval of a prompted or API version on the
    same snapshot split. ``metric`` (default: the snapshot's primary metric; any metric its
    evaluations score, evaluation.scoring.report_metric) drives the verdict and the routing curve
    (per-example scores). The report names it (``metric``, ``metric_label``) and the snapshot's
    ``primary_metric``.

    Each baseline's verdict (``baseline_verdict``) needs ``min_inputs`` test inputs and its tests to agree
    (``verdict_evidence``, stored as ``evidence``); otherwise it is "not enough evidence" and says
    how many inputs would do. Its ``routing`` threshold is chosen on the validation split's eval
    runs of the same two versions, reaching ``target_quality`` there (default: the baseline's
    mean per-example score on validation), and reported with its quality and fallback share on
    the report's split (``held_out``).

    Baselines are listed strongest first (by ``metric``); the overall verdict is
    ``overall_verdict`` of the per-baseline ones. Each side carries its score distribution
    (``score_distribution``), and the report the dataset's pairwise ``leaderboard``.

    Returns a JSON-ready dict; ``{"verdict": "not enough evidence", "reason": ...}`` alone when
    there is nothing to compare yet.
    Raises:
        ServiceError: ``metric`` is not scored on the snapshot, or a baseline shares no input.
    """
    evaluated = (EvalRun.objects.filter(snapshot__dataset=dataset, status=JobStatus.SUCCEEDED,
                                        model_version__kind=ModelVersionKind.LORA_ADAPTER)
                 .select_related("model_version__training_run", "snapshot").order_by("-finished_at", "-id"))
    held_out = [run for run in evaluated if not _trained_on(run)]
    if not held_out:
        return {"dataset": dataset.name, "verdict": Verdict.NOT_ENOUGH_EVIDENCE,
                "reason": "no fine-tuned model of this dataset has been evaluated yet" if not evaluated else
                "the fine-tuned models were evaluated only on the inputs they were trained on (their snapshot's "
                "train split); evaluate them on its test split"}
    tuned = min(held_out, key=lambda run: VERDICT_SPLITS.index(run.split))  # the newest on the first split
    newest = {}
    for run in (EvalRun.objects.filter(snapshot=tuned.snapshot, split=tuned.split, status=JobStatus.SUCCEEDED,
                                       model_version__kind__in=BASELINE_KINDS)
                .select_related("model_version").order_by("-finished_at", "-id")):
        newest.setdefault(run.model_version_id, run)
    metric = report_metric(tuned.snapshot, metric)
    report = {"dataset": dataset.name, "snapshot_hash": tuned.snapshot.content_hash, "split": tuned.split,
              "metric": metric, "metric_label": metric_spec(metric).label,
              "primary_metric": primary_metric(tuned.snapshot), "fine_tuned": _side(tuned, metric), "baselines": []}
    if not newest:
        report.update(verdict=Verdict.NOT_ENOUGH_EVIDENCE,
                      reason="no prompted baseline was evaluated on the same snapshot split")
        return report
    training_run = tuned.model_version.training_run
    train_cost = training_cost(pricing_of(tuned.model_version),
                               (training_run.metrics or {}).get("wall_seconds") if training_run else None)
    tuned_cost = eval_run_cost_per_1k(tuned)
    for baseline in newest.values():
        comparison = compare_eval_runs(baseline, tuned, resamples=resamples, seed=seed)
        baseline_cost = eval_run_cost_per_1k(baseline)
        verdict, reason, evidence = baseline_verdict(comparison, metric, tuned_cost, baseline_cost, min_inputs)
        entry = {**_side(baseline, metric), "comparison": comparison, "verdict": verdict, "reason": reason,
                 "evidence": evidence,
                 "break_even": break_even(tuned_per_1k=tuned_cost, baseline_per_1k=baseline_cost,
                                          training=train_cost).to_dict(),
                 "routing": _routing(tuned, baseline, metric, tuned_cost, baseline_cost, target_quality)}
        report["baselines"].append(entry)
    # The strongest baseline first: it is the one a team would otherwise prompt.
    direction = -1 if metric_spec(metric).higher_is_better else 1
    report["baselines"].sort(key=lambda b: direction * (b["scores"][metric]["score"] or 0.0))
    report["fine_tuned"]["training_cost"] = train_cost
    verdict, reason = overall_verdict(report["baselines"])
    report.update(verdict=verdict, reason=reason, leaderboard=leaderboard(dataset))
    for name, (section, _) in REPORT_SECTIONS.items():
        report[name] = section(dataset, report)
    return report


SCORE_BINS = list(range(0, 101, 10))  # per-example scores are 0-100


def score_distribution(run: EvalRun, metric: str) -> dict:
    """Histogram of ``run``'s per-example ``metric`` scores (0-100; evaluation.scoring.prediction_scores)
    in ten bins of width 10 (the last includes 100): ``{"bins": [0, 10, ..., 100], "counts": [10 ints]}``
    (numpy.histogram)."""
    counts, _ = np.histogram(list(prediction_scores(run, metric).values()), bins=SCORE_BINS)
    return {"bins": SCORE_BINS, "counts": counts.tolist()}


def _side(run: EvalRun, metric: str) -> dict:
    metrics = run.metrics
    return {
        "model_version_id": run.model_version_id, "model_version": str(run.model_version),
        "kind": run.model_version.kind, "eval_run_id": run.pk,
        "scores": {name: {"score": metrics.get(name), **metrics.get("confidence_intervals", {}).get(name, {})}
                   for name in snapshot_metrics(run.snapshot)},
        "latency_ms": {k: metrics.get(f"latency_{k}_ms") for k in ("p50", "p95", "p99")},
        "output_tokens_per_s": metrics.get("output_tokens_per_s"),
        "cost_per_1k_requests": eval_run_cost_per_1k(run),
        "environment": run.environment,
        "human_ratings": rating_summary(run),
        "distribution": score_distribution(run, metric),
    }


def _routing_rows(tuned: EvalRun, baseline: EvalRun, metric: str) -> list[tuple]:
    """(fine-tuned confidence, fine-tuned score, baseline score) per input both runs answered."""
    scores, fallback = prediction_scores(tuned, metric), prediction_scores(baseline, metric)
    return [(c, scores[h], fallback[h]) for h, c in
            tuned.predictions.order_by("id").values_list("input_hash", "mean_logprob") if h in fallback]


def newest_eval(version_id: int, snapshot_id: int, split: str) -> EvalRun | None:
    return (EvalRun.objects.filter(model_version_id=version_id, snapshot_id=snapshot_id, split=split,
                                   status=JobStatus.SUCCEEDED).order_by("-finished_at", "-id").first())


def _mean(values) -> float:
    return sum(values) / len(values)


class NoThreshold(Exception):
    """No routing threshold can be chosen on the validation split; the message says why and what to run."""


def validation_threshold(tuned_version, baseline_version, snapshot, metric: str, target: float | None = None,
                         *, tuned_cost=None, baseline_cost=None) -> dict:
    """The routing threshold for ``tuned_version`` falling back to ``baseline_version``, chosen on
    ``snapshot``'s validation split (the two versions' newest succeeded eval runs there): the cheapest
    point of the routing curve whose mean per-example ``metric`` reaches ``target`` (default: the
    baseline's mean there). Returns {"chosen_on", "target_quality", "target_from", "points",
    "suggested"} ("suggested" None when no threshold reaches the target). Raises NoThreshold."""
    runs = {version: newest_eval(version.pk, snapshot.pk, Split.VALIDATION)
            for version in (tuned_version, baseline_version)}
    missing = [version for version, run in runs.items() if run is None]
    if missing:
        raise NoThreshold("routing thresholds are chosen on the validation split, where "
                          + " and ".join(str(v) for v in missing)
                          + (" have no succeeded eval run; evaluate them: " if len(missing) > 1
                             else " has no succeeded eval run; evaluate it: ")
                          + "; ".join(f"manage.py evaluate --model-version {v.pk} --snapshot {snapshot.pk} "
                                      "--split validation --as <username>" for v in missing))
    tuned_validation, baseline_validation = runs.values()
    validation = _routing_rows(tuned_validation, baseline_validation, metric)
    if not validation:
        raise NoThreshold(f"the two models share no input on the {Split.VALIDATION} split")
    if not any(known_confidence(c) for c, _, _ in validation):
        raise NoThreshold("the fine-tuned model's validation predictions carry no confidence (evaluated before it "
                          "was recorded)")
    points = routing_curve(*(list(column) for column in zip(*validation, strict=True)),
                           tuned_per_1k=tuned_cost, fallback_per_1k=baseline_cost)
    goal = target if target is not None else _mean([f for _, _, f in validation])
    best = suggest_threshold(points, goal)
    return {"chosen_on": {"split": Split.VALIDATION, "inputs": len(validation),
                          "fine_tuned_eval_run_id": tuned_validation.pk,
                          "baseline_eval_run_id": baseline_validation.pk},
            "target_quality": goal,
            "target_from": "as given" if target is not None else "the baseline's mean on the validation split",
            "points": [p.to_dict() for p in points], "suggested": best.to_dict() if best else None}


def _routing(tuned: EvalRun, baseline: EvalRun, metric: str, tuned_cost, baseline_cost, target) -> dict:
    """The routing threshold chosen on the validation split (validation_threshold), then fixed and
    scored on the report's split (``held_out``), so its quality is not measured on the inputs it was
    fitted to."""
    def unavailable(reason):
        return {"points": [], "suggested": None, "held_out": None, "reason": reason}

    if tuned.split == Split.VALIDATION:
        return unavailable("the report is on the validation split, where routing thresholds are chosen; evaluate "
                           "both models on the test split to score a threshold on inputs it was not chosen on")
    held_out = _routing_rows(tuned, baseline, metric)
    if not held_out:
        return unavailable(f"the two models share no input on the {tuned.split} split")
    try:
        report = validation_threshold(tuned.model_version, baseline.model_version, tuned.snapshot, metric, target,
                                      tuned_cost=tuned_cost, baseline_cost=baseline_cost)
    except NoThreshold as exc:
        return unavailable(str(exc))
    report["held_out"] = None
    if report["suggested"]:
        confidence, tuned_scores, fallback_scores = (list(column) for column in zip(*held_out, strict=True))
        scored = route_at(RoutingPoint(**report["suggested"]), confidence, tuned_scores, fallback_scores,
                          tuned_per_1k=tuned_cost, fallback_per_1k=baseline_cost)
        report["held_out"] = {"split": tuned.split, "inputs": len(held_out), **scored.to_dict(),
                              "fine_tuned_quality": _mean(tuned_scores), "baseline_quality": _mean(fallback_scores)}
    return report


def routing_summary(routing: dict, metric_label: str) -> str:
    """One sentence on a baseline's ``routing`` (decision_report): the threshold chosen on validation
    and what it gives on the held-out split, or why there is none."""
    if routing.get("reason"):
        return routing["reason"]
    chosen = routing["chosen_on"]
    target = f"target {routing['target_quality']:.2f}: {routing['target_from']}"
    point = routing["held_out"]
    if point is None:
        return f"no threshold reaches the {target} on the {chosen['split']} split ({chosen['inputs']} inputs)"
    return (f"{point['label']}, chosen on the {chosen['split']} split ({chosen['inputs']} inputs, {target}); on the "
            f"{point['split']} split ({point['inputs']} inputs) {100 * point['fallback_share']:.0f} % of requests go "
            f"to the baseline and the mean per-example {metric_label} is {point['quality']:.2f} (fine-tuned alone "
            f"{point['fine_tuned_quality']:.2f}, baseline alone {point['baseline_quality']:.2f})")


def format_decision_report(report: dict) -> list[str]:
    """The decision report as terminal lines (the demo and `manage.py report --decision`)."""
    label = report.get("metric_label", report.get("metric"))
    heading = f"Decision report: {report['dataset']}"
    if "split" in report:
        primary = " (the snapshot's primary metric)" if report["metric"] == report.get("primary_metric") else ""
        heading += f" [{report['split']}], metric {label}{primary}"
    lines = [heading]
    if "fine_tuned" not in report or not report.get("baselines"):
        return lines + [f"  Verdict: {report['verdict']}: {report['reason']}"]

    def number(value, spec):  # an eval run from before a figure was recorded lacks it
        return "?" if value is None else format(value, spec)

    tuned = report["fine_tuned"]
    for side in (tuned, *report["baselines"]):
        score = side["scores"][report["metric"]]
        interval = (f" (95 % CI {score['ci_low']:.2f}-{score['ci_high']:.2f})" if score.get("ci_low") is not None
                    else "")
        cost = side["cost_per_1k_requests"]
        lines.append(f"  {side['model_version']}: {label} {number(score['score'], '.2f')}{interval}, "
                     f"latency p50 {number(side['latency_ms']['p50'], '.0f')} ms / "
                     f"p95 {number(side['latency_ms']['p95'], '.0f')} ms, "
                     f"cost per 1,000 requests {UNKNOWN_COST if cost is None else f'{cost:.4g}'}")
    for baseline in report["baselines"]:
        even = baseline["break_even"]
        routing = baseline["routing"]
        lines.append(f"  vs {baseline['model_version']}: {baseline['verdict']}: {baseline['reason']}")
        lines.append("    break-even: " + (f"{even['monthly_requests']:,.0f} requests a month (the training cost "
                                           "counted against the first month)"
                                           if even["monthly_requests"] is not None else even["reason"]))
        lines.append("    hybrid routing: " + routing_summary(routing, label))
    lines.append(f"  Verdict: {report['verdict'].upper()}: {report['reason']}")
    for name, (_, section_lines) in REPORT_SECTIONS.items():
        if report.get(name):
            lines += section_lines(report[name])
    return lines
