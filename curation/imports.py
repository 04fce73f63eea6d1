"""Importing example files into a dataset: the requests, and what a batch says when it ends.

``create_import_batch`` checks the request, stores the upload under ``ARTIFACTS_ROOT/uploads/`` and saves a
queued ImportBatch; ``start_import`` also enqueues ``curation.jobs.run_import`` for a worker,
``import_examples`` runs it in this process, and ``submit_import`` (the admin's and the API's entry) picks
one of the two by the upload's size. The import itself is curation.import_job.ImportJob.
"""
import logging
import shutil
from pathlib import Path

from django.conf import settings
from django.db import transaction

from ftplatform import jobrows, queues
from ftplatform.errors import ServiceError, without_server_paths
from ftplatform.jobrows import JobStatus, unique_folder
from ftplatform.roles import require_permission

from .choices import ImportFormat
from .formats import (
    DELIMITERS,
    check_column_mapping,
)
from .models import Dataset, ImportBatch

logger = logging.getLogger(__name__)


UPLOADS_FOLDER = "uploads"


HF_COMMAND_HINT = ("a Hugging Face datasets folder is imported from the command line: "
                   "manage.py import_examples FOLDER --format hf_dataset --dataset NAME --as USER")


def create_import_batch(
    dataset: Dataset, source, fmt: str, *, by, filename: str = "", skip_invalid: bool = False,
    column_mapping: dict | None = None, hf_split: str = "",
) -> ImportBatch:
    """Check the request, store the upload and save a queued ImportBatch (no job is started).

    Args:
        source: the file as bytes, a binary file object (a Django upload is copied chunk by
            chunk), or a Path: a file, or for ``hf_dataset`` a folder written by ``save_to_disk``.
            It is copied into a new folder ``ARTIFACTS_ROOT/uploads/import-<id>-<random>/`` (unique:
            databases sharing one artifacts root have batches with the same ids) so a worker on
            another machine can read it, and removed when the job ends.
        fmt: a curation.choices.ImportFormat value.
        column_mapping: csv/tsv only, ``{"prompt": column, "completion": column, "system": column?}``.
        hf_split: hf_dataset only, the split of a DatasetDict folder.

    Raises:
        NotAllowed: ``by`` lacks 'curation.add_importbatch' (annotators and engineers hold it).
        ServiceError: unknown format, a mapping or split that does not apply, an hf_dataset
            source that is not a folder, or a missing file.
    """
    require_permission(by, "curation.add_importbatch", "import examples")
    _check_request(source, fmt, column_mapping, hf_split)
    with transaction.atomic():
        batch = ImportBatch.objects.create(
            dataset=dataset, format=fmt, filename=(filename or _name_of(source))[:255], created_by=by,
            skip_invalid=skip_invalid, column_mapping=column_mapping, hf_split=hf_split,
        )
        folder = None
        try:
            folder = unique_folder(Path(settings.ARTIFACTS_ROOT) / UPLOADS_FOLDER, f"import-{batch.pk}-")
            batch.upload_path = str(_store(source, folder))
        except OSError as exc:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
            logger.exception("could not store the upload of import %s", batch.pk)
            raise ServiceError(f"could not store the upload: {without_server_paths(str(exc))}") from exc
        batch.save(update_fields=["upload_path"])
    return batch


def start_import(dataset: Dataset, source, fmt: str, *, by, **options) -> ImportBatch:
    """create_import_batch, then enqueue curation.jobs.run_import on the ``default`` queue after commit.

    With ``REDIS_URL`` set a worker runs it (poll the batch's status and ``rows_done``);
    without it the job runs in this process when the transaction commits. Raises ServiceError
    like create_import_batch.
    """
    with transaction.atomic():
        batch = create_import_batch(dataset, source, fmt, by=by, **options)
        queues.enqueue_job_row(batch, "default", "curation.jobs.run_import")
    return batch


def import_examples(dataset: Dataset, source, fmt: str, *, by, on_progress=None, **options) -> ImportBatch:
    """Import a file in this process (small uploads, the command, tests, the benchmark).

    Same checks and job as start_import, run now; ``on_progress(rows_done, rows_total)`` is
    called after every chunk. Returns the finished ImportBatch: ``succeeded``, or ``failed``
    with nothing imported and either ``errors`` (``[{"line": n, "reason": str}]``) or
    ``error`` (the file could not be read, or another import added the same examples at the
    same moment). Duplicates are listed in ``duplicates`` and not inserted.

    Raises:
        ServiceError: see create_import_batch.
    """
    batch = create_import_batch(dataset, source, fmt, by=by, **options)
    from .jobs import run_import  # jobs imports this module

    run_import(batch.pk, on_progress=on_progress)
    batch.refresh_from_db()
    return batch


def submit_import(dataset: Dataset, upload, fmt: str, *, by, **options) -> ImportBatch:
    """The admin's and the API's import: in this process up to ``IMPORT_INLINE_MAX_BYTES``, else as a job.

    ``upload`` is a Django UploadedFile (or bytes). Returns the batch: finished when the file
    was small or jobs run synchronously (no ``REDIS_URL``), else ``queued``/``running``.

    Raises:
        ServiceError: see create_import_batch; hf_dataset (a folder) is refused here, see
            HF_COMMAND_HINT.
    """
    if fmt == ImportFormat.HF_DATASET:
        raise ServiceError(HF_COMMAND_HINT)
    size = len(upload) if isinstance(upload, (bytes, bytearray)) else upload.size
    if size <= settings.IMPORT_INLINE_MAX_BYTES:
        return import_examples(dataset, upload, fmt, by=by, **options)
    batch = start_import(dataset, upload, fmt, by=by, **options)
    batch.refresh_from_db()
    return batch


def cancel_import(batch: ImportBatch, *, by) -> ImportBatch:
    """Cancel a queued import at once, or have a running one stop at its next chunk, importing nothing
    (ftplatform.jobrows.request_cancel: its creator or an engineer). Raises NotAllowed or Conflict."""
    return jobrows.request_cancel(batch, by=by, noun=f"import {batch.pk}")


def describe_batch(batch: ImportBatch, limit: int | None = 20) -> list[str]:
    """Human-readable lines for a batch's state or outcome (used by the command and the admin)."""
    unit = "row" if batch.format == ImportFormat.HF_DATASET else "line"
    name = batch.filename or "upload"
    if batch.status in (JobStatus.QUEUED, JobStatus.RUNNING):
        total = f"{batch.rows_total:,}" if batch.rows_total is not None else "?"
        return [f"{name}: {batch.status}; {batch.rows_done:,} of {total} records read"]
    lines = [
        f"{name}: {batch.status}; {batch.total_lines} records, "
        f"{batch.created_count} created, {batch.duplicate_count} duplicates, {batch.error_count} invalid"
    ]
    if batch.error:
        lines.append(f"Nothing was imported: {batch.error}")
    elif batch.status == JobStatus.FAILED:
        lines.append(f"Nothing was imported: fix these {unit}s or import with skip-invalid to leave them out.")
    elif batch.error_count:
        lines.append(f"Skipped invalid {unit}s:")
    lines += _listed(batch.errors, limit, batch, lambda e: f"  {unit} {e['line']}: {e['reason']}")
    if batch.duplicates:
        lines.append("Duplicates (not inserted):")
        lines += _listed(batch.duplicates, limit, batch,
                         lambda d: f"  {unit} {d['line']}: same as {d['duplicate_of'].replace('line', unit)}")
    return lines


def _listed(entries: list, limit: int | None, batch: ImportBatch, render) -> list[str]:
    shown = entries if limit is None else entries[:limit]
    lines = [render(entry) for entry in shown]
    if len(shown) < len(entries):
        lines.append(f"  ... and {len(entries) - len(shown)} more (see import batch {batch.pk})")
    return lines


def _check_request(source, fmt: str, column_mapping, hf_split: str) -> None:
    if fmt not in ImportFormat.values:
        raise ServiceError(f"unknown format {fmt!r}; expected one of {', '.join(ImportFormat.values)}")
    if column_mapping and fmt not in DELIMITERS:
        raise ServiceError(f"a column mapping only applies to csv and tsv, not {fmt}")
    if fmt in DELIMITERS:
        try:
            check_column_mapping(column_mapping)
        except ValueError as exc:
            raise ServiceError(str(exc)) from exc
    if hf_split and fmt != ImportFormat.HF_DATASET:
        raise ServiceError(f"a split only applies to hf_dataset folders, not {fmt}")
    if fmt == ImportFormat.HF_DATASET:
        if not (isinstance(source, Path) and source.is_dir()):
            raise ServiceError(f"{source if isinstance(source, Path) else 'the upload'} is not a folder; "
                               + HF_COMMAND_HINT)
    elif isinstance(source, Path) and not source.is_file():
        raise ServiceError(f"{source}: no such file")


def _name_of(source) -> str:
    if isinstance(source, Path):
        return source.name
    return getattr(source, "name", "") or ""


def _store(source, folder: Path) -> Path:
    """Copy ``source`` (bytes, Path, Django upload or binary file) into the existing ``folder``; returns the
    stored path."""
    if isinstance(source, Path) and source.is_dir():
        return Path(shutil.copytree(source, folder / "dataset"))
    target = folder / "upload"
    if isinstance(source, Path):
        shutil.copyfile(source, target)
    elif isinstance(source, (bytes, bytearray)):
        target.write_bytes(source)
    else:
        with open(target, "wb") as handle:
            if hasattr(source, "chunks"):
                for block in source.chunks():
                    handle.write(block)
            else:
                shutil.copyfileobj(source, handle)
    return target
