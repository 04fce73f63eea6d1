"""Training runs through the service, the job queue and the database."""
import pytest

from curation.choices import ExampleStatus, SnapshotStatus
from ftplatform.errors import Conflict, NotAllowed, ServiceError
from ftplatform.jobrows import JobStatus
from tests.support.clients import client_for
from tests.support.factories import (
    TINY_HYPERPARAMETERS,
    AnnotatorFactory,
    DatasetFactory,
    EngineerFactory,
    ExampleFactory,
    snapshot_of,
    tiny_base_model,
)
from training.choices import ModelVersionKind
from training.models import ModelVersion, TrainingRun
from training.runs import cancel_training_run, start_training_run


@pytest.mark.django_db
def test_training_needs_an_approved_snapshot(e2e_records, tiny_model_dir):
    snapshot = snapshot_of(e2e_records[:30], approve=False)
    assert snapshot.status == SnapshotStatus.PENDING_REVIEW
    with pytest.raises(ServiceError, match="must approve it before training"):
        start_training_run(snapshot, tiny_base_model(tiny_model_dir), by=EngineerFactory())
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_bad_hyperparameters_create_no_run(e2e_records, tiny_model_dir):
    with pytest.raises(ServiceError, match="hyperparameters: lora_rank must be above 0"):
        start_training_run(snapshot_of(e2e_records[:30]), tiny_base_model(tiny_model_dir), by=EngineerFactory(),
                           hyperparameters={"lora_rank": 0})
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_cancelled_queued_run_never_starts(e2e_records, tiny_model_dir, django_capture_on_commit_callbacks, run_jobs):
    creator = EngineerFactory()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run = start_training_run(snapshot_of(e2e_records[:30]), tiny_base_model(tiny_model_dir), by=creator,
                                 hyperparameters=TINY_HYPERPARAMETERS)
    cancel_training_run(run, by=creator)
    for callback in callbacks:  # the enqueue happens after commit; the job then finds the run cancelled
        callback()
    run_jobs()
    run.refresh_from_db()
    assert run.status == JobStatus.CANCELLED and run.started_at is None
    with pytest.raises(Conflict):
        cancel_training_run(run, by=creator)


@pytest.mark.django_db
def test_only_the_creator_or_an_engineer_can_cancel(e2e_records, tiny_model_dir, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        run = start_training_run(snapshot_of(e2e_records[:30]), tiny_base_model(tiny_model_dir), by=EngineerFactory(),
                                 hyperparameters=TINY_HYPERPARAMETERS)
    with pytest.raises(NotAllowed, match="only its creator"):
        cancel_training_run(run, by=AnnotatorFactory())
    run.refresh_from_db()
    assert run.status == JobStatus.QUEUED and not run.cancel_requested


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_run_trains_records_events_and_creates_a_model_version(e2e_records, tiny_model_dir, run_jobs):
    run = start_training_run(snapshot_of(e2e_records[:40]), tiny_base_model(tiny_model_dir), by=EngineerFactory(),
                             hyperparameters=TINY_HYPERPARAMETERS)
    run_jobs()
    run.refresh_from_db()

    assert run.status == JobStatus.SUCCEEDED, run.error
    assert (run.step, run.total_steps) == (3, 3)
    assert run.metrics["train_loss"] > 0 and run.trained_tokens > 0
    assert run.environment["torch"].startswith("2.13")
    losses = [e.payload["loss"] for e in run.events.filter(kind="metric") if "loss" in e.payload]
    assert len(losses) == 3
    version = run.model_version
    assert version.kind == ModelVersionKind.LORA_ADAPTER
    assert version.system_prompt == run.snapshot.system_prompt == run.system_prompt
    assert (run.artifact_path and version.adapter_path.startswith(run.artifact_path))


@pytest.mark.django_db
def test_a_run_whose_base_model_is_missing_is_refused_before_it_is_queued(e2e_records, tmp_path):
    from training.models import BaseModel

    missing = BaseModel.objects.create(name="gone", source_kind="local_folder", source=str(tmp_path / "nowhere"))
    with pytest.raises(ServiceError, match="base model 'gone' cannot be loaded: .* is not a Hugging Face model folder"):
        start_training_run(snapshot_of(e2e_records[:30]), missing, by=EngineerFactory(),
                           hyperparameters=TINY_HYPERPARAMETERS)
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_training_run_on_pending_snapshot_is_400():
    dataset = DatasetFactory()
    ExampleFactory(dataset=dataset, status=ExampleStatus.APPROVED)
    client = client_for(EngineerFactory())
    snapshot_id = client.post("/api/v1/snapshots/", {"dataset": dataset.pk}, format="json").json()["id"]
    response = client.post("/api/v1/training-runs/", {"snapshot": snapshot_id}, format="json")
    assert response.status_code == 400 and "approve" in response.json()["detail"]


@pytest.mark.django_db
def test_events_after_a_cursor(tiny_model_dir, e2e_records):
    from training.runs import log_event

    run = TrainingRun.objects.create(snapshot=snapshot_of(e2e_records[:20]), base_model=tiny_base_model(tiny_model_dir),
                                     hyperparameters={})
    first, second = log_event(run, "log", "one"), log_event(run, "log", "two")
    client = client_for(EngineerFactory())

    response = client.get(f"/api/v1/training-runs/{run.pk}/events/?after={first.pk}")
    assert [e["id"] for e in response.json()] == [second.pk]
    assert [e["id"] for e in client.get(f"/api/v1/training-runs/{run.pk}/").json()["events"]] == [first.pk, second.pk]
    assert "events" not in client.get("/api/v1/training-runs/").json()["results"][0]
    assert client.get(f"/api/v1/training-runs/{run.pk}/events/?after=x").status_code == 400
    assert client.get("/api/v1/training-runs/999999/events/").status_code == 404


@pytest.mark.django_db
def test_unicode_digits_are_not_an_event_cursor(tiny_model_dir, e2e_records):
    run = TrainingRun.objects.create(snapshot=snapshot_of(e2e_records[:20]), base_model=tiny_base_model(tiny_model_dir),
                                     hyperparameters={})
    assert client_for(EngineerFactory()).get(f"/api/v1/training-runs/{run.pk}/events/?after=²").status_code == 400


@pytest.mark.django_db
def test_a_big_train_splits_preflight_is_the_jobs_first_stage(e2e_records, tiny_model_dir, settings,
                                                                django_capture_on_commit_callbacks):
    from training.jobs import run_training

    settings.PREFLIGHT_INLINE_MAX_EXAMPLES = 10  # the 40-example snapshot's train split is "big"
    snapshot = snapshot_of(e2e_records[:40])
    with django_capture_on_commit_callbacks(execute=False):
        run = start_training_run(snapshot, tiny_base_model(tiny_model_dir), by=EngineerFactory(),
                                 hyperparameters=TINY_HYPERPARAMETERS)
    assert (run.status, run.preflight, run.hyperparameters) == (JobStatus.QUEUED, {}, TINY_HYPERPARAMETERS)
    run_training(run.pk)
    run.refresh_from_db()
    assert run.status == JobStatus.SUCCEEDED, run.error
    assert run.preflight["estimated_steps"] == run.total_steps == 3
    assert run.hyperparameters == run.preflight["hyperparameters"]
    assert run.hyperparameters["loraplus_lr_ratio"] == 4  # the default, resolved as in a request's pre-flight
    logs = list(run.events.filter(kind="log").values_list("message", flat=True))
    train = snapshot.split_counts["train"]
    assert logs[:3] == [f"pre-flight of {train} train examples queued: it runs first in the job",
                        f"pre-flight: checking {train} train examples", "pre-flight passed: about 3 steps"]


@pytest.mark.django_db
def test_a_blocked_preflight_in_the_job_fails_the_run_before_training(e2e_records, tiny_model_dir, settings,
                                                                       django_capture_on_commit_callbacks):
    from training.jobs import run_training

    settings.PREFLIGHT_INLINE_MAX_EXAMPLES = 10
    with django_capture_on_commit_callbacks(execute=False):
        run = start_training_run(snapshot_of(e2e_records[:40]), tiny_base_model(tiny_model_dir), by=EngineerFactory(),
                                 hyperparameters={**TINY_HYPERPARAMETERS, "max_seq_length": 16})
    run_training(run.pk)
    run.refresh_from_db()
    assert (run.status, run.failure_reason, run.step) == (JobStatus.FAILED, "error", 0)
    assert run.error.startswith("pre-flight: ") and "would have no target token left at max_seq_length 16" in run.error
    assert "; ".join(run.preflight["blocking"]) == run.error.removeprefix("pre-flight: ")
    assert not ModelVersion.objects.filter(training_run=run).exists()


@pytest.mark.django_db
def test_a_remote_base_model_is_refused_for_training_naming_why(e2e_records):
    from training.models import BaseModel

    remote = BaseModel.objects.create(name="big-remote", source_kind="remote", source="http://127.0.0.1:9/v1")
    with pytest.raises(ServiceError, match="base model 'big-remote' is a remote model") as raised:
        start_training_run(snapshot_of(e2e_records[:40]), remote, by=EngineerFactory())
    assert raised.value.field == "base_model" and not TrainingRun.objects.exists()
