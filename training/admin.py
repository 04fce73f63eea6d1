"""Thin admin over the training services."""
from django import forms
from django.contrib import admin
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from ftplatform.admin_tools import JobAttemptInline, ReadOnlyInline, SavesOnlyEditableForms, admin_page, apply_to_each
from ftplatform.errors import ServiceError
from ftplatform.jobrows import FINISHED_STATUSES

from . import admin_views
from .model_versions import PRICE_FIELDS, checked_prices, update_model_version
from .models import BaseModel, Checkpoint, ModelVersion, TrainingRun
from .progress import format_preflight, run_progress_fields
from .runs import cancel_training_run, resume_training_run


@admin.register(BaseModel)
class BaseModelAdmin(admin.ModelAdmin):
    list_display = ["name", "source_kind", "source", "hub_id", "parameter_count", "context_length", "licence"]


class CheckpointInline(ReadOnlyInline):
    model = Checkpoint
    fields = ["step", "epoch", "path", "created_at"]
    readonly_fields = fields


@admin.register(TrainingRun)
class TrainingRunAdmin(SavesOnlyEditableForms, admin.ModelAdmin):
    list_display = ["id", "snapshot", "base_model", "status", "progress_bar", "final_loss_display", "created_at"]
    list_filter = ["status", "base_model"]
    readonly_fields = [f.name for f in TrainingRun._meta.fields] + ["progress_bar", "live", "preflight_report"]
    # Where the run stands first (status, progress, loss chart and events, refreshed while it runs: the
    # events once, in the panel; an inline listed them again, each row headed by the event's own text),
    # every other field (new ones included) below.
    fieldsets = [
        ("Progress", {"fields": ["live"]}),
        ("Pre-flight", {"fields": ["preflight_report"]}),
        ("Run", {"fields": [f.name for f in TrainingRun._meta.fields if f.name not in ("status", "preflight")]}),
    ]
    inlines = [JobAttemptInline, CheckpointInline]


    @admin.display(description="pre-flight report")
    def preflight_report(self, obj):
        if not obj.preflight:
            return "-"
        return format_html_join(mark_safe("<br>"), "{}", ((line,) for line in format_preflight(obj.preflight)))
    actions = ["cancel_selected", "resume_selected"]

    def has_add_permission(self, request):
        return False  # started on its own page (pre-flight, then confirm), the API or the train command

    def has_delete_permission(self, request, obj=None):
        # A queued or running run is cancelled, not deleted, so its worker never loses its row.
        if obj is not None and obj.status not in FINISHED_STATUSES:
            return False
        return super().has_delete_permission(request, obj)

    @admin.display(description="progress")
    def progress_bar(self, obj):
        text = " · ".join(f"{label} {value}" for label, value in run_progress_fields(obj).items())
        return format_html('<progress value="{}" max="{}"></progress><div class="help">{}</div>', obj.step,
                           obj.total_steps or 1, text)

    @admin.display(description="where it stands")
    def live(self, obj):
        return mark_safe(admin_views.live_panel(obj))  # safe: a template's output, every value escaped

    def get_urls(self):
        return [*admin_views.run_urls(lambda function: admin_page(self, function)), *super().get_urls()]

    @admin.display(description="final train loss")
    def final_loss_display(self, obj):
        return f"{obj.final_loss:.4f}" if obj.final_loss is not None else "-"

    @admin.action(description="Cancel selected runs")
    def cancel_selected(self, request, queryset):
        apply_to_each(request, queryset, lambda run: cancel_training_run(run, by=request.user),
                      "Cancel requested for {count} run(s); running ones stop at their next step.")

    @admin.action(description="Resume selected runs from their last checkpoint")
    def resume_selected(self, request, queryset):
        apply_to_each(request, queryset, lambda run: resume_training_run(run, by=request.user),
                      "Resume queued for {count} run(s) from their last checkpoint.")


class ModelVersionForm(forms.ModelForm):
    """The display name and prices, checked by the services' own rule (training.model_versions.checked_prices)."""

    class Meta:
        model = ModelVersion
        fields = ["name", *PRICE_FIELDS]

    def clean(self):
        data = super().clean()
        try:
            checked_prices({name: data.get(name) for name in PRICE_FIELDS})
        except ServiceError as exc:
            self.add_error(exc.field if exc.field in PRICE_FIELDS else None, str(exc))
        return data


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    """Only the display name and the prices can change: what answered an evaluation (kind, base
    model, adapter, prompt, endpoint) must stay what it was."""

    form = ModelVersionForm
    list_display = ["id", "name", "kind", "base_model", "training_run", "created_at", "report"]
    list_filter = ["kind"]
    readonly_fields = ["kind", "base_model", "training_run", "system_prompt", "few_shot", "adapter_path", "base_url",
                       "remote_model", "api_key_env", "created_at", "report"]

    actions = ["evaluate_selected"]

    @admin.action(description="Evaluate the selected model versions on a snapshot split")
    def evaluate_selected(self, request, queryset):
        # The page belongs to the evaluation admin (evaluation.admin_jobs); linked by URL name only.
        ids = ",".join(str(pk) for pk in queryset.values_list("pk", flat=True))
        return HttpResponseRedirect(f"{reverse('admin:evaluation_evalrun_start')}?versions={ids}")

    def get_urls(self):
        return [*admin_views.model_version_urls(lambda function: admin_page(self, function)), *super().get_urls()]

    def save_model(self, request, obj, form, change):
        update_model_version(obj, by=request.user, name=form.cleaned_data["name"],
                             prices={name: form.cleaned_data[name] for name in PRICE_FIELDS})

    @admin.display(description="Report")
    def report(self, obj):
        # The page belongs to the evaluation admin (evaluation.admin_reports); linked by URL name only.
        return format_html('<a href="{}">report</a>', reverse("admin:evaluation_evalrun_model_report", args=[obj.pk]))

    def has_add_permission(self, request):
        return False  # created by training runs, or as a prompted base by its own page, the API and `evaluate`
