from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from ftplatform.admin_tools import ReadOnlyInline, admin_page

from . import admin_reports, admin_views
from .decision import score_distribution
from .models import EvalRun, Prediction, RatingCriterion
from .services import reap_lost_eval_runs


class PredictionInline(ReadOnlyInline):
    model = Prediction
    fields = ["output", "references", "scores", "latency_ms"]
    readonly_fields = fields


@admin.register(EvalRun)
class EvalRunAdmin(admin.ModelAdmin):
    list_display = ["id", "model_version", "snapshot", "split", "status", "done", "total", "bleu", "chrf",
                    "rouge_l", "created_at"]
    list_filter = ["status", "split"]
    readonly_fields = [f.name for f in EvalRun._meta.fields] + ["score_distribution", "reports"]
    inlines = [PredictionInline]
    actions = ["compare_selected"]

    def changelist_view(self, request, extra_context=None):
        reap_lost_eval_runs()  # a run whose worker died shows as failed, not running forever
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        reap_lost_eval_runs()
        return super().change_view(request, object_id, form_url, extra_context)

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

    @admin.display(description="Score distribution")
    def score_distribution(self, obj):
        groups = [(label, score_distribution(obj, key)["counts"])
                  for key, label in admin_reports.METRICS.items() if key != "exact_match"]
        return admin_reports.distribution_chart(groups, "score")

    @admin.display(description="Reports")
    def reports(self, obj):
        return format_html('<a href="{}">model report</a> · <a href="{}?dataset={}">decision report</a>',
                           reverse("admin:evaluation_evalrun_model_report", args=[obj.model_version_id]),
                           reverse("admin:evaluation_evalrun_decision"), obj.snapshot.dataset_id)

    def _metric(self, obj, name):
        value = obj.metrics.get(name)
        return f"{value:.2f}" if value is not None else "-"

    @admin.display(description="BLEU")
    def bleu(self, obj):
        return self._metric(obj, "bleu")

    @admin.display(description="chrF")
    def chrf(self, obj):
        return self._metric(obj, "chrf")

    @admin.display(description="ROUGE-L")
    def rouge_l(self, obj):
        return self._metric(obj, "rouge_l")


@admin.register(RatingCriterion)
class RatingCriterionAdmin(admin.ModelAdmin):
    """Engineers define what raters score, per dataset: a name, a description and what 1-5 mean."""

    list_display = ["name", "dataset", "description"]
    list_filter = ["dataset"]
