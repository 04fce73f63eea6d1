"""Loading a model version and generating answers.

Two ways to generate, both greedy and returning ``Generation`` per input in input order:

* ``generate_greedy``: one request at a time (batch size 1). Its ``latency_ms`` is honest
  request latency: the wall time of that input's ``model.generate`` call.
* ``generate_batched``: inputs sorted by prompt length, left-padded into batches, one
  ``model.generate`` per batch with the KV cache. Much higher throughput; its ``latency_ms`` is
  throughput-amortised (the batch's wall time divided by its size), not what one request waits.
"""
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
    # Mean log-probability (natural log) of the generated tokens, EOS included, under the
    # distribution greedy decoding chose them from (the model's, see _GreedyLogprobs): a confidence
    # in (-inf, 0], the higher the surer. None when no token was generated.
    mean_logprob: float | None = None


def load_with_adapter(base_model_dir: Path, adapter_dir: Path):
    """(PeftModel of base (float32, CPU) + adapter, not merged; the adapter's tokenizer).

    When training added a pad token (ftml.train.load_tokenizer), the adapter holds
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


def _pad_token_id(tokenizer) -> int:
    """The id generate() writes after a row has finished. It may equal EOS (SmolLM2): outputs are
    cut at the first EOS and the attention mask, not the pad id, tells padding from text."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _finish_row(tokenizer, new_tokens, step_logprobs, *, prompt_tokens: int, latency_ms: float) -> Generation:
    """A Generation from one row's generated ids and the log-probability of each (1-D tensors;
    ``step_logprobs`` may be longer): cut after the first EOS (what follows is padding of a finished row)."""
    ids = new_tokens.tolist()
    if tokenizer.eos_token_id in ids:
        ids = ids[:ids.index(tokenizer.eos_token_id) + 1]
    return Generation(
        text=tokenizer.decode(ids, skip_special_tokens=True).strip(),
        latency_ms=latency_ms,
        prompt_tokens=prompt_tokens,
        output_tokens=len(ids),
        mean_logprob=float(step_logprobs[:len(ids)].double().mean()) if ids else None,
    )


class _GreedyLogprobs:
    """A logits processor, last in generate()'s list, that records each step's log-probability of
    the greedy choice: max(scores) - logsumexp(scores), one (batch,) tensor per step.

    Greedy takes the argmax of exactly the scores this processor returns (unchanged), so the
    recorded value is the chosen token's log-probability without knowing which token it is, and
    memory stays O(batch) per step. (generate()'s output_scores / output_logits would keep a
    (batch, vocab) float32 tensor per step: 16 rows x 49,152 vocab x 4 B x 512 steps = 1.6 GB.)
    The scores are the model's logits after generate()'s logits processors; greedy decoding of our
    models adds none (do_sample=False drops temperature/top-k/top-p), so this is the model's own
    distribution. A generation_config with e.g. repetition_penalty would make it the penalised one.
    """

    def __init__(self):
        self.steps = []

    def __call__(self, input_ids, scores):
        import torch

        scores32 = scores.float()
        self.steps.append(scores32.max(dim=-1).values - torch.logsumexp(scores32, dim=-1))
        return scores

    def per_row(self, batch: int):
        """(batch, steps) log-probabilities on the CPU."""
        import torch

        if not self.steps:
            return torch.zeros(batch, 0)
        return torch.stack(self.steps, dim=1).cpu()


def _generate(model, tokenizer, input_ids, attention_mask, max_new_tokens: int):
    """(sequences (batch, prompt + new), (batch, steps) log-probabilities of the new tokens)."""
    import torch

    recorder = _GreedyLogprobs()
    with torch.inference_mode():
        sequences = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            use_cache=True,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=_pad_token_id(tokenizer),
            logits_processor=[recorder],
        )
    return sequences, recorder.per_row(input_ids.shape[0])


def generate_greedy(model, tokenizer, inputs: Iterable[list[dict]], max_new_tokens: int = 64) -> Iterator[Generation]:
    """Greedy-decode an answer for each input conversation (messages before the target).

    Stops at the tokenizer's EOS (the chat template's end-of-turn token) or after
    ``max_new_tokens``. Latency is wall time per request in milliseconds, batch size 1: use this
    when the latency figure must be a request's. ``mean_logprob`` as in ``Generation``.
    """
    for messages in inputs:
        prompt = render_prompt(tokenizer, messages)
        encoded = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
        started = time.perf_counter()
        sequences, logprobs = _generate(model, tokenizer, encoded["input_ids"], encoded["attention_mask"],
                                        max_new_tokens)
        latency_ms = (time.perf_counter() - started) * 1000
        new_tokens = sequences[0, encoded["input_ids"].shape[1]:].cpu()
        yield _finish_row(tokenizer, new_tokens, logprobs[0],
                          prompt_tokens=int(encoded["input_ids"].shape[1]), latency_ms=latency_ms)


def generate_batched(model, tokenizer, inputs: Iterable[list[dict]], *, batch_size: int = 16,
                     max_new_tokens: int = 64) -> list[Generation]:
    """Greedy answers for many input conversations, batched: one ``Generation`` per input, in input order.

    Prompts are rendered with the chat template (``render_prompt``), sorted by token length (so a
    batch holds prompts of similar length and little padding) and left-padded; each batch is one
    ``model.generate`` call (greedy, KV cache). The attention mask marks the padding and generate()
    derives position ids from it, so each row decodes as it would alone, up to float rounding
    (padded matrix shapes can change the last bits of a logit; a near-tie can then flip one greedy
    choice). The pad id is set explicitly; it may be EOS (SmolLM2), which is harmless: rows are cut
    after their first EOS. A batch runs until its longest answer ends (finished rows are carried
    along as padding), which is another reason to group inputs of similar length.

    ``latency_ms`` is throughput-amortised: the batch's wall time divided by the number of inputs
    in it, not the time a single request would wait. Use ``generate_greedy`` for honest latency.
    ``output_tokens`` counts the answer up to and including EOS; ``mean_logprob`` as in ``Generation``.
    """
    import torch

    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    encoded = [tokenizer(render_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"]
               for messages in inputs]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # stable: ties keep input order
    pad_id = _pad_token_id(tokenizer)
    results: list[Generation | None] = [None] * len(encoded)
    for start in range(0, len(order), batch_size):
        indexes = order[start:start + batch_size]
        width = max(len(encoded[i]) for i in indexes)
        input_ids = torch.tensor([[pad_id] * (width - len(encoded[i])) + encoded[i] for i in indexes],
                                 dtype=torch.long, device=model.device)
        attention_mask = torch.tensor([[0] * (width - len(encoded[i])) + [1] * len(encoded[i]) for i in indexes],
                                      dtype=torch.long, device=model.device)
        started = time.perf_counter()
        sequences, logprobs = _generate(model, tokenizer, input_ids, attention_mask, max_new_tokens)
        latency_ms = (time.perf_counter() - started) * 1000 / len(indexes)
        new_tokens = sequences[:, width:].cpu()
        for row, index in enumerate(indexes):
            results[index] = _finish_row(tokenizer, new_tokens[row], logprobs[row],
                                         prompt_tokens=len(encoded[index]), latency_ms=latency_ms)
    return results
