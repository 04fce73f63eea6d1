"""Hugging Face ``datasets`` folders (``save_to_disk`` / ``load_from_disk``, or a Hub dataset repo's data files
read with ``load_dataset``): import and export.

Plain Python, no Django. The ``datasets`` library is imported inside the functions (it is slow
to import and only these paths need it), always offline: nothing is fetched from the Hub.
"""
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from .formats import (
    TOOL_SETTING_KEYS,
    FormatError,
    ParsedLine,
    check_json_value,
    parse_chat_record,
    parse_prompt_completion_record,
)

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
    A folder that save_to_disk did not write but that has a Hub dataset repo's layout (a card, ``data/``, or
    data files) is loaded with ``load_dataset`` (its splits as a DatasetDict's).

    A ``DatasetDict`` folder needs ``split`` unless it has exactly one split, which is then
    taken; a plain ``Dataset`` folder ignores an empty ``split``.

    Raises:
        ValueError: neither a folder written by ``save_to_disk`` nor a loadable Hub dataset repo, an unknown
            or missing split, or a table without ``messages`` or ``prompt`` + ``completion`` columns.
    """
    datasets = _datasets()
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder; a Hugging Face dataset is imported from the folder "
                         "that Dataset.save_to_disk or DatasetDict.save_to_disk wrote")
    try:
        loaded = datasets.load_from_disk(str(folder))
    except FileNotFoundError as exc:
        if not _is_repo_folder(folder):
            raise ValueError(f"{folder} is not a folder written by save_to_disk, nor a Hub dataset repo (data files "
                             f"per split, e.g. data/train-00000-of-00001.parquet): {exc}") from None
        loaded = _load_repo_folder(datasets, folder)
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


REPO_DATA_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv", ".tsv", ".arrow")


def _is_repo_folder(folder: Path) -> bool:
    """A Hub dataset repo's layout: a data/ folder, a card, or data files at the top."""
    return (folder / "data").is_dir() or (folder / "README.md").is_file() or any(
        path.suffix in REPO_DATA_SUFFIXES for path in folder.iterdir() if path.is_file())


def _load_repo_folder(datasets, folder: Path):
    """``datasets.load_dataset(folder)``: the splits its card's ``configs`` or the Hub's file names give (what
    curation.hub_export writes). Arrow files are cached beside the folder (``<folder>.cache``; an import's
    upload folder is removed when it ends). Raises ValueError when datasets cannot read it."""
    try:
        return datasets.load_dataset(str(folder), cache_dir=str(folder.with_name(folder.name + ".cache")))
    except (ValueError, FileNotFoundError, datasets.exceptions.DatasetGenerationError) as exc:
        raise ValueError(f"{folder} looks like a Hub dataset repo, but datasets cannot load it: {exc}") from None


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
    conversation_columns = {"messages", *TOOL_SETTING_KEYS} if chat else {"prompt", "completion"}
    row = 0
    for batch in dataset.iter(batch_size=BATCH_ROWS):
        names = list(batch)
        for values in zip(*batch.values(), strict=True):
            row += 1
            record = dict(zip(names, values, strict=True))
            try:
                metadata = _metadata(record, conversation_columns)
                tool_settings = {}
                if chat:
                    line = {"messages": _without_nulls(record["messages"]), **_tool_settings(record)}
                    messages, _, tool_settings = parse_chat_record(line)
                else:
                    messages = parse_prompt_completion_record({"prompt": record["prompt"],
                                                               "completion": record["completion"]})[0]
                check_json_value(messages)
            except FormatError as exc:
                yield ParsedLine(row, error=str(exc))
                continue
            yield ParsedLine(row, messages=messages, metadata=metadata, tool_settings=tool_settings)


def count_hf_rows(folder: Path, split: str = "") -> int:
    """Rows read_hf_dataset will yield (from the Arrow metadata, nothing is read). Raises ValueError like it."""
    return len(open_dataset(folder, split)[0])


def _without_nulls(value):
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def _tool_settings(record: dict) -> dict:
    """The row's tool settings (TOOL_SETTING_KEYS columns that are not null), ``tools`` and ``functions``
    parsed when they are JSON text (as write_hf_dataset stores them)."""
    settings = {}
    for key in TOOL_SETTING_KEYS:
        value = record.get(key)
        if isinstance(value, str) and key in JSON_COLUMNS:
            try:
                value = json.loads(value)
            except ValueError:
                raise FormatError(f"column {key!r} is not JSON text: {value[:60]!r}") from None
        if value is not None:
            settings[key] = value
    return settings


def _metadata(record: dict, conversation_columns: set) -> dict:
    metadata = record.get("metadata") or {}
    if isinstance(metadata, str):  # JSON text, as write_hf_dataset stores it
        try:
            metadata = json.loads(metadata)
        except ValueError:
            raise FormatError("column 'metadata' is text but not JSON") from None
    if not isinstance(metadata, dict):
        raise FormatError("column 'metadata' must be a struct or JSON text of an object")
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
    arguments}}``), ``function_call``, ``weight`` and ``refusal``. The line's tool settings and metadata
    are columns too: ``tools`` and ``functions`` as JSON text (a tool's parameters are any JSON Schema,
    which no fixed Arrow type holds), ``parallel_tool_calls`` (null when the line has none) and
    ``metadata`` as JSON text; read_hf_dataset reads them back. An empty split is an empty table with
    the same features.

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
    features = Features({"messages": List(message), "tools": Value("string"), "parallel_tool_calls": Value("bool"),
                         "functions": Value("string"), "metadata": Value("string")})
    cache = target.with_name(target.name + ".cache")
    try:
        parts = {}
        for split in splits:
            path = jsonl_folder / f"{split}.jsonl"
            if path.stat().st_size == 0:
                parts[split] = datasets.Dataset.from_dict({name: [] for name in features}, features=features)
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
            record = json.loads(line)
            yield {"messages": record["messages"], **_json_columns(record, JSON_COLUMNS),
                   "parallel_tool_calls": record.get("parallel_tool_calls"),
                   "metadata": json.dumps(record.get("metadata", {}), ensure_ascii=False)}


JSON_COLUMNS = ("tools", "functions")  # tool settings stored as JSON text in a Hugging Face dataset


def _json_columns(record: dict, names) -> dict:
    return {name: None if record.get(name) is None else json.dumps(record[name], ensure_ascii=False)
            for name in names}


DATASET_FOLDER_MARKERS = ("dataset_dict.json", "state.json")


def extract_dataset_archive(archive: Path, target: Path, max_bytes: int) -> Path:
    """Unpack a ``.tar`` (plain or gz/bz2/xz) or ``.zip`` of a save_to_disk folder into the new folder ``target``
    and return the dataset folder inside it: ``target`` itself, or the single folder the archive wraps it in
    (``hf_dataset/`` in ftplatform's own export tar).

    Safe for archives from anyone: tar members go through tarfile's "data" filter (no absolute paths, no
    ``..``, no links leaving ``target``, no devices), zip members with absolute or ``..`` paths are refused,
    and archives that would unpack to more than ``max_bytes`` are refused before anything is written.

    Raises:
        ValueError: not a tar or zip archive, a damaged one, an unsafe member, or too large unpacked.
    """
    import tarfile
    import zipfile

    target.mkdir(parents=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
            for member in members:
                parts = Path(member.filename).parts
                if Path(member.filename).is_absolute() or ".." in parts:
                    raise ValueError(f"the zip archive's member {member.filename!r} points outside the archive")
            _check_unpacked_size(sum(member.file_size for member in members), max_bytes)
            bundle.extractall(target)
    else:
        try:
            with tarfile.open(archive) as bundle:
                _check_unpacked_size(sum(member.size for member in bundle.getmembers()), max_bytes)
                bundle.extractall(target, filter="data")
        except tarfile.FilterError as exc:  # its own message names the server's folder
            kind = " ".join(re.findall(r"[A-Z][a-z]+", type(exc).__name__)).lower()
            raise ValueError(f"the tar archive's member {exc.tarinfo.name!r} is refused ({kind}): members must be "
                             "files and folders inside the archive's folder") from None
        except (tarfile.TarError, EOFError) as exc:
            raise ValueError("the upload is not a .tar (.tar.gz, .tgz) or .zip archive of a folder written by "
                             f"save_to_disk ({exc})") from None
    folder = target
    while not any((folder / name).is_file() for name in DATASET_FOLDER_MARKERS):
        entries = list(folder.iterdir())
        if len(entries) != 1 or not entries[0].is_dir():
            break  # open_dataset then says what is missing
        folder = entries[0]
    return folder


def _check_unpacked_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise ValueError(f"the archive unpacks to {size:,} bytes, more than the {max_bytes:,} allowed "
                         "(FTPLATFORM_IMPORT_ARCHIVE_MAX_BYTES)")
