"""Creating, cancelling and finishing training runs; base models and model versions."""
import functools

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from curation.choices import SnapshotStatus
from curation.formats import check_json_value
from curation.models import Snapshot
from curation.quality import TokenLimits
from ftplatform import queues
from ftplatform.errors import Conflict, NotAllowed, ServiceError
from ftplatform.roles import require_permission

from .choices import FINISHED_STATUSES, EventKind, ModelVersionKind, RunStatus
from .engine.config import DEFAULT_CONFIG, LoraConfig
from .models import BaseModel, ModelVersion, TrainingEvent, TrainingRun


def default_base_model() -> BaseModel:
    """The configured default base model row (settings.DEFAULT_BASE_MODEL), created on first use."""
    spec = dict(settings.DEFAULT_BASE_MODEL)
    model, _ = BaseModel.objects.get_or_create(name=spec.pop("name"), defaults=spec)
    return model


def base_model_folder(base_model: BaseModel):
    """Local HF folder for a base model (dequantizing a GGUF source once into the artifacts cache)."""
    from .engine.base_models import materialize

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

    The model folder comes from base_model_folder (a GGUF source is dequantized once, about
    20 s for SmolLM2-135M; training needs that folder anyway); tokenizers are cached per process.

    Raises:
        ServiceError: the model cannot be found or loaded (the message names it).
    """
    from .engine.base_models import BaseModelError

    try:
        tokenizer, context = _tokenizer_and_context(str(base_model_folder(base_model)))
    except (BaseModelError, OSError, ValueError) as exc:
        raise ServiceError(f"cannot load the tokenizer of base model {base_model.name!r} for the quality gate: "
                           f"{exc}") from exc
    return TokenLimits(tokenizer, max_seq_length or DEFAULT_CONFIG.max_seq_length, context, base_model.name)


def snapshot_token_limits() -> TokenLimits:
    """settings.SNAPSHOT_TOKENIZER_LOADER's default: settings.SNAPSHOT_BASE_MODEL (a BaseModel spec
    like DEFAULT_BASE_MODEL; no row is written) at training's default max_seq_length."""
    return base_model_token_limits(BaseModel(**settings.SNAPSHOT_BASE_MODEL))


def record_base_model_info(base_model: BaseModel, folder) -> None:
    """Fill chat template, context length and parameter count the first time a model is loaded."""
    if base_model.parameter_count:
        return
    from .engine.base_models import describe

    info = describe(folder)
    BaseModel.objects.filter(pk=base_model.pk).update(
        chat_template=info.chat_template, context_length=info.context_length, parameter_count=info.parameter_count
    )


@transaction.atomic
def start_training_run(snapshot: Snapshot, base_model: BaseModel, *, by, hyperparameters: dict | None = None
                       ) -> TrainingRun:
    """Validate, create a queued TrainingRun and enqueue its job after commit.

    Raises:
        NotAllowed: ``by`` lacks 'training.add_trainingrun' (engineers hold it).
        ServiceError: the snapshot is not approved, has no train examples, or a
            hyperparameter is invalid (the message names it).
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
    run = TrainingRun.objects.create(
        snapshot=snapshot, base_model=base_model, hyperparameters=config.to_dict(), seed=config.seed, created_by=by
    )
    queues.enqueue_job_row(run, "training", "training.jobs.run_training")
    return run


@transaction.atomic
def cancel_training_run(run: TrainingRun, *, by) -> TrainingRun:
    """Cancel a queued run at once, or ask a running one to stop at its next step.

    Raises NotAllowed (neither the creator nor holding 'training.change_trainingrun') or Conflict.
    """
    run = TrainingRun.objects.select_for_update().get(pk=run.pk)
    if not (by.pk == run.created_by_id or by.has_perm("training.change_trainingrun")):
        raise NotAllowed(f"training run {run.pk}: only its creator or an engineer can cancel it")
    if run.status in FINISHED_STATUSES:
        raise Conflict(f"training run {run.pk} has already {run.status}")
    if run.status == RunStatus.QUEUED:
        run.status = RunStatus.CANCELLED
        run.finished_at = timezone.now()
    run.cancel_requested = True
    run.save(update_fields=["status", "finished_at", "cancel_requested"])
    log_event(run, EventKind.LOG, f"cancel requested by {by}")
    return run


def log_event(run: TrainingRun, kind: str, message: str = "", *, step: int | None = None, payload=None):
    return TrainingEvent.objects.create(run=run, kind=kind, message=message, step=step, payload=payload or {})


def prompted_model_version(base_model: BaseModel, system_prompt: str) -> tuple[ModelVersion, bool]:
    """The ModelVersion for ``base_model`` answering with ``system_prompt``: (version, created).

    One row per base model and prompt, so every evaluation of "the prompted base" is comparable.
    Raises ServiceError for a prompt a text column cannot store.
    """
    try:
        check_json_value(system_prompt)
    except ValueError as exc:
        raise ServiceError(f"system_prompt: {exc}") from exc
    try:
        with transaction.atomic():
            return ModelVersion.objects.get_or_create(
                kind=ModelVersionKind.PROMPTED_BASE,
                base_model=base_model,
                system_prompt=system_prompt,
                defaults={"name": f"{base_model.name} (prompted)"},
            )
    except IntegrityError:  # created concurrently by another request
        return ModelVersion.objects.get(kind=ModelVersionKind.PROMPTED_BASE, base_model=base_model,
                                        system_prompt=system_prompt), False
