"""Human-rating summaries, the pairwise leaderboard, and the decision report: fine-tune or prompt?

The decision report puts a dataset's newest fine-tuned model version next to every prompted
baseline evaluated on the same snapshot split: quality with confidence intervals and a paired
significance test, latency, cost per 1,000 requests, the break-even volume, a hybrid-routing
curve, and a plain-language verdict with its reason.
"""
from collections import defaultdict

import numpy as np

from curation.models import Dataset
from training.choices import ModelVersionKind, RunStatus

from .comparisons import compare_eval_runs
from .costs import UNKNOWN_COST, Pricing, break_even, cost_per_1k_requests, training_cost
from .metrics import metric_spec
from .models import EvalRun, HumanRating, PairwiseJudgment
from .routing import known_confidence, routing_curve, suggest_threshold
from .scoring import primary_metric, report_metric, snapshot_metrics
from .stats import bradley_terry, cohen_kappa, krippendorff_alpha

BASELINE_KINDS = (ModelVersionKind.PROMPTED_BASE, ModelVersionKind.OPENAI_COMPATIBLE)


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
    wins; evaluation.stats.bradley_terry), best first, with bootstrap intervals."""
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


def _verdict(difference: dict, metric: str, tuned_cost, baseline_cost) -> tuple[str, str]:
    low, high, p = difference["ci_low"], difference["ci_high"], difference["p_value"]
    interval = f"{metric} difference {difference['difference']:+.2f} (95 % CI {low:+.2f} to {high:+.2f}, p = {p:.3g})"
    if low > 0:
        if tuned_cost is not None and baseline_cost is not None and tuned_cost > baseline_cost:
            return "not enough evidence", (f"the fine-tuned model is better ({interval}) but costs more per request "
                                           f"({tuned_cost:.4g} vs {baseline_cost:.4g} per 1,000)")
        return "fine-tune", f"the fine-tuned model is better: {interval}"
    if high < 0:
        return "keep prompting", f"the prompted model is better: {interval}"
    return "not enough evidence", f"the interval includes no difference: {interval}; rate or test on more inputs"


def decision_report(dataset: Dataset, *, metric: str | None = None, target_quality: float | None = None,
                    resamples: int = 1000, seed: int = 0) -> dict:
    """The fine-tuned model against its prompted baseline(s) on the dataset's newest evaluated split.

    Picks the newest succeeded eval of a fine-tuned (LoRA) version of this dataset, and every
    newest succeeded eval of a prompted or API version on the same snapshot split. ``metric``
    (default: the snapshot's primary metric; any metric its evaluations score,
    evaluation.scoring.report_metric) drives the verdict and the routing curve (per-example
    scores); ``target_quality`` (default: the baseline's mean per-example score) picks the
    routing threshold. The report names it (``metric``, ``metric_label``) and the snapshot's
    ``primary_metric``.

    Baselines are listed strongest first (by ``metric``); the overall verdict is
    ``overall_verdict`` of the per-baseline ones. Each side carries its score distribution
    (``score_distribution``), and the report the dataset's pairwise ``leaderboard``.

    Returns a JSON-ready dict; ``{"verdict": "not enough evidence", "reason": ...}`` alone when
    there is nothing to compare yet.
    Raises:
        ServiceError: ``metric`` is not scored on the snapshot, or a baseline shares no input.
    """
    tuned = (EvalRun.objects.filter(snapshot__dataset=dataset, status=RunStatus.SUCCEEDED,
                                    model_version__kind=ModelVersionKind.LORA_ADAPTER)
             .select_related("model_version__training_run", "snapshot").order_by("-finished_at", "-id").first())
    if tuned is None:
        return {"dataset": dataset.name, "verdict": "not enough evidence",
                "reason": "no fine-tuned model of this dataset has been evaluated yet"}
    newest = {}
    for run in (EvalRun.objects.filter(snapshot=tuned.snapshot, split=tuned.split, status=RunStatus.SUCCEEDED,
                                       model_version__kind__in=BASELINE_KINDS)
                .select_related("model_version").order_by("-finished_at", "-id")):
        newest.setdefault(run.model_version_id, run)
    metric = report_metric(tuned.snapshot, metric)
    report = {"dataset": dataset.name, "snapshot_hash": tuned.snapshot.content_hash, "split": tuned.split,
              "metric": metric, "metric_label": metric_spec(metric).label,
              "primary_metric": primary_metric(tuned.snapshot), "fine_tuned": _side(tuned, metric), "baselines": []}
    if not newest:
        report.update(verdict="not enough evidence",
                      reason="no prompted baseline was evaluated on the same snapshot split")
        return report
    training_run = tuned.model_version.training_run
    train_cost = training_cost(pricing_of(tuned.model_version),
                               (training_run.metrics or {}).get("wall_seconds") if training_run else None)
    tuned_cost = eval_run_cost_per_1k(tuned)
    for baseline in newest.values():
        comparison = compare_eval_runs(baseline, tuned, resamples=resamples, seed=seed)
        baseline_cost = eval_run_cost_per_1k(baseline)
        verdict, reason = _verdict(comparison["metrics"][metric], metric_spec(metric).label, tuned_cost,
                                   baseline_cost)
        entry = {**_side(baseline, metric), "comparison": comparison, "verdict": verdict, "reason": reason,
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
    return report


def overall_verdict(baselines: list[dict]) -> tuple[str, str]:
    """One verdict from the per-baseline ones (each ``{"model_version", "verdict", "reason"}``,
    strongest baseline first). Conservative: "fine-tune" only when the fine-tuned model wins
    against every baseline; "keep prompting" when any baseline is significantly better (the
    strongest such named); otherwise "not enough evidence", naming the baselines it could not
    separate from. Raises ValueError on an empty list."""
    if not baselines:
        raise ValueError("no baselines to decide between")
    losing = [b for b in baselines if b["verdict"] == "keep prompting"]
    if losing:
        return "keep prompting", f"against {losing[0]['model_version']}: {losing[0]['reason']}"
    unsure = [b for b in baselines if b["verdict"] != "fine-tune"]
    if unsure:
        return "not enough evidence", "; ".join(f"against {b['model_version']}: {b['reason']}" for b in unsure)
    if len(baselines) == 1:
        return "fine-tune", f"against {baselines[0]['model_version']}: {baselines[0]['reason']}"
    return "fine-tune", (f"better than all {len(baselines)} baselines; against the strongest, "
                         f"{baselines[0]['model_version']}: {baselines[0]['reason']}")


SCORE_BINS = list(range(0, 101, 10))  # per-example scores are 0-100


def score_distribution(run: EvalRun, metric: str) -> dict:
    """Histogram of ``run``'s per-example ``metric`` scores (0-100) in ten bins of width 10 (the
    last includes 100): ``{"bins": [0, 10, ..., 100], "counts": [10 ints]}``. Predictions without
    that score are left out (numpy.histogram)."""
    scores = [s[metric] for s in run.predictions.values_list("scores", flat=True) if s.get(metric) is not None]
    counts, _ = np.histogram(scores, bins=SCORE_BINS)
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


def _routing(tuned: EvalRun, baseline: EvalRun, metric: str, tuned_cost, baseline_cost, target) -> dict:
    fallback = {h: s.get(metric, 0.0) for h, s in baseline.predictions.values_list("input_hash", "scores")}
    rows = [(c, s.get(metric, 0.0), fallback[h]) for h, c, s in
            tuned.predictions.order_by("id").values_list("input_hash", "mean_logprob", "scores") if h in fallback]
    if not rows:
        return {"points": [], "suggested": None, "reason": "no shared inputs"}
    if not any(known_confidence(c) for c, _, _ in rows):
        return {"points": [], "suggested": None,
                "reason": "the fine-tuned model's predictions carry no confidence (evaluated before it was recorded)"}
    points = routing_curve([c for c, _, _ in rows], [t for _, t, _ in rows], [f for _, _, f in rows],
                           tuned_per_1k=tuned_cost, fallback_per_1k=baseline_cost)
    goal = target if target is not None else sum(f for _, _, f in rows) / len(rows)
    best = suggest_threshold(points, goal)
    return {"target_quality": goal, "target_from": "as given" if target is not None else "the baseline's mean",
            "points": [p.to_dict() for p in points],
            "suggested": best.to_dict() if best else None}


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
        if routing.get("suggested"):
            point = routing["suggested"]
            lines.append(f"    hybrid routing, suggested: {point['label']} ({100 * point['fallback_share']:.0f} % of "
                         f"requests to the baseline), mean per-example {label} {point['quality']:.2f} "
                         f"(target {routing['target_quality']:.2f}: {routing['target_from']})")
    lines.append(f"  Verdict: {report['verdict'].upper()}: {report['reason']}")
    return lines
