"""Base models: the default one, the local folder a GGUF source is dequantized into once, their
tokenizers' token limits, and the identity and facts a run records about them."""
import functools
from pathlib import Path

from django.conf import settings

from curation.quality import TokenLimits
from ftml.config import DEFAULT_CONFIG
from ftplatform.errors import ServiceError, without_server_paths

from .models import BaseModel


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
