"""curation's RQ entry points: each takes a job row's id, claims the row (ftplatform.jobrows), does the
work through the module that owns it (imports, exports) and ends the row succeeded, failed or cancelled."""
import logging
import shutil
import time
from pathlib import Path

from django.conf import settings

from ftplatform import jobrows
from ftplatform.errors import ServiceError, without_server_paths
from ftplatform.jobrows import JobStatus, unique_folder

from .choices import ExportLayout
from .exports import HF_FOLDER, write_chat_jsonl, write_hf_dataset
from .import_job import ImportJob
from .models import ImportBatch, SnapshotExport, SnapshotJob
from .snapshots import create_snapshot

logger = logging.getLogger(__name__)


def run_import(batch_id: int, on_progress=None) -> None:
    """RQ job: import ImportBatch ``batch_id`` from its stored upload (curation.import_job.ImportJob).

    The batch ends ``succeeded`` or ``failed`` (errors, or ``error`` for a file that cannot be
    read or a concurrent import of the same examples), and its stored upload is removed.
    Unexpected exceptions also mark it failed, and are re-raised for RQ to record.
    """
    batch = jobrows.claim(ImportBatch, batch_id, select_related=("dataset",))
    if batch is None:
        return
    try:
        ImportJob(batch, on_progress).run()
    except jobrows.JobCancelled:  # raised between chunks: the import's transaction was rolled back
        jobrows.finish(batch, JobStatus.CANCELLED, error="cancelled; nothing was imported")
    except ServiceError as exc:  # a reader's message may name the stored upload's server path
        jobrows.finish(batch, JobStatus.FAILED, error=without_server_paths(str(exc)))
    except Exception as exc:
        logger.exception("import %s failed", batch.pk)
        jobrows.fail(batch, exc)
        raise
    finally:
        if batch.upload_path:
            shutil.rmtree(Path(batch.upload_path).parent, ignore_errors=True)
            ImportBatch.objects.filter(pk=batch.pk).update(upload_path="")


def run_snapshot_export(export_id: int) -> None:
    """RQ job: write the JSONL files, the HF dataset and, for a hub layout, the Hub dataset repo into a staging
    folder, then move it into place."""
    export = jobrows.claim(SnapshotExport, export_id, select_related=("snapshot__dataset", "created_by"))
    if export is None:
        return
    # A new folder of its own (databases sharing one artifacts root have exports with the same ids),
    # filled under another name and renamed onto it once complete.
    target = staging = None
    check_cancel = jobrows.CancelCheck(export, interval=0)
    try:
        target = unique_folder(Path(settings.ARTIFACTS_ROOT) / "exports", f"export-{export.pk}-")
        staging = target.with_name(target.name + ".partial")
        keys = set()
        counts = write_chat_jsonl(export.snapshot, staging, keys)
        check_cancel()
        write_hf_dataset(staging, keys)
        check_cancel()
        if export.layout != ExportLayout.FOLDER:
            from .hub_export import write_hub_dataset

            write_hub_dataset(export, staging, counts, staging / HF_FOLDER)
            check_cancel()
        staging.replace(target)  # onto the empty folder reserved above
    except Exception as exc:
        for folder in (staging, target):
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
        if isinstance(exc, jobrows.JobCancelled):
            jobrows.finish(export, JobStatus.CANCELLED, error="cancelled; no files were kept")
            return
        jobrows.fail(export, exc)
        raise
    jobrows.finish(export, JobStatus.SUCCEEDED, path=str(target), counts=counts)


def run_snapshot_job(job_id: int) -> None:
    """RQ job: make SnapshotJob ``job_id``'s snapshot (curation.snapshots.create_snapshot), recording the stage
    and its progress on the row, and stopping at the next stage or chunk once cancelled (nothing is written).
    A refused snapshot (blocking quality findings, a rejected identical one) ends the job failed with why."""
    job = jobrows.claim(SnapshotJob, job_id, select_related=("dataset", "created_by"))
    if job is None:
        return
    check_cancel = jobrows.CancelCheck(job)
    last = [None, 0.0]

    def on_progress(stage, done, total):
        check_cancel()
        if stage != last[0] or time.monotonic() - last[1] >= 1.0 or done == total:  # at most a write a second
            last[:] = [stage, time.monotonic()]
            SnapshotJob.objects.filter(pk=job.pk).update(stage=stage, done=done, total=total)

    try:
        snapshot, created = create_snapshot(job.dataset, by=job.created_by, seed=job.seed,
                                            fractions=job.split_fractions, on_progress=on_progress)
    except jobrows.JobCancelled:
        jobrows.finish(job, JobStatus.CANCELLED, error="cancelled; no snapshot was written")
    except ServiceError as exc:
        jobrows.finish(job, JobStatus.FAILED, error=str(exc))
    except Exception as exc:
        logger.exception("snapshot job %s failed", job.pk)
        jobrows.fail(job, exc)
        raise
    else:
        jobrows.finish(job, JobStatus.SUCCEEDED, snapshot=snapshot, created=created, stage="done")
