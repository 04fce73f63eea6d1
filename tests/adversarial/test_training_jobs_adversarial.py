"""The training job against what happens around it: non-finite metrics, the reaper failing a run
that still trains, a resume whose checkpoint folder is gone. Each test here failed when written."""
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.support.factories import TINY_HYPERPARAMETERS, EngineerFactory, snapshot_of, tiny_base_model
from training.choices import EventKind, FailureReason, RunStatus
from training.models import Checkpoint, ModelVersion, TrainingRun
from training.services import resume_training_run, start_training_run


def _queued_run(e2e_records, tiny_model_dir, monkeypatch, **hyperparameters):
    """A queued run whose job is not enqueued (the test calls run_training itself)."""
    monkeypatch.setattr("ftplatform.queues.enqueue_after_commit", lambda *args, **kwargs: None)
    return start_training_run(snapshot_of(e2e_records[:30]), tiny_base_model(tiny_model_dir), by=EngineerFactory(),
                              hyperparameters={**TINY_HYPERPARAMETERS, **hyperparameters})


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_non_finite_grad_norm_is_recorded_without_crashing_the_run(e2e_records, tiny_model_dir, monkeypatch):
    """fp16 training (GPUs without bf16: training.engine.train.precision) logs grad_norm inf/nan on
    the steps GradScaler skips while the loss stays finite. on_metrics stores the log dict as a
    TrainingEvent payload; JSON columns refuse NaN/Infinity (SQLite: CHECK JSON_VALID,
    PostgreSQL: invalid json token), so the job dies with IntegrityError/DataError."""
    import training.engine.train as engine
    from training.jobs import run_training

    numbers = engine._numbers
    monkeypatch.setattr(engine, "_numbers",
                        lambda logs: {**numbers(logs), **({"grad_norm": float("nan")} if "loss" in logs else {})})
    run = _queued_run(e2e_records, tiny_model_dir, monkeypatch)
    try:
        run_training(run.pk)
    finally:
        run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
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
    from training.services import reap_lost_runs

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
    assert (run.status, run.failure_reason) == (RunStatus.FAILED, FailureReason.WORKER_LOST)
    assert not ModelVersion.objects.filter(training_run=run).exists()


@pytest.mark.django_db
def test_resume_says_when_its_checkpoint_folder_is_gone(e2e_records, tiny_model_dir, monkeypatch, tmp_path):
    """resume_training_run announces "from checkpoint at step 50" for a folder deleted from disk;
    the job then silently starts over (training.jobs checks os.path.isdir)."""
    run = _queued_run(e2e_records, tiny_model_dir, monkeypatch)
    TrainingRun.objects.filter(pk=run.pk).update(status=RunStatus.CANCELLED)
    Checkpoint.objects.create(run=run, step=50, path=str(tmp_path / "deleted" / "checkpoint-50"))
    resume_training_run(run, by=run.created_by)
    message = run.events.filter(message__startswith="resume requested").get().message
    assert "checkpoint at step 50" not in message or "missing" in message, message


@pytest.mark.slow
@pytest.mark.django_db
def test_export_merged_works_for_an_adapter_trained_with_an_added_pad_token(e2e_records, tiny_model_dir, tmp_path):
    """A base tokenizer with no pad and no unknown token other than EOS (the Llama 3 family) gets
    <|pad|> added and its embeddings resized (training.engine.train.load_tokenizer); peft then saves
    embed_tokens and lm_head at the new size. Evaluation resizes the base before loading
    (training.engine.inference.load_for_inference); export's _load_with_adapter does not:
    "size mismatch for base_model.model.model.embed_tokens.weight: [401, 32] ... [400, 32]"."""
    import json
    import shutil

    from django.core.management import call_command

    from training.choices import ModelVersionKind
    from training.engine.config import LoraConfig
    from training.engine.train import train_lora
    from training.models import BaseModel

    base = tmp_path / "no-unk-model"
    shutil.copytree(tiny_model_dir, base)
    config = json.loads((base / "tokenizer_config.json").read_text())
    config["unk_token"] = None  # pad == EOS and no unk: training adds <|pad|>
    (base / "tokenizer_config.json").write_text(json.dumps(config))
    result = train_lora(base, [r["messages"] for r in e2e_records[:8]], [],
                        LoraConfig.from_dict({"max_steps": 1, "batch_size": 2, "max_eval_examples": 0}),
                        tmp_path / "run", show_progress_bar=False)
    version = ModelVersion.objects.create(
        name="v", kind=ModelVersionKind.LORA_ADAPTER, adapter_path=str(result.adapter_dir),
        base_model=BaseModel.objects.create(name="no-unk", source_kind="local_folder", source=str(base)))
    user = EngineerFactory()
    call_command("export_merged", "--model-version", str(version.pk), "--as", user.username,
                 "--output", str(tmp_path / "merged"))
    assert (tmp_path / "merged" / "model.safetensors").is_file()
