"""The training admin's own pages: start a run (pre-flight, then confirm), cancel and resume it, the live
panel its page polls, and the prompted-baseline page; all through training.runs and training.model_versions."""
import html
import json
import re

import pytest
from django.urls import reverse

from ftplatform.jobrows import JobStatus
from tests.support.factories import (
    TINY_HYPERPARAMETERS,
    AnnotatorFactory,
    EngineerFactory,
    ReviewerFactory,
    snapshot_of,
    tiny_base_model,
)
from tests.training.test_charts import make_run
from training.choices import EventKind, ModelVersionKind
from training.models import BaseModel, ModelVersion, TrainingRun
from training.runs import log_event

pytestmark = pytest.mark.django_db


@pytest.fixture
def engineer(client):
    client.force_login(EngineerFactory())
    return client


def text_of(response) -> str:
    """The page's visible text, tags dropped and whitespace collapsed."""
    page = re.sub(r"<(script|svg)\b.*?</\1>", " ", response.content.decode(), flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def test_the_run_page_prints_each_event_once(engineer):
    """The events inline headed each row with the event's own text (its __str__) before the same
    message in its column: every training event was printed twice."""
    run = make_run(status=JobStatus.RUNNING)
    log_event(run, EventKind.WARNING, "pre-flight: 3 examples are longer than max_seq_length")
    log_event(run, EventKind.LOG, "training on 29 examples")
    page = text_of(engineer.get(reverse("admin:training_trainingrun_change", args=[run.pk])))
    assert page.count("3 examples are longer than max_seq_length") == 1
    assert page.count("training on 29 examples") == 1


def test_the_live_panel_polls_while_the_run_goes_and_stops_when_it_ends(engineer):
    run = make_run(status=JobStatus.RUNNING, step=2, total_steps=8)
    page = engineer.get(reverse("admin:training_trainingrun_change", args=[run.pk])).content.decode()
    url = reverse("admin:training_trainingrun_progress", args=[run.pk])
    assert f'data-live-url="{url}"' in page and 'data-live-running="true"' in page
    assert 'document.querySelectorAll("[data-live-url]")' in page  # the script that polls it
    log_event(run, EventKind.LOG, "checkpoint saved at step 4", step=4)
    TrainingRun.objects.filter(pk=run.pk).update(step=4)
    fragment = engineer.get(url).content.decode()
    assert fragment.startswith('<div id="ft-run-live"') and "checkpoint saved at step 4" in fragment
    assert 'value="4" max="8"' in fragment and 'data-live-running="true"' in fragment
    TrainingRun.objects.filter(pk=run.pk).update(status=JobStatus.FAILED, error="out of memory")
    fragment = engineer.get(url).content.decode()
    assert 'data-live-running="false"' in fragment and "out of memory" in fragment


def test_the_live_panel_is_for_engineers_only(client):
    run = make_run()
    client.force_login(AnnotatorFactory())
    assert client.get(reverse("admin:training_trainingrun_progress", args=[run.pk])).status_code == 403


def test_cancel_and_resume_buttons_call_the_services_and_say_what_happened(engineer):
    run = make_run(status=JobStatus.QUEUED)
    page = engineer.get(reverse("admin:training_trainingrun_change", args=[run.pk])).content.decode()
    assert 'id="ft-cancel-run"' in page and 'id="ft-resume-run"' not in page
    response = engineer.post(reverse("admin:training_trainingrun_cancel", args=[run.pk]), follow=True)
    run.refresh_from_db()
    assert run.status == JobStatus.CANCELLED
    assert f"Cancel requested for training run {run.pk}" in text_of(response)
    assert 'id="ft-resume-run"' in response.content.decode()
    # A second cancel is refused by the service, with its reason.
    response = engineer.post(reverse("admin:training_trainingrun_cancel", args=[run.pk]), follow=True)
    assert f"Training run {run.pk} has already cancelled" in text_of(response)


def test_a_reviewer_cannot_cancel_a_run(client):
    run = make_run(status=JobStatus.QUEUED)
    client.force_login(ReviewerFactory())
    assert client.post(reverse("admin:training_trainingrun_cancel", args=[run.pk])).status_code == 403
    run.refresh_from_db()
    assert run.status == JobStatus.QUEUED


def test_the_start_page_refuses_bad_hyperparameters_naming_them(engineer, e2e_records, tiny_model_dir):
    snapshot, base = snapshot_of(e2e_records[:30]), tiny_base_model(tiny_model_dir)
    form = {"snapshot": snapshot.pk, "base_model": base.pk, "step": "preflight"}
    page = text_of(engineer.post(reverse("admin:training_trainingrun_start"), {**form, "hyperparameters": "{"}))
    assert "hyperparameters: not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2" \
        in page
    page = text_of(engineer.post(reverse("admin:training_trainingrun_start"),
                                 {**form, "hyperparameters": '{"lora_rank": 0}'}))
    assert "Hyperparameters: lora_rank must be above 0, got 0" in page and "Start training" not in page
    assert not TrainingRun.objects.exists()


def test_the_start_page_offers_approved_snapshots_only(engineer, e2e_records):
    approved, pending = snapshot_of(e2e_records[:20]), snapshot_of(e2e_records[20:40], approve=False)
    page = engineer.get(reverse("admin:training_trainingrun_start") + f"?snapshot={approved.pk}").content.decode()
    choices = re.search(r'<select name="snapshot".*?</select>', page, flags=re.S).group(0)
    assert f'<option value="{approved.pk}" selected>' in choices and f'<option value="{pending.pk}"' not in choices
    assert "Pre-flight" in page and 'id="ft-confirm"' not in page


def test_showing_the_start_and_baseline_pages_writes_nothing_and_the_default_base_model_is_made_when_used(
        engineer, e2e_records, settings):
    snapshot = snapshot_of(e2e_records[:20])
    for name in ("admin:training_trainingrun_start", "admin:training_modelversion_prompted"):
        page = engineer.get(reverse(name)).content.decode()
        assert f"the default: {settings.DEFAULT_BASE_MODEL['name']}" in page
    assert not BaseModel.objects.exists()  # a read has no side effects
    response = engineer.post(reverse("admin:training_modelversion_prompted"),
                             {"base_model": "", "snapshot": snapshot.pk, "system_prompt": "", "few_shot_k": 0,
                              "few_shot_seed": 0})
    assert response.status_code == 302
    assert BaseModel.objects.get().name == settings.DEFAULT_BASE_MODEL["name"]
    assert ModelVersion.objects.get().base_model.name == settings.DEFAULT_BASE_MODEL["name"]


def test_an_annotator_cannot_open_the_start_page(client):
    client.force_login(AnnotatorFactory())
    assert client.get(reverse("admin:training_trainingrun_start")).status_code == 403


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)  # the job runs when the request commits (without REDIS_URL)
def test_a_run_starts_from_the_admin_after_its_preflight(engineer, e2e_records, tiny_model_dir, run_jobs):
    snapshot, base = snapshot_of(e2e_records[:40]), tiny_base_model(tiny_model_dir)
    form = {"snapshot": snapshot.pk, "base_model": base.pk, "hyperparameters": json.dumps(TINY_HYPERPARAMETERS)}
    blocked = engineer.post(reverse("admin:training_trainingrun_start"), {
        **form, "step": "preflight", "hyperparameters": json.dumps({**TINY_HYPERPARAMETERS, "max_seq_length": 56})})
    page = text_of(blocked)
    assert "Pre-flight: blocked" in page and "warning: 4 train example(s) are longer than max_seq_length 56" in page
    assert "BLOCKING: 25 train example(s) would have no target token left" in page
    assert 'id="ft-confirm"' not in blocked.content.decode()
    preflight = engineer.post(reverse("admin:training_trainingrun_start"), {**form, "step": "preflight"})
    page = text_of(preflight)
    assert "Pre-flight: ready to train" in page and "estimated steps 3" in page and "estimated wall time" in page
    assert not TrainingRun.objects.exists()  # nothing before the confirm
    # The confirm form carries what was checked.
    confirm = preflight.content.decode().split('id="ft-confirm-form"')[1]
    assert f'name="snapshot" value="{snapshot.pk}"' in confirm and "&quot;max_steps&quot;: 3" in confirm
    response = engineer.post(reverse("admin:training_trainingrun_start"), {**form, "step": "start"})
    run = TrainingRun.objects.get()
    assert response.url == reverse("admin:training_trainingrun_change", args=[run.pk])
    run_jobs()  # with REDIS_URL a worker trains; without it the run trained in the request
    run.refresh_from_db()
    assert run.status == JobStatus.SUCCEEDED and run.hyperparameters["max_steps"] == 3
    page = text_of(engineer.get(response.url))
    assert f"Training run {run.pk} started (" in page and "Succeeded" in page and "step 3/3" in page
    assert f"{base.name} + LoRA (run {run.pk})" in page  # the model version, with a link to evaluate it


def test_the_prompted_baseline_page_creates_a_few_shot_version_once(engineer, e2e_records, tiny_model_dir):
    snapshot, base = snapshot_of(e2e_records[:40]), tiny_base_model(tiny_model_dir)
    form = {"base_model": base.pk, "snapshot": snapshot.pk, "system_prompt": "", "few_shot_k": 2,
            "few_shot_seed": 0}
    response = engineer.post(reverse("admin:training_modelversion_prompted"), form, follow=True)
    version = ModelVersion.objects.get()
    assert version.kind == ModelVersionKind.PROMPTED_BASE and len(version.few_shot) == 2
    assert version.system_prompt == snapshot.system_prompt
    assert f"Model version {version.pk} created: {base.name} (prompted, 2-shot)" in text_of(response)
    again = engineer.post(reverse("admin:training_modelversion_prompted"), form, follow=True)
    assert f"Model version {version.pk} already existed" in text_of(again) and ModelVersion.objects.count() == 1
    too_many = engineer.post(reverse("admin:training_modelversion_prompted"), {**form, "few_shot_k": 16})
    assert "few_shot_k is 16" in text_of(too_many) and ModelVersion.objects.count() == 1


def test_a_big_train_splits_preflight_is_left_to_the_job_and_says_so(engineer, e2e_records, tiny_model_dir, settings,
                                                                    django_capture_on_commit_callbacks):
    settings.PREFLIGHT_INLINE_MAX_EXAMPLES = 10
    snapshot, base = snapshot_of(e2e_records[:40]), tiny_base_model(tiny_model_dir)
    form = {"snapshot": snapshot.pk, "base_model": base.pk, "hyperparameters": json.dumps(TINY_HYPERPARAMETERS)}
    page = text_of(engineer.post(reverse("admin:training_trainingrun_start"), {**form, "step": "preflight"}))
    assert f"The train split has {snapshot.split_counts['train']} examples: its pre-flight" in page
    assert "Start training" in page and not TrainingRun.objects.exists()
    with django_capture_on_commit_callbacks(execute=False):  # queued: the job's first stage is the pre-flight
        engineer.post(reverse("admin:training_trainingrun_start"), {**form, "step": "start"})
    run = TrainingRun.objects.get()
    assert run.status == JobStatus.QUEUED and not run.preflight
