"""A job's state lives in a row: the shared fields and transitions of TrainingRun and EvalRun.

The row is created (status ``queued``) in the transaction that enqueues the job; the job
claims it (``running``), and ends it ``succeeded``, ``failed`` with a readable error, or
``cancelled``. RQ's own registries are never the source of truth.
"""
import tempfile
from pathlib import Path

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from .errors import without_server_paths


class JobStatus(models.TextChoices):
    """Every job's state (training and eval runs, imports, exports): one enum, one lifecycle."""

    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class JobRow(models.Model):
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True)
    error = models.TextField(blank=True)
    rq_job_id = models.CharField(max_length=100, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True


def claim(model: type[JobRow], pk: int, select_related=()) -> JobRow | None:
    """Mark a queued row running and return it; None when it is no longer queued (e.g. cancelled)."""
    with transaction.atomic():
        row = model.objects.select_for_update().select_related(*select_related).get(pk=pk)
        if row.status != JobStatus.QUEUED:
            return None
        row.status = JobStatus.RUNNING
        row.started_at = timezone.now()
        row.save(update_fields=["status", "started_at"])
    return row


def finish(row: JobRow, status: str, *, where: dict | None = None, **fields) -> bool:
    """End a row with ``status`` and any other field values, stamping ``finished_at``.

    ``where`` (field lookups) ends it only if the row still matches, e.g. ``{"status": "running"}``
    so a job never overwrites what another process decided meanwhile. Returns whether it ended."""
    rows = type(row).objects.filter(pk=row.pk, **(where or {}))
    return rows.update(status=status, finished_at=timezone.now(), **fields) == 1


def fail(row: JobRow, exc: BaseException, *, where: dict | None = None, **fields) -> bool:
    """End a row as failed with the exception's type and message, server paths cut
    (errors.without_server_paths), as the readable error (see finish)."""
    return finish(row, JobStatus.FAILED, where=where, error=f"{type(exc).__name__}: {without_server_paths(str(exc))}",
                  **fields)


def unique_folder(parent: Path, prefix: str) -> Path:
    """A new, empty folder ``parent/<prefix><random>`` (created with ``parent`` if missing) that no other
    process or database was given: a job's files never share a folder named only by a row id, which
    databases sharing one artifacts root repeat (tempfile.mkdtemp creates it exclusively)."""
    Path(parent).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
