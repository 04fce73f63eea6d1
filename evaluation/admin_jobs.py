"""Evaluation jobs from the admin: start evaluations of one or several model versions on a snapshot split,
and follow a run live. Thin views over evaluation.services: it checks the permission and the rules, as for
the API and the evaluate command."""
from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse

from curation.choices import SnapshotStatus, Split
from curation.models import Snapshot
from ftplatform.errors import ServiceError
from ftplatform.jobrows import FINISHED_STATUSES, JobStatus
from training.models import ModelVersion

from .models import EvalRun
from .services import DEFAULT_GENERATION, start_eval_run

POLL_SECONDS = 2


class StartEvaluationsForm(forms.Form):
    snapshot = forms.ModelChoiceField(Snapshot.objects.none(), help_text="Approved snapshots only.")
    split = forms.ChoiceField(choices=Split.choices, initial=Split.TEST,
                              help_text="The test split for a verdict; the validation split too, where the decision "
                                        "report chooses its routing threshold.")
    model_versions = forms.ModelMultipleChoiceField(
        ModelVersion.objects.none(), widget=forms.CheckboxSelectMultiple,
        help_text="One eval run each: the fine-tuned model and the baselines it must beat.")
    max_new_tokens = forms.IntegerField(min_value=1, max_value=4096, initial=DEFAULT_GENERATION["max_new_tokens"])
    batch_size = forms.IntegerField(min_value=1, max_value=256, initial=DEFAULT_GENERATION["batch_size"],
                                    help_text="1: each latency is one request's; above 1, higher throughput with "
                                              "latencies amortised over the batch.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["snapshot"].queryset = (Snapshot.objects.filter(status=SnapshotStatus.APPROVED)
                                            .select_related("dataset").order_by("-created_at"))
        self.fields["model_versions"].queryset = ModelVersion.objects.select_related("base_model").order_by("-id")


def start_evaluations_view(model_admin, request):
    """``?snapshot=<id>&versions=<id>,<id>`` preselect; a POST starts one eval run per chosen version (each
    refusal an error message naming the version) and shows the runs started."""
    if not request.user.has_perm("evaluation.add_evalrun"):
        raise PermissionDenied
    chosen = [part for part in request.GET.get("versions", "").split(",") if part.isascii() and part.isdigit()]
    form = StartEvaluationsForm(request.POST if request.method == "POST" else None,
                                initial={"snapshot": request.GET.get("snapshot"), "model_versions": chosen})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        generation = {"max_new_tokens": data["max_new_tokens"], "batch_size": data["batch_size"]}
        started = []
        for version in data["model_versions"]:
            try:
                started.append(start_eval_run(version, data["snapshot"], by=request.user, split=data["split"],
                                              generation=generation))
            except ServiceError as exc:
                messages.error(request, f"{version.name}: {exc}")
        if started:
            messages.success(request, f"Started {len(started)} eval run(s) on {data['snapshot']} [{data['split']}]: "
                                      + ", ".join(f"eval {run.pk} ({run.model_version.name})" for run in started))
            if len(started) == 1:
                return redirect(reverse("admin:evaluation_evalrun_change", args=[started[0].pk]))
            ids = ",".join(str(run.pk) for run in started)
            return redirect(f"{reverse('admin:evaluation_evalrun_changelist')}?id__in={ids}")
    return TemplateResponse(request, "admin/evaluation/start_evaluations.html", {
        "title": "Evaluate model versions", "form": form, **model_admin.admin_site.each_context(request)})


def live_panel(model_admin, run: EvalRun) -> str:
    """The part of an eval run's page that changes while it runs: status, progress, error, and once it
    succeeded its metrics and the reports. Safe markup; ``progress_view`` serves it to the page's polling."""
    succeeded = run.status == JobStatus.SUCCEEDED
    return render_to_string("admin/evaluation/run_live.html", {
        "run": run, "running": run.status not in FINISHED_STATUSES, "poll_seconds": POLL_SECONDS,
        "succeeded": succeeded, "metrics": model_admin.metrics_table(run) if succeeded else "",
    })


def progress_view(model_admin, request, run_id):
    """The live panel alone, for the eval run page to poll while the run is queued or running."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    run = get_object_or_404(EvalRun.objects.select_related("model_version", "snapshot"), pk=run_id)
    return HttpResponse(live_panel(model_admin, run))


def job_urls(view):
    """The eval job pages' URLs; ``view`` wraps a page function as an admin view (admin_tools.admin_page)."""
    return [
        path("start/", view(start_evaluations_view), name="evaluation_evalrun_start"),
        path("<int:run_id>/progress/", view(progress_view), name="evaluation_evalrun_progress"),
    ]
