"""Reading a chat-completions request body: what the endpoint accepts, and a clear 400 for the rest.

Hand-written rather than a DRF serializer: the error must be OpenAI's (message, ``param`` naming the
field as a path such as ``messages[2].content``, ``code``), which the openai client shows as is.
"""
import json
from dataclasses import dataclass, field

from curation.formats import FormatError, check_json_value

ROLES = {"system", "developer", "user", "assistant"}
MAX_MESSAGES = 256
MAX_METADATA_KEYS, MAX_METADATA_KEY, MAX_METADATA_VALUE = 16, 64, 512
# Accepted and honoured as far as greedy decoding allows (documented in docs/serving/index.md):
# sampling parameters are accepted so that existing clients work; answers are always greedy.
ACCEPTED = {"model", "messages", "max_tokens", "max_completion_tokens", "stream", "stream_options", "n",
            "temperature", "top_p", "seed", "metadata", "user", "store", "frequency_penalty", "presence_penalty",
            "logprobs", "top_logprobs"}
REFUSED = {"tools": "tool calling", "tool_choice": "tool calling", "functions": "function calling",
           "function_call": "function calling", "response_format": "structured outputs",
           "stop": "stop sequences", "logit_bias": "logit bias", "audio": "audio", "modalities": "audio",
           "prediction": "predicted outputs", "parallel_tool_calls": "tool calling"}


class InvalidRequest(Exception):
    def __init__(self, message: str, *, param: str | None = None, code: str | None = "invalid_request",
                 status: int = 400, model: str | None = None):
        super().__init__(message)
        self.param, self.code, self.status, self.model = param, code, status, model


@dataclass
class ChatRequest:
    model: str
    messages: list[dict]  # [{"role", "content"}]: text only, developer turns as system turns
    max_tokens: int | None = None
    max_tokens_param: str = "max_tokens"
    stream: bool = False
    include_usage: bool = False
    metadata: dict = field(default_factory=dict)
    user: str = ""
    logprobs: bool = False  # the answer's token log-probabilities in the response (not streamed)


def _storable(value) -> None:
    """Refuse what JSON allows but can be neither tokenized nor stored (curation.formats.check_json_value):
    NUL characters, lone UTF-16 surrogates ("\\ud800"), NaN and infinities, deep nesting."""
    try:
        check_json_value(value)
    except FormatError as exc:
        message = str(exc)
        path = message.split(": ", 1)[0].removesuffix(" key")  # "$.metadata key": one of metadata's keys
        raise InvalidRequest(message.removeprefix("$.") + ".", param=path[2:] if path.startswith("$.") else None,
                             code="invalid_value") from None


def _flag(value, name: str) -> bool:
    """A true/false parameter; absent (None) is false."""
    if value is not None and not isinstance(value, bool):
        raise InvalidRequest(f"{name} must be true or false.", param=name, code="invalid_type")
    return bool(value)


def _integer(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidRequest(f"{name} must be an integer of at least {minimum}, got {json.dumps(value)}.",
                             param=name, code="invalid_value")
    return value


def _number(value, name: str, low: float, high: float) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidRequest(f"{name} must be a number from {low:g} to {high:g}, got {json.dumps(value)}.",
                             param=name, code="invalid_value")


def _content(value, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for index, part in enumerate(value):
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise InvalidRequest(f"{where}[{index}] must be a text part {{\"type\": \"text\", \"text\": ...}}; "
                                     "images, audio and files are not supported.", param=f"{where}[{index}]")
            texts.append(part["text"])
        return "\n".join(texts)
    raise InvalidRequest(f"{where} must be a string or a list of text parts, got {type(value).__name__}.",
                         param=where)


def _messages(value) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise InvalidRequest("messages must be a non-empty list of {role, content} objects.", param="messages")
    if len(value) > MAX_MESSAGES:
        raise InvalidRequest(f"messages has {len(value)} entries; at most {MAX_MESSAGES}.", param="messages")
    messages = []
    for index, message in enumerate(value):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise InvalidRequest(f"{where} must be an object with role and content.", param=where)
        role = message.get("role")
        if role not in ROLES:
            hint = " (tool results need tool calling, which is not supported)" if role == "tool" else ""
            raise InvalidRequest(f"{where}.role must be one of {', '.join(sorted(ROLES))}, got "
                                 f"{json.dumps(role)}{hint}.", param=f"{where}.role")
        if message.get("tool_calls") or message.get("function_call"):
            raise InvalidRequest(f"{where}: tool calls are not supported.", param=f"{where}.tool_calls")
        if "content" not in message or message["content"] is None:
            raise InvalidRequest(f"{where}.content is required.", param=f"{where}.content")
        content = _content(message["content"], f"{where}.content")
        messages.append({"role": "system" if role == "developer" else role, "content": content})
    if messages[-1]["role"] != "user":
        raise InvalidRequest(f"The last message (messages[{len(messages) - 1}]) must be a user message: it is what "
                             "the model answers.", param=f"messages[{len(messages) - 1}].role")
    return messages


def _metadata(value) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_METADATA_KEYS:
        raise InvalidRequest(f"metadata must be an object of at most {MAX_METADATA_KEYS} string pairs.",
                             param="metadata")
    for key, item in value.items():
        if len(key) > MAX_METADATA_KEY or not isinstance(item, str) or len(item) > MAX_METADATA_VALUE:
            raise InvalidRequest(f"metadata.{key[:MAX_METADATA_KEY]}: keys up to {MAX_METADATA_KEY} characters, "
                                 f"string values up to {MAX_METADATA_VALUE}.", param=f"metadata.{key[:64]}")
    return dict(value)


def parse_chat_request(body: bytes, *, content_type: str = "application/json", limit: int) -> ChatRequest:
    """The request, checked. Raises InvalidRequest naming the field (``param``) and what is wrong."""
    if len(body) > limit:
        raise InvalidRequest(f"The request body is {len(body)} bytes; at most {limit}.", status=413,
                             code="request_too_large")
    if content_type and content_type != "application/json":
        raise InvalidRequest(f"Send the request as JSON (Content-Type: application/json), not {content_type}.",
                             code="invalid_content_type")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}.", code="invalid_json") from None
    except RecursionError:  # the stdlib parser recurses once per level of nesting
        raise InvalidRequest("The request body is nested too deeply to be a chat request.",
                             code="invalid_json") from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    model = data.get("model")
    if model is None or model == "":
        raise InvalidRequest("model is required: the name of a deployment (GET /v1/models lists them).",
                             param="model", code="missing_required_parameter")
    if not isinstance(model, str):
        raise InvalidRequest(f"model must be a string, the name of a deployment, got {type(model).__name__}.",
                             param="model", code="invalid_type")
    _storable({"model": model})  # before it is logged as the deployment asked for
    try:
        _storable(data)
        for name in data:
            if name in REFUSED:
                raise InvalidRequest(f"{name} is not supported by this server ({REFUSED[name]}).", param=name,
                                     code="unsupported_parameter")
            if name not in ACCEPTED:
                raise InvalidRequest(f"Unrecognized request argument supplied: {name}", param=name,
                                     code="unknown_parameter")
        if "messages" not in data:
            raise InvalidRequest("messages is required.", param="messages", code="missing_required_parameter")
        chat = ChatRequest(model=model, messages=_messages(data["messages"]))
        for name in ("max_completion_tokens", "max_tokens"):
            if data.get(name) is not None:
                chat.max_tokens, chat.max_tokens_param = _integer(data[name], name, 1), name
        if data.get("n") is not None and _integer(data["n"], "n", 1) != 1:
            raise InvalidRequest("n must be 1: one answer per request.", param="n", code="invalid_value")
        _number(data.get("temperature"), "temperature", 0, 2)
        _number(data.get("top_p"), "top_p", 0, 1)
        chat.stream = _flag(data.get("stream"), "stream")
        options = {} if data.get("stream_options") is None else data["stream_options"]
        if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
            raise InvalidRequest("stream_options must be an object such as {\"include_usage\": true}.",
                                 param="stream_options", code="invalid_type")
        chat.include_usage = bool(options.get("include_usage"))
        chat.logprobs = _flag(data.get("logprobs"), "logprobs")
        if data.get("top_logprobs") not in (None, 0):
            raise InvalidRequest("top_logprobs is not supported: the answer's own tokens' log-probabilities only "
                                 "(logprobs: true).", param="top_logprobs", code="unsupported_parameter")
        if chat.logprobs and chat.stream:
            raise InvalidRequest("logprobs are given with whole answers only, not streamed ones.", param="logprobs",
                                 code="unsupported_parameter")
        chat.metadata = _metadata(data.get("metadata"))
        user = data.get("user", "")
        if not isinstance(user, str) or len(user) > 256:
            raise InvalidRequest("user must be a string of at most 256 characters.", param="user",
                                 code="invalid_type")
        chat.user = user
    except InvalidRequest as exc:
        exc.model = model
        raise
    return chat
