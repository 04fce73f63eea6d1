"""Exporting a LoRA model version as a Hugging Face Hub model repository: the adapter, whose
``adapter_config.json`` names the base model by its Hub id (so ``PeftModel.from_pretrained`` loads it on any
machine), and a model card whose front matter carries the evaluation results as the Hub's ``model-index``.

The results come from the evaluation app, which training must not import: evaluation registers a provider
here (``register_eval_results``, called from its AppConfig.ready) and the export asks every provider.
"""
import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings

from ftplatform.errors import Conflict, ServiceError
from ftplatform.roles import require_permission

from .exports import EXPORT_RECORD_FILE, _require_lora_version, _write_record
from .models import ModelVersion

ADAPTER_CONFIG = "adapter_config.json"
# Providers of a model version's evaluation results: provider(version) -> list of ftml.model_card
# "eval_results" entries. The evaluation app adds its finished eval runs (evaluation.model_cards).
EVAL_RESULT_PROVIDERS: list = []


def register_eval_results(provider) -> None:
    """Have every Hub export (and ``eval_results``) include ``provider(version)``'s results."""
    if provider not in EVAL_RESULT_PROVIDERS:
        EVAL_RESULT_PROVIDERS.append(provider)


def eval_results(version: ModelVersion) -> list[dict]:
    """The registered providers' evaluation results of ``version``, in ftml.model_card's ``eval_results`` shape."""
    return [result for provider in EVAL_RESULT_PROVIDERS for result in provider(version)]


def export_hub_adapter(version: ModelVersion, *, by, output_dir: Path | None = None, hub_id: str = "") -> Path:
    """Write a LoRA model version as a Hub model repo folder: the adapter's files, its ``adapter_config.json``
    with ``base_model_name_or_path`` set to the base model's Hub id, a model card (``README.md``: front matter
    with ``base_model``, licence, provenance and ``model-index`` from the finished evaluations) and
    ``ftplatform_export.json`` (the version, the base model's local folder the adapter was trained on, the eval
    runs, who and when). The folder appears (renamed from staging) only when complete.

    Args:
        version: a ``lora_adapter`` ModelVersion made by a training run.
        by: the user asking; needs ``training.view_modelversion`` (engineers).
        output_dir: the folder to create (must not exist); default ``ARTIFACTS_ROOT/hub/model-version-<id>``.
        hub_id: the base model's Hub repo id; default ``BaseModel.hub_id``.

    Raises:
        NotAllowed: ``by`` lacks the permission.
        ServiceError: not a LoRA version of a training run; no Hub id (field ``hub_id``) or one that is not a
            repo id; the adapter folder cannot be read.
        Conflict: ``output_dir`` already exists.
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    require_permission(by, "training.view_modelversion", "export adapters for the Hub")
    _require_lora_version(version, "exported for the Hub")
    run = version.training_run
    if run is None:
        raise ServiceError(f"model version {version.pk} has no training run: its card would have no training data")
    hub_id = (hub_id or version.base_model.hub_id).strip()
    if not hub_id:
        raise ServiceError(f"base model {version.base_model.name!r} records no Hugging Face Hub id; set its hub_id "
                           "(admin: Base models) or give one, e.g. HuggingFaceTB/SmolLM2-135M-Instruct",
                           field="hub_id")
    try:
        validate_repo_id(hub_id)
    except HFValidationError as exc:
        raise ServiceError(f"hub_id {hub_id!r} is not a Hub repo id (owner/name): {exc}", field="hub_id") from None
    output_dir = Path(output_dir) if output_dir else settings.ARTIFACTS_ROOT / "hub" / f"model-version-{version.pk}"
    if output_dir.exists() or output_dir.is_symlink():
        raise Conflict(f"{output_dir} already exists; remove it or choose another output folder "
                       "(an export never overwrites)")
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}-", dir=output_dir.parent))
    try:
        folder = staging / "export"
        try:
            shutil.copytree(version.adapter_path, folder,
                            ignore=shutil.ignore_patterns("README.md", EXPORT_RECORD_FILE))
            config = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ServiceError(f"cannot read the adapter of model version {version.pk}: {exc}") from exc
        local_base = config.get("base_model_name_or_path")
        config["base_model_name_or_path"] = hub_id
        (folder / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        results = eval_results(version)
        from ftml.model_card import write_model_card

        write_model_card(folder, hub_card_info(version, hub_id, local_base, results))
        _write_record(folder / EXPORT_RECORD_FILE, {
            "format": "hub_adapter",
            "model_version_id": version.pk,
            "base_model": version.base_model.name,
            "hub_id": hub_id,
            "base_model_local_path": local_base,
            "adapter_dir": version.adapter_path,
            "eval_results": results,
            "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "exported_by": by.get_username(),
        })
        if output_dir.exists() or output_dir.is_symlink():  # someone may have written it meanwhile
            raise Conflict(f"{output_dir} already exists; remove it or choose another output folder")
        os.rename(folder, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output_dir


def hub_card_info(version: ModelVersion, hub_id: str, local_base: str | None, results: list[dict]) -> dict:
    """ftml.model_card's info for a Hub export of ``version``: the training run's facts as its card recorded
    them at the end of training, with the base model named by ``hub_id`` and ``results`` as model-index."""
    run = version.training_run
    snapshot, base = run.snapshot, version.base_model
    identity = run.environment.get("base_model") or {}
    source = f"{identity.get('source_kind', base.source_kind)} {identity.get('source', base.source)} " \
             f"{base.gguf_file}".strip()
    return {
        "model_name": version.name, "base_model": hub_id, "base_model_path": hub_id,
        "base_model_local_path": local_base, "base_model_source": source,
        "base_model_sha256": identity.get("sha256") or None, "licence": base.licence,
        "dataset_name": snapshot.dataset.name, "snapshot_id": snapshot.pk, "snapshot_sha256": snapshot.content_hash,
        "split_counts": snapshot.split_counts, "hyperparameters": run.hyperparameters, "seed": run.seed,
        "trained_tokens": run.trained_tokens, "wall_seconds": run.metrics.get("wall_seconds"),
        "environment": {key: value for key, value in run.environment.items()  # what the engine recorded
                        if isinstance(value, str) and key != "snapshot_sha256" and not key.startswith("mlflow")},
        "metrics": run.metrics, "task_description": snapshot.dataset.description or None,
        "system_prompt": snapshot.system_prompt or None, "prompt_prefix": run.prompt_prefix or None,
        "training_run_id": run.pk, "model_version_id": version.pk, "eval_results": results,
    }
