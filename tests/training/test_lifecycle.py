"""A run's life: pre-flight at creation (hostile hyperparameters and chat templates are 400s naming
them), timeout, heartbeat and worker loss, checkpoints, resume, and the train command's options for them."""
import io
import os
import signal
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from ftplatform.errors import Conflict, NotAllowed, ServiceError
from ftplatform.jobrows import JobStatus
from tests.support.clients import client_for
from tests.support.factories import (
    TINY_HYPERPARAMETERS,
    AnnotatorFactory,
    EngineerFactory,
    snapshot_of,
    tiny_base_model,
)
from training.choices import EventKind, FailureReason
from training.models import Checkpoint, ModelVersion, TrainingRun
from training.runs import preflight_training_run, reap_lost_runs, resume_training_run, start_training_run


@pytest.mark.django_db
def test_blocking_preflight_problems_create_no_run_and_name_the_examples(e2e_records, tiny_model_dir):
    snapshot = snapshot_of(e2e_records[:30])
    with pytest.raises(ServiceError) as error:
        start_training_run(snapshot, tiny_base_model(tiny_model_dir), by=EngineerFactory(),
                           hyperparameters={"max_seq_length": 40, "target_modules": ["query"]})
    message = str(error.value)
    first_id = snapshot.items.filter(split="train").order_by("id").first().example_id
    assert message.startswith("pre-flight: target_modules query not found among the base model's layers")
    assert "would have no target token left at max_seq_length 40 (ids " in message and str(first_id) in message
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_a_run_records_its_preflight_report_and_resolved_auto_values(e2e_records, tiny_model_dir,
                                                                      django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        run = start_training_run(snapshot_of(e2e_records[:30]), tiny_base_model(tiny_model_dir),
                                 by=EngineerFactory(), hyperparameters={"epochs": "auto", "batch_size": "auto"},
                                 timeout_seconds=600)
    assert run.hyperparameters["epochs"] == 10.0 and run.hyperparameters["batch_size"] == 1
    assert run.preflight["auto_resolved"] == ["epochs", "batch_size"] and run.preflight["blocking"] == []
    assert run.total_steps == run.preflight["estimated_steps"] > 0 and run.timeout_seconds == 600
    assert run.preflight["tokens_per_second_source"] == "FTPLATFORM_ESTIMATE_TOKENS_PER_SECOND (no run measured yet)"


@pytest.mark.django_db
def test_a_timeout_outside_its_bounds_is_refused(e2e_records, tiny_model_dir):
    with pytest.raises(ServiceError, match="timeout must be between 1 minute and 30 days"):
        start_training_run(snapshot_of(e2e_records[:30]), tiny_base_model(tiny_model_dir), by=EngineerFactory(),
                           timeout_seconds=5)


@pytest.mark.django_db
def test_runs_without_a_recent_heartbeat_are_failed_as_worker_lost(e2e_records, tiny_model_dir, settings,
                                                                   django_capture_on_commit_callbacks):
    settings.TRAINING_HEARTBEAT_SECONDS, settings.TRAINING_HEARTBEAT_MARGIN_SECONDS = 10, 20
    snapshot, base_model = snapshot_of(e2e_records[:30]), tiny_base_model(tiny_model_dir)
    with django_capture_on_commit_callbacks(execute=False):
        runs = [start_training_run(snapshot, base_model, by=EngineerFactory(), hyperparameters=TINY_HYPERPARAMETERS)
                for _ in range(3)]
    now = timezone.now()
    TrainingRun.objects.filter(pk=runs[0].pk).update(status=JobStatus.RUNNING, started_at=now - timedelta(hours=1),
                                                     heartbeat_at=now - timedelta(seconds=31), worker="gpu-7:4242")
    TrainingRun.objects.filter(pk=runs[1].pk).update(status=JobStatus.RUNNING, started_at=now - timedelta(hours=1),
                                                     heartbeat_at=now - timedelta(seconds=20))
    # runs[2] stays queued: a queued run has no worker yet

    assert reap_lost_runs() == [runs[0].pk]
    lost, alive, queued = (TrainingRun.objects.get(pk=r.pk) for r in runs)
    assert lost.status == JobStatus.FAILED and lost.failure_reason == FailureReason.WORKER_LOST
    assert lost.error.startswith("worker lost on gpu-7:4242: no heartbeat for 3")
    assert "likely out of memory" in lost.error and lost.finished_at is not None
    assert (alive.status, queued.status) == (JobStatus.RUNNING, JobStatus.QUEUED)
    assert reap_lost_runs() == []


@pytest.mark.django_db
def test_reading_training_runs_changes_nothing_and_reap_jobs_fails_lost_ones(e2e_records, tiny_model_dir,
                                                                             admin_client,
                                                                             django_capture_on_commit_callbacks):
    """GET requests and admin pages used to fail lost runs as a side effect; now the workers and
    ``manage.py reap_jobs`` do."""
    with django_capture_on_commit_callbacks(execute=False):
        run = start_training_run(snapshot_of(e2e_records[:30]), tiny_base_model(tiny_model_dir),
                                 by=EngineerFactory(), hyperparameters=TINY_HYPERPARAMETERS)
    TrainingRun.objects.filter(pk=run.pk).update(status=JobStatus.RUNNING, started_at=timezone.now(),
                                                 heartbeat_at=timezone.now() - timedelta(hours=1))
    client = client_for(EngineerFactory())
    for url in (f"/api/v1/training-runs/{run.pk}/", "/api/v1/training-runs/", f"/api/v1/training-runs/{run.pk}/events/",
                "/admin/training/trainingrun/", f"/admin/training/trainingrun/{run.pk}/change/"):
        assert (admin_client if url.startswith("/admin/") else client).get(url).status_code == 200
    run.refresh_from_db()
    assert run.status == JobStatus.RUNNING
    call_command("reap_jobs", stdout=io.StringIO())
    run.refresh_from_db()
    assert (run.status, run.failure_reason) == (JobStatus.FAILED, FailureReason.WORKER_LOST)

@pytest.mark.slow
@pytest.mark.django_db
def test_a_run_past_its_timeout_fails_with_timeout_as_its_reason(e2e_records, tiny_model_dir,
                                                                 django_capture_on_commit_callbacks):
    from training.jobs import run_training

    with django_capture_on_commit_callbacks(execute=False):
        run = start_training_run(snapshot_of(e2e_records[:30]), tiny_base_model(tiny_model_dir),
                                 by=EngineerFactory(), hyperparameters=TINY_HYPERPARAMETERS)
    TrainingRun.objects.filter(pk=run.pk).update(timeout_seconds=0)  # already past it at the first step
    run_training(run.pk)
    run.refresh_from_db()
    assert run.status == JobStatus.FAILED and run.failure_reason == FailureReason.TIMEOUT
    assert run.error == "timed out after 0 s (the run's timeout)"
    assert not hasattr(run, "model_version") or run.model_version is None


@pytest.mark.slow
@pytest.mark.django_db
def test_a_cancelled_run_resumes_and_only_the_creator_or_an_engineer_may(e2e_records, tiny_model_dir, run_jobs,
                                                                          django_capture_on_commit_callbacks):
    from training.runs import cancel_training_run

    creator = EngineerFactory()
    with django_capture_on_commit_callbacks(execute=False):
        run = start_training_run(snapshot_of(e2e_records[:40]), tiny_base_model(tiny_model_dir), by=creator,
                                 hyperparameters=TINY_HYPERPARAMETERS)
    cancel_training_run(run, by=creator)
    with pytest.raises(NotAllowed, match="only its creator or an engineer can resume it"):
        resume_training_run(run, by=AnnotatorFactory())
    with django_capture_on_commit_callbacks(execute=True):
        resume_training_run(run, by=creator)
    run_jobs()
    run.refresh_from_db()
    assert run.status == JobStatus.SUCCEEDED, run.error
    assert run.attempts == 1 and run.rq_job_id == f"trainingrun-{run.pk}-attempt-1"
    assert run.events.filter(message__contains="from the start (no checkpoint was saved)").exists()
    assert not run.checkpoints.exists() and not run.checkpoint_dir.exists()  # removed after success
    assert (run.model_version.adapter_path and os.path.isfile(os.path.join(run.model_version.adapter_path,
                                                                           "README.md")))
    assert run.environment["base_model"]["sha256"] and run.environment["snapshot_sha256"] == run.snapshot.content_hash
    with pytest.raises(Conflict, match="only failed or cancelled runs can resume"):
        resume_training_run(run, by=creator)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_killed_worker_is_detected_by_heartbeat_and_the_run_resumes_to_the_same_adapter(
        e2e_records, tiny_model_dir, settings, artifacts_root, tmp_path):
    """A real `manage.py worker`: its work-horse is SIGKILLed after the first checkpoint (as the
    kernel's OOM killer would); the worker's reaper fails the run within heartbeat + margin; the
    resumed run ends with the adapter and losses of an uninterrupted run (tolerance 1e-6)."""
    from safetensors.torch import load_file

    from curation.choices import Split
    from ftml.config import LoraConfig
    from ftml.train import train_lora
    from tests.support.workers import start_worker, stop_worker
    from training.runs import snapshot_conversations

    hyperparameters = {"max_steps": 300, "batch_size": 2, "logging_steps": 5, "checkpoint_steps": 5,
                       "max_eval_examples": 2}
    worker = start_worker(settings, artifacts_root, ["training"], FTPLATFORM_HEARTBEAT_SECONDS="1",
                          FTPLATFORM_HEARTBEAT_MARGIN_SECONDS="2")
    creator = EngineerFactory()
    try:
        run = start_training_run(snapshot_of(e2e_records[:40]), tiny_base_model(tiny_model_dir), by=creator,
                                 hyperparameters=hyperparameters)
        deadline = time.monotonic() + 120
        while not run.checkpoints.exists():
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
        run.refresh_from_db()
        os.kill(int(run.worker.rsplit(":", 1)[1]), signal.SIGKILL)  # the work-horse, not the worker
        killed = time.monotonic()
        while run.status == JobStatus.RUNNING:
            assert time.monotonic() - killed < 1 + 2 + 1 + 6, "the lost run was not failed in time"
            time.sleep(0.2)
            run.refresh_from_db()
        assert run.status == JobStatus.FAILED and run.failure_reason == FailureReason.WORKER_LOST, run.error
        checkpoint = run.checkpoints.order_by("-step").first()
        assert 0 < checkpoint.step < 300

        run = resume_training_run(run, by=creator)
        deadline = time.monotonic() + 300
        while run.status not in (JobStatus.SUCCEEDED, JobStatus.FAILED):
            assert time.monotonic() < deadline, "the resumed run did not finish within 300 s"
            time.sleep(0.5)
            run.refresh_from_db()
    finally:
        log = stop_worker(worker)
    assert run.status == JobStatus.SUCCEEDED, run.error + log[-3000:]
    assert run.metrics["resumed_from_step"] >= checkpoint.step and run.attempts == 2

    train = snapshot_conversations(run.snapshot, Split.TRAIN)[1]
    validation = snapshot_conversations(run.snapshot, Split.VALIDATION)[1]
    whole = train_lora(tiny_model_dir, train, validation, LoraConfig.from_dict(run.hyperparameters),
                       tmp_path / "whole", checkpoint_dir=tmp_path / "whole-ck", show_progress_bar=False)
    assert run.metrics["train_loss"] == pytest.approx(whole.train_loss, abs=1e-6)
    a = load_file(whole.adapter_dir / "adapter_model.safetensors")
    b = load_file(os.path.join(run.model_version.adapter_path, "adapter_model.safetensors"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


@pytest.mark.django_db
def test_the_api_gives_a_preflight_report_and_refuses_blocked_runs_with_400(e2e_records, tiny_model_dir):
    snapshot, base_model = snapshot_of(e2e_records[:30]), tiny_base_model(tiny_model_dir)
    client = client_for(EngineerFactory())
    body = {"snapshot": snapshot.pk, "base_model": base_model.pk, "hyperparameters": {"batch_size": "auto"}}
    response = client.post("/api/v1/training-runs/preflight/", body, format="json")
    assert response.status_code == 200, response.content
    report = response.json()
    assert report["blocking"] == [] and report["auto_resolved"] == ["batch_size"]
    assert report["estimated_steps"] > 0 and report["estimated_seconds"] > 0
    assert not TrainingRun.objects.exists()

    blocked = {**body, "hyperparameters": {"target_modules": ["nope"]}}
    response = client.post("/api/v1/training-runs/", blocked, format="json")
    assert response.status_code == 400 and "target_modules nope not found" in response.json()["detail"]
    response = client.post("/api/v1/training-runs/", {**body, "timeout_minutes": 0}, format="json")
    assert response.status_code == 400 and "timeout_minutes" in response.json()
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_the_api_resumes_only_failed_or_cancelled_runs(e2e_records, tiny_model_dir,
                                                       django_capture_on_commit_callbacks):
    creator = EngineerFactory()
    with django_capture_on_commit_callbacks(execute=False):
        run = start_training_run(snapshot_of(e2e_records[:30]), tiny_base_model(tiny_model_dir), by=creator,
                                 hyperparameters=TINY_HYPERPARAMETERS)
    client = client_for(creator)
    response = client.post(f"/api/v1/training-runs/{run.pk}/resume/")
    assert response.status_code == 409 and "is queued" in response.json()["detail"]
    TrainingRun.objects.filter(pk=run.pk).update(status=JobStatus.FAILED, failure_reason=FailureReason.WORKER_LOST,
                                                 error="worker lost")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(f"/api/v1/training-runs/{run.pk}/resume/")
    assert response.status_code == 200, response.content
    data = response.json()
    assert (data["status"], data["error"], data["failure_reason"]) == ("queued", "", "")
    assert len(callbacks) == 1  # the job is enqueued once the resume commits


@pytest.mark.slow
@pytest.mark.django_db
def test_a_run_recorded_before_loraplus_resumes_as_plain_lora(e2e_records, tiny_model_dir, monkeypatch,
                                                               django_capture_on_commit_callbacks):
    """Runs recorded before loraplus_lr_ratio existed trained with one learning rate; the new default
    (4) must not change what their resume trains, nor break loading their optimizer state."""
    from ftml import train as engine
    from training.jobs import run_training

    with django_capture_on_commit_callbacks(execute=False):
        old = start_training_run(snapshot_of(e2e_records[:30]), tiny_base_model(tiny_model_dir),
                                 by=EngineerFactory(), hyperparameters=TINY_HYPERPARAMETERS)
        new = start_training_run(old.snapshot, old.base_model, by=old.created_by,
                                 hyperparameters=TINY_HYPERPARAMETERS)
    recorded = {k: v for k, v in old.hyperparameters.items() if k != "loraplus_lr_ratio"}
    TrainingRun.objects.filter(pk=old.pk).update(hyperparameters=recorded)
    seen = []

    def recording_train_lora(base_model_dir, train, validation, config, *args, **kwargs):
        seen.append(config.loraplus_lr_ratio)
        raise engine.TrainingCancelled()

    monkeypatch.setattr(engine, "train_lora", recording_train_lora)
    run_training(old.pk)
    run_training(new.pk)
    assert seen == [1, 4]


def _queued_run(e2e_records, tiny_model_dir, monkeypatch, **hyperparameters):
    """A queued run whose job is not enqueued (the test calls run_training itself)."""
    monkeypatch.setattr("ftplatform.queues.enqueue_after_commit", lambda *args, **kwargs: None)
    return start_training_run(snapshot_of(e2e_records[:30]), tiny_base_model(tiny_model_dir), by=EngineerFactory(),
                              hyperparameters={**TINY_HYPERPARAMETERS, **hyperparameters})


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_non_finite_grad_norm_is_recorded_without_crashing_the_run(e2e_records, tiny_model_dir, monkeypatch):
    """fp16 training (GPUs without bf16: ftml.train.precision) logs grad_norm inf/nan on
    the steps GradScaler skips while the loss stays finite. on_metrics stores the log dict as a
    TrainingEvent payload; JSON columns refuse NaN/Infinity (SQLite: CHECK JSON_VALID,
    PostgreSQL: invalid json token), so the job dies with IntegrityError/DataError."""
    import ftml.train as engine
    from training.jobs import run_training

    numbers = engine._numbers
    monkeypatch.setattr(engine, "_numbers",
                        lambda logs: {**numbers(logs), **({"grad_norm": float("nan")} if "loss" in logs else {})})
    run = _queued_run(e2e_records, tiny_model_dir, monkeypatch)
    try:
        run_training(run.pk)
    finally:
        run.refresh_from_db()
    assert run.status == JobStatus.SUCCEEDED, run.error
    assert run.events.filter(kind=EventKind.METRIC, payload__has_key="loss").exists()


@pytest.mark.slow
@pytest.mark.django_db
def test_a_run_the_reaper_failed_while_it_still_trained_does_not_end_succeeded(e2e_records, tiny_model_dir,
                                                                               monkeypatch, settings):
    """A work-horse that stops beating but is alive (SIGSTOP, VM pause, swap storm, the heartbeat
    thread's one DB error ending its loop, clock skew between a worker and the API host) is failed
    as worker_lost; the user may then resume it, and a second worker trains the same run into the
    same folders. The first job never looks at its row again: it trains on and jobrows.finish
    overwrites FAILED with SUCCEEDED (and creates the ModelVersion)."""
    import training.jobs as jobs

    settings.TRAINING_HEARTBEAT_SECONDS, settings.TRAINING_HEARTBEAT_MARGIN_SECONDS = 10, 20
    run = _queued_run(e2e_records, tiny_model_dir, monkeypatch)
    log_event, reaped = jobs.log_event, []

    def log_event_and_lose_the_heartbeat(row, kind, *args, **kwargs):
        if kind == EventKind.METRIC and not reaped:  # mid-training: the heartbeat is 1 h old
            TrainingRun.objects.filter(pk=row.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
            reaped.extend(reap_lost_runs())
        return log_event(row, kind, *args, **kwargs)

    monkeypatch.setattr(jobs, "log_event", log_event_and_lose_the_heartbeat)
    jobs.run_training(run.pk)
    run.refresh_from_db()
    assert reaped == [run.pk]
    assert (run.status, run.failure_reason) == (JobStatus.FAILED, FailureReason.WORKER_LOST)
    assert not ModelVersion.objects.filter(training_run=run).exists()


@pytest.mark.django_db
def test_resume_says_when_its_checkpoint_folder_is_gone(e2e_records, tiny_model_dir, monkeypatch, tmp_path):
    """resume_training_run announces "from checkpoint at step 50" for a folder deleted from disk;
    the job then silently starts over (training.jobs checks os.path.isdir)."""
    run = _queued_run(e2e_records, tiny_model_dir, monkeypatch)
    TrainingRun.objects.filter(pk=run.pk).update(status=JobStatus.CANCELLED)
    Checkpoint.objects.create(run=run, step=50, path=str(tmp_path / "deleted" / "checkpoint-50"))
    resume_training_run(run, by=run.created_by)
    message = run.events.filter(message__startswith="resume requested").get().message
    assert "checkpoint at step 50" not in message or "missing" in message, message


@pytest.fixture
def api(e2e_records, tiny_model_dir):
    snapshot, base_model = snapshot_of(e2e_records[:20]), tiny_base_model(tiny_model_dir)

    def post(path, hyperparameters, **extra):
        return client_for(EngineerFactory()).post(
            f"/api/v1/training-runs/{path}",
            {"snapshot": snapshot.pk, "base_model": base_model.pk, "hyperparameters": hyperparameters, **extra},
            format="json")

    return post


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["learning_rate", "epochs", "lora_dropout", "warmup_ratio"])
def test_a_huge_integer_for_a_float_hyperparameter_is_a_400_naming_it(api, name):
    # LoraConfig.from_dict: float(10**400) raises OverflowError, which nobody catches -> 500.
    for path in ("preflight/", ""):
        response = api(path, {name: 10 ** 400})
        assert response.status_code == 400, (path, response.status_code)
        assert name in response.json()["detail"]
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("template", [
    "{% if %}",                                           # TemplateSyntaxError
    "{{ raise_exception('no system role') }}",            # TemplateError (transformers' raise_exception)
    "{{ messages[0].nope.deeper }}",                      # UndefinedError
    "{% for m in messages %}{{ m.content | nofilter }}{% endfor %}",  # TemplateAssertionError
    # Renders, but never the answer: blamed on max_seq_length 256 ("raise max_seq_length").
    "{% for m in messages %}{{ m.role }}{% endfor %}",
])
def test_a_chat_template_that_does_not_compile_or_render_is_a_400_naming_it(api, template):
    # jinja2 errors are not ValueErrors: tokenize_split / preflight_training_run let them through -> 500.
    for path in ("preflight/", ""):
        response = api(path, {"chat_template": template})
        assert response.status_code in (200, 400), (path, response.status_code)
        text = str(response.json())
        assert "chat_template" in text or "chat template" in text, text
        if response.status_code == 200:
            assert response.json()["blocking"]
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("module", ["norm", "self_attn", "0", "lm_head"])
def test_target_modules_that_lora_cannot_wrap_block_the_preflight(api, module):
    # Pre-flight only checks that some module has that last name; peft then refuses a non-Linear
    # module ("Target module LlamaRMSNorm ... is not supported") and TRL refuses lm_head with its
    # default chunked_nll loss -- in the worker, after the run was accepted.
    response = api("preflight/", {"target_modules": [module]})
    assert response.status_code == 200
    assert any(module in problem for problem in response.json()["blocking"]), response.json()["blocking"]


@pytest.mark.django_db
def test_preflight_estimates_the_max_train_examples_subset_that_trains(e2e_records, tiny_model_dir):
    # The engine samples max_train_examples first and resolves "auto" on that subset; pre-flight
    # resolves and counts on the whole train split, so the run records a batch size chosen for
    # ~60 examples and total_steps for all of them.
    snapshot = snapshot_of(e2e_records[:80])
    assert snapshot.split_counts["train"] >= 40
    report = preflight_training_run(snapshot, tiny_base_model(tiny_model_dir),
                                    {"max_train_examples": 5, "batch_size": "auto", "epochs": 1},
                                    by=EngineerFactory())
    assert report["train_examples"] == 5
    assert report["hyperparameters"]["batch_size"] == 1  # resolve_auto(5), as train_lora does
    assert report["estimated_steps"] == 5


@pytest.mark.django_db
def test_train_resume_with_dry_run_changes_nothing(e2e_records, tiny_model_dir, django_capture_on_commit_callbacks):
    # `train --resume RUN --dry-run` ignores --dry-run and really queues the run again.
    user = EngineerFactory()
    with django_capture_on_commit_callbacks(execute=False):
        run = start_training_run(snapshot_of(e2e_records[:20]), tiny_base_model(tiny_model_dir), by=user,
                                 hyperparameters=TINY_HYPERPARAMETERS)
    TrainingRun.objects.filter(pk=run.pk).update(status=JobStatus.FAILED, failure_reason=FailureReason.ERROR,
                                                 error="boom")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        try:
            call_command("train", "--resume", str(run.pk), "--dry-run", "--no-wait", "--as", user.username)
        except CommandError:
            pass  # refusing the combination is fine too
    run.refresh_from_db()
    assert (run.status, run.error) == (JobStatus.FAILED, "boom") and callbacks == []


@pytest.mark.django_db
def test_train_timeout_minutes_zero_is_refused_not_replaced_by_the_default(e2e_records, tiny_model_dir,
                                                                             django_capture_on_commit_callbacks):
    # `timeout_minutes * 60 if timeout_minutes else None`: 0 silently becomes the 24 h default
    # (the API refuses 0 with 400; a negative value is refused by the command too).
    snapshot, user = snapshot_of(e2e_records[:20]), EngineerFactory()
    tiny_base_model(tiny_model_dir)
    with django_capture_on_commit_callbacks(execute=False), pytest.raises(CommandError, match="timeout"):
        call_command("train", "--snapshot", str(snapshot.pk), "--base-model", f"tiny-{tiny_model_dir.name}",
                     "--timeout-minutes", "0", "--hyperparameters", '{"max_steps": 1}', "--no-wait",
                     "--as", user.username)
    assert not TrainingRun.objects.exists()
