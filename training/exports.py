"""Exporting a LoRA model version as a standalone merged model (base + adapter folded together)."""
import json
import os
import shutil
from pathlib import Path

from django.conf import settings

from ftplatform.errors import Conflict, ServiceError
from ftplatform.roles import require_permission

from .base_models import materialized_base_model_folder
from .choices import ModelVersionKind
from .models import ModelVersion

# A faithful merge differs from base + adapter by float32 rounding only (about 1e-6 on the tiny
# test model); 1e-3 leaves room for larger models' longer sums while catching a wrong merge.
MAX_LOGIT_DIFFERENCE = 1e-3
VERIFY_TEXTS = (
    "name: The Eagle; eatType: coffee shop; food: French; area: riverside.",
    "Hello! How are you today?",
)
EXPORT_RECORD_FILE = "ftplatform_export.json"


def export_merged_model(version: ModelVersion, *, by, output_dir: Path | None = None) -> Path:
    """Merge a LoRA model version's adapter into its base model and save a standalone model folder.

    The folder (``ftml.export.export_merged``: config, float32 model.safetensors,
    tokenizer) is verified before it is handed back: base + adapter (unmerged, peft) and the
    merged model run on ``VERIFY_TEXTS``, and the largest absolute logit difference must stay
    within ``MAX_LOGIT_DIFFERENCE``. The measurement, with the version, base model and adapter
    it came from, is written last to ``ftplatform_export.json`` in the folder (see
    ``read_export_record``).

    Args:
        version: a ``lora_adapter`` ModelVersion with an adapter folder.
        by: the user asking; needs ``training.view_modelversion`` (engineers).
        output_dir: where the merged model goes (must not exist); default
            ``ARTIFACTS_ROOT/merged/model-version-<id>``.

    Returns:
        The merged model folder.
    Raises:
        NotAllowed: ``by`` lacks the permission.
        ServiceError: the version is not a LoRA adapter; its base model or adapter cannot be
            loaded; or the merged model does not match base + adapter (the folder is removed).
        Conflict: ``output_dir`` already exists.
    """
    require_permission(by, "training.view_modelversion", "export merged models")
    if version.kind != ModelVersionKind.LORA_ADAPTER:
        raise ServiceError(f"model version {version.pk} is a {version.get_kind_display().lower()}, not a LoRA "
                           "adapter: only LoRA versions can be merged")
    if not version.adapter_path:
        raise ServiceError(f"model version {version.pk} has no adapter folder recorded")
    from safetensors import SafetensorError

    from ftml.export import export_merged, max_logit_difference

    output_dir = Path(output_dir) if output_dir else settings.ARTIFACTS_ROOT / "merged" / f"model-version-{version.pk}"
    adapter_dir = Path(version.adapter_path)
    try:
        base_dir = materialized_base_model_folder(version.base_model)
        export_merged(base_dir, adapter_dir, output_dir)
    except FileExistsError as exc:
        raise Conflict(str(exc)) from exc
    # RuntimeError: BaseModelError, and weights that do not fit the model; SafetensorError: a damaged file.
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise ServiceError(f"cannot merge model version {version.pk}: {exc}") from exc
    try:
        try:
            difference = max_logit_difference(base_dir, adapter_dir, output_dir, list(VERIFY_TEXTS))
        except (OSError, ValueError, RuntimeError) as exc:
            raise ServiceError(f"cannot verify the merged model of version {version.pk}: {exc}; "
                               "the export was removed") from exc
        if difference > MAX_LOGIT_DIFFERENCE:
            raise ServiceError(
                f"the merged model of version {version.pk} differs from base + adapter by up to {difference:.3g} "
                f"in the logits (allowed {MAX_LOGIT_DIFFERENCE:g}); the export was removed")
        _write_record(output_dir / EXPORT_RECORD_FILE, {
            "model_version_id": version.pk,
            "base_model": version.base_model.name,
            "base_model_dir": str(base_dir),
            "adapter_dir": str(adapter_dir),
            "max_logit_difference": difference,
            "verify_texts": list(VERIFY_TEXTS),
            "exported_by": by.get_username(),
        })
    except BaseException:
        shutil.rmtree(output_dir, ignore_errors=True)
        raise
    return output_dir


def read_export_record(merged_dir: Path) -> dict:
    """The record ``export_merged_model`` wrote into a merged folder: ``model_version_id``,
    ``base_model``, ``base_model_dir``, ``adapter_dir``, ``max_logit_difference`` (float, logits),
    ``verify_texts``, ``exported_by``.

    Raises:
        ServiceError: the folder has no record (not a verified export).
    """
    try:
        return json.loads((Path(merged_dir) / EXPORT_RECORD_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ServiceError(f"{merged_dir} holds no {EXPORT_RECORD_FILE}: not a verified export") from None


def _write_record(path: Path, record: dict) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)
