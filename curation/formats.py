"""File formats and the canonical form of an example. Plain Python: no Django here.

A conversation is a list of ``{"role": ..., "content": ...}`` dicts in OpenAI's chat format.
Its *input* is every message before the final assistant turn; its *output* is that turn.
"""
import csv
import functools
import hashlib
import io
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource

FORMAT_SCHEMA_PATH = Path(__file__).with_name("format_schemas") / "openai_fine_tuning.schema.json"
"""The JSON Schema of an OpenAI fine-tuning line (chat and DPO): the one place its shape is written down."""
FORMAT_SCHEMA = json.loads(FORMAT_SCHEMA_PATH.read_text(encoding="utf-8"))
ROLES = tuple(FORMAT_SCHEMA["$defs"]["message"]["properties"]["role"]["enum"])
SYSTEM_ROLES = ("system", "developer")  # OpenAI: developer messages replace system messages for newer models
TOOL_SETTING_KEYS = ("tools", "parallel_tool_calls", "functions")
"""Top-level keys of a chat line besides messages and metadata: they change the task (what the model may
call), so they are part of an example's identity (content_hash, input_hash) and travel with it."""
PROMPT_COMPLETION_KEYS = {"prompt", "completion", "metadata"}
MAX_LINE_BYTES = 1_000_000
# The csv module's own default (131,072 characters per field) would refuse CSV fields that
# the JSONL reader accepts; one limit for every format.
csv.field_size_limit(MAX_LINE_BYTES)
MAX_JSON_DEPTH = 32
# JSON escapes of what a JSON column cannot store (NUL, UTF-16 surrogates); an escaped backslash
# before "u" also matches, which only costs a full check.
_RISKY_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


class FormatError(ValueError):
    """A record that is not a valid example; the message says where and why, and ``position`` is the
    1-based message of the conversation it concerns, when one does."""

    def __init__(self, message: str, *, position: int | None = None):
        super().__init__(message)
        self.position = position


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(value) -> str:
    """JSON with sorted keys and no insignificant whitespace: equal values give equal text."""
    return _CANONICAL.encode(value)  # one encoder for all calls: json.dumps would build one per call


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _hashed(messages: list[dict], tool_settings: dict | None):
    """What the hashes cover: the messages alone (so examples without tool settings keep the hashes they
    always had), or ``{"messages": ..., **tool_settings}`` when the line defines tools or functions."""
    return {"messages": messages, **tool_settings} if tool_settings else messages


def content_hash(messages: list[dict], tool_settings: dict | None = None) -> str:
    """sha256 (hex, 64 chars) of the canonical JSON of the whole conversation and its tool settings
    (TOOL_SETTING_KEYS), when it has any."""
    return sha256_hex(canonical_json(_hashed(messages, tool_settings)))


def needs_answer(messages: list[dict]) -> bool:
    """Whether the conversation ends in a user turn: an input still waiting for its assistant answer
    (a draft to annotate or pre-annotate; see validate_messages' ``allow_unanswered``)."""
    return bool(messages) and messages[-1].get("role") == "user"


def input_messages(messages: list[dict]) -> list[dict]:
    """The messages before the final assistant turn (the prompt a model answers); all of them when
    the conversation still needs its answer."""
    return list(messages) if needs_answer(messages) else messages[:-1]


def input_hash(messages: list[dict], tool_settings: dict | None = None) -> str:
    """sha256 (hex) of the input part and the tool settings (what the model may call is part of its
    input); examples sharing it are alternative outputs for one input."""
    return sha256_hex(canonical_json(_hashed(input_messages(messages), tool_settings)))


def conversation_hashes(messages: list[dict], tool_settings: dict | None = None) -> tuple[str, bytes, str]:
    """``(canonical JSON of messages, sha256 digest (32 bytes), input_hash hex)`` of a conversation.

    Equal to ``(canonical_json(m), bytes.fromhex(content_hash(m, t)), input_hash(m, t))``: without
    tool settings the input's canonical JSON is the conversation's without its last element, so it
    is sliced off the whole text rather than serialised again (the import's hot path).
    """
    text = canonical_json(messages)
    if tool_settings:
        return (text, bytes.fromhex(content_hash(messages, tool_settings)),
                input_hash(messages, tool_settings))
    if needs_answer(messages):
        input_text = text
    elif len(messages) > 1:
        input_text = text[: len(text) - len(canonical_json(messages[-1])) - 2] + "]"  # drop ',<last>]'
    else:
        input_text = "[]"
    return text, hashlib.sha256(text.encode("utf-8")).digest(), sha256_hex(input_text)


def with_system_prompt(messages: list[dict], system_prompt: str) -> list[dict]:
    """Prepend ``system_prompt`` as a system message unless the conversation already starts with a
    system or developer message."""
    if not system_prompt or (messages and messages[0]["role"] in SYSTEM_ROLES):
        return list(messages)
    return [{"role": "system", "content": system_prompt}, *messages]


IMPORT_METADATA_KEYS = ("import_line",)
"""Metadata keys the import adds (curation.import_job); exports leave them out, so a file round-trips."""


def export_record(messages: list[dict], tool_settings: dict, metadata: dict, system_prompt: str = "") -> dict:
    """An example as a line of OpenAI chat JSONL: ``{"messages": with_system_prompt(messages, system_prompt),
    **tool_settings, "metadata": ...}`` (metadata without IMPORT_METADATA_KEYS, left out when empty):
    the line it was imported from, when the dataset has no system prompt or the line had one."""
    record = {"messages": with_system_prompt(messages, system_prompt), **(tool_settings or {})}
    kept = {key: value for key, value in (metadata or {}).items() if key not in IMPORT_METADATA_KEYS}
    if kept:
        record["metadata"] = kept
    return record


def prompt_messages(messages: list[dict], system_prompt: str = "", few_shot: list[list[dict]] | None = None
                    ) -> list[dict]:
    """What a prompted model is asked: the input ``messages`` with ``system_prompt`` prepended (as
    with_system_prompt), and the ``few_shot`` worked examples (whole conversations ending in their
    answer; their own system messages dropped) as earlier turns between the system message and the
    input: in-context learning (Brown et al., 2020, "Language Models are Few-Shot Learners")."""
    messages = with_system_prompt(messages, system_prompt)
    if not few_shot:
        return messages
    head = messages[:1] if messages and messages[0]["role"] in SYSTEM_ROLES else []
    shots = [message for shot in few_shot for message in shot if message["role"] not in SYSTEM_ROLES]
    return [*head, *shots, *messages[len(head):]]


def _refuse_retrieval(uri: str):
    raise NoSuchResource(ref=uri)


_SCHEMA_REGISTRY = Registry(retrieve=_refuse_retrieval).with_resource(
    FORMAT_SCHEMA["$id"], Resource.from_contents(FORMAT_SCHEMA))


def format_validator(definition: str) -> Draft202012Validator:
    """A validator of FORMAT_SCHEMA's ``$defs/<definition>`` (chat_line, preference_line, messages, ...);
    nothing is fetched (the schema only refers to itself)."""
    return Draft202012Validator({"$ref": f"{FORMAT_SCHEMA['$id']}#/$defs/{definition}"}, registry=_SCHEMA_REGISTRY)


_VALIDATORS = {name: format_validator(name) for name in ("chat_line", "preference_line", "messages")}


def check_against_schema(value, definition: str, prefix: tuple = ()) -> None:
    """Validate ``value`` against FORMAT_SCHEMA's ``$defs/<definition>``.

    ``prefix`` is where ``value`` sits in its line (e.g. ``("messages",)`` for a bare list of
    messages), so the message names the place as it would in the whole line.

    Raises:
        FormatError: the first error in document order, saying where (message N (role), its field,
            tool N, ...) and what is wrong; ``position`` is the message's 1-based index.
    """
    if _valid_shape(definition, canonical_json(_shape(value))):
        return
    errors = list(_VALIDATORS[definition].iter_errors(value))
    if errors:
        paths = {id(e): _path_order((*prefix, *e.absolute_path)) for e in errors}
        first = min(errors, key=lambda e: paths[id(e)])
        # Of the errors on the same message (or item), the one this project wrote a message for says most.
        same = [e for e in errors if paths[id(e)][:2] == paths[id(first)][:2]]
        first = next((e for e in same if _custom(e)), first)
        raise _schema_error(first, value, prefix)


# jsonschema walks a line in about a millisecond, twenty times the rest of an import's work. Lines of one
# file mostly share a shape and differ in their texts, which the schema does not constrain beyond "a
# string": so the verdict is cached per shape (_shape: the line with every "content" string and the
# line's metadata object emptied). The check below keeps that true if the schema ever constrains them.
_UNCONSTRAINED = {"type", "x-message", "items"}
if (set(FORMAT_SCHEMA["$defs"]["message"]["properties"]["content"]) - _UNCONSTRAINED
        or any(FORMAT_SCHEMA["$defs"][line]["properties"]["metadata"] != {"type": "object"}
               for line in ("chat_line", "preference_line"))):
    raise ImportError("curation.formats._shape empties what the format schema now constrains; update _shape")


def _shape(value, top: bool = True):
    """``value`` with every string ``content`` emptied and a top-level ``metadata`` object emptied: what the
    format schema's verdict depends on."""
    if isinstance(value, dict):
        return {key: "" if key == "content" and isinstance(item, str)
                else {} if top and key == "metadata" and isinstance(item, dict)
                else _shape(item, False) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(item, False) for item in value]
    return value


@functools.lru_cache(maxsize=1024)
def _valid_shape(definition: str, shape_json: str) -> bool:
    return _VALIDATORS[definition].is_valid(json.loads(shape_json))


def _custom(error) -> str:
    return error.schema.get("x-message", "") if isinstance(error.schema, dict) else ""


def _path_order(path) -> tuple:
    return tuple((0, part, "") if isinstance(part, int) else (1, 0, part) for part in path)


_MESSAGE_LISTS = {("messages",): "message", ("input", "messages"): "input message",
                  ("preferred_output",): "preferred_output message",
                  ("non_preferred_output",): "non_preferred_output message",
                  ("tools",): "tool", ("functions",): "function", ("input", "tools"): "input tool",
                  ("input", "functions"): "input function"}
_TYPE_NAMES = {"string": "a string", "array": "a list", "object": "an object", "null": "null",
               "boolean": "true or false", "integer": "an integer", "number": "a number"}


def _schema_error(error, value, prefix: tuple) -> FormatError:
    """A jsonschema ValidationError as a FormatError that names the place (see check_against_schema)."""
    path = [*prefix, *error.absolute_path]
    where, position, rest = "the line", None, path
    for length in (2, 1):
        head = tuple(path[:length])
        if head in _MESSAGE_LISTS and len(path) > length and isinstance(path[length], int):
            index = path[length]
            where = f"{_MESSAGE_LISTS[head]} {index + 1}"
            item = _at(value, path[len(prefix): length + 1])
            if _MESSAGE_LISTS[head].endswith("message"):
                role = item.get("role") if isinstance(item, dict) else None
                if isinstance(role, str) and role in ROLES:
                    where += f" ({role})"
                position = index + 1 if head in (("messages",), ("input", "messages")) else None
            rest = path[length + 1:]
            break
    field_name = _field_name(rest)
    schema = error.schema if isinstance(error.schema, dict) else {}
    custom = _custom(error)
    if error.validator == "additionalProperties":
        unknown = sorted(set(error.instance) - set(schema.get("properties", {})))
        text = (f"{field_name or where} has unknown key(s) {', '.join(unknown)}; expected "
                f"{', '.join(schema.get('properties', {}))}")
        return _located(text, where, position)
    if error.validator == "required":
        missing = next((key for key in error.validator_value if key not in error.instance), "?")
        return _located(f"{field_name or where} must have {missing!r}", where, position)
    if custom and error.validator == "not":
        return _located(custom, where, position)
    shown = field_name or where
    if error.validator == "enum" and rest == ["role"]:
        text = f"has role {error.instance!r}; expected one of {', '.join(map(str, error.validator_value))}"
        return FormatError(f"{where} {text}", position=position)
    if custom:
        text = (f"{shown} {custom}, got {_short(error.instance)}" if custom.startswith("must")
                else f"{shown} is {_short(error.instance)}; {custom}")
    elif error.validator == "enum":
        choices = ", ".join(map(json.dumps, error.validator_value))
        text = f"{shown} is {_short(error.instance)}; expected one of {choices}"
    elif error.validator == "const":
        text = f"{shown} is {_short(error.instance)}; expected {json.dumps(error.validator_value)}"
    elif error.validator == "type":
        kinds = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        text = f"{shown} must be {' or '.join(_TYPE_NAMES.get(k, k) for k in kinds)}, got {_short(error.instance)}"
    else:
        text = f"{shown}: {error.message}"
    return FormatError(text if where == "the line" or not field_name else f"{where}: {text}", position=position)


def _located(text: str, where: str, position) -> FormatError:
    """``text`` prefixed with ``where`` ("message 2 (user): ...") unless it starts with it or names the line."""
    return FormatError(text if where == "the line" or text.startswith(where) else f"{where}: {text}",
                       position=position)


def _at(value, path):
    for part in path:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def _field_name(path) -> str:
    """How a message names a field: ``["tool_calls", 0, "function", "name"]`` -> ``tool call 1 'function.name'``,
    ``["content", 1, "type"]`` -> ``content part 2 'type'``, ``["weight"]`` -> ``'weight'``, ``[]`` -> ``""``."""
    labels = {"tool_calls": "tool call", "content": "content part"}
    if len(path) >= 2 and path[0] in labels and isinstance(path[1], int):
        inner = _dotted(path[2:])
        return f"{labels[path[0]]} {path[1] + 1}" + (f" {inner!r}" if inner else "")
    return repr(_dotted(path)) if path else ""


def _dotted(path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _short(value) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def validate_messages(messages, *, allow_unanswered: bool = False) -> list[dict]:
    """Check a conversation in OpenAI's chat fine-tuning format and return it as stored.

    The shape of each message is FORMAT_SCHEMA's (roles system, developer, user, assistant,
    tool and the legacy function; ``weight`` 0/1, ``tool_calls``, ``function_call`` and
    ``refusal`` on assistant turns; ``tool_call_id`` on tool turns; a name on function turns).
    check_sequence adds the rules a schema cannot say. Messages are kept as given (key order
    included), except that ``content`` given as a list of text parts is joined with newlines. With
    ``allow_unanswered`` the last message may be a user turn still waiting for its answer (needs_answer).

    Raises:
        FormatError: naming the message (1-based) and the problem.
    """
    check_against_schema(messages, "messages", prefix=("messages",))
    return check_sequence(messages, allow_unanswered=allow_unanswered)


def check_sequence(messages: list[dict], *, output: bool = True, where_prefix: str = "",
                   allow_unanswered: bool = False) -> list[dict]:
    """The rules of a schema-valid list of messages that FORMAT_SCHEMA cannot say; returns it as stored.

    A system or developer message only first; ``content`` non-empty for user, tool and function
    turns and for assistant turns without a call; every tool call (unique ids, ``arguments`` a JSON
    object encoded as a string) answered by a ``tool`` message with its ``tool_call_id``, and a
    legacy ``function_call`` by a ``function`` message of its name, before the conversation goes
    on, unless that turn is the final output. With ``output`` (a training example) the conversation
    ends with the assistant output, which has ``weight`` 1 if any, after some user input; without
    (the input of a preference pair) it must not end with an assistant turn. With ``allow_unanswered``
    a conversation ending in a user turn (needs_answer: an input waiting for its answer) passes too.

    Raises:
        FormatError: naming the message (``where_prefix`` + "message N (role)") and the problem.
    """
    stored, pending_calls, pending_function = [], {}, None
    for position, message in enumerate(messages, start=1):
        role = message["role"]
        where = f"{where_prefix}message {position} ({role})"
        try:
            if role in SYSTEM_ROLES and position != 1:
                raise FormatError(f"{where}: only the first message may be a system or developer message")
            if pending_calls and role != "tool":
                raise FormatError(f"{where}: tool call(s) {', '.join(pending_calls)} were not answered by tool "
                                  "messages")
            if pending_function and role != "function":
                raise FormatError(f"{where}: function call {pending_function!r} was not answered by a function "
                                  "message")
            out = dict(message)
            if isinstance(out.get("content"), list):
                out["content"] = "\n".join(part["text"] for part in out["content"])
            if "tool_calls" in out:
                pending_calls = _check_tool_calls(out["tool_calls"], where)
            if "function_call" in out:
                _check_arguments(out["function_call"]["arguments"], f"{where}: function_call")
                pending_function = out["function_call"]["name"]
            if role == "tool":
                call_id = out["tool_call_id"]
                if call_id not in pending_calls:
                    raise FormatError(f"{where}: 'tool_call_id' {call_id!r} does not answer a pending tool call")
                del pending_calls[call_id]
            if role == "function":
                if out["name"] != pending_function:
                    raise FormatError(f"{where}: name {out['name']!r} does not answer a pending function call")
                pending_function = None
            calls = "tool_calls" in out or "function_call" in out
            if role in ("user", "tool", "function") or (role == "assistant" and not calls):
                if not (out.get("content") or "").strip():
                    raise FormatError(f"{where} has empty content")
            stored.append(out)
        except FormatError as exc:  # every check of this message names it
            exc.position = exc.position or position
            raise
    if allow_unanswered and needs_answer(stored):
        return stored
    if not output:
        if stored[-1]["role"] == "assistant":
            raise FormatError(f"{where_prefix}messages must end before the assistant turn (the outputs follow)")
        if all(m["role"] in SYSTEM_ROLES for m in stored):
            raise FormatError(f"{where_prefix}messages have no user input")
        return stored
    if stored[-1]["role"] != "assistant":
        if not any(m["role"] == "assistant" for m in stored):
            raise FormatError("the conversation has no assistant turn (nothing to learn)")
        raise FormatError("the conversation must end with the assistant turn to learn")
    if stored[-1].get("weight") == 0:
        raise FormatError(f"message {len(stored)} (assistant): the final assistant turn is the output to learn; "
                          "it cannot have weight 0", position=len(stored))
    if len(stored) < 2 or all(m["role"] in SYSTEM_ROLES for m in stored[:-1]):
        raise FormatError("the conversation has no user input before the assistant turn")
    return stored


def _check_tool_calls(calls: list[dict], where: str) -> dict:
    """Unique ids and JSON-object arguments; returns ``{id: True}`` of the calls (pending answers)."""
    seen = {}
    for index, call in enumerate(calls, start=1):
        at = f"{where}: tool call {index}"
        if call["id"] in seen:
            raise FormatError(f"{at} needs a unique, non-empty string 'id'; {call['id']!r} is repeated")
        seen[call["id"]] = True
        _check_arguments(call["function"]["arguments"], at)
    return seen


def _check_arguments(arguments: str, at: str) -> None:
    try:
        parsed = json.loads(arguments)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise FormatError(f"{at}: 'arguments' must be a JSON object encoded as a string")


def tool_settings_of(record: dict) -> dict:
    """The TOOL_SETTING_KEYS a (schema-valid) line or DPO input has, as given."""
    return {key: record[key] for key in TOOL_SETTING_KEYS if key in record}


def parse_chat_record(record) -> tuple[list[dict], dict, dict]:
    """``{"messages": [...], "tools"?, "parallel_tool_calls"?, "functions"?, "metadata"?}`` (FORMAT_SCHEMA's
    chat_line) -> (messages, metadata, tool settings); a conversation ending in a user turn is an input
    imported without its answer (a draft to annotate). Raises FormatError."""
    if not isinstance(record, dict):
        raise FormatError("each line must be a JSON object")
    check_against_schema(record, "chat_line")
    messages = check_sequence(record["messages"], allow_unanswered=True)
    return messages, record.get("metadata", {}), tool_settings_of(record)


def parse_prompt_completion_record(record) -> tuple[list[dict], dict, dict]:
    """``{"prompt": str, "completion": str}`` -> a user/assistant conversation (no tool settings).
    Raises FormatError."""
    if not isinstance(record, dict):
        raise FormatError("each line must be a JSON object")
    unknown = set(record) - PROMPT_COMPLETION_KEYS
    if unknown:
        raise FormatError(f"unknown key(s) {', '.join(sorted(unknown))}; expected prompt, completion, metadata")
    for key in ("prompt", "completion"):
        if not isinstance(record.get(key), str):
            raise FormatError(f"'{key}' must be a string")
    metadata = record.get("metadata", {})
    if not isinstance(metadata, dict):
        raise FormatError("'metadata' must be an object")
    messages = [{"role": "user", "content": record["prompt"]}, {"role": "assistant", "content": record["completion"]}]
    return validate_messages(messages), metadata, {}


@dataclass
class PreferenceRecord:
    """One line of OpenAI's DPO format, checked: the input conversation and its tool settings, the preferred
    and the non-preferred output (each a list of one assistant message), the line's metadata."""

    input_messages: list[dict]
    tool_settings: dict
    preferred_output: list[dict]
    non_preferred_output: list[dict]
    metadata: dict = field(default_factory=dict)

    def as_line(self) -> dict:
        """The record as a DPO line (the inverse of parse_preference_record): what an export writes."""
        line = {"input": {"messages": self.input_messages, **self.tool_settings},
                "preferred_output": self.preferred_output, "non_preferred_output": self.non_preferred_output}
        if self.metadata:
            line["metadata"] = self.metadata
        return line

    @property
    def content_hash(self) -> str:
        """sha256 (hex) of the canonical JSON of the line without its metadata (duplicates share it)."""
        return sha256_hex(canonical_json({**self.as_line(), "metadata": None}))

    @property
    def input_hash(self) -> str:
        """sha256 (hex) of the input (messages and tool settings), as Example.input_hash hashes one."""
        return sha256_hex(canonical_json(_hashed(self.input_messages, self.tool_settings)))


def parse_preference_record(record) -> PreferenceRecord:
    """``{"input": {"messages": [...], "tools"?, "parallel_tool_calls"?, "functions"?}, "preferred_output":
    [assistant message], "non_preferred_output": [assistant message], "metadata"?}`` (FORMAT_SCHEMA's
    preference_line; https://platform.openai.com/docs/guides/direct-preference-optimization) -> a
    PreferenceRecord, messages as given (text parts joined). The input must stop before the answer; each
    output must be a valid answer to it (check_sequence over input + output).

    Raises:
        FormatError: naming the part (input message N, preferred_output, ...) and the problem.
    """
    if not isinstance(record, dict):
        raise FormatError("each line must be a JSON object")
    check_against_schema(record, "preference_line")
    inputs = check_sequence(record["input"]["messages"], output=False, where_prefix="input ")
    outputs = {}
    for key in ("preferred_output", "non_preferred_output"):
        try:
            outputs[key] = check_sequence([*inputs, *record[key]])[len(inputs):]
        except FormatError as exc:
            raise FormatError(f"{key} (as message {len(inputs) + 1} after the input): {exc}") from None
    if outputs["preferred_output"] == outputs["non_preferred_output"]:
        # DPO learns from the difference between the two; the same answer twice teaches nothing.
        raise FormatError("preferred_output and non_preferred_output are the same answer; a preference pair "
                          "needs two different outputs")
    return PreferenceRecord(inputs, tool_settings_of(record["input"]), outputs["preferred_output"],
                            outputs["non_preferred_output"], record.get("metadata", {}))


PARSERS = {
    "chat_jsonl": parse_chat_record,
    "prompt_completion_jsonl": parse_prompt_completion_record,
}


@dataclass
class ParsedLine:
    line: int
    messages: list[dict] | None = None
    metadata: dict = field(default_factory=dict)
    error: str | None = None
    tool_settings: dict = field(default_factory=dict)


Source = bytes | BinaryIO
"""What the readers take: a file's bytes, or a seekable binary file (read from its start and
left open for the caller to close)."""


def read_jsonl(source: Source, fmt: str) -> Iterator[ParsedLine]:
    """Parse JSONL line by line, streaming; yields one ParsedLine per non-empty line (1-based numbers).

    Lines are read and decoded by read_json_lines; ``fmt`` names the parser of each record (PARSERS).

    Raises:
        ValueError: ``fmt`` is not a known format, or see read_json_lines.
    """
    try:
        parse = PARSERS[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(PARSERS)}") from None
    for number, record, error in read_json_lines(source):
        if error:
            yield ParsedLine(number, error=error)
            continue
        try:
            messages, metadata, tool_settings = parse(record)
        except FormatError as exc:
            yield ParsedLine(number, error=str(exc))
            continue
        yield ParsedLine(number, messages=messages, metadata=metadata, tool_settings=tool_settings)


def read_json_lines(source: Source) -> Iterator[tuple[int, object, str | None]]:
    """``(line number, JSON value, None)`` per non-empty line, or ``(line number, None, reason)`` for a line
    that is not JSON a JSON column can store (streaming, 1-based numbers).

    Accepts UTF-8 with or without BOM, UTF-16 with BOM, and LF, CRLF or lone CR line ends.
    Lines are split on those line ends only, so U+2028/U+2029 inside strings never split a
    record. One line is in memory at a time; a line over MAX_LINE_BYTES is skipped in pieces
    and reported.

    Raises:
        ValueError: a UTF-16 file is not valid UTF-16 (naming the line; nothing after it can be decoded).
    """
    for number, text, error in _jsonl_lines(source):
        if error:
            yield number, None, error
            continue
        try:
            record = _DECODER.decode(text)
            if _RISKY_ESCAPE.search(text) or text.count("{") + text.count("[") > MAX_JSON_DEPTH:
                # Otherwise the walk cannot find anything, and it is a quarter of an import's CPU
                # time: NUL and lone surrogates can only arrive as \u0000 and \uD800-\uDFFF escapes
                # (the text itself is valid Unicode), _finite_float refuses non-finite numbers, and
                # fewer brackets than MAX_JSON_DEPTH bound the depth.
                check_json_value(record)
        except json.JSONDecodeError as exc:
            yield number, None, f"invalid JSON: {exc.msg} (column {exc.colno})"
            continue
        except RecursionError:
            yield number, None, f"invalid JSON: nested deeper than {MAX_JSON_DEPTH} levels"
            continue
        except (ValueError, FormatError) as exc:  # NaN, huge numbers, NUL, lone surrogates, depth
            yield number, None, f"invalid JSON: {exc}"
            continue
        yield number, record, None


def count_jsonl_records(source: Source) -> int:
    """How many records read_jsonl will yield (non-blank lines), reading the file once without parsing JSON.

    Raises ValueError like read_jsonl.
    """
    return sum(1 for _ in _jsonl_lines(source))


def _jsonl_lines(source: Source) -> Iterator[tuple[int, str | None, str | None]]:
    """``(line number, text, None)`` per non-blank line, or ``(line number, None, reason)`` for a
    line that is too long or not valid UTF-8."""
    text = _text_stream(source, newline=None)  # universal newlines: LF, CRLF and lone CR end a line
    limit = MAX_LINE_BYTES + 1  # in characters: a line this long is too long in bytes too
    number = 0
    try:
        while line := _readline(text, limit, number):
            number += 1
            if len(line) == limit and not line.endswith("\n"):
                size = _utf8_size(line)
                while not line.endswith("\n") and (line := _readline(text, limit, number)):
                    size += _utf8_size(line.removesuffix("\n"))
                yield number, None, f"line is {size} bytes; the limit is {MAX_LINE_BYTES}"
                continue
            line = line.removesuffix("\n")
            if not line.strip(" \t\x00"):
                continue
            if not line.isascii():
                raw = line.encode("utf-8", "surrogateescape")
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield number, None, f"invalid UTF-8 at byte {exc.start}"
                    continue
                if len(raw) > MAX_LINE_BYTES:
                    yield number, None, f"line is {len(raw)} bytes; the limit is {MAX_LINE_BYTES}"
                    continue
            yield number, line, None
    finally:
        if not text.closed:
            text.detach()  # leave the caller's file open


def _text_stream(source: Source, newline: str | None) -> io.TextIOWrapper:
    """A text view of ``source`` (io.TextIOWrapper): UTF-16 by its byte order mark, else UTF-8
    (a UTF-8 BOM is dropped).

    UTF-8 is decoded with ``surrogateescape``, so an invalid byte becomes a lone surrogate that
    the readers report with its line instead of stopping the file; UTF-16 is decoded strictly
    (see _readline).
    """
    handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    start = handle.read(3)
    handle.seek(0)
    if start[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return io.TextIOWrapper(handle, encoding="utf-16", errors="strict", newline=newline)
    encoding = "utf-8-sig" if start == b"\xef\xbb\xbf" else "utf-8"
    return io.TextIOWrapper(handle, encoding=encoding, errors="surrogateescape", newline=newline)


def _readline(text: io.TextIOWrapper, limit: int, number: int) -> str:
    try:
        return text.readline(limit)
    except UnicodeDecodeError as exc:
        raise ValueError(f"line {number + 1}: the file starts with a UTF-16 byte order mark but is not valid "
                         f"UTF-16 ({exc.reason})") from None


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogateescape"))


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError(f"{value} is not a finite number")
    return value


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


# One decoder for every line: json.loads with these hooks would build a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def check_json_value(value, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse what JSON allows but a JSON column cannot store, so a write never fails half-way.

    Raises:
        FormatError: non-finite numbers, NUL characters, unpaired surrogates, or nesting
            deeper than ``max_depth``, naming the first offending path.
    """
    stack = [(value, "$", 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > max_depth:
            raise FormatError(f"{path}: nested deeper than {max_depth} levels")
        if isinstance(item, float) and not math.isfinite(item):
            raise FormatError(f"{path}: {item} is not a finite number")
        if isinstance(item, str):
            _check_text(item, path)
        elif isinstance(item, dict):
            for key, child in item.items():
                _check_text(key, f"{path} key")
                stack.append((child, f"{path}.{key}", depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{index}]", depth + 1) for index, child in enumerate(item))


def _check_text(text: str, path: str) -> None:
    if "\x00" in text:
        raise FormatError(f"{path}: contains a NUL character (\\u0000)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise FormatError(f"{path}: contains an unpaired surrogate (\\u{ord(text[exc.start]):04x})") from None


DELIMITERS = {"csv": ",", "tsv": "\t"}
MAPPED_FIELDS = ("prompt", "completion", "system")
DEFAULT_COLUMN_MAPPING = {"prompt": "prompt", "completion": "completion"}


def check_column_mapping(column_mapping: dict | None) -> dict:
    """The mapping to use for CSV/TSV: ``column_mapping`` checked, or DEFAULT_COLUMN_MAPPING.

    Raises:
        ValueError: not an object, a mapping that does not name prompt and completion, names
            other fields, or has non-string column names.
    """
    if column_mapping is not None and not isinstance(column_mapping, dict):
        raise ValueError('column mapping must be an object such as {"prompt": "question", "completion": "answer"}, '
                         f"got {type(column_mapping).__name__}")
    mapping = dict(column_mapping or DEFAULT_COLUMN_MAPPING)
    unknown = set(mapping) - set(MAPPED_FIELDS)
    if unknown or not {"prompt", "completion"} <= set(mapping) or not all(isinstance(v, str) for v in mapping.values()):
        raise ValueError("column mapping must name the 'prompt' and 'completion' columns (and optionally "
                         f"'system'), e.g. {{\"prompt\": \"question\", \"completion\": \"answer\"}}; got {mapping}")
    return mapping


def read_delimited(source: Source, fmt: str, column_mapping: dict | None = None) -> Iterator[ParsedLine]:
    """Parse CSV or TSV with a header row into user/assistant conversations (stdlib ``csv``), streaming.

    ``column_mapping`` maps ``prompt``, ``completion`` and optionally ``system`` to header
    names (default: columns named prompt and completion). Quoted fields may span lines (their
    CRLF or CR line ends become LF); each record is numbered by the line it starts on. Empty
    rows are skipped. Encodings and line ends as for read_jsonl.

    Raises:
        ValueError: unknown format, bad mapping, a header that lacks a mapped column, or
            bytes that are not UTF-8 / UTF-16 (naming the line).
    """
    mapping = check_column_mapping(column_mapping)
    rows = _delimited_rows(source, fmt)
    header = next(rows, None)
    if header is None:
        return
    missing = [column for column in mapping.values() if column not in header[1]]
    if missing:
        raise ValueError(f"line 1: the header has no column(s) {', '.join(map(repr, missing))}; "
                         f"it has {', '.join(map(repr, header[1]))}")
    index = {field: header[1].index(column) for field, column in mapping.items()}
    width = len(header[1])
    for line, row in rows:
        if isinstance(row, str):
            yield ParsedLine(line, error=row)
            return
        if len(row) != width:
            yield ParsedLine(line, error=f"row has {len(row)} fields; the header has {width}")
            continue
        messages = [{"role": "user", "content": row[index["prompt"]]},
                    {"role": "assistant", "content": row[index["completion"]]}]
        if "system" in index and row[index["system"]].strip():
            messages.insert(0, {"role": "system", "content": row[index["system"]]})
        try:
            check_json_value(messages)
            yield ParsedLine(line, messages=validate_messages(messages))
        except FormatError as exc:
            yield ParsedLine(line, error=str(exc))


def count_delimited_records(source: Source, fmt: str) -> int:
    """How many records read_delimited will yield (non-empty rows after the header). Raises ValueError like it."""
    return max(0, sum(1 for _ in _delimited_rows(source, fmt)) - 1)


def _delimited_rows(source: Source, fmt: str) -> Iterator[tuple[int, list[str] | str]]:
    """``(line, cells)`` for the header and each non-empty row.

    Raises:
        ValueError: the csv module gives up on the file (e.g. an unterminated quote, a field
            over MAX_LINE_BYTES): the rows after that point cannot be read, so the whole file
            is refused rather than imported in part, even in skip-invalid mode.
    """
    if fmt not in DELIMITERS:
        raise ValueError(f"unknown delimited format {fmt!r}; expected csv or tsv")
    text = _text_stream(source, newline="")  # the csv module reads LF, CRLF and lone CR itself
    try:
        reader = csv.reader(text, delimiter=DELIMITERS[fmt])
        start = 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise ValueError(f"line {start}: invalid {fmt.upper()} ({exc}); the rest of the file cannot be "
                                 "read, so nothing is imported") from None
            except UnicodeDecodeError as exc:
                raise ValueError(f"line {start}: the file starts with a UTF-16 byte order mark but is not valid "
                                 f"UTF-16 ({exc.reason})") from None
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            for position, cell in enumerate(row):
                if not cell.isascii():
                    try:
                        cell.encode("utf-8")
                    except UnicodeEncodeError:
                        raise ValueError(f"line {line}: invalid UTF-8") from None
                if "\r" in cell:
                    row[position] = cell.replace("\r\n", "\n").replace("\r", "\n")
            yield line, row
    finally:
        if not text.closed:
            text.detach()  # leave the caller's file open


def parse_column_mapping(text: str) -> dict | None:
    """``"prompt=question, completion=answer"`` -> ``{"prompt": "question", "completion": "answer"}``.

    Empty text gives None (the default mapping). Raises ValueError for a part without ``=``.
    """
    if not text or not text.strip():
        return None
    mapping = {}
    for part in text.split(","):
        field, sep, column = part.partition("=")
        if not sep or not field.strip() or not column.strip():
            raise ValueError(f"column mapping part {part.strip()!r} must look like field=column, "
                             "e.g. prompt=question, completion=answer")
        mapping[field.strip()] = column.strip()
    return mapping


def read_records(source: Source, fmt: str, column_mapping: dict | None = None) -> Iterator[ParsedLine]:
    """Parse a file of any line-based format (chat_jsonl, prompt_completion_jsonl, csv, tsv), streaming.

    Raises:
        ValueError: see read_jsonl and read_delimited; a column mapping given for a JSONL format.
    """
    if fmt in DELIMITERS:
        return read_delimited(source, fmt, column_mapping)
    if column_mapping:
        raise ValueError(f"a column mapping only applies to csv and tsv, not {fmt}")
    return read_jsonl(source, fmt)


def count_records(source: Source, fmt: str) -> int:
    """How many records read_records will yield, without parsing them (for progress). Raises ValueError like it."""
    return count_delimited_records(source, fmt) if fmt in DELIMITERS else count_jsonl_records(source)
