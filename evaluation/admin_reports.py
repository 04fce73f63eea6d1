"""Report pages in the admin: a dataset's decision report, a model version's report and the
comparison of two eval runs, as tables and inline SVG charts (score distributions, the routing
curve). Thin views over evaluation.decision, evaluation.reports and evaluation.comparisons: the
same dicts the REST API serves, laid out for people."""
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.utils.safestring import mark_safe

from curation.models import Dataset
from ftplatform.charts import PALETTE, Series, bar_chart_svg, line_chart_svg
from ftplatform.errors import ServiceError
from ftplatform.rest import id_param
from training.choices import ModelVersionKind
from training.models import ModelVersion

from .comparisons import compare_eval_runs
from .decision import SCORE_BINS, decision_report, format_p_value, routing_summary, score_distribution
from .models import EvalRun
from .reports import model_version_report

METRICS = {"bleu": "BLEU", "chrf": "chrF", "rouge_l": "ROUGE-L", "exact_match": "exact match"}
ROUTING_ROWS = 11  # the routing table shows about one threshold per 10 % of traffic, and the suggested one


def _page(model_admin, request, template, **context):
    return TemplateResponse(request, f"admin/evaluation/{template}",
                            {**context, **model_admin.admin_site.each_context(request)})


def _bin_labels() -> list[str]:
    return [f"{low}–{high}" for low, high in zip(SCORE_BINS, SCORE_BINS[1:], strict=False)]


def distribution_chart(groups: list[tuple[str, list[int]]], metric: str) -> str:
    """Grouped bars: how many examples scored in each tenth of 0-100 on ``metric``, one group per model
    (``groups`` are (name, counts) with score_distribution's counts). Safe markup."""
    label = METRICS.get(metric, metric)
    return mark_safe(bar_chart_svg(  # safe: charts escapes every text
        _bin_labels(), groups, title=f"Per-example {label} scores", x_label=f"per-example {label} (0-100)",
        y_label="examples", css_class="score-distribution", y_format="{:.0f}".format,
        empty="no per-example scores"))


def routing_chart(routing: dict, metric: str) -> str:
    """The hybrid routing curve on the validation split, where the threshold is chosen: quality of
    the served answers (y) against the share of traffic sent to the fallback model (x, %), one
    marker per threshold, the suggested one in its own colour, the chosen threshold's result on
    the held-out split ("held-out"), and the target quality as a dotted line. Safe markup, or a
    short text when there is no curve."""
    points = routing.get("points") or []
    if not points:
        return routing.get("reason") or "no routing curve"

    def title(point):
        cost = "unknown cost" if point["cost_per_1k"] is None else f"cost per 1,000 {point['cost_per_1k']:.4g}"
        return f"{point['label']}: {100 * point['fallback_share']:.0f} % to the fallback, quality " \
               f"{point['quality']:.2f}, {cost}"

    series = [Series("thresholds", [(100 * p["fallback_share"], p["quality"]) for p in points], PALETTE[0],
                     markers=True, titles=[title(p) for p in points])]
    suggested = routing.get("suggested")
    if suggested:
        series.append(Series("suggested", [(100 * suggested["fallback_share"], suggested["quality"])], PALETTE[2],
                             titles=[title(suggested)]))
    held_out = routing.get("held_out")
    if held_out:
        series.append(Series("held-out", [(100 * held_out["fallback_share"], held_out["quality"])], PALETTE[3],
                             titles=[f"on the {held_out['split']} split, " + title(held_out)]))
    label = METRICS.get(metric, metric)
    where = routing.get("chosen_on", {}).get("split", "validation")
    return mark_safe(line_chart_svg(  # safe: charts escapes every text
        series, title=f"Hybrid routing ({where} split): {label} against traffic sent to the fallback",
        x_label="traffic sent to the fallback (%)", y_label=f"mean {label}", css_class="routing-curve",
        x_range=(0, 100), x_format="{:.0f}".format, y_format="{:.1f}".format,
        reference=(routing["target_quality"], f"target quality {routing['target_quality']:.2f}")))


def routing_rows(routing: dict, limit: int = ROUTING_ROWS) -> list[dict]:
    """About ``limit`` points of the routing curve for a table: the ones nearest to 0 %, 10 %, ...,
    100 % of traffic to the fallback, and the suggested point (marked ``"suggested": True``)."""
    points = routing.get("points") or []
    if not points:
        return []
    chosen = {min(range(len(points)), key=lambda i: abs(points[i]["fallback_share"] - k / (limit - 1)))
              for k in range(limit)}
    suggested = routing.get("suggested")
    if suggested:
        chosen |= {i for i, p in enumerate(points) if p == suggested}
    return [{**points[i], "suggested": points[i] == suggested, "percent": 100 * points[i]["fallback_share"]}
            for i in sorted(chosen)]


def _differences(comparison: dict) -> list[dict]:
    """Rows of includes/differences.html: per metric the paired result and its p-value as shown."""
    return [{"name": label, **comparison["metrics"][key], "p_value_shown": format_p_value(comparison["metrics"][key])}
            for key, label in METRICS.items()]


def _with_intervals(scores: dict) -> list[dict]:
    return [{"name": label, **scores.get(key, {})} for key, label in METRICS.items()]


def decision_view(model_admin, request):
    """``?dataset=<id>&metric=bleu|chrf|rouge_l|exact_match``: the decision report with its charts;
    a dataset chooser without ``dataset``."""
    metric = request.GET.get("metric", "bleu")
    metric = metric if metric in METRICS else "bleu"
    datasets = Dataset.objects.filter(snapshots__eval_runs__isnull=False).distinct().order_by("name")
    dataset_id = id_param(request, "dataset")
    context = {"title": "Decision report", "datasets": datasets, "metrics": METRICS, "metric": metric}
    if dataset_id is None:
        return _page(model_admin, request, "decision.html", **context)
    dataset = get_object_or_404(Dataset, pk=dataset_id)
    context.update(title=f"Decision report: {dataset.name}", dataset=dataset)
    try:
        report = decision_report(dataset, metric=metric)
    except ServiceError as exc:  # e.g. a baseline that shares no input with the fine-tuned run (the API's 400)
        return _page(model_admin, request, "decision.html", error=str(exc), **context)
    context["report"] = report
    if report.get("baselines"):
        sides = [report["fine_tuned"], *report["baselines"]]
        names = {version.pk: version.name for version in
                 ModelVersion.objects.filter(pk__in=[r["item"] for r in report["leaderboard"]["ratings"]])}
        context.update(
            sides=[{**side, "rows": _with_intervals(side["scores"])} for side in sides],
            distribution=distribution_chart([(side["model_version"], side["distribution"]["counts"])
                                             for side in sides], metric),
            baselines=[{**baseline, "routing_chart": routing_chart(baseline["routing"], metric),
                        "routing_rows": routing_rows(baseline["routing"]),
                        "routing_summary": routing_summary(baseline["routing"], metric),
                        "differences": _differences(baseline["comparison"])}
                       for baseline in report["baselines"]],
            ratings=[(side["model_version"], sorted(side["human_ratings"].items())) for side in sides],
            board=[{**row, "name": names.get(row["item"], row["item"])} for row in report["leaderboard"]["ratings"]],
        )
    return _page(model_admin, request, "decision.html", **context)


def model_report_view(model_admin, request, version_id):
    """A model version's report (evaluation.reports.model_version_report): lineage, and per snapshot
    split its metrics with intervals beside the prompted base, latency, cost, human ratings and
    its leaderboard position, with the score distribution of each evaluation."""
    version = get_object_or_404(ModelVersion.objects.select_related("base_model", "training_run__snapshot"),
                                pk=version_id)
    report = model_version_report(version)
    evaluations = []
    for entry in report["evaluations"]:
        run = EvalRun.objects.get(pk=entry["eval_run_id"])
        groups = [(METRICS[m], score_distribution(run, m)["counts"]) for m in ("bleu", "chrf", "rouge_l")]
        intervals = entry["metrics"].get("confidence_intervals", {})
        evaluations.append({**entry, "distribution": distribution_chart(groups, "score"),
                            "rows": [{"name": label, "score": entry["metrics"].get(key),
                                      "baseline": (entry["baseline"] or {}).get("metrics", {}).get(key),
                                      "difference": entry["difference"].get(key), **intervals.get(key, {})}
                                     for key, label in METRICS.items()],
                            "ratings": sorted(entry["human_ratings"].items())})
    return _page(model_admin, request, "model_report.html", title=f"Model report: {version.name}",
                 version=version, report=report, evaluations=evaluations,
                 fine_tuned=version.kind == ModelVersionKind.LORA_ADAPTER)


def comparison_view(model_admin, request):
    """``?a=<eval run>&b=<eval run>``: B against A per metric, with paired-bootstrap intervals and
    p-values, McNemar's test, and both score distributions."""
    ids = [id_param(request, name) for name in ("a", "b")]
    context = {"title": "Compare two eval runs"}
    if None in ids:
        return _page(model_admin, request, "comparison.html", missing=True, **context)
    a, b = (get_object_or_404(EvalRun.objects.select_related("snapshot", "model_version"), pk=i) for i in ids)
    try:
        comparison = compare_eval_runs(a, b)
    except ServiceError as exc:
        return _page(model_admin, request, "comparison.html", error=str(exc), **context)
    # B first: the system under test takes the first colour, as the fine-tuned model does on the decision page.
    groups = [(f"B: {b.model_version}", score_distribution(b, "bleu")["counts"]),
              (f"A: {a.model_version}", score_distribution(a, "bleu")["counts"])]
    return _page(model_admin, request, "comparison.html", comparison=comparison,
                 rows=_differences(comparison),
                 mcnemar=comparison["metrics"]["exact_match_mcnemar"],
                 distribution=distribution_chart(groups, "bleu"), **context)


def _for_viewers(function):
    """Reports are for whoever may view eval runs (engineers): 403 for the rest, before any work."""
    def guarded(model_admin, request, *args, **kwargs):
        if not request.user.has_perm("evaluation.view_evalrun"):
            raise PermissionDenied
        return function(model_admin, request, *args, **kwargs)
    return guarded


def report_urls(view):
    """The report pages' URLs; ``view`` wraps a page function as an admin view (admin_tools.admin_page)."""
    from django.urls import path

    return [
        path("decision/", view(_for_viewers(decision_view)), name="evaluation_evalrun_decision"),
        path("compare/", view(_for_viewers(comparison_view)), name="evaluation_evalrun_compare"),
        path("model-version/<int:version_id>/report/", view(_for_viewers(model_report_view)),
             name="evaluation_evalrun_model_report"),
    ]
