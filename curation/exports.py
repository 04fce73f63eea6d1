"""Exporting snapshots as OpenAI chat JSONL, one file per split, in constant memory."""
import json
import shutil
from pathlib import Path

from django.conf import settings
from django.db import transaction

from ftplatform import jobrows, queues
from ftplatform.errors import ServiceError
from training.choices import RunStatus

from .choices import Split
from .models import Snapshot, SnapshotExport

CHUNK = 2000


@transaction.atomic
def start_snapshot_export(snapshot: Snapshot, *, by) -> SnapshotExport:
    """Create a queued export and enqueue its job after commit."""
    export = SnapshotExport.objects.create(snapshot=snapshot, created_by=by)
    queues.enqueue_job_row(export, "default", "curation.exports.run_snapshot_export")
    return export


def write_chat_jsonl(snapshot: Snapshot, folder: Path) -> dict:
    """Write ``<split>.jsonl`` files (``{"messages": [...]}`` per line) into ``folder``.

    Rows are streamed from the database in chunks, so memory stays flat for any size.
    Returns examples written per split.
    """
    folder.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split in Split.values:
        count = 0
        with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as handle:
            rows = snapshot.items.filter(split=split).order_by("id").values_list("messages", flat=True)
            for messages in rows.iterator(chunk_size=CHUNK):
                handle.write(json.dumps({"messages": messages}, ensure_ascii=False))
                handle.write("\n")
                count += 1
        counts[split] = count
    return counts


def run_snapshot_export(export_id: int) -> None:
    """RQ job: write the export into a staging folder, then move it into place."""
    export = jobrows.claim(SnapshotExport, export_id, select_related=("snapshot",))
    if export is None:
        return
    target = Path(settings.ARTIFACTS_ROOT) / "exports" / f"export-{export.pk}"
    staging = target.with_name(target.name + ".partial")
    try:
        shutil.rmtree(staging, ignore_errors=True)
        counts = write_chat_jsonl(export.snapshot, staging)
        staging.rename(target)
    except Exception as exc:
        shutil.rmtree(staging, ignore_errors=True)
        jobrows.fail(export, exc)
        raise
    jobrows.finish(export, RunStatus.SUCCEEDED, path=str(target), counts=counts)


def export_file(export: SnapshotExport, split: str) -> Path:
    """The finished export's file for ``split``. Raises ServiceError if not ready or unknown split."""
    if split not in Split.values:
        raise ServiceError(f"split must be one of {', '.join(Split.values)}, got {split!r}")
    if export.status != RunStatus.SUCCEEDED:
        raise ServiceError(f"export {export.pk} is {export.status}; download it once it has succeeded")
    return Path(export.path) / f"{split}.jsonl"
