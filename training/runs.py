"""Training runs: pre-flight, start, cancel, resume, checkpoints, events, and reaping runs whose worker is gone."""
from pathlib import Path

from django.conf import settings
from django.db import transaction

from curation.choices import SnapshotStatus, Split
from curation.formats import check_json_value, with_system_prompt
from curation.models import Snapshot
from ftml.config import LoraConfig
from ftplatform import jobrows, liveness, queues
from ftplatform.errors import Conflict, NotAllowed, ServiceError, without_server_paths
from ftplatform.jobrows import JobStatus
from ftplatform.roles import require_permission

from .base_models import materialized_base_model_folder
from .choices import BaseModelSource, EventKind, FailureReason
from .models import BaseModel, Checkpoint, TrainingEvent, TrainingRun

MAX_TIMEOUT_SECONDS = 30 * 24 * 3600


def snapshot_conversations(snapshot: Snapshot, split: str, *, fraction: float = 1.0,
                           subset_seed: int = 0) -> tuple[list, list[list[dict] | dict]]:
    """A snapshot split as (example ids, conversations with the snapshot's frozen system prompt where
    they have no system message), in item order: what training trains on and exports hold. An item with
    tool settings is its chat line ``{"messages": [...], "tools": ...}``, whose tools the chat template is
    given (ftml.data.conversation_parts); the others are lists of messages. ``fraction`` < 1 keeps the
    items of that share of the split's distinct inputs (ftml.subsets.nested_input_subset with
    ``subset_seed``): a run's train_fraction.

    An item whose example was deleted is named by its item id ("item 12")."""
    system_prompt = snapshot.system_prompt
    rows = (snapshot.items.filter(split=split).order_by("id")
            .values_list("id", "example_id", "messages", "tool_settings", "input_hash"))
    if fraction != 1.0:  # filtered here, not with input_hash__in: a big share passes SQLite's parameter limit
        kept = subset_input_hashes(snapshot, split, fraction, subset_seed)
        rows = [row for row in rows if row[4] in kept]
    ids = [example_id if example_id is not None else f"item {item_id}" for item_id, example_id, *_ in rows]
    conversations = []
    for _, _, messages, tool_settings, _ in rows:
        messages = with_system_prompt(messages, system_prompt)
        conversations.append({"messages": messages, **tool_settings} if tool_settings else messages)
    return ids, conversations


def subset_input_hashes(snapshot: Snapshot, split: str, fraction: float, seed: int) -> set[str]:
    """The input hashes of a split's nested, seeded share ``fraction`` (ftml.subsets). Raises ServiceError
    for a fraction outside (0, 1]."""
    from ftml.subsets import nested_input_subset

    hashes = snapshot.items.filter(split=split).values_list("input_hash", flat=True).distinct()
    try:
        return nested_input_subset(hashes, fraction, seed)
    except ValueError as exc:
        raise ServiceError(str(exc), field="train_fraction") from exc


def subset_size(snapshot: Snapshot, split: str, fraction: float, seed: int) -> tuple[int, int]:
    """(distinct inputs, examples) in a split's share ``fraction`` (subset_input_hashes). Raises ServiceError
    as subset_input_hashes."""
    hashes = list(snapshot.items.filter(split=split).values_list("input_hash", flat=True))
    kept = subset_input_hashes(snapshot, split, fraction, seed) if fraction != 1.0 else set(hashes)
    return len(kept), sum(1 for input_hash in hashes if input_hash in kept)


def measured_tokens_per_second(base_model: BaseModel) -> tuple[float, str]:
    """Throughput for pre-flight estimates: the latest succeeded run of ``base_model`` that measured
    it, else settings.TRAINING_ESTIMATE_TOKENS_PER_SECOND. Returns (tokens/s, where it came from)."""
    run = (TrainingRun.objects.filter(base_model=base_model, status=JobStatus.SUCCEEDED, tokens_per_second__gt=0)
           .order_by("-finished_at").first())
    if run is not None:
        return run.tokens_per_second, f"training run {run.pk}"
    return settings.TRAINING_ESTIMATE_TOKENS_PER_SECOND, "FTPLATFORM_ESTIMATE_TOKENS_PER_SECOND (no run measured yet)"


def checked_preflight_request(snapshot: Snapshot, base_model: BaseModel, hyperparameters: dict | None, *, by):
    """The checks of a run request that need no tokenizer: the permission, an approved snapshot with train
    examples, a base model with weights here, valid hyperparameters. Returns the LoraConfig. Raises
    NotAllowed or ServiceError."""
    require_permission(by, "training.add_trainingrun", "start training runs")
    if base_model.source_kind == BaseModelSource.REMOTE:
        raise ServiceError(f"base model {base_model.name!r} is a remote model (it answers over an API); only a "
                           "base model with local weights can be fine-tuned", field="base_model")
    if snapshot.status != SnapshotStatus.APPROVED:
        raise ServiceError(
            f"snapshot {snapshot.pk} is {snapshot.status}; a reviewer must approve it before training"
        )
    if not snapshot.split_counts.get("train"):
        raise ServiceError(f"snapshot {snapshot.pk} has no train examples")
    try:
        check_json_value(hyperparameters)
        config = LoraConfig.from_dict(hyperparameters)
    except (TypeError, ValueError) as exc:
        raise ServiceError(f"hyperparameters: {exc}", field="hyperparameters") from exc
    return config


def preflight_fields(report: dict) -> dict:
    """The TrainingRun fields a pre-flight report settles: the report, the resolved hyperparameters ("auto"
    replaced), the seed, the estimated steps and the chat template's prompt prefix."""
    resolved = report["hyperparameters"]
    return {"preflight": report, "hyperparameters": resolved, "seed": resolved["seed"],
            "total_steps": report["estimated_steps"], "prompt_prefix": report["prompt_prefix"]}


def preflight_training_run(snapshot: Snapshot, base_model: BaseModel, hyperparameters: dict | None = None,
                           *, by, train_fraction: float = 1.0, subset_seed: int = 0) -> dict:
    """The pre-flight report of a run that is not created (ftml.preflight), as a dict; with ``train_fraction``
    < 1, of the run on that share of the train split (snapshot_conversations).

    Raises:
        NotAllowed: ``by`` lacks 'training.add_trainingrun'.
        ServiceError: the snapshot is not approved or has no train examples, a hyperparameter
            is invalid, or the base model cannot be loaded (the message names it).
    """
    config = checked_preflight_request(snapshot, base_model, hyperparameters, by=by)
    from ftml.base_models import BaseModelError
    from ftml.preflight import preflight

    ids, train = snapshot_conversations(snapshot, Split.TRAIN, fraction=train_fraction, subset_seed=subset_seed)
    validation = snapshot_conversations(snapshot, Split.VALIDATION)[1]
    speed, source = measured_tokens_per_second(base_model)
    try:
        report = preflight(materialized_base_model_folder(base_model), train, validation, config, example_ids=ids,
                           tokens_per_second=speed, tokens_per_second_source=source,
                           price_per_gpu_hour=settings.GPU_HOUR_PRICE, system_prompt=snapshot.system_prompt,
                           processes=settings.TRAINING_PROCESSES)
    except (BaseModelError, OSError, ValueError) as exc:
        raise ServiceError(f"base model {base_model.name!r} cannot be loaded: "
                           f"{without_server_paths(str(exc))}") from exc
    return report.to_dict()


@transaction.atomic
def start_training_run(snapshot: Snapshot, base_model: BaseModel, *, by, hyperparameters: dict | None = None,
                       timeout_seconds: int | None = None, train_fraction: float = 1.0, subset_seed: int = 0,
                       follow_up_job: str = "") -> TrainingRun:
    """Run the pre-flight checks, create a queued TrainingRun and enqueue its job after commit.

    ``train_fraction`` < 1 trains on that share of the train split's distinct inputs (all their
    outputs), chosen with ``subset_seed`` so that smaller shares nest in larger ones (ftml.subsets);
    the run records both and the number of train examples. ``follow_up_job`` (a dotted job path)
    is enqueued with the run's id once it succeeds (training.jobs.finish_run).

    The run records the pre-flight report, the resolved hyperparameters ("auto" replaced), the
    snapshot's system prompt it trains with and what the chat template renders before a user's
    text with it (the report's prompt_prefix: a template's default system prompt shows there).
    ``timeout_seconds`` (default settings.TRAINING_TIMEOUT_SECONDS) bounds its running time.

    Raises:
        NotAllowed: ``by`` lacks 'training.add_trainingrun' (engineers hold it).
        ServiceError: as preflight_training_run, a bad timeout, or a blocking pre-flight
            problem (all of them in the message, naming example ids).
    """
    timeout = settings.TRAINING_TIMEOUT_SECONDS if timeout_seconds is None else timeout_seconds
    if not (isinstance(timeout, int) and 60 <= timeout <= MAX_TIMEOUT_SECONDS):
        raise ServiceError(f"timeout must be between 1 minute and 30 days, got {timeout_seconds!r} seconds")
    share = {"train_fraction": float(train_fraction), "train_subset_seed": subset_seed,
             "train_examples": subset_size(snapshot, Split.TRAIN, train_fraction, subset_seed)[1],
             "follow_up_job": follow_up_job}
    if share["train_examples"] > settings.PREFLIGHT_INLINE_MAX_EXAMPLES:
        # A big train split: the pre-flight tokenizes every example, which is the job's first stage
        # (run_preflight, with the job's progress, heartbeat and cancel), not this request's.
        config = checked_preflight_request(snapshot, base_model, hyperparameters, by=by)
        run = TrainingRun.objects.create(
            snapshot=snapshot, base_model=base_model, hyperparameters=hyperparameters or {}, seed=config.seed,
            created_by=by, timeout_seconds=timeout, system_prompt=snapshot.system_prompt, **share)
        log_event(run, EventKind.LOG, f"pre-flight of {share['train_examples']} train examples queued: "
                                      "it runs first in the job")
    else:
        report = preflight_training_run(snapshot, base_model, hyperparameters, by=by, train_fraction=train_fraction,
                                        subset_seed=subset_seed)
        if report["blocking"]:
            raise ServiceError("pre-flight: " + "; ".join(report["blocking"]))
        run = TrainingRun.objects.create(
            snapshot=snapshot, base_model=base_model, created_by=by, timeout_seconds=timeout,
            system_prompt=snapshot.system_prompt, **share, **preflight_fields(report))
        for warning in report["warnings"]:
            log_event(run, EventKind.WARNING, f"pre-flight: {warning}")
    queues.enqueue_job_row(run, "training", "training.jobs.run_training", timeout=timeout + 600)
    return run


@transaction.atomic
def resume_training_run(run: TrainingRun, *, by) -> TrainingRun:
    """Queue a failed or cancelled run again; its job resumes from the latest checkpoint
    (adapter, optimizer, scheduler, RNG state and data position), or starts over without one.

    Raises:
        NotAllowed: neither the creator nor holding 'training.change_trainingrun'.
        Conflict: the run is queued, running or succeeded.
    """
    run = TrainingRun.objects.select_for_update().get(pk=run.pk)
    if not (by.pk == run.created_by_id or by.has_perm("training.change_trainingrun")):
        raise NotAllowed(f"training run {run.pk}: only its creator or an engineer can resume it")
    if run.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise Conflict(f"training run {run.pk} is {run.status}; only failed or cancelled runs can resume")
    checkpoint = latest_checkpoint(run)
    run.status, run.error, run.failure_reason = JobStatus.QUEUED, "", ""
    run.cancel_requested, run.finished_at, run.heartbeat_at, run.eta_seconds = False, None, None, None
    run.save(update_fields=["status", "error", "failure_reason", "cancel_requested", "finished_at",
                            "heartbeat_at", "eta_seconds"])
    where = f"checkpoint at step {checkpoint.step}" if checkpoint else "the start (no checkpoint was saved)"
    log_event(run, EventKind.LOG, f"resume requested by {by}: from {where}")
    queues.enqueue_job_row(run, "training", "training.jobs.run_training", timeout=run.timeout_seconds + 600,
                           suffix=f"attempt-{run.attempts + 1}")
    return run


def latest_checkpoint(run: TrainingRun) -> Checkpoint | None:
    """The run's newest checkpoint whose folder is still on disk; rows of deleted folders are dropped."""
    for checkpoint in run.checkpoints.order_by("-step"):
        if Path(checkpoint.path).is_dir():
            return checkpoint
        checkpoint.delete()
    return None


def record_checkpoint(run: TrainingRun, step: int, path, epoch: float) -> Checkpoint:
    """Register a complete checkpoint folder; the ones Trainer rotated away are forgotten."""
    checkpoint, _ = Checkpoint.objects.update_or_create(run=run, step=step,
                                                        defaults={"path": str(path), "epoch": epoch})
    for old in run.checkpoints.exclude(pk=checkpoint.pk):
        if not Path(old.path).is_dir():
            old.delete()
    log_event(run, EventKind.CHECKPOINT, f"checkpoint saved at step {step}", step=step,
              payload={"path": str(path), "epoch": epoch})
    return checkpoint


def reap_lost_runs() -> list[int]:
    """Fail running runs whose worker stopped sending heartbeats (killed, out of memory, machine gone),
    with failure reason worker_lost and a log event (ftplatform.liveness.reap_lost: silent longer
    than settings.TRAINING_HEARTBEAT_SECONDS + TRAINING_HEARTBEAT_MARGIN_SECONDS on the database's
    clock). Called through ftplatform.liveness.reap_all by every worker process every heartbeat
    interval and by ``manage.py reap_jobs``, and by the train command while it waits, so a lost run
    ends within about one interval plus the margin. Returns the ids it failed.
    """
    return liveness.reap_lost(
        TrainingRun, "resume it from its last checkpoint", failure_reason=FailureReason.WORKER_LOST,
        on_lost=lambda run, error: log_event(run, EventKind.LOG, f"failed: {error}"))


def cancel_training_run(run: TrainingRun, *, by) -> TrainingRun:
    """Cancel a queued run at once, or ask a running one to stop at its next step
    (ftplatform.jobrows.request_cancel); its checkpoints allow a resume.

    Raises NotAllowed (neither the creator nor holding 'training.change_trainingrun') or Conflict.
    """
    with transaction.atomic():
        run = jobrows.request_cancel(run, by=by, noun=f"training run {run.pk}", may_cancel=(
            by.pk == run.created_by_id or by.has_perm("training.change_trainingrun")))
        log_event(run, EventKind.LOG, f"cancel requested by {by}")
    return run


def log_event(run: TrainingRun, kind: str, message: str = "", *, step: int | None = None, payload=None):
    return TrainingEvent.objects.create(run=run, kind=kind, message=message, step=step, payload=payload or {})
