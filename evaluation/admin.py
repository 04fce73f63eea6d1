from django.contrib import admin

from ftplatform.admin_tools import ReadOnlyInline, admin_page

from . import admin_views
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
    readonly_fields = [f.name for f in EvalRun._meta.fields]
    inlines = [PredictionInline]

    def changelist_view(self, request, extra_context=None):
        reap_lost_eval_runs()  # a run whose worker died shows as failed, not running forever
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        reap_lost_eval_runs()
        return super().change_view(request, object_id, form_url, extra_context)

    def has_add_permission(self, request):
        return False  # started from the API or the evaluate command

    def get_urls(self):
        return [*admin_views.rating_urls(self, lambda function: admin_page(self, function)), *super().get_urls()]

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
