"""Training runs through the service, the job queue and the database."""
import pytest

from curation.choices import SnapshotStatus
from ftplatform.errors import Conflict, NotAllowed, ServiceError
from tests.support.factories import (
    TINY_HYPERPARAMETERS,
    AnnotatorFactory,
    EngineerFactory,
    snapshot_of,
    tiny_base_model,
)
from training.choices import ModelVersionKind, RunStatus
from training.models import TrainingRun
from training.services import cancel_training_run, start_training_run


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
    assert run.status == RunStatus.CANCELLED and run.started_at is None
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
    assert run.status == RunStatus.QUEUED and not run.cancel_requested


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_run_trains_records_events_and_creates_a_model_version(e2e_records, tiny_model_dir, run_jobs):
    run = start_training_run(snapshot_of(e2e_records[:40]), tiny_base_model(tiny_model_dir), by=EngineerFactory(),
                             hyperparameters=TINY_HYPERPARAMETERS)
    run_jobs()
    run.refresh_from_db()

    assert run.status == RunStatus.SUCCEEDED, run.error
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
