"""RQ entry point for training: load rows, call the engine, write results."""
import logging

from django.conf import settings
from django.db import transaction

from curation.choices import Split
from curation.formats import with_system_prompt
from ftplatform import jobrows

from .choices import EventKind, ModelVersionKind, RunStatus
from .models import ModelVersion, TrainingRun
from .services import base_model_folder, log_event, record_base_model_info

logger = logging.getLogger(__name__)


def prepare_torch():
    """Set torch threads (cores / training workers) and quiet the library's loading bars and notices."""
    import warnings

    import torch
    from transformers.utils import logging as transformers_logging

    torch.set_num_threads(settings.TORCH_THREADS)
    transformers_logging.disable_progress_bar()  # weight-loading bars; the engine draws its own step bar
    transformers_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")


def run_training(run_id: int) -> None:
    """Train the LoRA adapter of TrainingRun ``run_id`` and create its ModelVersion.

    The run row records the outcome: succeeded, failed (with the error) or cancelled.
    """
    from .engine.config import LoraConfig
    from .engine.train import TrainingCancelled, train_lora

    run = jobrows.claim(TrainingRun, run_id, select_related=("snapshot__dataset", "base_model"))
    if run is None:
        return  # cancelled before it started, or already picked up
    try:
        prepare_torch()
        folder = base_model_folder(run.base_model)
        record_base_model_info(run.base_model, folder)
        system_prompt = run.snapshot.dataset.system_prompt
        items = run.snapshot.items.order_by("id")

        def conversations(split):
            return [with_system_prompt(m, system_prompt)
                    for m in items.filter(split=split).values_list("messages", flat=True)]

        train, validation = conversations(Split.TRAIN), conversations(Split.VALIDATION)
        config = LoraConfig.from_dict(run.hyperparameters)
        output_dir = settings.ARTIFACTS_ROOT / "runs" / f"run-{run.pk}"
        log_event(run, EventKind.LOG, f"training on {len(train)} examples, base model folder {folder}")

        def on_progress(step, total, logs):
            TrainingRun.objects.filter(pk=run.pk).update(step=step, total_steps=total)
            if not logs:
                return
            payload = {k: v for k, v in logs.items() if isinstance(v, (int, float))}
            log_event(run, EventKind.METRIC, step=step, payload=payload,
                      message=", ".join(f"{k}={v:.4g}" for k, v in payload.items() if v is not None))

        def should_stop():
            return TrainingRun.objects.filter(pk=run.pk, cancel_requested=True).exists()

        result = train_lora(
            folder, train, validation, config, output_dir,
            on_progress=on_progress, should_stop=should_stop,
            on_warning=lambda message: log_event(run, EventKind.WARNING, message),
        )
    except TrainingCancelled:
        jobrows.finish(run, RunStatus.CANCELLED)
        log_event(run, EventKind.LOG, "cancelled; nothing was saved")
        return
    except Exception as exc:
        logger.exception("training run %s failed", run.pk)
        jobrows.fail(run, exc)
        log_event(run, EventKind.LOG, f"failed: {exc}")
        raise
    with transaction.atomic():
        jobrows.finish(
            run,
            RunStatus.SUCCEEDED,
            metrics={"train_loss": result.train_loss, "eval_loss": result.eval_loss,
                     "train_examples": result.train_examples, "truncated_examples": result.truncated_examples,
                     "skipped_examples": result.skipped_examples, "wall_seconds": round(result.wall_seconds, 1)},
            environment=result.environment,
            trained_tokens=result.trained_tokens,
            artifact_path=str(output_dir),
            step=result.steps,
        )
        ModelVersion.objects.create(
            name=f"{run.base_model.name} + LoRA (run {run.pk})",
            kind=ModelVersionKind.LORA_ADAPTER,
            base_model=run.base_model,
            training_run=run,
            system_prompt=system_prompt,
            adapter_path=str(result.adapter_dir),
        )
