"""The learning-curve admin: the chart, one row per point and the reading of the last step
(evaluation.learning_curves). Curves start from the API or ``manage.py learning_curve``."""
from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from ftplatform.admin_tools import ReadOnlyAdmin

from .learning_curves import learning_curve_chart, learning_curve_report
from .models import LearningCurve


def _report(obj, *, last_step: bool = True):
    """The curve's report, computed once per page (the change page shows it in four fields); the list's
    rows skip the last step's bootstrap (learning_curve_report)."""
    cache = obj.__dict__.setdefault("_reports", {})
    if last_step not in cache:
        cache[last_step] = learning_curve_report(obj, last_step=last_step)
    return cache[last_step]


@admin.register(LearningCurve)
class LearningCurveAdmin(ReadOnlyAdmin):
    list_display = ["id", "snapshot", "base_model", "split", "state", "points_summary", "created_by", "created_at"]
    list_filter = ["split", "base_model"]
    fields = ["snapshot", "base_model", "split", "seed", "hyperparameters", "generation", "created_by", "created_at",
              "state", "chart", "points_table", "last_step"]
    readonly_fields = fields

    @admin.display(description="state")
    def state(self, obj):
        return _report(obj, last_step=False)["state"]

    @admin.display(description="points")
    def points_summary(self, obj):
        report = _report(obj, last_step=False)
        scored = [row for row in report["points"] if row["score"] is not None]
        return f"{len(scored)} of {len(report['points'])} evaluated"

    @admin.display(description="learning curve")
    def chart(self, obj):
        # Safe: ftplatform.charts escapes every text it puts in the SVG.
        return mark_safe(learning_curve_chart(obj, _report(obj)))

    @admin.display(description="points")
    def points_table(self, obj):
        report = _report(obj)
        label = report["primary_metric_label"]
        rows = []
        for row in report["points"]:
            score = "-" if row["score"] is None else f"{row['score']:.2f}" + (
                f" [{row['ci_low']:.2f}, {row['ci_high']:.2f}]" if row["ci_low"] is not None else "")
            evaluation = "-" if row["eval_run"] is None else format_html(
                '<a href="{}">eval run {}</a> ({})', reverse("admin:evaluation_evalrun_change", args=[row["eval_run"]]),
                row["eval_run"], row["eval_status"])
            rows.append((f"{row['percent']:g} %", row["train_examples"], format_html(
                '<a href="{}">training run {}</a> ({})', reverse("admin:training_trainingrun_change",
                                                                 args=[row["training_run"]]),
                row["training_run"], row["training_status"]), evaluation, score, row["error"]))
        return format_html(
            "<table><tr><th>share</th><th>train examples</th><th>training</th><th>evaluation</th>"
            "<th>{} (95 % interval)</th><th>error</th></tr>{}</table>", label,
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows))

    @admin.display(description="last step")
    def last_step(self, obj):
        step = _report(obj)["last_step"]
        return step["reading"] if step else "waiting for the two largest shares to be evaluated"
