from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from curation.models import Dataset
from ftml.metrics import metric_spec
from ftplatform.admin_tools import (
    JobAttemptInline,
    ReadOnlyInline,
    SavesOnlyEditableForms,
    admin_page,
    apply_to_each,
)
from ftplatform.errors import ServiceError
from training.models import ModelVersion

from . import admin_jobs, admin_reports, admin_views
from .admin_side_by_side import side_by_side_selected, side_by_side_urls
from .decision import score_distribution
from .models import EvalRun, PreannotationRun, Prediction, RatingCriterion
from .preannotation import cancel_preannotation, start_preannotation
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
    readonly_fields = [f.name for f in EvalRun._meta.fields] + ["live", "metrics_table", "score_distribution",
                                                                "reports"]
    fieldsets = [
        (None, {"fields": ["model_version", "snapshot", "split", "live", "reports"]}),
        ("Metrics", {"fields": ["metrics_table", "score_distribution", "signatures"]}),
        ("Run", {"fields": ["generation", "environment", "worker", "heartbeat_at", "created_by", "created_at",
                            "started_at", "finished_at"]}),
        ("Raw metrics (JSON)", {"classes": ["collapse"], "fields": ["metrics"]}),
    ]
    inlines = [JobAttemptInline, PredictionInline]
    actions = ["compare_selected", side_by_side_selected, "cancel_selected"]

    @admin.action(description="Cancel the selected eval runs")
    def cancel_selected(self, request, queryset):
        apply_to_each(request, queryset, lambda run: cancel_eval_run(run, by=request.user),
                      "Cancel requested for {count} eval run(s).")


    def has_add_permission(self, request):
        return False  # started on its own page (several model versions at once), the API or the evaluate command

    def get_urls(self):
        def view(function):
            return admin_page(self, function)

        return [*admin_views.rating_urls(self, view), *admin_reports.report_urls(view), *admin_jobs.job_urls(view),
                *side_by_side_urls(view), *super().get_urls()]

    @admin.display(description="progress")
    def live(self, obj):
        # Status, progress and error, refreshed while the run goes (admin_jobs); its metrics once it succeeded.
        return admin_jobs.live_panel(self, obj)

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


class PreannotationForm(forms.Form):
    model_version = forms.ModelChoiceField(queryset=ModelVersion.objects.all(),
                                           help_text="A fine-tuned model, a prompted base or a remote model.")
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.all())
    example_ids = forms.CharField(required=False, label="Drafts to answer",
                                  help_text="Example ids separated by commas or spaces; empty: every draft of the "
                                            "dataset still waiting for its answer.")
    max_new_tokens = forms.IntegerField(min_value=1, max_value=4096, initial=64)

    def clean_example_ids(self):
        words = self.cleaned_data["example_ids"].replace(",", " ").split()
        bad = [word for word in words if not word.isdigit()]
        if bad:
            raise forms.ValidationError(f"not an example id: {', '.join(bad[:5])}")
        return [int(word) for word in words]


@admin.register(PreannotationRun)
class PreannotationRunAdmin(admin.ModelAdmin):
    """Pre-annotation runs: started here (model version, dataset, drafts), followed on their page."""

    list_display = ["id", "model_version", "dataset", "status", "done", "total", "suggested", "prefilled",
                    "created_by", "created_at"]
    list_filter = ["status", "dataset"]
    readonly_fields = ["suggestions_link"] + [f.name for f in PreannotationRun._meta.fields]
    inlines = [JobAttemptInline]
    actions = ["cancel_selected"]

    @admin.display(description="suggestions")
    def suggestions_link(self, obj):
        return format_html('<a href="{}?example__dataset__id__exact={}">the suggestions and their edit effort</a>',
                           reverse("admin:curation_suggestion_changelist"), obj.dataset_id)

    def has_change_permission(self, request, obj=None):
        return False

    @admin.action(description="Cancel the selected pre-annotation runs (suggestions so far stay)")
    def cancel_selected(self, request, queryset):
        apply_to_each(request, queryset, lambda run: cancel_preannotation(run, by=request.user),
                      "Cancel requested for {count} pre-annotation run(s).")

    def add_view(self, request, form_url="", extra_context=None):
        """Pick a model version and the drafts; the job drafts their answers as suggestions."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = PreannotationForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                run = start_preannotation(data["model_version"], data["dataset"], by=request.user,
                                          example_ids=data["example_ids"],
                                          generation={"max_new_tokens": data["max_new_tokens"]})
            except ServiceError as exc:
                messages.error(request, str(exc))
            else:
                run.refresh_from_db()  # without REDIS_URL the job already ran
                messages.success(request, f"Pre-annotation {run.pk} {run.status}: {run.suggested} of {run.total} "
                                          "drafts have a model suggestion.")
                return redirect(reverse("admin:evaluation_preannotationrun_change", args=[run.pk]))
        return TemplateResponse(request, "admin/evaluation/preannotate.html", {
            "form": form, "title": "Pre-annotate drafts with a model", **self.admin_site.each_context(request)})


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
from . import admin_learning_curves  # noqa: E402,F401  (registers LearningCurveAdmin)
