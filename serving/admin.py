"""Deployments, API keys and the request log in the admin: thin, over the same services as the API."""
from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.template.response import TemplateResponse
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from curation.models import Dataset
from ftplatform.admin_tools import ReadOnlyAdmin, apply_to_each
from ftplatform.errors import ServiceError

from .choices import Routing
from .deployments import FIELDS, create_deployment, update_deployment
from .distill import logs_to_examples
from .keys import create_api_key, revoke_api_key
from .models import ApiKey, Deployment, RequestLog


class DeploymentForm(forms.ModelForm):
    """Saved through the services in ``clean`` (in the admin's transaction): a rule they refuse becomes
    the form's error on its field, and nothing is saved."""

    reason = forms.CharField(required=False, max_length=100, help_text="Why (kept in the history).")
    target_quality = forms.FloatField(
        required=False, help_text="Confidence routing without a threshold: the quality the routed answers must reach "
                                  "on the validation split (default: the fallback's own).")
    choose_again = forms.BooleanField(required=False, help_text="Choose the threshold again on the validation split.")
    user = None  # set by DeploymentAdmin.get_form

    class Meta:
        model = Deployment
        fields = [*FIELDS]

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        values = {name: cleaned.get(name) for name in FIELDS}
        options = {"target_quality": cleaned.get("target_quality")}
        try:
            with transaction.atomic():
                if self.instance.pk:  # the service keeps only what differs from the saved row
                    saved = update_deployment(self.instance, by=self.user, reason=cleaned.get("reason") or "",
                                              choose_again=cleaned.get("choose_again") or False, **values, **options)
                else:
                    saved = create_deployment(by=self.user, **values, **options)
        except ServiceError as exc:
            self.add_error(exc.field if exc.field in self.fields else None, str(exc))
            return cleaned
        self.instance = saved
        return cleaned


@admin.register(Deployment)
class DeploymentAdmin(SimpleHistoryAdmin):
    form = DeploymentForm
    list_display = ["name", "primary", "fallback", "routing", "threshold", "engine", "active", "updated_at"]
    list_filter = ["active", "routing", "engine"]
    search_fields = ["name", "description"]
    readonly_fields = ["threshold_source", "created_by", "created_at", "updated_at"]

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        form.user = request.user
        return form

    def save_model(self, request, obj, form, change):
        # Saved by the services in DeploymentForm.clean; say when confidence routing was asked for and the
        # validation split showed the primary alone reaches the target.
        source = obj.threshold_source or {}
        if form.cleaned_data.get("routing") == Routing.CONFIDENCE and source.get("never"):
            messages.warning(request, f"{obj}: primary only. On the validation split the primary alone reaches the "
                                      f"target {source['target_quality']:.2f} ({source['target_from']}): falling "
                                      "back would only add cost. Give a threshold by hand, or a higher target "
                                      "quality, to route.")

    def has_delete_permission(self, request, obj=None):
        return False  # switch it off (active) instead: its request log stays attached


class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["name", "deployment", "expires_at"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = ["name", "prefix", "deployment", "created_by", "created_at", "expires_at", "revoked_at",
                    "last_used_at"]
    list_filter = ["deployment"]
    readonly_fields = ["prefix", "created_by", "created_at", "revoked_at", "last_used_at"]
    actions = ["revoke_selected"]

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "name", "deployment", "expires_at"] if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        if change:
            return
        row, key = create_api_key(name=form.cleaned_data["name"], deployment=form.cleaned_data.get("deployment"),
                                  expires_at=form.cleaned_data.get("expires_at"), by=request.user)
        obj.pk, obj.prefix, obj.created_by = row.pk, row.prefix, row.created_by
        messages.warning(request, format_html(
            "The new key, shown this once (copy it now; only its SHA-256 is kept): <code>{}</code>", key))

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead: request logs keep naming the key

    @admin.action(description="Revoke the selected keys", permissions=["change"])
    def revoke_selected(self, request, queryset):
        apply_to_each(request, queryset, lambda key: revoke_api_key(key, by=request.user), "{count} key(s) revoked.")


class ToDatasetForm(forms.Form):
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.order_by("name"))
    submit = forms.BooleanField(required=False, help_text="Submit them for review (else they are drafts).")


@admin.register(RequestLog)
class RequestLogAdmin(ReadOnlyAdmin):
    list_display = ["request_id", "created_at", "deployment_name", "status", "answered_by", "fell_back",
                    "confidence", "latency_ms", "completion_tokens", "cost", "example"]
    list_filter = ["status", "fell_back", "stream", "deployment", "answered_by", "created_at"]
    search_fields = ["request_id", "deployment_name", "answer", "end_user"]
    date_hierarchy = "created_at"
    actions = ["add_to_dataset"]

    @admin.action(description="Add to a dataset as examples", permissions=["view"])
    def add_to_dataset(self, request, queryset):
        form = ToDatasetForm(request.POST if request.POST.get("confirm") == "yes" else None)
        if form.is_bound and form.is_valid():
            try:
                result = logs_to_examples(queryset, form.cleaned_data["dataset"], by=request.user,
                                          submit=form.cleaned_data["submit"])
            except ServiceError as exc:
                messages.error(request, str(exc))
                return None
            messages.success(request, f"{len(result['created'])} example(s) added to {form.cleaned_data['dataset']}; "
                                      f"{len(result['duplicates'])} duplicate(s), {len(result['skipped'])} skipped.")
            for skipped in result["skipped"][:10]:
                messages.warning(request, f"{skipped['request_id']}: {skipped['reason']}")
            return None
        return TemplateResponse(request, "admin/serving/to_dataset.html", {
            "title": "Add request logs to a dataset", "queryset": queryset, "form": form,
            **admin.site.each_context(request)})
