from django.contrib import admin

from ftplatform.admin_tools import ReadOnlyInline

from .models import EvalRun, Prediction


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

    def has_add_permission(self, request):
        return False  # started from the API or the evaluate command

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
