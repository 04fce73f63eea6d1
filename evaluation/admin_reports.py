"""Report pages in the admin: a dataset's decision report, a model version's report and the
comparison of two eval runs, as tables and inline SVG charts (score distributions, the routing
curve). Thin views over evaluation.decision, evaluation.reports and evaluation.comparisons: the
same dicts the REST API serves, laid out for people."""
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.utils.safestring import mark_safe

from curation.models import Dataset
from curation.selectors import dataset_named
from ftml.metrics import ALWAYS_SCORED, MCNEMAR_SUFFIX, metric_spec
from ftplatform.charts import PALETTE, Series, bar_chart_svg, line_chart_svg
from ftplatform.errors import ServiceError
from ftplatform.rest import id_param
from training.choices import ModelVersionKind
from training.models import ModelVersion

from .choices import Verdict
from .comparisons import compare_eval_runs
from .decision import REPORT_SECTIONS, SCORE_BINS, decision_report, routing_summary, score_distribution
from .models import EvalRun
from .reports import model_version_report
from .scoring import metric_labels, primary_metric
from .verdicts import format_p_value, p_value_text

ROUTING_ROWS = 11  # the routing table shows about one threshold per 10 % of traffic, and the suggested one


def _label(metric: str) -> str:
    """A metric's label for charts; "score" (several metrics in one chart) stays as it is."""
    try:
        return metric_spec(metric).label
    except ValueError:
        return metric


def _rows(names, primary: str, values: dict[str, dict]) -> list[dict]:
    """Table rows of metric ``names``: {"name": label, "primary", **values[name]}, the primary metric marked."""
    return [{**values.get(name, {}), "name": label + (" (primary)" if name == primary else ""),
             "primary": name == primary} for name, label in metric_labels(names).items()]


def mcnemar_of(comparison: dict, metric: str) -> dict:
    """{"mcnemar": McNemar's test of ``comparison`` on ``metric`` when it is a 0/100 one, else on exact
    match, "mcnemar_metric": that metric's label, "mcnemar_p": its p-value as text, "p = 7.63e-06"
    (rounded to three decimals it read "p = 0.000")}, for the pages."""
    tested = metric if metric_spec(metric).binary else "exact_match"
    result = comparison["metrics"][tested + MCNEMAR_SUFFIX]
    return {"mcnemar": result, "mcnemar_metric": metric_spec(tested).label, "mcnemar_p": p_value_text(result)}


def graded_metrics(names) -> list[str]:
    """The metrics among ``names`` whose per-example scores spread over 0-100 (not 0/100 checks):
    what a score histogram can show."""
    return [name for name in names if not metric_spec(name).binary]


def _page(model_admin, request, template, **context):
    return TemplateResponse(request, f"admin/evaluation/{template}",
                            {**context, "verdicts": Verdict, **model_admin.admin_site.each_context(request)})


def _bin_labels() -> list[str]:
    return [f"{low}–{high}" for low, high in zip(SCORE_BINS, SCORE_BINS[1:], strict=False)]


def distribution_chart(groups: list[tuple[str, list[int]]], metric: str) -> str:
    """Grouped bars: how many examples scored in each tenth of 0-100 on ``metric``, one group per model
    (``groups`` are (name, counts) with score_distribution's counts). Safe markup."""
    label = _label(metric)
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
    label = _label(metric)
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


PRIMARY_CHOICE = {"": "the snapshot's primary metric"}


def _differences(names, primary: str, comparison: dict) -> list[dict]:
    """Rows of includes/differences.html: per metric the paired result and its p-value as shown."""
    return [{**row, "p_value_shown": format_p_value(row)} for row in _rows(names, primary, comparison["metrics"])]


def decision_view(model_admin, request):
    """``?dataset=<name or id>&metric=<name>``: the decision report with its charts, on the snapshot's primary
    metric unless ``metric`` names another it scores; a dataset chooser without ``dataset``."""
    metric = request.GET.get("metric", "")
    datasets = Dataset.objects.filter(snapshots__eval_runs__isnull=False).distinct().order_by("name")
    name_or_id = request.GET.get("dataset", "")
    context = {"title": "Decision report", "datasets": datasets, "metric": metric,
               "metrics": {**PRIMARY_CHOICE, **metric_labels(ALWAYS_SCORED)}}
    if not name_or_id:
        return _page(model_admin, request, "decision.html", **context)
    dataset = dataset_named(name_or_id)
    if dataset is None:  # the chooser, saying what was not found
        response = _page(model_admin, request, "decision.html", error=f"no dataset named {name_or_id!r} (nor with "
                         "that id); choose one of the evaluated datasets", **context)
        response.status_code = 404
        return response
    context.update(title=f"Decision report: {dataset.name}", dataset=dataset)
    try:
        report = decision_report(dataset, metric=metric or None)
    except ServiceError as exc:  # an unscored metric, a baseline sharing no input with the fine-tuned run: 400s
        return _page(model_admin, request, "decision.html", error=str(exc), **context)
    context["report"] = report
    if report.get("baselines"):
        sides = [report["fine_tuned"], *report["baselines"]]
        names = list(sides[0]["scores"])  # the metrics the snapshot scores
        context["metrics"] = {**PRIMARY_CHOICE, **metric_labels(names)}
        metric, primary = report["metric"], report["primary_metric"]
        versions = {version.pk: version.name for version in
                    ModelVersion.objects.filter(pk__in=[r["item"] for r in report["leaderboard"]["ratings"]])}
        context.update(
            sides=[{**side, "rows": _rows(names, primary, side["scores"])} for side in sides],
            distribution=distribution_chart([(side["model_version"], side["distribution"]["counts"])
                                             for side in sides], metric),
            baselines=[{**baseline, "routing_chart": routing_chart(baseline["routing"], metric),
                        "routing_rows": routing_rows(baseline["routing"]),
                        "routing_summary": routing_summary(baseline["routing"], _label(metric)),
                        "differences": _differences(names, primary, baseline["comparison"]),
                        **mcnemar_of(baseline["comparison"], metric)}
                       for baseline in report["baselines"]],
            ratings=[(side["model_version"], sorted(side["human_ratings"].items())) for side in sides],
            board=[{**row, "name": versions.get(row["item"], row["item"])}
                   for row in report["leaderboard"]["ratings"]],
            # Sections other apps add (e.g. serving's production view), as their own lines.
            sections=[lines(report[name]) for name, (_, lines) in REPORT_SECTIONS.items() if report.get(name)],
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
        names = entry["metric_names"]
        groups = [(label, score_distribution(run, name)["counts"])
                  for name, label in metric_labels(graded_metrics(names)).items()]
        intervals = entry["metrics"].get("confidence_intervals", {})
        baseline = (entry["baseline"] or {}).get("metrics", {})
        evaluations.append({**entry, "distribution": distribution_chart(groups, "score"),
                            "rows": _rows(names, entry["primary_metric"], {name: {
                                "score": entry["metrics"].get(name), "baseline": baseline.get(name),
                                "difference": entry["difference"].get(name), **intervals.get(name, {})}
                                for name in names}),
                            "ratings": sorted(entry["human_ratings"].items())})
    return _page(model_admin, request, "model_report.html", title=f"Model report: {version.name}",
                 version=version, report=report, evaluations=evaluations,
                 fine_tuned=version.kind == ModelVersionKind.LORA_ADAPTER)


def comparison_view(model_admin, request):
    """``?a=<eval run>&b=<eval run>``: B against A per metric, with paired-bootstrap intervals and
    p-values, McNemar's test (on the primary metric when it is a 0/100 one, else exact match), and
    both distributions of the primary metric."""
    ids = [id_param(request, name) for name in ("a", "b")]
    context = {"title": "Compare two eval runs"}
    if None in ids:
        return _page(model_admin, request, "comparison.html", missing=True, **context)
    a, b = (get_object_or_404(EvalRun.objects.select_related("snapshot", "model_version"), pk=i) for i in ids)
    try:
        comparison = compare_eval_runs(a, b)
    except ServiceError as exc:
        return _page(model_admin, request, "comparison.html", error=str(exc), **context)
    primary = primary_metric(a.snapshot)
    # B first: the system under test takes the first colour, as the fine-tuned model does on the decision page.
    groups = [(f"B: {b.model_version}", score_distribution(b, primary)["counts"]),
              (f"A: {a.model_version}", score_distribution(a, primary)["counts"])]
    names = [name for name in comparison["metrics"] if not name.endswith(MCNEMAR_SUFFIX)]
    return _page(model_admin, request, "comparison.html", comparison=comparison,
                 rows=_differences(names, primary, comparison), **mcnemar_of(comparison, primary),
                 distribution=distribution_chart(groups, primary), **context)


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
