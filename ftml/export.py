"""Merging a LoRA adapter into its base model's weights, and checking the merge changed no answer.

A merged folder is a plain transformers model (no peft needed to load it) that answers as
base + adapter: ``W' = W + (lora_alpha / r) * B @ A`` for every adapted linear layer
(Hu et al. 2021, "LoRA", section 4.1; peft ``LoraModel.merge_and_unload``).
"""
import os
import shutil
import tempfile
from pathlib import Path


def export_merged(base_model_dir: Path, adapter_dir: Path, output_dir: Path) -> Path:
    """Write base + LoRA adapter, merged, as a standalone Hugging Face model folder.

    The base model is loaded in float32 on CPU, the adapter applied with peft
    (``PeftModel.from_pretrained``) and folded in (``merge_and_unload``); the merged model
    (``config.json``, ``generation_config.json``, ``model.safetensors``, float32) and the
    adapter's tokenizer (the base model's when the adapter folder has none) are saved to a
    staging folder beside ``output_dir`` and renamed into place, so ``output_dir`` either
    holds a complete model or does not exist.

    Args:
        base_model_dir: Hugging Face folder of the base model (config.json, weights, tokenizer).
        adapter_dir: peft adapter folder (adapter_config.json, adapter_model.safetensors).
        output_dir: where the merged model goes; must not exist. Its parent is created.

    Returns:
        ``output_dir``.
    Raises:
        FileExistsError: ``output_dir`` already exists (nothing is touched).
        FileNotFoundError: ``base_model_dir`` has no config.json or ``adapter_dir`` no adapter_config.json.
        OSError, ValueError, RuntimeError, safetensors.SafetensorError: from transformers/peft/safetensors
            for damaged or mismatched weights; the staging folder is removed and nothing is left at
            ``output_dir``.
    """
    base_model_dir, adapter_dir, output_dir = Path(base_model_dir), Path(adapter_dir), Path(output_dir)
    _refuse_existing(output_dir)
    if not (base_model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{base_model_dir} is not a Hugging Face model folder (no config.json)")
    if not (adapter_dir / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter_dir} is not a peft adapter folder (no adapter_config.json)")
    from transformers import AutoTokenizer

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}-", dir=output_dir.parent))
    try:
        merged = _load_with_adapter(base_model_dir, adapter_dir).merge_and_unload()
        merged.save_pretrained(staging)
        has_tokenizer = (adapter_dir / "tokenizer_config.json").is_file()
        AutoTokenizer.from_pretrained(adapter_dir if has_tokenizer else base_model_dir).save_pretrained(staging)
        _refuse_existing(output_dir)  # someone may have written it while we merged
        os.rename(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output_dir


def max_logit_difference(base_model_dir: Path, adapter_dir: Path, merged_dir: Path, texts: list[str]) -> float:
    """Largest absolute difference between the logits of base + adapter (unmerged, through peft)
    and of the merged model, over every position and vocabulary entry of every text.

    Both models run in float32 on CPU in eval mode, one text at a time, tokenized with the
    merged folder's tokenizer (with its special tokens). Logits have shape
    (1, tokens, vocabulary) per text and are unnormalised log-probabilities (nats, up to a
    constant per position); a faithful merge differs only by float32 rounding (about 1e-6).

    Returns:
        max |logits_unmerged - logits_merged| (a float >= 0).
    Raises:
        ValueError: ``texts`` is empty, a text encodes to no token, or the two models' vocabularies differ.
        OSError: a folder is missing or not a model/adapter folder.
    """
    if not texts:
        raise ValueError("max_logit_difference needs at least one text")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    unmerged = _load_with_adapter(Path(base_model_dir), Path(adapter_dir)).eval()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
    largest = 0.0
    with torch.inference_mode():
        for index, text in enumerate(texts):
            encoded = tokenizer(text, return_tensors="pt")
            if encoded["input_ids"].shape[1] == 0:
                raise ValueError(f"text {index} encodes to no token")
            expected, actual = unmerged(**encoded).logits, merged(**encoded).logits
            if expected.shape != actual.shape:
                raise ValueError(f"text {index}: logits of shape {tuple(actual.shape)} from the merged model, "
                                 f"{tuple(expected.shape)} from base + adapter")
            largest = max(largest, float((expected - actual).abs().max()))
    return largest


def _load_with_adapter(base_model_dir: Path, adapter_dir: Path):
    """PeftModel of base (float32, CPU) + adapter, not merged (ftml.inference.load_with_adapter)."""
    from .inference import load_with_adapter

    return load_with_adapter(base_model_dir, adapter_dir)[0]


def _refuse_existing(output_dir: Path) -> None:
    if output_dir.exists() or output_dir.is_symlink():
        raise FileExistsError(f"{output_dir} already exists; remove it or choose another output folder "
                              "(an export never overwrites)")
