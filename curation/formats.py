"""File formats and the canonical form of an example. Plain Python: no Django here.

A conversation is a list of ``{"role": ..., "content": ...}`` dicts in OpenAI's chat format.
Its *input* is every message before the final assistant turn; its *output* is that turn.
"""
import csv
import hashlib
import io
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

ROLES = ("system", "user", "assistant", "tool")
MESSAGE_KEYS = {"role", "content", "name", "tool_calls", "tool_call_id"}
FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
CHAT_RECORD_KEYS = {"messages", "metadata"}
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


def content_hash(messages: list[dict]) -> str:
    """sha256 (hex, 64 chars) of the canonical JSON of the whole conversation."""
    return sha256_hex(canonical_json(messages))


def needs_answer(messages: list[dict]) -> bool:
    """Whether the conversation ends in a user turn: an input still waiting for its assistant answer
    (a draft to annotate or pre-annotate; see validate_messages' ``allow_unanswered``)."""
    return bool(messages) and messages[-1].get("role") == "user"


def input_messages(messages: list[dict]) -> list[dict]:
    """The messages before the final assistant turn (the prompt a model answers); all of them when
    the conversation still needs its answer."""
    return list(messages) if needs_answer(messages) else messages[:-1]


def input_hash(messages: list[dict]) -> str:
    """sha256 (hex) of the input part; examples sharing it are alternative outputs for one input."""
    return sha256_hex(canonical_json(input_messages(messages)))


def conversation_hashes(messages: list[dict]) -> tuple[str, bytes, str]:
    """``(canonical JSON, sha256 digest (32 bytes), input_hash hex)`` of a conversation, serialised once.

    Equal to ``(canonical_json(m), bytes.fromhex(content_hash(m)), input_hash(m))``: the input's
    canonical JSON is the conversation's without its last element, so it is sliced off the
    whole text rather than serialised again (the import's hot path).
    """
    text = canonical_json(messages)
    if needs_answer(messages):
        input_text = text
    elif len(messages) > 1:
        input_text = text[: len(text) - len(canonical_json(messages[-1])) - 2] + "]"  # drop ',<last>]'
    else:
        input_text = "[]"
    return text, hashlib.sha256(text.encode("utf-8")).digest(), sha256_hex(input_text)


def with_system_prompt(messages: list[dict], system_prompt: str) -> list[dict]:
    """Prepend ``system_prompt`` as a system message unless the conversation already starts with one."""
    if not system_prompt or (messages and messages[0]["role"] == "system"):
        return list(messages)
    return [{"role": "system", "content": system_prompt}, *messages]


def prompt_messages(messages: list[dict], system_prompt: str = "", few_shot: list[list[dict]] | None = None
                    ) -> list[dict]:
    """What a prompted model is asked: the input ``messages`` with ``system_prompt`` prepended (as
    with_system_prompt), and the ``few_shot`` worked examples (whole conversations ending in their
    answer; their own system messages dropped) as earlier turns between the system message and the
    input: in-context learning (Brown et al., 2020, "Language Models are Few-Shot Learners")."""
    messages = with_system_prompt(messages, system_prompt)
    if not few_shot:
        return messages
    head = messages[:1] if messages and messages[0]["role"] == "system" else []
    shots = [message for shot in few_shot for message in shot if message["role"] != "system"]
    return [*head, *shots, *messages[len(head):]]


def validate_messages(messages, *, allow_unanswered: bool = False) -> list[dict]:
    """Check a conversation in OpenAI's chat format and return it normalised.

    Rules (OpenAI chat fine-tuning format): a non-empty list of objects; roles in ROLES; a
    system message only first; ``content`` a string or a list of text parts
    (``{"type": "text", "text": ...}``, joined with newlines), non-empty for user turns and
    for assistant turns without tool calls. An assistant turn may carry ``tool_calls``
    (``{"id", "type": "function", "function": {"name", "arguments": JSON object as a string}}``);
    every call must be answered by a ``tool`` message with its ``tool_call_id`` before the
    conversation goes on, unless that assistant turn is the final output. The last message
    is the assistant output, or, with ``allow_unanswered``, a user turn still waiting for it
    (needs_answer). Only known keys are kept.

    Raises:
        FormatError: naming the message (1-based) and the problem.
    """
    if not isinstance(messages, list) or not messages:
        raise FormatError("'messages' must be a non-empty list")
    normalised, pending_calls = [], {}
    for position, message in enumerate(messages, start=1):
        try:
            where = f"message {position}"
            if not isinstance(message, dict):
                raise FormatError(f"{where} must be an object with 'role' and 'content'")
            unknown = set(message) - MESSAGE_KEYS
            if unknown:
                raise FormatError(f"{where} has unknown key(s) {', '.join(sorted(unknown))}; "
                                  f"expected {', '.join(sorted(MESSAGE_KEYS))}")
            role = message.get("role")
            if role not in ROLES:
                raise FormatError(f"{where} has role {role!r}; expected one of {', '.join(ROLES)}")
            where = f"{where} ({role})"
            if role == "system" and position != 1:
                raise FormatError(f"{where}: only the first message may be a system message")
            if pending_calls and role != "tool":
                raise FormatError(f"{where}: tool call(s) {', '.join(pending_calls)} were not answered by tool "
                                  "messages")
            if "name" in message and not isinstance(message["name"], str):
                raise FormatError(f"{where} must have 'name' as a string")
            out = {"role": role, "content": _content_text(message.get("content"), where)}
            if "name" in message:
                out["name"] = message["name"]
            if "tool_calls" in message:
                if role != "assistant":
                    raise FormatError(f"{where}: only assistant messages may have 'tool_calls'")
                out["tool_calls"] = _tool_calls(message["tool_calls"], where)
                pending_calls = {call["id"]: True for call in out["tool_calls"]}
            if role == "tool":
                call_id = message.get("tool_call_id")
                if not isinstance(call_id, str) or call_id not in pending_calls:
                    raise FormatError(f"{where}: 'tool_call_id' {call_id!r} does not answer a pending tool call")
                del pending_calls[call_id]
                out["tool_call_id"] = call_id
            elif "tool_call_id" in message:
                raise FormatError(f"{where}: only tool messages may have 'tool_call_id'")
            if role in ("user", "tool") or (role == "assistant" and "tool_calls" not in out):
                if not out["content"].strip():
                    raise FormatError(f"{where} has empty content")
            normalised.append(out)
        except FormatError as exc:  # every check of this message, nested ones included, names it
            exc.position = exc.position or position
            raise
    if allow_unanswered and needs_answer(normalised):
        return normalised
    if normalised[-1]["role"] != "assistant":
        if not any(m["role"] == "assistant" for m in normalised):
            raise FormatError("the conversation has no assistant turn (nothing to learn)")
        raise FormatError("the conversation must end with the assistant turn to learn")
    if len(normalised) < 2 or all(m["role"] == "system" for m in normalised[:-1]):
        raise FormatError("the conversation has no user input before the assistant turn")
    return normalised


def _content_text(content, where: str) -> str:
    """A message's content as one string: a string as is, text parts joined with newlines."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for index, part in enumerate(content, start=1):
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise FormatError(f"{where}: content part {index} is {kind!r}; only text parts "
                                  '({"type": "text", "text": "..."}) are supported')
            texts.append(part["text"])
        return "\n".join(texts)
    raise FormatError(f"{where} must have 'content' as a string or a list of text parts")


def _tool_calls(calls, where: str) -> list[dict]:
    if not isinstance(calls, list) or not calls:
        raise FormatError(f"{where}: 'tool_calls' must be a non-empty list")
    normalised, seen = [], set()
    for index, call in enumerate(calls, start=1):
        at = f"{where}: tool call {index}"
        if not isinstance(call, dict) or call.get("type") != "function" or not isinstance(call.get("function"), dict):
            raise FormatError(f"{at} must be {{'id', 'type': 'function', 'function': {{'name', 'arguments'}}}}")
        call_id, function = call.get("id"), call["function"]
        if not isinstance(call_id, str) or not call_id or call_id in seen:
            raise FormatError(f"{at} needs a unique, non-empty string 'id'")
        seen.add(call_id)
        name, arguments = function.get("name"), function.get("arguments")
        if not isinstance(name, str) or not FUNCTION_NAME.fullmatch(name):
            raise FormatError(f"{at}: function name {name!r} must be 1-64 letters, digits, '_' or '-'")
        try:
            parsed = json.loads(arguments) if isinstance(arguments, str) else None
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise FormatError(f"{at}: 'arguments' must be a JSON object encoded as a string")
        normalised.append({"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}})
    return normalised


def _metadata(record: dict) -> dict:
    metadata = record.get("metadata", {})
    if not isinstance(metadata, dict):
        raise FormatError("'metadata' must be an object")
    return metadata


def parse_chat_record(record) -> tuple[list[dict], dict]:
    """``{"messages": [...], "metadata": {...}?}`` -> (messages, metadata); a conversation ending in a
    user turn is an input imported without its answer (a draft to annotate). Raises FormatError."""
    if not isinstance(record, dict):
        raise FormatError("each line must be a JSON object")
    unknown = set(record) - CHAT_RECORD_KEYS
    if unknown:
        raise FormatError(f"unknown key(s) {', '.join(sorted(unknown))}; expected messages, metadata")
    if "messages" not in record:
        raise FormatError("missing 'messages'")
    return validate_messages(record["messages"], allow_unanswered=True), _metadata(record)


def parse_prompt_completion_record(record) -> tuple[list[dict], dict]:
    """``{"prompt": str, "completion": str}`` -> a user/assistant conversation. Raises FormatError."""
    if not isinstance(record, dict):
        raise FormatError("each line must be a JSON object")
    unknown = set(record) - PROMPT_COMPLETION_KEYS
    if unknown:
        raise FormatError(f"unknown key(s) {', '.join(sorted(unknown))}; expected prompt, completion, metadata")
    for key in ("prompt", "completion"):
        if not isinstance(record.get(key), str):
            raise FormatError(f"'{key}' must be a string")
    messages = [{"role": "user", "content": record["prompt"]}, {"role": "assistant", "content": record["completion"]}]
    return validate_messages(messages), _metadata(record)


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


Source = bytes | BinaryIO
"""What the readers take: a file's bytes, or a seekable binary file (read from its start and
left open for the caller to close)."""


def read_jsonl(source: Source, fmt: str) -> Iterator[ParsedLine]:
    """Parse JSONL line by line, streaming; yields one ParsedLine per non-empty line (1-based numbers).

    Accepts UTF-8 with or without BOM, UTF-16 with BOM, and LF, CRLF or lone CR line ends.
    Lines are split on those line ends only, so U+2028/U+2029 inside strings never split a
    record. One line is in memory at a time; a line over MAX_LINE_BYTES is skipped in pieces
    and reported.

    Raises:
        ValueError: ``fmt`` is not a known format, or a UTF-16 file is not valid UTF-16
            (naming the line; nothing after it can be decoded).
    """
    try:
        parse = PARSERS[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(PARSERS)}") from None
    for number, text, error in _jsonl_lines(source):
        if error:
            yield ParsedLine(number, error=error)
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
            yield ParsedLine(number, error=f"invalid JSON: {exc.msg} (column {exc.colno})")
            continue
        except RecursionError:
            yield ParsedLine(number, error=f"invalid JSON: nested deeper than {MAX_JSON_DEPTH} levels")
            continue
        except (ValueError, FormatError) as exc:  # NaN, huge numbers, NUL, lone surrogates, depth
            yield ParsedLine(number, error=f"invalid JSON: {exc}")
            continue
        try:
            messages, metadata = parse(record)
        except FormatError as exc:
            yield ParsedLine(number, error=str(exc))
            continue
        yield ParsedLine(number, messages=messages, metadata=metadata)


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
