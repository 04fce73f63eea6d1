"""The learning-curve admin: a page to start one, and each curve's chart, one row per point and the
reading of the last step (evaluation.learning_curves), as the API and ``manage.py learning_curve``."""
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from curation.choices import SnapshotStatus, Split
from curation.models import Snapshot
from ftplatform.admin_tools import ReadOnlyAdmin, apply_to_each
from ftplatform.errors import ServiceError
from training.base_models import default_base_model
from training.choices import BaseModelSource
from training.models import BaseModel

from .learning_curves import (
    DEFAULT_PERCENTAGES,
    evaluate_missing_points,
    learning_curve_chart,
    learning_curve_report,
    parse_percentages,
    start_learning_curve,
)
from .models import LearningCurve


class LearningCurveStartForm(forms.Form):
    snapshot = forms.ModelChoiceField(queryset=Snapshot.objects.filter(status=SnapshotStatus.APPROVED).order_by("-id"),
                                      help_text="An approved snapshot.")
    base_model = forms.ModelChoiceField(queryset=BaseModel.objects.exclude(source_kind=BaseModelSource.REMOTE),
                                        required=False, help_text="Default: the configured default base model.")
    fractions = forms.CharField(initial=",".join(str(p) for p in DEFAULT_PERCENTAGES),
                                help_text="Percentages of the train split's distinct inputs, comma-separated.")
    split = forms.ChoiceField(choices=[(Split.VALIDATION, "validation"), (Split.TEST, "test")],
                              help_text="The split every model version is evaluated on.")
    seed = forms.IntegerField(initial=0, min_value=-(2**31), max_value=2**31 - 1,
                              help_text="Which inputs each share keeps.")
    hyperparameters = forms.JSONField(required=False, initial=dict,
                                      help_text='For every run, as in a training run, e.g. {"epochs": 2}.')

    def clean_fractions(self):
        try:
            return parse_percentages(self.cleaned_data["fractions"])
        except ServiceError as exc:
            raise forms.ValidationError(str(exc)) from exc


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
    actions = ["evaluate_missing_selected"]

    @admin.action(description="Start the missing evaluations (finished runs without one, or with a failed one)")
    def evaluate_missing_selected(self, request, queryset):
        started = []
        apply_to_each(request, queryset, lambda curve: started.append(evaluate_missing_points(curve, by=request.user)),
                      "Checked {count} curve(s).")
        if started:
            messages.info(request, f"{sum(started)} evaluation(s) started.")

    def has_add_permission(self, request):
        return admin.ModelAdmin.has_add_permission(self, request)  # started here through the service

    def add_view(self, request, form_url="", extra_context=None):
        """The start page: the form's values go to start_learning_curve; what it refuses is shown above the form."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = LearningCurveStartForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                curve = start_learning_curve(
                    data["snapshot"], data["base_model"] or default_base_model(), by=request.user,
                    percentages=data["fractions"], split=data["split"], hyperparameters=data["hyperparameters"],
                    seed=data["seed"])
            except ServiceError as exc:
                messages.error(request, str(exc))
            else:
                messages.success(request, f"Learning curve {curve.pk} started: {curve.points.count()} training runs, "
                                          "each evaluated once its model version exists.")
                return redirect(reverse("admin:evaluation_learningcurve_change", args=[curve.pk]))
        return TemplateResponse(request, "admin/evaluation/learning_curve_start.html", {
            "form": form, "title": "Start a learning curve", **self.admin_site.each_context(request)})

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
