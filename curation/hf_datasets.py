"""Hugging Face ``datasets`` folders (``save_to_disk`` / ``load_from_disk``): import and export.

Plain Python, no Django. The ``datasets`` library is imported inside the functions (it is slow
to import and only these paths need it), always offline: nothing is fetched from the Hub.
"""
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from .formats import FormatError, ParsedLine, check_json_value, parse_chat_record, parse_prompt_completion_record

BATCH_ROWS = 1000
OPTIONAL_MESSAGE_KEYS = ("name", "tool_calls", "tool_call_id")


def _datasets():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import datasets

    datasets.disable_progress_bars()  # the import and export jobs report their own progress
    return datasets


def open_dataset(folder: Path, split: str = ""):
    """The ``datasets.Dataset`` saved in ``folder`` (memory-mapped Arrow, nothing read yet), and its split name.

    A ``DatasetDict`` folder needs ``split`` unless it has exactly one split, which is then
    taken; a plain ``Dataset`` folder ignores an empty ``split``.

    Raises:
        ValueError: not a folder written by ``save_to_disk``, an unknown or missing split, or a
            table without ``messages`` or ``prompt`` + ``completion`` columns.
    """
    datasets = _datasets()
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder; a Hugging Face dataset is imported from the folder "
                         "that Dataset.save_to_disk or DatasetDict.save_to_disk wrote")
    try:
        loaded = datasets.load_from_disk(str(folder))
    except FileNotFoundError as exc:
        raise ValueError(f"{folder} is not a folder written by save_to_disk: {exc}") from None
    if isinstance(loaded, datasets.DatasetDict):
        names = list(loaded)
        if not split and len(names) == 1:
            split = names[0]
        if split not in loaded:
            wanted = f"split {split!r} is not in it" if split else "say which split to import"
            raise ValueError(f"{folder} holds a DatasetDict with splits {', '.join(names)}; {wanted} "
                             "(one split per import, so row numbers stay unambiguous)")
        loaded = loaded[split]
    elif split:
        raise ValueError(f"{folder} holds a single Dataset, not a DatasetDict; leave the split empty")
    columns = loaded.column_names
    if "messages" not in columns and not {"prompt", "completion"} <= set(columns):
        raise ValueError(f"the dataset has columns {', '.join(columns)}; expected 'messages' (chat) or "
                         "'prompt' and 'completion'")
    return loaded, split


def read_hf_dataset(folder: Path, split: str = "") -> Iterator[ParsedLine]:
    """Rows of a ``save_to_disk`` folder as ParsedLines numbered by row (row 1 is ``dataset[0]``).

    Rows are read ``BATCH_ROWS`` at a time (``Dataset.iter``), so memory holds one batch. A
    ``messages`` column is read as OpenAI chat (struct fields Arrow filled with null, because
    another row's message has them, are dropped first); otherwise ``prompt`` and
    ``completion`` become a user and an assistant turn. A ``metadata`` column (a struct) and
    every other column are kept in the example's metadata.

    Raises:
        ValueError: see open_dataset.
    """
    dataset, _ = open_dataset(folder, split)
    chat = "messages" in dataset.column_names
    conversation_columns = {"messages"} if chat else {"prompt", "completion"}
    row = 0
    for batch in dataset.iter(batch_size=BATCH_ROWS):
        names = list(batch)
        for values in zip(*batch.values(), strict=True):
            row += 1
            record = dict(zip(names, values, strict=True))
            try:
                metadata = _metadata(record, conversation_columns)
                if chat:
                    messages = parse_chat_record({"messages": _without_nulls(record["messages"])})[0]
                else:
                    messages = parse_prompt_completion_record({"prompt": record["prompt"],
                                                               "completion": record["completion"]})[0]
                check_json_value(messages)
            except FormatError as exc:
                yield ParsedLine(row, error=str(exc))
                continue
            yield ParsedLine(row, messages=messages, metadata=metadata)


def count_hf_rows(folder: Path, split: str = "") -> int:
    """Rows read_hf_dataset will yield (from the Arrow metadata, nothing is read). Raises ValueError like it."""
    return len(open_dataset(folder, split)[0])


def _without_nulls(value):
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def _metadata(record: dict, conversation_columns: set) -> dict:
    metadata = record.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise FormatError("column 'metadata' must be a struct (an object)")
    metadata = dict(metadata)
    for column, value in record.items():
        if column in conversation_columns or column == "metadata":
            continue
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise FormatError(f"column {column!r} holds a {type(value).__name__}, which JSON metadata cannot "
                              "store; drop or convert the column before saving the dataset") from None
        metadata[column] = value
    check_json_value(metadata)
    return metadata


def write_hf_dataset(jsonl_folder: Path, splits: list[str], target: Path, message_keys: set[str]) -> dict:
    """Save ``<split>.jsonl`` files of ``{"messages": [...]}`` lines as a DatasetDict folder at ``target``.

    Each split is built with ``Dataset.from_generator`` reading its JSONL file line by line,
    so memory stays bounded; Arrow files are staged in a cache folder beside ``target`` and
    removed afterwards. The ``messages`` column is a list of structs with ``role`` and
    ``content`` (strings) and, only when some message has them (``message_keys``), ``name``,
    ``tool_call_id`` (strings), ``tool_calls`` (list of ``{id, type, function: {name,
    arguments}}``), ``function_call``, ``weight`` and ``refusal``. Line-level tool settings and metadata
    are in the JSONL files only. An empty split is an empty table with the same features.

    Returns rows written per split. Load the result with ``datasets.load_from_disk(target)``.
    """
    datasets = _datasets()
    from datasets import Features, List, Value

    message = {"role": Value("string"), "content": Value("string")}
    if "name" in message_keys:
        message["name"] = Value("string")
    if "tool_calls" in message_keys:
        message["tool_calls"] = List({"id": Value("string"), "type": Value("string"),
                                      "function": {"name": Value("string"), "arguments": Value("string")}})
    if "tool_call_id" in message_keys:
        message["tool_call_id"] = Value("string")
    if "function_call" in message_keys:
        message["function_call"] = {"name": Value("string"), "arguments": Value("string")}
    if "weight" in message_keys:
        message["weight"] = Value("int64")
    if "refusal" in message_keys:
        message["refusal"] = Value("string")
    features = Features({"messages": List(message)})
    cache = target.with_name(target.name + ".cache")
    try:
        parts = {}
        for split in splits:
            path = jsonl_folder / f"{split}.jsonl"
            if path.stat().st_size == 0:
                parts[split] = datasets.Dataset.from_dict({"messages": []}, features=features)
            else:
                parts[split] = datasets.Dataset.from_generator(
                    _jsonl_messages, gen_kwargs={"path": str(path)}, features=features, cache_dir=str(cache),
                    keep_in_memory=False)
        dict_ = datasets.DatasetDict(parts)
        dict_.save_to_disk(str(target))
        return {split: len(part) for split, part in parts.items()}
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def _jsonl_messages(path: str):
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            yield {"messages": json.loads(line)["messages"]}
