"""Turning chat conversations into token ids and labels for completion-only loss."""
from dataclasses import dataclass

IGNORE_INDEX = -100  # PyTorch cross-entropy's ignore_index: positions that are not trained


@dataclass
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]
    truncated: bool

    @property
    def target_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def render_prompt(tokenizer, input_messages: list[dict]) -> str:
    """The chat-template text a model sees before it answers (ends with the assistant header)."""
    return tokenizer.apply_chat_template(input_messages, tokenize=False, add_generation_prompt=True)


def tokenize_for_training(tokenizer, messages: list[dict], max_seq_length: int) -> TokenizedExample:
    """Tokenize a conversation whose last message is the assistant target.

    The prompt (every message before the target, rendered with the chat template and the
    assistant header) gets label -100; the target's tokens, including the template's
    end-of-turn token (the EOS for ChatML models such as SmolLM2), are labels, so the model
    learns to stop; whatever the template puts after that last EOS (a newline) is dropped.
    Prompt and target are tokenized separately, so the boundary is exact.
    Sequences longer than ``max_seq_length`` are cut at the right.

    Raises:
        ValueError: the chat template does not render the prompt as a prefix of the
            whole conversation (the template cannot be used for completion-only loss).
    """
    prompt_text = render_prompt(tokenizer, messages[:-1])
    full_text = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full_text.startswith(prompt_text):
        raise ValueError("the chat template does not render the prompt as a prefix of the conversation")
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    target_ids = tokenizer(full_text[len(prompt_text):], add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    if eos in target_ids:  # drop the template's separator after the final end-of-turn token
        target_ids = target_ids[: len(target_ids) - target_ids[::-1].index(eos)]
    input_ids = prompt_ids + target_ids
    labels = [IGNORE_INDEX] * len(prompt_ids) + list(target_ids)
    truncated = len(input_ids) > max_seq_length
    return TokenizedExample(input_ids[:max_seq_length], labels[:max_seq_length], truncated)
