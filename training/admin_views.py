"""Training pages in the admin: start a run (pre-flight first, then confirm), cancel or resume one, follow
it live, and create a prompted baseline. Thin views over training.runs and training.model_versions: the
services check the permissions and the rules, as for the API and the commands."""
import json

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.safestring import mark_safe

from curation.choices import SnapshotStatus
from curation.models import Snapshot
from ftplatform.errors import ServiceError
from ftplatform.jobrows import FINISHED_STATUSES, JobStatus

from .base_models import default_base_model
from .charts import loss_chart_svg, loss_points
from .choices import BaseModelSource
from .model_versions import MAX_FEW_SHOT, few_shot_examples, prompted_model_version
from .models import BaseModel, TrainingRun
from .progress import format_preflight, run_progress_fields
from .runs import (
    cancel_training_run,
    checked_preflight_request,
    preflight_training_run,
    resume_training_run,
    start_training_run,
)

LIVE_EVENTS = 30  # the newest events the run page shows; the API's events/ endpoint pages through all
POLL_SECONDS = 2


def _page(model_admin, request, template, **context):
    return TemplateResponse(request, f"admin/training/{template}",
                            {**context, **model_admin.admin_site.each_context(request)})


def _json_object(text: str, field: str) -> dict:
    """``text`` parsed as a JSON object ("" is {}). Raises forms.ValidationError saying where it is not one."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise forms.ValidationError(f"{field}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise forms.ValidationError(f'{field}: a JSON object is expected, such as {{"max_steps": 60}}, '
                                    f"got {type(value).__name__}")
    return value


def _base_model_field(**kwargs) -> forms.ModelChoiceField:
    """A base model choice whose empty choice is the configured default (settings.DEFAULT_BASE_MODEL): its
    row is made only when a form is posted with it (_chosen_base_model), so showing a form writes nothing."""
    return forms.ModelChoiceField(BaseModel.objects.none(), required=False,
                                  empty_label=f"the default: {settings.DEFAULT_BASE_MODEL['name']}", **kwargs)


def _chosen_base_model(data: dict) -> BaseModel:
    return data["base_model"] or default_base_model()  # the default's row is created on first use


class StartRunForm(forms.Form):
    snapshot = forms.ModelChoiceField(Snapshot.objects.none(), help_text="Approved snapshots only.")
    base_model = _base_model_field(help_text="Base models with local weights.")
    hyperparameters = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        help_text='JSON, e.g. {"epochs": 1, "lora_rank": 8, "max_steps": 60}; empty for the defaults '
                  "(docs: Training).")
    timeout_minutes = forms.IntegerField(required=False, min_value=1, max_value=30 * 24 * 60,
                                         help_text="Fail the run as timed out after this long (default: "
                                                   f"{settings.TRAINING_TIMEOUT_SECONDS // 60} minutes).")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["snapshot"].queryset = (Snapshot.objects.filter(status=SnapshotStatus.APPROVED)
                                            .select_related("dataset").order_by("-created_at"))
        self.fields["base_model"].queryset = BaseModel.objects.exclude(source_kind=BaseModelSource.REMOTE)

    def clean_hyperparameters(self):
        return _json_object(self.cleaned_data["hyperparameters"], "hyperparameters")


def start_run_view(model_admin, request):
    """Start a training run: the form, then (``step=preflight``) its pre-flight report with warnings and
    estimate and a confirm button, then (``step=start``) the run, and its page."""
    if not request.user.has_perm("training.add_trainingrun"):
        raise PermissionDenied
    form = StartRunForm(request.POST if request.method == "POST" else None,
                        initial={"snapshot": request.GET.get("snapshot")})
    context = {"title": "Start a training run", "form": form}
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        snapshot, base_model, hyperparameters = data["snapshot"], _chosen_base_model(data), data["hyperparameters"]
        timeout = data["timeout_minutes"]
        try:
            if request.POST.get("step") == "start":
                run = start_training_run(snapshot, base_model, by=request.user, hyperparameters=hyperparameters,
                                         timeout_seconds=None if timeout is None else timeout * 60)
                run.refresh_from_db()  # without REDIS_URL the job already ran during this request
                messages.success(request, f"Training run {run.pk} started ({run.status}).")
                return redirect(reverse("admin:training_trainingrun_change", args=[run.pk]))
            if snapshot.split_counts.get("train", 0) > settings.PREFLIGHT_INLINE_MAX_EXAMPLES:
                # As start_training_run: a big split's pre-flight tokenizes every example, the job's first stage.
                checked_preflight_request(snapshot, base_model, hyperparameters, by=request.user)
                context["deferred"] = snapshot.split_counts["train"]
            else:
                report = preflight_training_run(snapshot, base_model, hyperparameters, by=request.user)
                context.update(report=report, lines=format_preflight(report))
        except ServiceError as exc:
            messages.error(request, str(exc))
            context.pop("deferred", None)
    return _page(model_admin, request, "start_run.html", **context)


def live_panel(run: TrainingRun) -> str:
    """The part of a run's page that changes while it trains: status, progress bar, loss chart, the newest
    events, and what to do next. Safe markup; ``progress_view`` serves the same to the page's polling."""
    train, validation = loss_points(run)
    total = run.events.count()
    return render_to_string("admin/training/run_live.html", {
        "run": run, "running": run.status not in FINISHED_STATUSES, "poll_seconds": POLL_SECONDS,
        "fields": run_progress_fields(run),
        # Safe: charts escapes every text it puts in the SVG.
        "chart": mark_safe(loss_chart_svg(train, validation, title=f"Training run {run.pk}: loss by step")),
        "events": list(run.events.order_by("-id")[:LIVE_EVENTS]), "events_total": total,
        "events_hidden": max(0, total - LIVE_EVENTS), "succeeded": run.status == JobStatus.SUCCEEDED,
        "model_version": getattr(run, "model_version", None) if run.status == JobStatus.SUCCEEDED else None,
    })


def _visible_run(model_admin, request, run_id) -> TrainingRun:
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    return get_object_or_404(TrainingRun, pk=run_id)


def progress_view(model_admin, request, run_id):
    """The live panel alone, for the run page to poll while the run is queued or running."""
    return HttpResponse(live_panel(_visible_run(model_admin, request, run_id)))


def _run_action(service, done: str):
    """A POST-only page calling ``service(run, by=user)``, then showing the run with ``done`` or the refusal;
    a GET only goes to the run's page (the buttons there POST)."""

    def view(model_admin, request, run_id):
        run = _visible_run(model_admin, request, run_id)
        if request.method == "POST":
            try:
                service(run, by=request.user)
            except ServiceError as exc:  # NotAllowed and Conflict included: the message says why
                messages.error(request, str(exc))
            else:
                messages.success(request, done.format(run=run.pk))
        return redirect(reverse("admin:training_trainingrun_change", args=[run.pk]))
    return view


cancel_view = _run_action(cancel_training_run, "Cancel requested for training run {run}; a running run stops at "
                                               "its next step (its checkpoints allow a resume).")
resume_view = _run_action(resume_training_run, "Training run {run} queued again: it resumes from its last "
                                               "checkpoint.")


class PromptedBaselineForm(forms.Form):
    base_model = _base_model_field()
    snapshot = forms.ModelChoiceField(
        Snapshot.objects.none(), help_text="Its frozen system prompt is used when the prompt below is empty, and "
                                           "few-shot examples come from its train split.")
    system_prompt = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
                                    help_text="Empty: the snapshot's system prompt.")
    few_shot_k = forms.IntegerField(label="Worked examples (few-shot)", min_value=0, max_value=MAX_FEW_SHOT, initial=0,
                                    help_text=f"0 for zero-shot; up to {MAX_FEW_SHOT} distinct train inputs.")
    few_shot_seed = forms.IntegerField(initial=0, min_value=0, help_text="Which examples are drawn.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["base_model"].queryset = BaseModel.objects.exclude(source_kind=BaseModelSource.REMOTE)
        self.fields["snapshot"].queryset = (Snapshot.objects.filter(status=SnapshotStatus.APPROVED)
                                            .select_related("dataset").order_by("-created_at"))


def prompted_baseline_view(model_admin, request):
    """Create (or find) the prompted baseline: a base model with a system prompt and, optionally, worked
    examples from a snapshot's train split (training.model_versions)."""
    if not request.user.has_perm("training.add_modelversion"):
        raise PermissionDenied
    form = PromptedBaselineForm(request.POST if request.method == "POST" else None,
                                initial={"snapshot": request.GET.get("snapshot")})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        snapshot = data["snapshot"]
        try:
            shots = few_shot_examples(snapshot, data["few_shot_k"], seed=data["few_shot_seed"]) \
                if data["few_shot_k"] else None
            version, created = prompted_model_version(_chosen_base_model(data), data["system_prompt"] or
                                                      snapshot.system_prompt, shots, by=request.user)
        except ServiceError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Model version {version.pk} {'created' if created else 'already existed'}: "
                                      f"{version.name}. Set its prices here, then evaluate it.")
            return redirect(reverse("admin:training_modelversion_change", args=[version.pk]))
    return _page(model_admin, request, "prompted_baseline.html", title="Create a prompted baseline", form=form)


def run_urls(view):
    """The training run pages' URLs; ``view`` wraps a page function as an admin view (admin_tools.admin_page)."""
    return [
        path("start/", view(start_run_view), name="training_trainingrun_start"),
        path("<int:run_id>/progress/", view(progress_view), name="training_trainingrun_progress"),
        path("<int:run_id>/cancel/", view(cancel_view), name="training_trainingrun_cancel"),
        path("<int:run_id>/resume/", view(resume_view), name="training_trainingrun_resume"),
    ]


def model_version_urls(view):
    return [path("prompted/", view(prompted_baseline_view), name="training_modelversion_prompted")]
