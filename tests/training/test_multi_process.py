"""A training run on 2 CPU processes (FTPLATFORM_TRAINING_PROCESSES=2: the job starts `accelerate launch`,
DDP over gloo) trains what one process trains, writes once, stops on cancel and resumes.

What is compared: the job's 2-process run against train_lora in this process with the same
hyperparameters. Both see the same global batches: every process draws the same seeded order
(ftml.sampling) and accelerate deals process p the per-device batches p, p + 2, ... of it,
so one micro-step of the two processes covers the batch the single process takes (a DistributedSampler
would interleave examples instead, but accelerate replaces it). The Trainer's loss is token-weighted
over all processes and accumulation steps, so the gradients are the same sums. Dropout is 0: each
process draws its own dropout masks, a different (equally valid) random draw from one process's.

Tolerance: float32 sums in another order (each process sums its half, gloo adds the halves; padding
to each half's longest example) differ in the last bits: measured up to 1.6e-7 relative on the losses,
and on the adapter weights 5e-8 after 8 steps and 1.1e-6 after 120 (Adam's normalised steps carry the
last-bit differences along). The tolerances, 1e-5 relative on losses and 1e-5 absolute on weights (of
about 0.2), sit well above that and far below what a real difference makes: a global batch of the
wrong size, or another dropout draw, moves the weights by about 1e-2 in 8 steps (measured).
"""
import json
from pathlib import Path

import psutil
import pytest
from safetensors.torch import load_file

from curation.choices import Split
from ftml.config import LoraConfig, split_batch
from ftml.train import train_lora
from ftplatform.errors import ServiceError
from ftplatform.jobrows import JobStatus
from tests.support.factories import EngineerFactory, snapshot_of, tiny_base_model
from training.choices import EventKind
from training.models import TrainingRun
from training.runs import cancel_training_run, resume_training_run, snapshot_conversations, start_training_run

LOSS_RELATIVE_TOLERANCE = 1e-5
WEIGHT_TOLERANCE = 1e-5
# 16 examples: 4 optimiser steps of 2 x 2 sequences per epoch, so no epoch ends in a partial batch (which
# accelerate would top up from the epoch's start to give both processes one; docs/training/multi-process.md).
COMPARED = {"batch_size": 2, "gradient_accumulation_steps": 2, "lora_dropout": 0.0, "max_train_examples": 16,
            "logging_steps": 1}


@pytest.fixture
def two_processes(settings, monkeypatch):
    """Runs train on 2 processes; their jobs are not enqueued (each test calls run_training itself)."""
    settings.TRAINING_PROCESSES = 2
    monkeypatch.setattr("ftplatform.queues.enqueue_after_commit", lambda *args, **kwargs: None)


def one_process_reference(run, folder):
    """train_lora in this process on the run's splits and hyperparameters: (losses by step, adapter weights)."""
    losses = {}
    train_lora(run.base_model.source, snapshot_conversations(run.snapshot, Split.TRAIN)[1],
               snapshot_conversations(run.snapshot, Split.VALIDATION)[1], LoraConfig.from_dict(run.hyperparameters),
               folder, on_metrics=lambda step, logs: "loss" in logs and losses.setdefault(step, logs["loss"]),
               show_progress_bar=False)
    return losses, load_file(folder / "adapter" / "adapter_model.safetensors")


def largest_weight_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[name] - b[name]).abs().max().item() for name in a)


def launched_processes(run) -> list[psutil.Process]:
    """The launcher and training processes of ``run`` still alive: every one's command line names its
    launch folder (the training processes' --events file, the launcher's script arguments)."""
    marker = run.output_dir.name + ".launch-"
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(marker in part for part in process.info["cmdline"] or ()):
            found.append(process)
    return found


@pytest.mark.parametrize("batch_size, accumulation, processes, expected", [
    (8, 1, 1, (8, 1)),  # one process: as before
    (8, 1, 2, (4, 1)),  # the batch splits over the processes
    (2, 2, 2, (1, 2)),
    (1, 4, 2, (1, 2)),  # else the accumulation does: 1 x 2 processes x 2 steps = 1 x 4
])
def test_the_global_batch_splits_over_the_processes(batch_size, accumulation, processes, expected):
    per_device, per_process_accumulation = split_batch(batch_size, accumulation, processes)
    assert (per_device, per_process_accumulation) == expected
    assert per_device * processes * per_process_accumulation == batch_size * accumulation


@pytest.mark.django_db
def test_a_batch_that_does_not_split_over_the_processes_blocks_the_run(e2e_records, tiny_model_dir, settings):
    settings.TRAINING_PROCESSES = 2
    with pytest.raises(ServiceError, match="pre-flight: batch_size 3 x gradient_accumulation_steps 1 does not split "
                                           "over 2 training processes; make batch_size or gradient_accumulation_steps "
                                           "a multiple of 2 \\(FTPLATFORM_TRAINING_PROCESSES\\)"):
        start_training_run(snapshot_of(e2e_records[:30]), tiny_base_model(tiny_model_dir), by=EngineerFactory(),
                           hyperparameters={"batch_size": 3})
    assert not TrainingRun.objects.exists()


@pytest.mark.slow
@pytest.mark.django_db
def test_two_processes_train_what_one_process_trains_and_only_rank_0_writes(
        e2e_records, tiny_model_dir, two_processes, artifacts_root, tmp_path):
    from training.jobs import launch_folder, run_training

    run = start_training_run(snapshot_of(e2e_records[:40]), tiny_base_model(tiny_model_dir), by=EngineerFactory(),
                             hyperparameters={**COMPARED, "max_steps": 8, "checkpoint_steps": 4,
                                              "max_eval_examples": 8})
    run_training(run.pk)
    run.refresh_from_db()
    assert run.status == JobStatus.SUCCEEDED, run.error
    assert (run.environment["processes"], run.environment["distributed_backend"]) == (2, "gloo")

    losses = {e.step: e.payload["loss"] for e in run.events.filter(kind=EventKind.METRIC, payload__has_key="loss")}
    reference_losses, reference_weights = one_process_reference(run, tmp_path / "one-process")
    assert list(losses) == list(reference_losses) == list(range(1, 9))
    assert list(losses.values()) == pytest.approx(list(reference_losses.values()), rel=LOSS_RELATIVE_TOLERANCE)
    weights = load_file(run.output_dir / "adapter" / "adapter_model.safetensors")
    assert largest_weight_difference(weights, reference_weights) <= WEIGHT_TOLERANCE

    # Only rank 0 reported: one event per logging step, evaluation and checkpoint, one result line.
    metric_steps = [e.step for e in run.events.filter(kind=EventKind.METRIC).order_by("id")]
    assert sorted(metric_steps) == sorted([*range(1, 9), 4, 8])  # losses, and eval_loss at the 2 epoch ends
    assert list(run.events.filter(kind=EventKind.CHECKPOINT).values_list("step", flat=True)) == [4, 8]
    assert not launch_folder(run, 1).exists()  # removed with the checkpoints once the run succeeded
    # ... and only rank 0 wrote the output: one adapter, one run record, nothing half-written.
    runs_folder = artifacts_root / "runs"
    assert list(runs_folder.rglob("adapter_model.safetensors")) == [run.output_dir / "adapter" /
                                                                     "adapter_model.safetensors"]
    assert len(list(runs_folder.rglob("ftplatform_run.json"))) == 1
    assert sorted(p.name for p in runs_folder.iterdir()) == [run.output_dir.name]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_cancelled_two_process_run_stops_every_process_and_resumes_to_the_one_process_adapter(
        e2e_records, tiny_model_dir, two_processes, settings, monkeypatch, tmp_path):
    """Cancel is asked when the first checkpoint (step 50) is recorded, through the real service from the
    job's own thread, so the moment is fixed; the processes stop within about 1 s (25 steps), before the
    next checkpoint (100). Both fall mid-epoch (3 steps per epoch), where a data-parallel resume once
    took the rest of the epoch in the wrong order. The heartbeat is the job's and must beat meanwhile."""
    import training.jobs as jobs

    settings.TRAINING_HEARTBEAT_SECONDS = 1.0  # several beats while the processes start (about 7 s here)
    creator = EngineerFactory()
    run = start_training_run(snapshot_of(e2e_records[:40]), tiny_base_model(tiny_model_dir), by=creator,
                             hyperparameters={**COMPARED, "max_train_examples": 12, "max_steps": 120,
                                              "checkpoint_steps": 50, "logging_steps": 5, "max_eval_examples": 0})
    log_event, record_checkpoint, heartbeats, alive_at_cancel = jobs.log_event, jobs.record_checkpoint, [], []

    def log_event_noting_the_heartbeat(row, *args, **kwargs):
        heartbeats.append(TrainingRun.objects.values_list("heartbeat_at", flat=True).get(pk=row.pk))
        return log_event(row, *args, **kwargs)

    def record_checkpoint_and_cancel_at_the_first(row, *args, **kwargs):
        checkpoint = record_checkpoint(row, *args, **kwargs)
        if not alive_at_cancel:
            alive_at_cancel.extend(launched_processes(row))
            cancel_training_run(row, by=creator)
        return checkpoint

    monkeypatch.setattr(jobs, "log_event", log_event_noting_the_heartbeat)
    monkeypatch.setattr(jobs, "record_checkpoint", record_checkpoint_and_cancel_at_the_first)
    jobs.run_training(run.pk)
    run.refresh_from_db()
    assert run.status == JobStatus.CANCELLED, run.error
    assert len(alive_at_cancel) >= 3  # the launcher and 2 training processes (torchrun's agent among them)
    assert launched_processes(run) == []
    # The job stamped its heartbeat while the processes started and trained (first event: before the launch).
    assert heartbeats[0] is not None and heartbeats[-1] > heartbeats[0]
    checkpoint = run.checkpoints.order_by("-step").first()
    assert checkpoint.step in (50, 100) and checkpoint.step % 3  # mid-epoch
    # One checkpoint: rank 0's adapter, optimizer and trainer state, and each process's RNG state.
    files = {path.name for path in Path(checkpoint.path).iterdir()}
    assert {"adapter_model.safetensors", "optimizer.pt", "trainer_state.json", "rng_state_0.pth",
            "rng_state_1.pth"} <= files

    monkeypatch.setattr(jobs, "log_event", log_event)
    monkeypatch.setattr(jobs, "record_checkpoint", record_checkpoint)
    before_resume = run.events.order_by("id").last().id
    resume_training_run(run, by=creator)
    jobs.run_training(run.pk)
    run.refresh_from_db()
    assert run.status == JobStatus.SUCCEEDED, run.error
    assert run.metrics["resumed_from_step"] >= checkpoint.step and run.attempts == 2
    reference_losses, reference_weights = one_process_reference(run, tmp_path / "one-process")
    weights = load_file(run.output_dir / "adapter" / "adapter_model.safetensors")
    assert largest_weight_difference(weights, reference_weights) <= WEIGHT_TOLERANCE
    resumed = {e.step: e.payload["loss"] for e in run.events.filter(id__gt=before_resume, kind=EventKind.METRIC)}
    assert list(resumed) == [step for step in reference_losses if step > run.metrics["resumed_from_step"]]
    assert list(resumed.values()) == pytest.approx([reference_losses[step] for step in resumed],
                                                   rel=LOSS_RELATIVE_TOLERANCE)
    assert json.loads((run.output_dir / "ftplatform_run.json").read_text())["steps"] == 120
