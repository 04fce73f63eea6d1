"""RQ entry point for training: load rows, call the engine, write results.

Liveness: while a run trains, a heartbeat thread stamps ``heartbeat_at`` every
settings.TRAINING_HEARTBEAT_SECONDS (ftplatform.liveness); training.runs.reap_lost_runs fails
runs whose heartbeat stopped (worker killed, out of memory). The training thread itself writes
progress (throttled), metric and checkpoint events, and checks cancel and timeout after
every optimiser step.

With settings.TRAINING_PROCESSES > 1 the run trains on that many data-parallel processes started by
``accelerate launch`` (ftml.launch.train_lora_in_processes): the same callbacks run here,
in the job's thread, as the main training process reports through its event file, so the rows are
written as in-process; the heartbeat stays this job's; cancel, timeout or a lost row stop the whole
process tree, and checkpoints already recorded allow a resume as before.
"""
import functools
import logging
import shutil
import time

from django.conf import settings
from django.db import transaction

from curation.choices import Split
from ftplatform import jobrows, liveness, queues, tracking
from ftplatform.errors import without_server_paths
from ftplatform.jobrows import JobStatus

from .base_models import base_model_identity, materialized_base_model_folder, record_base_model_info
from .choices import EventKind, FailureReason, ModelVersionKind
from .models import ModelVersion, TrainingRun
from .runs import (
    latest_checkpoint,
    log_event,
    preflight_fields,
    preflight_training_run,
    record_checkpoint,
    snapshot_conversations,
)

logger = logging.getLogger(__name__)


class RunTimedOut(Exception):
    """The run went past its timeout_seconds."""


class PreflightRefused(Exception):
    """The pre-flight the job ran found blocking problems (its message lists them)."""


def run_preflight(run: TrainingRun, where: dict) -> TrainingRun:
    """Run the pre-flight of a run created without one (a train split over PREFLIGHT_INLINE_MAX_EXAMPLES), as
    its creator would have in the request, and record what it settles on the row (preflight_fields). Returns the
    refreshed run. Raises PreflightRefused for blocking problems, ServiceError as preflight_training_run."""
    count = run.snapshot.split_counts.get("train", 0) if run.train_examples is None else run.train_examples
    log_event(run, EventKind.LOG, f"pre-flight: checking {count} train examples")
    report = preflight_training_run(run.snapshot, run.base_model, run.hyperparameters, by=run.created_by,
                                    train_fraction=run.train_fraction, subset_seed=run.train_subset_seed)
    if report["blocking"]:
        TrainingRun.objects.filter(pk=run.pk, **where).update(preflight=report)
        raise PreflightRefused("pre-flight: " + "; ".join(report["blocking"]))
    if not TrainingRun.objects.filter(pk=run.pk, **where).update(**preflight_fields(report)):
        raise RunTakenAway()
    for warning in report["warnings"]:
        log_event(run, EventKind.WARNING, f"pre-flight: {warning}")
    log_event(run, EventKind.LOG, f"pre-flight passed: about {report['estimated_steps']} steps")
    run.refresh_from_db()
    return run


class RunTakenAway(Exception):
    """The run's row is no longer this job's: failed as worker lost, or resumed by another attempt."""


def prepare_torch():
    """Set torch threads (cores / training workers) and quiet the library's loading bars and notices."""
    import warnings

    import datasets
    import torch
    from transformers.utils import logging as transformers_logging

    torch.set_num_threads(settings.TORCH_THREADS)
    transformers_logging.disable_progress_bar()  # weight-loading bars; the engine draws its own step bar
    transformers_logging.set_verbosity_error()
    datasets.disable_progress_bars()  # SFTTrainer's dataset preparation bars
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")


def run_training(run_id: int) -> None:
    """Train (or resume) the LoRA adapter of TrainingRun ``run_id`` and create its ModelVersion.

    The run row records the outcome: succeeded, failed (with the error and a failure reason:
    error or timeout; worker_lost comes from reap_lost_runs) or cancelled.
    """
    from ftml.config import LoraConfig
    from ftml.train import TrainingCancelled

    run = jobrows.claim(TrainingRun, run_id, select_related=("snapshot__dataset", "base_model"))
    if run is None:
        return  # cancelled before it started, or already picked up
    attempt = run.attempts + 1
    heartbeat = liveness.start_heartbeat(run, attempts=attempt)
    mine = {"status": JobStatus.RUNNING, "attempts": attempt}  # only this job's run may be ended by it
    deadline = time.monotonic() + run.timeout_seconds
    tracked = tracking.TrackedRun.off()
    try:
        prepare_torch()
        if not run.preflight:  # a big train split: the pre-flight is this job's first stage
            run = run_preflight(run, mine)
        tracked = start_tracking(run, mine)
        folder = materialized_base_model_folder(run.base_model)
        record_base_model_info(run.base_model, folder)
        identity = base_model_identity(run.base_model, folder)
        train = snapshot_conversations(run.snapshot, Split.TRAIN, fraction=run.train_fraction,
                                       subset_seed=run.train_subset_seed)[1]
        validation = snapshot_conversations(run.snapshot, Split.VALIDATION)[1]
        # Runs recorded before LoRA+ existed trained plain LoRA: a resume continues them as they began.
        config = LoraConfig.from_dict({"loraplus_lr_ratio": 1, **run.hyperparameters})
        output_dir = run.output_dir
        checkpoint = latest_checkpoint(run)
        resume_from = None
        if checkpoint is not None:
            resume_from = checkpoint.path
            log_event(run, EventKind.LOG, f"resuming from the checkpoint at step {checkpoint.step}",
                      step=checkpoint.step)
        share = "" if run.train_fraction == 1 else (f" ({run.train_fraction:.0%} of the train split's inputs, "
                                                    f"seed {run.train_subset_seed})")
        log_event(run, EventKind.LOG, f"training on {len(train)} examples{share}, base model folder {folder}")

        def on_progress(progress):
            TrainingRun.objects.filter(pk=run.pk).update(
                step=progress["step"], total_steps=progress["total_steps"], epoch=progress["epoch"],
                tokens_per_second=progress["tokens_per_second"], elapsed_seconds=progress["elapsed_seconds"],
                eta_seconds=progress["eta_seconds"])

        def on_metrics(step, logs):
            log_event(run, EventKind.METRIC, step=step, payload=logs,
                      message=", ".join(f"{k}={v:.4g}" for k, v in logs.items() if k in METRIC_KEYS and v is not None))
            tracked.log_metrics(logs, step=step)

        last_cancel_check = [0.0]

        def should_stop():
            if time.monotonic() > deadline:
                raise RunTimedOut(f"timed out after {run.timeout_seconds} s (the run's timeout)")
            if time.monotonic() - last_cancel_check[0] < 1.0:
                return False
            last_cancel_check[0] = time.monotonic()
            cancel = TrainingRun.objects.filter(pk=run.pk, **mine).values_list("cancel_requested", flat=True).first()
            if cancel is None:
                raise RunTakenAway()
            return cancel

        result = training_function(run, attempt)(
            folder, train, validation, config, output_dir,
            checkpoint_dir=run.checkpoint_dir, resume_from=resume_from,
            on_progress=on_progress, on_metrics=on_metrics,
            on_checkpoint=lambda step, path, info: record_checkpoint(run, step, path, info["epoch"]),
            should_stop=should_stop,
            on_warning=lambda message: log_event(run, EventKind.WARNING, message),
        )
    except TrainingCancelled:
        if jobrows.finish(run, JobStatus.CANCELLED, where=mine):
            log_event(run, EventKind.LOG, "cancelled; the adapter was not saved (checkpoints, if any, allow a resume)")
            tracked.end("KILLED")
        return
    except PreflightRefused as exc:
        if jobrows.finish(run, JobStatus.FAILED, where=mine, error=str(exc), failure_reason=FailureReason.ERROR):
            log_event(run, EventKind.LOG, f"failed: {exc}")
        return
    except RunTimedOut as exc:
        if jobrows.finish(run, JobStatus.FAILED, where=mine, error=str(exc), failure_reason=FailureReason.TIMEOUT):
            log_event(run, EventKind.LOG, f"failed: {exc}")
            tracked.end("FAILED")
        return
    except RunTakenAway:  # the MLflow run is left as it is: a resumed attempt carries it on
        logger.warning("training run %s: stopped, its row was ended or resumed by another process", run.pk)
        return
    except Exception as exc:
        logger.exception("training run %s failed", run.pk)
        if jobrows.fail(run, exc, where=mine, failure_reason=FailureReason.ERROR):
            log_event(run, EventKind.LOG, f"failed: {without_server_paths(str(exc))}")
            tracked.end("FAILED")
        raise
    finally:
        if heartbeat is not None:
            heartbeat.stop()
    finish_run(run, result, output_dir, identity, mine, tracked)


def start_tracking(run: TrainingRun, where: dict) -> tracking.TrackedRun:
    """Start (or, for a resumed run, reopen) the run's MLflow run when MLFLOW_TRACKING_URI is set
    (ftplatform.tracking), log what the run trains with as its params, and record the MLflow run id
    in the run's environment now, so a failed attempt's resume and the run's evaluations find it.
    MLflow errors become warning events; tracking never fails the run."""
    if not tracking.is_enabled():
        return tracking.TrackedRun.off()
    params = {**run.hyperparameters, "snapshot_sha256": run.snapshot.content_hash, "snapshot_id": run.snapshot.pk,
              "dataset": run.snapshot.dataset.name, "base_model": run.base_model.name, "seed": run.seed}
    tracked = tracking.start_run(
        f"training-run-{run.pk}", params=params, tags={"ftplatform.training_run_id": run.pk},
        resume_run_id=run.environment.get(MLFLOW_RUN_ID, ""),
        on_warning=lambda message: log_event(run, EventKind.WARNING, message))
    if tracked.run_id:
        TrainingRun.objects.filter(pk=run.pk, **where).update(
            environment={**run.environment, MLFLOW_RUN_ID: tracked.run_id})
    return tracked


METRIC_KEYS = ("loss", "eval_loss", "learning_rate", "grad_norm", "epoch")
MLFLOW_RUN_ID = "mlflow_run_id"  # the key of TrainingRun.environment that holds it


def launch_folder(run: TrainingRun, attempt: int):
    """Where a multi-process attempt keeps its event file and the processes' log (launch.log): next
    to the run's output, one per attempt; removed when the run succeeds."""
    return run.output_dir.with_name(f"{run.output_dir.name}.launch-{attempt}")


def training_function(run: TrainingRun, attempt: int):
    """train_lora, or with settings.TRAINING_PROCESSES > 1 the same training on that many processes
    (accelerate launch), each with its share of the machine's torch threads."""
    from ftml.launch import train_lora_in_processes
    from ftml.train import train_lora

    processes = settings.TRAINING_PROCESSES
    if processes == 1:
        return train_lora
    return functools.partial(train_lora_in_processes, processes=processes, work_dir=launch_folder(run, attempt),
                             accelerate_config=settings.TRAINING_ACCELERATE_CONFIG or None,
                             threads_per_process=max(1, settings.TORCH_THREADS // processes))


def finish_run(run: TrainingRun, result, output_dir, identity: dict, where: dict,
               tracked: tracking.TrackedRun | None = None) -> None:
    """Record a finished engine result on the run, write the adapter's model card (README.md) and
    create the run's ModelVersion (one transaction), if the row still matches ``where`` (the
    job's own attempt, still running); then log the final metrics and the adapter folder to
    ``tracked``, the run's MLflow run (after the commit: an upload must not hold the row's lock)."""
    from ftml.model_card import write_model_card

    tracked = tracked or tracking.TrackedRun.off()
    environment = {**result.environment, "base_model": identity, "snapshot_sha256": run.snapshot.content_hash,
                   "seed": run.seed, **({MLFLOW_RUN_ID: tracked.run_id} if tracked.run_id else {})}
    metrics = {"train_loss": result.train_loss, "eval_loss": result.eval_loss,
               "train_examples": result.train_examples, "truncated_examples": result.truncated_examples,
               "skipped_examples": result.skipped_examples, "wall_seconds": round(result.wall_seconds, 1),
               "train_seconds": round(result.train_seconds, 2),
               "bookkeeping_seconds": round(result.bookkeeping_seconds, 3),
               "tokens_per_second": round(result.tokens_per_second, 1), "input_tokens": result.input_tokens,
               "resumed_from_step": result.resumed_from_step, "epochs_trained": result.epochs,
               "validation_examples": result.validation_examples}
    dataset = run.snapshot.dataset
    write_model_card(result.adapter_dir, {
        "base_model": run.base_model.name, "dataset_name": dataset.name, "snapshot_id": run.snapshot.pk,
        "snapshot_sha256": run.snapshot.content_hash, "hyperparameters": run.hyperparameters,
        "licence": run.base_model.licence,
        "base_model_source": f"{identity['source_kind']} {identity['source']} {run.base_model.gguf_file}".strip(),
        "base_model_sha256": identity["sha256"] or None, "split_counts": run.snapshot.split_counts,
        "seed": run.seed, "trained_tokens": result.trained_tokens, "wall_seconds": round(result.wall_seconds, 1),
        "environment": result.environment, "metrics": metrics, "task_description": dataset.description or None,
        "system_prompt": run.snapshot.system_prompt or None, "prompt_prefix": run.prompt_prefix or None,
        "training_run_id": run.pk,
        "train_fraction": run.train_fraction, "train_subset_seed": run.train_subset_seed,
        "base_model_path": str(materialized_base_model_folder(run.base_model)),
    })
    with transaction.atomic():
        ended = jobrows.finish(
            run,
            JobStatus.SUCCEEDED,
            where=where,
            metrics=metrics,
            environment=environment,
            trained_tokens=result.trained_tokens,
            artifact_path=str(output_dir),
            step=result.steps,
            total_steps=result.steps,
            eta_seconds=0,
            tokens_per_second=round(result.tokens_per_second, 1),
        )
        if not ended:
            logger.warning("training run %s: trained, but its row was ended or resumed meanwhile; "
                           "no model version", run.pk)
            return
        ModelVersion.objects.create(
            name=f"{run.base_model.name} + LoRA (run {run.pk})",
            kind=ModelVersionKind.LORA_ADAPTER,
            base_model=run.base_model,
            training_run=run,
            system_prompt=run.snapshot.system_prompt,
            adapter_path=str(result.adapter_dir),
        )
        run.checkpoints.all().delete()
        if run.follow_up_job:  # e.g. a learning curve's evaluation of the new model version, after the commit
            queues.enqueue_after_commit("default", run.follow_up_job, run.pk,
                                        job_id=f"trainingrun-{run.pk}-follow-up")
    shutil.rmtree(run.checkpoint_dir, ignore_errors=True)  # a succeeded run never resumes
    for folder in run.output_dir.parent.glob(f"{run.output_dir.name}.launch-*"):
        shutil.rmtree(folder, ignore_errors=True)
    # eval_loss came at the last step with the losses (on_metrics); logged again it would be a second point.
    tracked.log_metrics({k: v for k, v in metrics.items() if k != "eval_loss"}, step=result.steps)
    tracked.log_artifacts(result.adapter_dir, "adapter")
    tracked.end("FINISHED")
