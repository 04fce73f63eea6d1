"""A snapshot export as a Hugging Face Hub dataset repository: one data file per split under ``data/``, named
as the Hub names them (``data/<split>-00000-of-00001.parquet`` or ``.jsonl``), and a dataset card
(``README.md``: YAML front matter with licence, task category, size category, ``configs`` naming each split's
files, and the provenance; then Markdown), so that ``datasets.load_dataset(folder)`` finds the splits and
``huggingface-cli upload --repo-type dataset NAME folder`` publishes it as it is.

Parquet is the default (the Hub's own format: typed columns, compressed, what its dataset viewer reads);
JSONL is offered too, line for line the export's ``<split>.jsonl`` (readable, diffable). A split with no
examples gets no file and no ``configs`` entry (``load_dataset`` refuses a split without data).
Format: https://huggingface.co/docs/hub/datasets-cards and https://huggingface.co/docs/hub/datasets-manual-configuration.
"""
import shutil
import tarfile
from pathlib import Path

from django.db.models import Count

from ftml.model_card import _code, _fenced, _text, licence_metadata

from .choices import ExportLayout, Split
from .models import SnapshotExport

HUB_FOLDER = "hub_dataset"
HUB_ARCHIVE = "hub_dataset.tar"
# The Hub's size categories (the card's size_categories), by number of examples.
SIZE_CATEGORIES = ((10 ** 3, "n<1K"), (10 ** 4, "1K<n<10K"), (10 ** 5, "10K<n<100K"), (10 ** 6, "100K<n<1M"),
                   (10 ** 7, "1M<n<10M"), (10 ** 8, "10M<n<100M"), (10 ** 9, "100M<n<1B"), (10 ** 10, "1B<n<10B"),
                   (10 ** 11, "10B<n<100B"), (10 ** 12, "100B<n<1T"))
SUFFIXES = {ExportLayout.HUB_PARQUET: "parquet", ExportLayout.HUB_JSONL: "jsonl"}


def hub_data_file(split: str, layout: str) -> str:
    """The split's file in the repo, as the Hub names shards: ``data/train-00000-of-00001.parquet``."""
    return f"data/{split}-00000-of-00001.{SUFFIXES[layout]}"


def size_category(count: int) -> str:
    """The Hub's size category for ``count`` examples, e.g. "n<1K"."""
    for limit, name in SIZE_CATEGORIES:
        if count < limit:
            return name
    return "n>1T"


def write_hub_dataset(export: SnapshotExport, folder: Path, counts: dict, hf_folder: Path) -> Path:
    """Write ``folder/hub_dataset/`` (the repo: ``README.md`` and ``data/``) and ``folder/hub_dataset.tar``.

    ``folder`` holds the export's ``<split>.jsonl`` files (curation.exports.write_chat_jsonl, ``counts`` per
    split) and ``hf_folder`` its save_to_disk DatasetDict (curation.exports.write_hf_dataset): Parquet files are
    written from that DatasetDict (its features, batch by batch from memory-mapped Arrow), JSONL files are
    copies of the split files. Returns the repo folder.
    """
    layout = export.layout
    target = folder / HUB_FOLDER
    (target / "data").mkdir(parents=True)
    splits = [split for split in Split.values if counts.get(split)]
    if layout == ExportLayout.HUB_PARQUET:
        from .hf_datasets import _datasets

        loaded = _datasets().load_from_disk(str(hf_folder))
        for split in splits:
            loaded[split].to_parquet(str(target / hub_data_file(split, layout)))
    else:
        for split in splits:
            shutil.copyfile(folder / f"{split}.jsonl", target / hub_data_file(split, layout))
    (target / "README.md").write_text(render_dataset_card(dataset_card_info(export, counts)), encoding="utf-8")
    with tarfile.open(folder / HUB_ARCHIVE, "w") as archive:
        archive.add(target, arcname=HUB_FOLDER)
    return target


def dataset_card_info(export: SnapshotExport, counts: dict) -> dict:
    """The card's facts as plain data: the dataset, the snapshot's identity, who made and approved it and when,
    where its examples came from (examples per source, import files), the licence, the files per split."""
    snapshot = export.snapshot
    dataset = snapshot.dataset
    sources = {row["example__source"] or "unknown (example deleted since)": row["n"]
               for row in snapshot.items.values("example__source").annotate(n=Count("id")).order_by("-n")}
    imports = [{"import_batch": row["example__import_batch"], "file": row["example__import_batch__filename"],
                "examples": row["n"]}
               for row in snapshot.items.filter(example__import_batch__isnull=False)
               .values("example__import_batch", "example__import_batch__filename").annotate(n=Count("id"))
               .order_by("example__import_batch")]
    return {
        "dataset": dataset.name,
        "description": dataset.description,
        "licence": dataset.licence,
        "language": snapshot.language,
        "snapshot_id": snapshot.pk,
        "snapshot_sha256": snapshot.content_hash,
        "hash_version": snapshot.hash_version,
        "status": snapshot.status,
        "created_by": _username(snapshot.created_by),
        "created_at": snapshot.created_at.isoformat(timespec="seconds"),
        "reviewed_by": _username(snapshot.reviewed_by),
        "reviewed_at": snapshot.reviewed_at.isoformat(timespec="seconds") if snapshot.reviewed_at else None,
        "seed": snapshot.seed,
        "split_fractions": snapshot.split_fractions,
        "system_prompt": snapshot.system_prompt,
        "sources": sources,
        "imports": imports,
        "export_id": export.pk,
        "exported_by": _username(export.created_by),
        "counts": {split: counts.get(split, 0) for split in Split.values},
        "files": {split: hub_data_file(split, export.layout) for split in Split.values if counts.get(split)},
    }


def render_dataset_card(info: dict) -> str:
    """README.md of the repo: ``---``, YAML (huggingface_hub.DatasetCardData), ``---``, Markdown (user text
    escaped as in ftml.model_card)."""
    from huggingface_hub import DatasetCardData

    provenance = {key: info[key] for key in ("snapshot_id", "snapshot_sha256", "hash_version", "status",
                                             "created_by", "created_at", "reviewed_by", "reviewed_at", "export_id")
                  if info[key] is not None}
    data = DatasetCardData(
        pretty_name=info["dataset"],
        language=[info["language"]] if info["language"] else None,
        task_categories=["text-generation"],
        size_categories=[size_category(sum(info["counts"].values()))],
        tags=["chat", "ftplatform"],
        configs=[{"config_name": "default", "data_files": [
            {"split": split, "path": f"data/{split}-*"} for split in info["files"]]}],
        **licence_metadata(info["licence"]),
        ftplatform={"dataset": info["dataset"], **provenance, "examples_by_source": info["sources"]},
    )
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(_card_body(info)) + "\n"


def _card_body(info: dict) -> list[str]:
    rows = "\n".join(f"| {_text(split)} | {count} | "
                     f"{_code(info['files'][split], in_table=True) if split in info['files'] else 'none (empty)'} |"
                     for split, count in info["counts"].items())
    approved = (f"{_text(info['status'])} by {_text(info['reviewed_by'] or 'unknown')} at {_code(info['reviewed_at'])}"
                if info["reviewed_at"] else f"{_text(info['status'])} (not reviewed)")
    sources = ", ".join(f"{_text(name)} {count}" for name, count in info["sources"].items()) or "none"
    provenance = [
        "## Provenance", "",
        f"- Dataset: {_text(info['dataset'])}",
        f"- Snapshot: {_code(info['snapshot_id'])}, content hash (SHA-256, hash version {info['hash_version']}) "
        f"{_code(info['snapshot_sha256'])}",
        f"- Made by {_text(info['created_by'] or 'unknown')} at {_code(info['created_at'])}; {approved}",
        f"- Split: seed {_code(info['seed'])}, fractions {_code(info['split_fractions'])} of distinct inputs "
        "(identical and near-duplicate inputs never straddle splits)",
        f"- Examples by source: {sources}",
    ]
    provenance += [f"  - import {_code(entry['import_batch'])} ({_text(entry['file'] or 'unnamed')}): "
                   f"{entry['examples']} examples" for entry in info["imports"]]
    provenance.append(f"- Exported by {_text(info['exported_by'] or 'unknown')} (export {_code(info['export_id'])})")
    licence = (f"{_text(info['licence'])}, as recorded on the dataset" if info["licence"]
               else "not recorded on the dataset; ask its owners before reusing the examples")
    loading = "\n".join([
        "from datasets import load_dataset",
        "",
        'dataset = load_dataset("path/to/this/folder")  # or the Hub repo id once uploaded',
        'print(dataset["train"][0]["messages"])',
    ])
    body = [f"# {_text(info['dataset'])}"]
    if info["description"]:
        body.append(_fenced(info["description"], "text"))
    body += [
        "## Dataset structure\n\nOne record per example: `messages`, an OpenAI-style chat conversation "
        "(role, content) whose last assistant message is the output, with the snapshot's system prompt first "
        "where the example had none, exactly as ftplatform trains on it.\n\n"
        f"| split | examples | file |\n|---|---|---|\n{rows}",
        "\n".join(provenance),
        f"## Licence\n\n{licence}.",
        f"## How to load\n\n{_fenced(loading, 'python')}",
    ]
    if info["system_prompt"]:
        body.insert(-2, "## System prompt\n\n" + _fenced(info["system_prompt"], "text"))
    return body


def _username(user) -> str | None:
    return user.get_username() if user is not None else None
