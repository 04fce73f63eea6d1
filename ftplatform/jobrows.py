"""The job framework: a job's state lives in a row (TrainingRun, EvalRun, ImportBatch, SnapshotExport).

The row is created (status ``queued``) in the transaction that enqueues the job; the job
claims it (``running``, opening a JobAttempt: which worker, when), and ends it ``succeeded``,
``failed`` with a readable error, or ``cancelled`` (closing the attempt the same way). RQ's own
registries are never the source of truth.

One cancel protocol for every long job: ``request_cancel`` ends a queued row at once, or sets
``cancel_requested`` on a running one; the job calls a ``CancelCheck`` at its safe points (between
chunks, batches, steps) and stops there, leaving nothing half-written, and ends its row cancelled.
"""
import os
import socket
import tempfile
import time
from pathlib import Path

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey, GenericRelation
from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction
from django.utils import timezone

from .errors import Conflict, NotAllowed, without_server_paths


class JobStatus(models.TextChoices):
    """Every job's state (training and eval runs, imports, exports): one enum, one lifecycle."""

    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class JobAttempt(models.Model):
    """One try of a job: the worker that ran it, when it started and ended, and how. A resumed training
    run has one per start; the reaper closes a lost worker's attempt as failed."""

    content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE)
    object_id = models.PositiveBigIntegerField()
    job = GenericForeignKey("content_type", "object_id")
    number = models.PositiveIntegerField(help_text="1 for the first try, 2 for the next ...")
    worker = models.CharField(max_length=200, help_text="host:pid of the process that ran this try.")
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.RUNNING)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["content_type", "object_id", "number"]
        constraints = [models.UniqueConstraint(fields=["content_type", "object_id", "number"],
                                               name="one_attempt_number_per_job")]
        indexes = [models.Index(fields=["content_type", "object_id"])]

    def __str__(self):
        return f"attempt {self.number} of {self.content_type.model} {self.object_id} ({self.status})"


class JobRow(models.Model):
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True)
    cancel_requested = models.BooleanField(default=False, help_text="Set by a cancel; the job stops at its next "
                                                                     "safe point (ftplatform.jobrows).")
    job_attempts = GenericRelation(JobAttempt)
    error = models.TextField(blank=True)
    rq_job_id = models.CharField(max_length=100, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True


def worker_identity() -> str:
    """``host:pid`` of this process (under a worker: the forked work-horse that runs the job)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def claim(model: type[JobRow], pk: int, select_related=()) -> JobRow | None:
    """Mark a queued row running, open its next JobAttempt, and return it; None when it is no longer
    queued (e.g. cancelled)."""
    with transaction.atomic():
        # of=self: lock the job's row only (PostgreSQL refuses FOR UPDATE on a nullable joined row).
        row = model.objects.select_for_update(of=("self",)).select_related(*select_related).get(pk=pk)
        if row.status != JobStatus.QUEUED:
            return None
        row.status = JobStatus.RUNNING
        row.started_at = timezone.now()
        row.save(update_fields=["status", "started_at"])
        JobAttempt.objects.create(job=row, number=row.job_attempts.count() + 1, worker=worker_identity())
    return row


def finish(row: JobRow, status: str, *, where: dict | None = None, **fields) -> bool:
    """End a row with ``status`` and any other field values, stamping ``finished_at``.

    ``where`` (field lookups) ends it only if the row still matches, e.g. ``{"status": "running"}``
    so a job never overwrites what another process decided meanwhile. Returns whether it ended."""
    now = timezone.now()
    with transaction.atomic():
        if type(row).objects.filter(pk=row.pk, **(where or {})).update(status=status, finished_at=now, **fields) != 1:
            return False
        row.job_attempts.filter(finished_at__isnull=True).update(status=status, finished_at=now,
                                                                 error=fields.get("error", ""))
    return True


def fail(row: JobRow, exc: BaseException, *, where: dict | None = None, **fields) -> bool:
    """End a row as failed with the exception's type and message, server paths cut
    (errors.without_server_paths), as the readable error (see finish)."""
    return finish(row, JobStatus.FAILED, where=where, error=f"{type(exc).__name__}: {without_server_paths(str(exc))}",
                  **fields)


class JobCancelled(Exception):
    """Raised by a CancelCheck at a job's safe point once its row asks it to stop."""


def request_cancel(row: JobRow, *, by, noun: str, may_cancel: bool | None = None) -> JobRow:
    """Cancel the job of ``row`` (a saved JobRow): a queued one ends cancelled at once (its job, when a
    worker takes it, finds it no longer queued); a running one is asked to stop at its next safe point.
    ``noun`` names it in messages ("import 12"). ``may_cancel``: whether ``by`` may (default: its
    creator, a superuser, or an engineer).

    Raises:
        NotAllowed: ``by`` may not cancel it.
        Conflict: it has already ended.
    """
    from .roles import ENGINEER, has_role

    if may_cancel is None:
        may_cancel = by.pk == row.created_by_id or has_role(by, ENGINEER)
    if not may_cancel:
        raise NotAllowed(f"{noun}: only its creator or an engineer can cancel it")
    with transaction.atomic():
        row = type(row).objects.select_for_update().get(pk=row.pk)
        if row.status in FINISHED_STATUSES:
            raise Conflict(f"{noun} has already {row.status}")
        row.cancel_requested = True
        fields = ["cancel_requested"]
        if row.status == JobStatus.QUEUED:
            row.status, row.finished_at = JobStatus.CANCELLED, timezone.now()
            fields += ["status", "finished_at"]
        row.save(update_fields=fields)
    return row


class CancelCheck:
    """Call it at a job's safe points: raises JobCancelled once the row's ``cancel_requested`` is set.
    Reads the row at most every ``interval`` seconds (a loop may call it per item)."""

    def __init__(self, row: JobRow, interval: float = 1.0):
        self.rows = type(row).objects.filter(pk=row.pk, cancel_requested=True)
        self.interval, self.last = interval, float("-inf")

    def __call__(self) -> None:
        if time.monotonic() - self.last < self.interval:
            return
        self.last = time.monotonic()
        if self.rows.exists():
            raise JobCancelled


def unique_folder(parent: Path, prefix: str) -> Path:
    """A new, empty folder ``parent/<prefix><random>`` (created with ``parent`` if missing) that no other
    process or database was given: a job's files never share a folder named only by a row id, which
    databases sharing one artifacts root repeat (tempfile.mkdtemp creates it exclusively)."""
    Path(parent).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
