from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from ftml.metrics import metric_spec
from ftplatform.admin_tools import JobAttemptInline, ReadOnlyInline, SavesOnlyEditableForms, admin_page, apply_to_each

from . import admin_reports, admin_views
from .decision import score_distribution
from .models import EvalRun, Prediction, RatingCriterion
from .ratings import LIKERT
from .scoring import metric_labels, primary_metric, snapshot_metrics
from .services import cancel_eval_run


class PredictionInline(ReadOnlyInline):
    """Each input's last message beside the output, its references, scores and latency, rounded."""

    model = Prediction
    fields = ["input", "output", "references_list", "score_list", "latency", "mean_logprob"]
    readonly_fields = fields
    verbose_name_plural = "predictions (one per distinct input)"

    @admin.display(description="input (last message)")
    def input(self, obj):
        last = (obj.input_messages or [{}])[-1]
        return last.get("content", "")

    @admin.display(description="references")
    def references_list(self, obj):
        return format_html_join("", "<div>• {}</div>", ((reference,) for reference in obj.references or []))

    @admin.display(description="scores (0-100)")
    def score_list(self, obj):
        return ", ".join(f"{name} {value:.1f}" for name, value in sorted((obj.scores or {}).items())
                         if isinstance(value, int | float))

    @admin.display(description="latency")
    def latency(self, obj):
        return f"{obj.latency_ms:,.0f} ms"


@admin.register(EvalRun)
class EvalRunAdmin(SavesOnlyEditableForms, admin.ModelAdmin):
    list_display = ["id", "model_version", "snapshot", "split", "status", "done", "total", "primary_score",
                    "created_at"]
    list_filter = ["status", "split"]
    readonly_fields = [f.name for f in EvalRun._meta.fields] + ["metrics_table", "score_distribution", "reports"]
    fieldsets = [
        (None, {"fields": ["model_version", "snapshot", "split", "status", "done", "total", "error", "reports"]}),
        ("Metrics", {"fields": ["metrics_table", "score_distribution", "signatures"]}),
        ("Run", {"fields": ["generation", "environment", "worker", "heartbeat_at", "created_by", "created_at",
                            "started_at", "finished_at"]}),
        ("Raw metrics (JSON)", {"classes": ["collapse"], "fields": ["metrics"]}),
    ]
    inlines = [JobAttemptInline, PredictionInline]
    actions = ["compare_selected", "cancel_selected"]

    @admin.action(description="Cancel the selected eval runs")
    def cancel_selected(self, request, queryset):
        apply_to_each(request, queryset, lambda run: cancel_eval_run(run, by=request.user),
                      "Cancel requested for {count} eval run(s).")


    def has_add_permission(self, request):
        return False  # started from the API or the evaluate command

    def get_urls(self):
        def view(function):
            return admin_page(self, function)

        return [*admin_views.rating_urls(self, view), *admin_reports.report_urls(view), *super().get_urls()]

    @admin.action(description="Compare the two selected eval runs (paired bootstrap)")
    def compare_selected(self, request, queryset):
        runs = sorted(queryset.values_list("pk", flat=True))
        if len(runs) != 2:
            self.message_user(request, f"Select exactly two eval runs to compare (got {len(runs)}).", messages.ERROR)
            return None
        return HttpResponseRedirect(f"{reverse('admin:evaluation_evalrun_compare')}?a={runs[0]}&b={runs[1]}")

    @admin.display(description="Metrics")
    def metrics_table(self, obj):
        """Scores with their 95 % intervals, then latency and tokens, rounded for reading."""
        metrics = obj.metrics if isinstance(obj.metrics, dict) else {}
        intervals = metrics.get("confidence_intervals")
        intervals = intervals if isinstance(intervals, dict) else {}
        rows = []
        for name, value in metrics.items():
            if not _is_number(value):
                continue
            interval = intervals.get(name)
            bounds = [interval.get("ci_low"), interval.get("ci_high")] if isinstance(interval, dict) else []
            shown = f"{value:,.2f}" + (f" (95 % CI {bounds[0]:.2f}–{bounds[1]:.2f})"
                                       if bounds and all(map(_is_number, bounds)) else "")
            rows.append((name, shown))
        if not rows:
            return "-"
        return format_html("<table>{}</table>", format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows))

    @admin.display(description="Score distribution")
    def score_distribution(self, obj):
        groups = [(label, score_distribution(obj, name)["counts"]) for name, label in
                  metric_labels(admin_reports.graded_metrics(snapshot_metrics(obj.snapshot))).items()]
        return admin_reports.distribution_chart(groups, "score")

    @admin.display(description="Reports")
    def reports(self, obj):
        return format_html('<a href="{}">model report</a> · <a href="{}?dataset={}">decision report</a>',
                           reverse("admin:evaluation_evalrun_model_report", args=[obj.model_version_id]),
                           reverse("admin:evaluation_evalrun_decision"), obj.snapshot.dataset_id)

    @admin.display(description="primary metric")
    def primary_score(self, obj):
        """The run's score on its snapshot's primary metric, named: "chrF 41.20"."""
        name = primary_metric(obj.snapshot)
        value = obj.metrics.get(name) if isinstance(obj.metrics, dict) else None
        return f"{metric_spec(name).label} {value:.2f}" if _is_number(value) else "-"


def _is_number(value) -> bool:
    """An int or float (never a bool): what the metrics table can round. A run's metrics are JSON
    and may hold anything (a string, a list, nested objects); those are left out, never a 500."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _anchor_field(score: int) -> str:
    return f"anchor_{score}"


class _RatingCriterionForm(forms.ModelForm):
    class Meta:
        model = RatingCriterion
        fields = ["dataset", "name", "description"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for score in LIKERT:
            self.fields[_anchor_field(score)].initial = (self.instance.anchors or {}).get(str(score), "")

    def save(self, commit=True):
        self.instance.anchors = {str(score): self.cleaned_data[_anchor_field(score)].strip() for score in LIKERT
                                 if self.cleaned_data[_anchor_field(score)].strip()}
        return super().save(commit)


# A criterion with one text box per scale point ("What 3 means"), stored as the ``anchors`` JSON
# ({"1": "...", ..., "5": "..."}; empty boxes left out): the trial had to type that JSON. The boxes
# are declared fields (the admin's fieldsets may name only those and the model's).
RatingCriterionForm = type("RatingCriterionForm", (_RatingCriterionForm,), {
    _anchor_field(score): forms.CharField(label=f"What {score} means", required=False,
                                          widget=forms.TextInput(attrs={"size": 80}))
    for score in LIKERT})


@admin.register(RatingCriterion)
class RatingCriterionAdmin(admin.ModelAdmin):
    """Engineers define what raters score, per dataset: a name, a description and what 1-5 mean."""

    form = RatingCriterionForm
    fieldsets = [(None, {"fields": ["dataset", "name", "description"]}),
                 ("What each score means", {"fields": [_anchor_field(score) for score in LIKERT]})]
    list_display = ["name", "dataset", "description"]
    list_filter = ["dataset"]
