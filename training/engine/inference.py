"""Loading a model version and generating answers, one request at a time (for honest latency)."""
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .data import render_prompt


@dataclass
class Generation:
    text: str
    latency_ms: float
    prompt_tokens: int
    output_tokens: int
    mean_logprob: float | None = None


def load_with_adapter(base_model_dir: Path, adapter_dir: Path):
    """(PeftModel of base (float32, CPU) + adapter, not merged; the adapter's tokenizer).

    When training added a pad token (training.engine.train.load_tokenizer), the adapter holds
    embeddings one row longer than the base model's: the base is resized first, as in training."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter_dir = Path(adapter_dir)
    has_tokenizer = (adapter_dir / "tokenizer_config.json").is_file()
    tokenizer = AutoTokenizer.from_pretrained(adapter_dir if has_tokenizer else base_model_dir)
    model = AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=torch.float32)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    return PeftModel.from_pretrained(model, adapter_dir), tokenizer


def load_for_inference(base_model_dir: Path, adapter_dir: Path | None = None):
    """Return (model, tokenizer) in eval mode on CPU or the first GPU; the adapter is merged in when given."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if adapter_dir:
        model, tokenizer = load_with_adapter(base_model_dir, adapter_dir)
        model = model.merge_and_unload()  # merged weights answer exactly as base + adapter, at the base's speed
    else:
        tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
        model = AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=torch.float32)
    return model.to(device).eval(), tokenizer


def generate_greedy(model, tokenizer, inputs: Iterable[list[dict]], max_new_tokens: int = 64) -> Iterator[Generation]:
    """Greedy-decode an answer for each input conversation (messages before the target).

    Stops at the tokenizer's EOS (the chat template's end-of-turn token) or after
    ``max_new_tokens``. Latency is wall time per request in milliseconds, batch size 1.
    """
    import torch

    for messages in inputs:
        prompt = render_prompt(tokenizer, messages)
        encoded = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
        started = time.perf_counter()
        with torch.inference_mode():
            output = model.generate(
                **encoded,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
            )
        latency_ms = (time.perf_counter() - started) * 1000
        new_tokens = output[0, encoded["input_ids"].shape[1]:]
        yield Generation(
            text=tokenizer.decode(new_tokens, skip_special_tokens=True).strip(),
            latency_ms=latency_ms,
            prompt_tokens=int(encoded["input_ids"].shape[1]),
            output_tokens=int(new_tokens.shape[0]),
        )
