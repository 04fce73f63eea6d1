"""Exporting snapshots, in constant memory: OpenAI chat JSONL (one file per split) and a Hugging Face
``datasets`` folder (a DatasetDict with train/validation/test, built from those files), plus a tar
of that folder to download.

An export's folder (``SnapshotExport.path``)::

    train.jsonl  validation.jsonl  test.jsonl     {"messages": [...]} per line, as training reads them
                                                  (the snapshot's system prompt where an item has none),
                                                  with the item's tool settings and metadata (export_record)
    hf_dataset/                                   datasets.load_from_disk(path / "hf_dataset")
    hf_dataset.tar                                the same folder, served by the API

With ``layout`` hub_parquet or hub_jsonl the folder also holds a Hugging Face Hub dataset repository
(curation.hub_export)::

    hub_dataset/README.md                         the dataset card: licence, configs, provenance, snapshot hash
    hub_dataset/data/<split>-00000-of-00001.parquet (or .jsonl)   datasets.load_dataset(path / "hub_dataset")
    hub_dataset.tar                               the same folder, served by the API
"""
import json
import tarfile
from pathlib import Path

from django.db import transaction

from ftplatform import jobrows, queues
from ftplatform.errors import ServiceError
from ftplatform.jobrows import JobStatus
from ftplatform.roles import require_permission

from .choices import ExportLayout, Split
from .formats import export_record
from .models import Snapshot, SnapshotExport

CHUNK = 2000
HF_FOLDER = "hf_dataset"
HF_ARCHIVE = "hf_dataset.tar"


@transaction.atomic
def start_snapshot_export(snapshot: Snapshot, *, by, layout: str = ExportLayout.FOLDER) -> SnapshotExport:
    """Create a queued export and enqueue its job after commit. ``layout``: an ExportLayout value; the hub
    layouts add a Hugging Face Hub dataset repo (Parquet or JSONL per split and a dataset card).

    Raises NotAllowed when ``by`` lacks 'curation.add_snapshotexport' (engineers hold it); ServiceError for
    an unknown layout (field ``layout``).
    """
    require_permission(by, "curation.add_snapshotexport", "export snapshots")
    if layout not in ExportLayout.values:
        raise ServiceError(f"layout must be one of {', '.join(ExportLayout.values)}, got {layout!r}", field="layout")
    export = SnapshotExport.objects.create(snapshot=snapshot, created_by=by, layout=layout)
    queues.enqueue_job_row(export, "default", "curation.jobs.run_snapshot_export")
    return export


def write_chat_jsonl(snapshot: Snapshot, folder: Path, message_keys: set | None = None) -> dict:
    """Write ``<split>.jsonl`` files (curation.formats.export_record per line) into ``folder``: each item's
    frozen messages with the snapshot's frozen system prompt first where it has no system message,
    the conversations training trains on (training.runs.snapshot_conversations), and its tool settings
    and metadata as imported.

    Rows are streamed from the database in chunks, so memory stays flat for any size.
    Returns examples written per split; ``message_keys``, when given, receives every key
    that any message has (the HF export's features depend on them).
    """
    folder.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split in Split.values:
        count = 0
        with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as handle:
            rows = snapshot.items.filter(split=split).order_by("id").values_list("messages", "tool_settings",
                                                                                 "metadata")
            for messages, tool_settings, metadata in rows.iterator(chunk_size=CHUNK):
                record = export_record(messages, tool_settings, metadata, snapshot.system_prompt)
                messages = record["messages"]
                handle.write(json.dumps(record, ensure_ascii=False))
                handle.write("\n")
                if message_keys is not None:
                    for message in messages:
                        message_keys.update(message)
                count += 1
        counts[split] = count
    return counts


def write_hf_dataset(folder: Path, message_keys: set) -> dict:
    """Build ``folder/hf_dataset`` (a DatasetDict, ``messages`` column) and ``folder/hf_dataset.tar`` from the
    JSONL files that write_chat_jsonl wrote into ``folder`` (its ``message_keys`` give the features).

    Streams each file (curation.hf_datasets.write_hf_dataset). Returns rows per split.
    """
    from .hf_datasets import write_hf_dataset as write_folder

    counts = write_folder(folder, Split.values, folder / HF_FOLDER, message_keys)
    with tarfile.open(folder / HF_ARCHIVE, "w") as archive:
        archive.add(folder / HF_FOLDER, arcname=HF_FOLDER)
    return counts


def cancel_snapshot_export(export: SnapshotExport, *, by) -> SnapshotExport:
    """Cancel a queued export at once, or have a running one stop between its files, leaving none
    (ftplatform.jobrows.request_cancel: its creator or an engineer). Raises NotAllowed or Conflict."""
    return jobrows.request_cancel(export, by=by, noun=f"export {export.pk}")


def export_file(export: SnapshotExport, split: str) -> Path:
    """The finished export's file for ``split``. Raises ServiceError if not ready, gone from the server,
    or an unknown split."""
    if split not in Split.values:
        raise ServiceError(f"split must be one of {', '.join(Split.values)}, got {split!r}")
    return _finished_file(export, f"{split}.jsonl")


def export_hf_archive(export: SnapshotExport) -> Path:
    """The finished export's ``hf_dataset.tar`` (the DatasetDict folder). Raises ServiceError if not ready,
    gone from the server, or for an export made before the HF folder was part of every export."""
    return _finished_file(export, HF_ARCHIVE)


def export_hub_archive(export: SnapshotExport) -> Path:
    """The finished export's ``hub_dataset.tar`` (the Hub dataset repo folder). Raises ServiceError for an
    export of the plain folder layout, or as export_hf_archive."""
    from .hub_export import HUB_ARCHIVE

    if export.layout == ExportLayout.FOLDER:
        raise ServiceError(f"export {export.pk} has the {export.layout} layout, without a Hub dataset repo; "
                           f"export the snapshot again with layout {ExportLayout.HUB_PARQUET} or "
                           f"{ExportLayout.HUB_JSONL}", field="layout")
    return _finished_file(export, HUB_ARCHIVE)


def _finished_file(export: SnapshotExport, name: str) -> Path:
    if export.status != JobStatus.SUCCEEDED:
        raise ServiceError(f"export {export.pk} is {export.status}; download it once it has succeeded")
    path = Path(export.path, name)
    if not path.is_file():  # its folder was cleaned up, or it predates the file: a 400, never a 500 from open()
        raise ServiceError(f"export {export.pk} has no {name} on the server (its files were removed, or it was made "
                           "before exports had one); export the snapshot again")
    return path
