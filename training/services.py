"""Creating, cancelling, resuming and reaping training runs; base models and model versions."""
import functools
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction

from curation.choices import SnapshotStatus, Split
from curation.formats import check_json_value, with_system_prompt
from curation.models import Snapshot
from curation.quality import TokenLimits
from ftml.config import DEFAULT_CONFIG, LoraConfig
from ftplatform import jobrows, liveness, queues
from ftplatform.errors import Conflict, NotAllowed, ServiceError, without_server_paths
from ftplatform.jobrows import JobStatus
from ftplatform.roles import require_permission

from .choices import BaseModelSource, EventKind, FailureReason, ModelVersionKind
from .models import BaseModel, Checkpoint, ModelVersion, TrainingEvent, TrainingRun

MAX_TIMEOUT_SECONDS = 30 * 24 * 3600


def default_base_model() -> BaseModel:
    """The configured default base model row (settings.DEFAULT_BASE_MODEL), created on first use."""
    spec = dict(settings.DEFAULT_BASE_MODEL)
    model, _ = BaseModel.objects.get_or_create(name=spec.pop("name"), defaults=spec)
    return model


def materialized_base_model_folder(base_model: BaseModel):
    """Local HF folder for a base model (dequantizing a GGUF source once into the artifacts cache)."""
    from ftml.base_models import materialize

    return materialize(
        base_model.source_kind,
        base_model.source,
        base_model.gguf_file,
        settings.ARTIFACTS_ROOT / "base_models",
        base_model.name,
    )


@functools.lru_cache(maxsize=4)
def _tokenizer_and_context(folder: str):
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder), getattr(config, "max_position_embeddings", None)


def base_model_token_limits(base_model: BaseModel, max_seq_length: int | None = None) -> TokenLimits:
    """The quality gate's view of a base model: its tokenizer, its context length (the config's
    max_position_embeddings) and ``max_seq_length`` (default: training's, LoraConfig).

    The model folder comes from materialized_base_model_folder (a GGUF source is dequantized once, about
    20 s for SmolLM2-135M; training needs that folder anyway); tokenizers are cached per process.

    Raises:
        ServiceError: the model cannot be found or loaded (the message names it).
    """
    from ftml.base_models import BaseModelError

    try:
        tokenizer, context = _tokenizer_and_context(str(materialized_base_model_folder(base_model)))
    except (BaseModelError, OSError, ValueError) as exc:
        raise ServiceError(f"cannot load the tokenizer of base model {base_model.name!r} for the quality gate: "
                           f"{without_server_paths(str(exc))}") from exc
    return TokenLimits(tokenizer, max_seq_length or DEFAULT_CONFIG.max_seq_length, context, base_model.name)


def snapshot_token_limits() -> TokenLimits:
    """settings.SNAPSHOT_TOKENIZER_LOADER's default: settings.SNAPSHOT_BASE_MODEL (a BaseModel spec
    like DEFAULT_BASE_MODEL; no row is written) at training's default max_seq_length."""
    return base_model_token_limits(BaseModel(**settings.SNAPSHOT_BASE_MODEL))


@functools.lru_cache(maxsize=8)
def _file_sha256(path: str, size: int, mtime: float) -> str:
    from ftml.model_card import sha256_file

    return sha256_file(Path(path))


def base_model_identity(base_model: BaseModel, folder) -> dict:
    """What a run records about its base model: name, source, the weights file and its SHA-256
    (the GGUF file for GGUF sources, else the folder's safetensors), cached per file version."""
    from ftml.base_models import gguf_path

    if base_model.source_kind == "local_folder":
        files = sorted(Path(folder).glob("*.safetensors")) or sorted(Path(folder).glob("*.bin"))
        weights = files[0] if files else None
    else:
        weights = gguf_path(base_model.source_kind, base_model.source, base_model.gguf_file)
    identity = {"name": base_model.name, "source_kind": base_model.source_kind, "source": base_model.source,
                "file": str(weights) if weights else "", "sha256": ""}
    if weights is not None:
        stat = weights.stat()
        identity["sha256"] = _file_sha256(str(weights), stat.st_size, stat.st_mtime)
    return identity


def record_base_model_info(base_model: BaseModel, folder) -> None:
    """Fill chat template, context length and parameter count the first time a model is loaded."""
    if base_model.parameter_count:
        return
    from ftml.base_models import describe

    info = describe(folder)
    BaseModel.objects.filter(pk=base_model.pk).update(
        chat_template=info.chat_template, context_length=info.context_length, parameter_count=info.parameter_count
    )


def snapshot_conversations(snapshot: Snapshot, split: str) -> tuple[list, list[list[dict]]]:
    """A snapshot split as (example ids, conversations with the snapshot's frozen system prompt where
    they have no system message), in item order: what training trains on and exports hold.

    An item whose example was deleted is named by its item id ("item 12")."""
    system_prompt = snapshot.system_prompt
    rows = snapshot.items.filter(split=split).order_by("id").values_list("id", "example_id", "messages")
    ids = [example_id if example_id is not None else f"item {item_id}" for item_id, example_id, _ in rows]
    return ids, [with_system_prompt(messages, system_prompt) for _, _, messages in rows]


def measured_tokens_per_second(base_model: BaseModel) -> tuple[float, str]:
    """Throughput for pre-flight estimates: the latest succeeded run of ``base_model`` that measured
    it, else settings.TRAINING_ESTIMATE_TOKENS_PER_SECOND. Returns (tokens/s, where it came from)."""
    run = (TrainingRun.objects.filter(base_model=base_model, status=JobStatus.SUCCEEDED, tokens_per_second__gt=0)
           .order_by("-finished_at").first())
    if run is not None:
        return run.tokens_per_second, f"training run {run.pk}"
    return settings.TRAINING_ESTIMATE_TOKENS_PER_SECOND, "FTPLATFORM_ESTIMATE_TOKENS_PER_SECOND (no run measured yet)"


def preflight_training_run(snapshot: Snapshot, base_model: BaseModel, hyperparameters: dict | None = None,
                           *, by) -> dict:
    """The pre-flight report of a run that is not created (ftml.preflight), as a dict.

    Raises:
        NotAllowed: ``by`` lacks 'training.add_trainingrun'.
        ServiceError: the snapshot is not approved or has no train examples, a hyperparameter
            is invalid, or the base model cannot be loaded (the message names it).
    """
    require_permission(by, "training.add_trainingrun", "start training runs")
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
        raise ServiceError(f"hyperparameters: {exc}") from exc
    from ftml.base_models import BaseModelError
    from ftml.preflight import preflight

    ids, train = snapshot_conversations(snapshot, Split.TRAIN)
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
                       timeout_seconds: int | None = None) -> TrainingRun:
    """Run the pre-flight checks, create a queued TrainingRun and enqueue its job after commit.

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
    report = preflight_training_run(snapshot, base_model, hyperparameters, by=by)
    if report["blocking"]:
        raise ServiceError("pre-flight: " + "; ".join(report["blocking"]))
    run = TrainingRun.objects.create(
        snapshot=snapshot, base_model=base_model, hyperparameters=report["hyperparameters"],
        seed=report["hyperparameters"]["seed"], created_by=by, preflight=report, timeout_seconds=timeout,
        total_steps=report["estimated_steps"], system_prompt=snapshot.system_prompt,
        prompt_prefix=report["prompt_prefix"],
    )
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


MAX_FEW_SHOT = 16


def few_shot_examples(snapshot: Snapshot, k: int, *, seed: int = 0) -> list[list[dict]]:
    """``k`` worked examples for a few-shot prompt: conversations of ``k`` distinct inputs drawn
    (random.Random(seed), over the inputs in item order) from the snapshot's *train* split only, so
    that no validation or test input is ever shown to the model it evaluates.

    Raises ServiceError: k outside 1..MAX_FEW_SHOT, a snapshot not approved, or fewer distinct
    train inputs than k.
    """
    import random

    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_FEW_SHOT:
        raise ServiceError(f"few_shot_k must be an integer from 1 to {MAX_FEW_SHOT}, got {k!r}")
    if snapshot.status != SnapshotStatus.APPROVED:
        raise ServiceError(f"snapshot {snapshot.pk} is {snapshot.status}; few-shot examples come from approved "
                           "snapshots only")
    by_input = {}
    for input_hash, messages in snapshot.items.filter(split=Split.TRAIN).order_by("id").values_list(
            "input_hash", "messages"):
        by_input.setdefault(input_hash, messages)
    if len(by_input) < k:
        raise ServiceError(f"snapshot {snapshot.pk} has {len(by_input)} distinct train inputs; few_shot_k is {k}")
    return random.Random(seed).sample(list(by_input.values()), k)


def prompted_model_version(base_model: BaseModel, system_prompt: str,
                           few_shot: list[list[dict]] | None = None, *, by) -> tuple[ModelVersion, bool]:
    """The ModelVersion for ``base_model`` answering with ``system_prompt`` and, optionally, the
    ``few_shot`` worked examples (few_shot_examples) before every input: (version, created).

    One row per base model, prompt and set of examples, so every evaluation of "the prompted base"
    is comparable. Raises NotAllowed when ``by`` lacks 'training.add_modelversion' (even when the
    version exists: the API, the evaluate command and the demo all ask for it this way); ServiceError
    for a prompt a text column cannot store, or examples that are not conversations ending in an
    assistant answer (the message names the example).
    """
    import hashlib
    import json

    from curation.formats import FormatError, validate_messages

    require_permission(by, "training.add_modelversion", "add model versions")
    try:
        check_json_value(system_prompt)
    except ValueError as exc:
        raise ServiceError(f"system_prompt: {exc}") from exc
    shots = []
    for number, shot in enumerate(few_shot or [], start=1):
        try:
            shots.append(validate_messages(shot))
        except FormatError as exc:
            raise ServiceError(f"few-shot example {number}: {exc}") from exc
    key = hashlib.sha256(json.dumps(shots, sort_keys=True).encode()).hexdigest() if shots else ""
    identity = {"kind": ModelVersionKind.PROMPTED_BASE, "base_model": base_model, "system_prompt": system_prompt,
                "few_shot_key": key}
    name = f"{base_model.name} (prompted{f', {len(shots)}-shot' if shots else ''})"
    try:
        with transaction.atomic():
            return ModelVersion.objects.get_or_create(**identity, defaults={"name": name, "few_shot": shots})
    except IntegrityError:  # created concurrently by another request
        return ModelVersion.objects.get(**identity), False


def _check_base_url(base_url: str) -> None:
    """An http(s) URL with a host (and a valid port), no spaces, no credentials, no query: what the
    worker's client can call. Raises ServiceError naming base_url."""
    from urllib.parse import urlsplit

    example = "an http(s) URL such as http://vllm:8000/v1"
    try:
        parts = urlsplit(base_url or "")
        _ = parts.port  # raises ValueError for a port that is not a number from 0 to 65535
    except ValueError as exc:
        raise ServiceError(f"base_url must be {example}, got {base_url!r} ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in base_url):
        raise ServiceError(f"base_url must be {example}, got {base_url!r}")
    if parts.username is not None or parts.password is not None:
        raise ServiceError("base_url must not carry credentials (user:password@): the key is read from the "
                           "variable named by api_key_env, never stored")
    if parts.query or parts.fragment:
        raise ServiceError(f"base_url must not have a query or fragment (the client appends paths to it), "
                           f"got {base_url!r}")


def _remote_base_model_name(remote_model: str, base_url: str) -> str:
    """The BaseModel name of an endpoint's model: "<model> @ <url>", shortened with a digest of the whole
    when longer than the column (plain truncation made different endpoints share one base model)."""
    import hashlib

    name = f"{remote_model} @ {base_url}"
    if len(name) <= 200:
        return name
    return f"{name[:187]}… {hashlib.sha256(name.encode()).hexdigest()[:10]}"


@transaction.atomic
def remote_model_version(*, name: str, base_url: str, remote_model: str, api_key_env: str = "",
                         system_prompt: str = "", by, prices: dict | None = None) -> ModelVersion:
    """A ModelVersion answering through an OpenAI-compatible chat-completions endpoint (vLLM,
    Ollama, a hosted API), e.g. the prompted large model a fine-tune is compared with.

    The API key is never stored: ``api_key_env`` names the environment variable the evaluation
    worker reads it from. ``prices``: price_per_million_input_tokens / _output_tokens (and/or
    price_per_gpu_hour for a self-hosted server), non-negative numbers. Nothing is written when a
    check fails.

    Raises:
        NotAllowed: ``by`` lacks 'training.add_modelversion'.
        ServiceError: a URL that is not http(s) with a host (or carries credentials or a query), an
            empty or too long model name, a variable name that is not one (e.g. a pasted key), or a
            bad price; the message names the field.
    """
    import re

    require_permission(by, "training.add_modelversion", "add model versions")
    try:
        check_json_value([name, base_url, remote_model, api_key_env, system_prompt])
    except ValueError as exc:
        raise ServiceError(str(exc)) from exc
    _check_base_url(base_url)
    if not (remote_model or "").strip():
        raise ServiceError("remote_model: the model name the endpoint serves is required")
    for field_name, value, limit in (("name", name, 200), ("base_url", base_url, 500),
                                     ("remote_model", remote_model, 200)):
        if len(value or "") > limit:
            raise ServiceError(f"{field_name}: at most {limit} characters, got {len(value)}")
    if api_key_env and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,99}", api_key_env):
        raise ServiceError("api_key_env must be the NAME of an environment variable (e.g. OPENAI_API_KEY), "
                           "never the key itself")
    values = checked_prices(prices)
    base, _ = BaseModel.objects.get_or_create(
        name=_remote_base_model_name(remote_model, base_url),
        defaults={"source_kind": BaseModelSource.REMOTE, "source": base_url})
    suffix = " (API)"
    return ModelVersion.objects.create(
        name=name or f"{remote_model[:200 - len(suffix)]}{suffix}", kind=ModelVersionKind.OPENAI_COMPATIBLE,
        base_model=base, base_url=base_url, remote_model=remote_model, api_key_env=api_key_env,
        system_prompt=system_prompt, **values)


PRICE_FIELDS = ("price_per_gpu_hour", "price_per_million_input_tokens", "price_per_million_output_tokens")
MAX_PRICE = 1e9


def checked_prices(prices: dict | None) -> dict:
    """``prices`` ({price field: number or None}) checked: known fields, each None (no price) or a
    number from 0 to below MAX_PRICE (1e9; reports multiply prices, and a 1e308 made them overflow).
    Returns them as a new dict. Raises ServiceError naming the field."""
    values = {}
    for field_name, value in (prices or {}).items():
        if field_name not in PRICE_FIELDS:
            raise ServiceError(f"unknown price {field_name!r}; known: {', '.join(PRICE_FIELDS)}", field=field_name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not 0 <= value < MAX_PRICE):
            raise ServiceError(f"{field_name} must be a non-negative number below {MAX_PRICE:g}, got {value!r}",
                               field=field_name)
        values[field_name] = value
    return values


@transaction.atomic
def update_model_version(version: ModelVersion, *, by, name: str | None = None,
                         prices: dict | None = None) -> ModelVersion:
    """Rename a model version and/or set its prices (``prices`` as checked_prices: a None clears a
    price). What answered an evaluation (kind, base model, adapter, prompt, endpoint) never changes.

    Raises:
        NotAllowed: ``by`` lacks 'training.change_modelversion' (engineers hold it).
        ServiceError: an empty or too long name, or a bad price; nothing is written then.
    """
    require_permission(by, "training.change_modelversion", "change model versions")
    values = checked_prices(prices)
    if name is not None:
        if not name.strip() or len(name) > 200:
            raise ServiceError(f"name: 1 to 200 characters, got {len(name.strip())}")
        values["name"] = name
    if values:
        ModelVersion.objects.filter(pk=version.pk).update(**values)
        version.refresh_from_db()
    return version
