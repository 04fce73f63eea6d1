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


HF_SOURCES_HINT = ("a Hugging Face datasets folder (save_to_disk) is imported as a .tar or .zip of the folder "
                   "(admin, API, command), from a folder under FTPLATFORM_IMPORT_ROOT (admin), or with "
                   "manage.py import_examples FOLDER --format hf_dataset --dataset NAME --as USER")


def create_import_batch(
    dataset: Dataset, source, fmt: str, *, by, filename: str = "", skip_invalid: bool = False,
    column_mapping: dict | None = None, hf_split: str = "",
) -> ImportBatch:
    """Check the request, store the upload and save a queued ImportBatch (no job is started).

    Args:
        source: the file as bytes, a binary file object (a Django upload is copied chunk by
            chunk), or a Path: a file, or for ``hf_dataset`` a folder written by ``save_to_disk``.
            For ``hf_dataset`` any other source is a .tar/.zip of such a folder, unpacked safely
            (curation.hf_datasets.extract_dataset_archive, at most IMPORT_ARCHIVE_MAX_BYTES).
            It is copied into a new folder ``ARTIFACTS_ROOT/uploads/import-<id>-<random>/`` (unique:
            databases sharing one artifacts root have batches with the same ids) so a worker on
            another machine can read it, and removed when the job ends.
        fmt: a curation.choices.ImportFormat value.
        column_mapping: csv/tsv only, ``{"prompt": column, "completion": column, "system": column?}``.
        hf_split: hf_dataset only, the split of a DatasetDict folder.

    Raises:
        NotAllowed: ``by`` lacks 'curation.add_importbatch' (annotators and engineers hold it).
        ServiceError: unknown format, a mapping or split that does not apply, a missing file or
            folder, or an hf_dataset archive that is not a safe tar or zip within the size limit.
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
            batch.upload_path = str(_store(source, folder, fmt))
        except (OSError, ValueError) as exc:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
            if isinstance(exc, ValueError):  # an archive refused by extract_dataset_archive
                raise ServiceError(f"{filename or _name_of(source) or 'the upload'}: {exc}") from None
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

    ``upload`` may also be a Path (hf_dataset: a folder from import_root_folder); an hf_dataset upload is
    a .tar or .zip of a save_to_disk folder. The size compared is the upload's (a folder's: its files').

    Raises:
        ServiceError: see create_import_batch.
    """
    if isinstance(upload, (bytes, bytearray)):
        size = len(upload)
    elif isinstance(upload, Path):
        size = sum(path.stat().st_size for path in upload.rglob("*") if path.is_file()) if upload.is_dir() \
            else upload.stat().st_size
    else:
        size = upload.size
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
    if isinstance(source, Path) and not (source.is_file() or (fmt == ImportFormat.HF_DATASET and source.is_dir())):
        raise ServiceError(f"{source}: no such file" + (f"; {HF_SOURCES_HINT}" if fmt == ImportFormat.HF_DATASET
                                                        else ""))


def _name_of(source) -> str:
    if isinstance(source, Path):
        return source.name
    return getattr(source, "name", "") or ""


def import_root_folder(relative: str) -> Path:
    """The folder ``relative`` names under ``settings.IMPORT_ROOT`` (the admin's server-side hf_dataset import).

    The path is resolved (symlinks and ``..`` included) and must stay inside the root, so the form can name
    nothing else the server can read.

    Raises:
        ServiceError: no import root configured, an absolute path or one leaving the root, or no such folder
            (field ``server_folder``; the message names the relative path, never the server's).
    """
    if not settings.IMPORT_ROOT:
        raise ServiceError("importing from a server folder is off: set FTPLATFORM_IMPORT_ROOT, or upload a .tar or "
                           ".zip of the folder", field="server_folder")
    root = Path(settings.IMPORT_ROOT).expanduser().resolve()
    relative = (relative or "").strip()
    if not relative or Path(relative).is_absolute():
        raise ServiceError(f"give the folder relative to the import root, got {relative!r}", field="server_folder")
    folder = (root / relative).resolve()
    if not folder.is_relative_to(root):
        raise ServiceError(f"{relative!r} leaves the import root", field="server_folder")
    if not folder.is_dir():
        raise ServiceError(f"{relative!r}: no such folder under the import root", field="server_folder")
    return folder


def _store(source, folder: Path, fmt: str) -> Path:
    """Copy ``source`` (bytes, Path, Django upload or binary file) into the existing ``folder``; returns the
    stored path. An hf_dataset source that is not a folder is an archive: it is unpacked (the dataset folder
    inside is returned) and removed. Raises OSError, or ValueError for a refused archive."""
    if isinstance(source, Path) and source.is_dir():
        return Path(shutil.copytree(source, folder / "dataset"))
    if fmt == ImportFormat.HF_DATASET:
        archive = _store(source, folder, ImportFormat.CHAT_JSONL)
        from .hf_datasets import extract_dataset_archive

        try:
            return extract_dataset_archive(archive, folder / "dataset", settings.IMPORT_ARCHIVE_MAX_BYTES)
        finally:
            archive.unlink(missing_ok=True)
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
