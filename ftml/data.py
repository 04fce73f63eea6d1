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


def template_messages(tokenizer, messages: list[dict]) -> list[dict]:
    """``messages`` as the chat template is given them: ``content`` "" where OpenAI's format lets a turn leave
    it out or null (an assistant turn that only calls a tool: templates read ``message['content']``), and a
    ``developer`` message (OpenAI's newer name for the system message) as a ``system`` one unless the
    template knows the developer role itself."""
    developer = "developer" in (getattr(tokenizer, "chat_template", None) or "")
    if all(isinstance(m.get("content"), str) and (developer or m.get("role") != "developer") for m in messages):
        return messages
    shown = []
    for message in messages:
        if not isinstance(message.get("content"), str):
            message = {**message, "content": ""}
        if message.get("role") == "developer" and not developer:
            message = {**message, "role": "system"}
        shown.append(message)
    return shown


def conversation_parts(conversation) -> tuple[list[dict], list[dict] | None]:
    """A training conversation as ``(messages, tools)``: a list of messages has no tools; a chat line
    ``{"messages": [...], "tools"?, "functions"?, ...}`` gives its ``tools``, or its legacy ``functions`` as
    tools (``{"type": "function", "function": f}``), or None."""
    if not isinstance(conversation, dict):
        return conversation, None
    tools = conversation.get("tools") or [{"type": "function", "function": f}
                                          for f in conversation.get("functions") or []]
    return conversation["messages"], tools or None


def template_renders_tools(tokenizer) -> bool:
    """Whether the chat template reads its ``tools`` argument (Hugging Face templates name it ``tools``);
    when it does not, tool definitions given to it are silently dropped."""
    return "tools" in (getattr(tokenizer, "chat_template", None) or "")


def render_prompt(tokenizer, input_messages: list[dict], tools: list[dict] | None = None) -> str:
    """The chat-template text a model sees before it answers (ends with the assistant header); ``tools``
    (OpenAI tool definitions) go to the template's ``tools`` argument."""
    return tokenizer.apply_chat_template(template_messages(tokenizer, input_messages), tools=tools, tokenize=False,
                                         add_generation_prompt=True)


# Stands in for a user's text, to find where the template puts it; private-use characters, which no
# template rewrites.
_USER_TEXT = "\ue000user text\ue001"


def prompt_prefix(tokenizer, system_prompt: str = "") -> str:
    """What the chat template renders before the user's text of a conversation that starts with the
    user (``system_prompt`` empty) or with ``system_prompt`` as its system message: e.g. for SmolLM2
    and no system prompt ``"<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained
    by Hugging Face<|im_end|>\n<|im_start|>user\n"``, the default system prompt its template adds.
    The whole rendering when the template drops the user's text. Raises as apply_chat_template."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    text = _render(tokenizer, [*messages, {"role": "user", "content": _USER_TEXT}])
    return text.split(_USER_TEXT, 1)[0]


def _render(tokenizer, messages: list[dict], tools: list[dict] | None = None) -> str:
    return tokenizer.apply_chat_template(template_messages(tokenizer, messages), tools=tools, tokenize=False)


def trained_spans(tokenizer, messages: list[dict], train_on: str = "last",
                  tools: list[dict] | None = None) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans ``(start, end)`` that are trained.

    A span starts after the assistant header of a trained assistant turn and ends after
    that turn's end-of-turn token (the tokenizer's EOS text, ``<|im_end|>`` for ChatML),
    so the model learns to stop; what the template writes after it (a newline) is not
    trained. ``train_on="last"`` trains the final message only; ``"all"`` every assistant
    turn. An assistant turn's OpenAI ``weight`` overrides ``train_on``: 0 is never trained,
    1 always (https://platform.openai.com/docs/guides/supervised-fine-tuning). ``tools`` go to
    the template's ``tools`` argument of every rendering. The text after the last span is
    dropped: the model never needs it.

    Raises:
        ValueError: the last message is not the assistant's, every assistant turn has weight 0,
            or the chat template does not render each prompt as a prefix of the conversation
            (then the template cannot be used for completion-only loss).
    """
    if not messages or messages[-1].get("role") != "assistant":
        raise ValueError("the last message must be the assistant's answer")
    indexes = [i for i, message in enumerate(messages)
               if message.get("role") == "assistant" and _is_trained(message, i == len(messages) - 1, train_on)]
    if not indexes:
        raise ValueError("no assistant turn is trained: every one has weight 0")
    full = _render(tokenizer, messages, tools)
    eos = tokenizer.eos_token or ""
    spans = []
    for index in indexes:
        prompt = render_prompt(tokenizer, messages[:index], tools)
        turn = full if index == len(messages) - 1 else _render(tokenizer, messages[: index + 1], tools)
        if not (full.startswith(prompt) and full.startswith(turn) and turn.startswith(prompt)):
            raise ValueError(f"the chat template does not render the prompt of message {index} "
                             "as a prefix of the conversation")
        end = turn.rfind(eos, len(prompt)) if eos else -1
        span = (len(prompt), end + len(eos) if end >= 0 else len(turn))
        answer = str(messages[index].get("content") or "").strip()
        if answer and answer not in full[span[0]:span[1]]:
            raise ValueError(f"the chat template does not render the answer of message {index} after its prompt")
        spans.append(span)
    return full[: spans[-1][1]], spans


def _is_trained(message: dict, last: bool, train_on: str) -> bool:
    weight = message.get("weight")
    if weight is not None:
        return weight == 1
    return last or train_on == "all"


def tokenize_for_training(tokenizer, messages: list[dict] | dict, max_seq_length: int,
                          train_on: str = "last") -> TokenizedExample:
    """Tokenize a conversation whose last message is the assistant target: a list of messages, or a chat
    line whose tools the template is given (conversation_parts).

    Text outside the trained spans (trained_spans: system and user turns, assistant headers,
    assistant turns of weight 0, and with ``train_on="last"`` the earlier assistant turns
    without weight 1) gets label -100; the trained
    spans' tokens, including each turn's end-of-turn token (the EOS for ChatML models such
    as SmolLM2), are labels. Each span is tokenized on its own, so the boundaries are exact.
    Sequences longer than ``max_seq_length`` tokens are cut at the right.

    Raises:
        ValueError: see trained_spans.
    """
    messages, tools = conversation_parts(messages)
    text, spans = trained_spans(tokenizer, messages, train_on, tools)
    input_ids: list[int] = []
    labels: list[int] = []
    position = 0
    for start, end in spans:
        for piece, trained in ((text[position:start], False), (text[start:end], True)):
            if piece:
                ids = tokenizer(piece, add_special_tokens=False)["input_ids"]
                input_ids += ids
                labels += list(ids) if trained else [IGNORE_INDEX] * len(ids)
        position = end
    truncated = len(input_ids) > max_seq_length
    return TokenizedExample(input_ids[:max_seq_length], labels[:max_seq_length], truncated)
