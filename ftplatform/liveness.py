"""Liveness of running job rows: heartbeats, and failing rows whose worker is gone.

A LiveJobRow (TrainingRun, EvalRun) is a JobRow that also records its worker and heartbeat. A job
that claimed its row calls ``start_heartbeat``: the row records the worker (host:pid of the
work-horse) and a thread stamps ``heartbeat_at`` every settings.TRAINING_HEARTBEAT_SECONDS (the
setting is older than evaluation's liveness; it serves every job row). ``reap_lost`` fails running
rows silent for longer than that plus settings.TRAINING_HEARTBEAT_MARGIN_SECONDS (worker SIGKILLed,
out of memory, machine gone). ``reap_all`` runs every kind's reaper (each app registers its own with
``register_reaper`` when it loads, so this shared layer names none): every worker
process calls it each heartbeat interval, so a lost row ends within about one interval plus the
margin, and ``manage.py reap_jobs`` calls it once (from cron, or after a crash of a process that ran
jobs in-process: without REDIS_URL no worker runs). Reads (API, admin pages) change nothing; the
train and evaluate commands, which wait on a run, reap while they wait. Both sides use the
database's clock, never a worker's or web host's.

A job must end its row conditionally (``jobrows.finish(..., where={"status": "running"})``) so a row
reaped while its work-horse was only paused is never overwritten as succeeded.
"""
import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import DateTimeField, ExpressionWrapper, Q
from django.db.models.functions import Now

from ftplatform.jobrows import JobStatus

from .jobrows import JobRow, finish, worker_identity

logger = logging.getLogger(__name__)

# Every kind of job row with a heartbeat, and its reaper (a function failing its lost rows, returning their ids).
LOST_JOB_REAPERS: dict[str, Callable[[], list[int]]] = {}


def register_reaper(kind: str, reaper: Callable[[], list[int]]) -> None:
    """Have ``reap_all`` run ``reaper`` for ``kind`` ("training run"); an app calls it in its AppConfig.ready."""
    LOST_JOB_REAPERS[kind] = reaper


# Periodic clean-ups the workers run beside the reapers, at most every HOUSEKEEPING_SECONDS: {name: function
# returning how many rows it removed}, e.g. the request log's retention (serving).
HOUSEKEEPING: dict[str, Callable[[], int]] = {}
HOUSEKEEPING_SECONDS = 3600


def register_housekeeping(name: str, task: Callable[[], int]) -> None:
    """Have the workers' periodic loop run ``task`` about hourly; an app calls it in its AppConfig.ready."""
    HOUSEKEEPING[name] = task


class LiveJobRow(JobRow):
    """A JobRow whose running job shows it is alive: who runs it and when it last said so."""

    worker = models.CharField(max_length=200, blank=True, help_text="host:pid of the process running the job.")
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True


class Heartbeat(threading.Thread):
    """Stamps ``heartbeat_at`` on a running row every ``interval`` seconds from its own database connection."""

    def __init__(self, model: type[LiveJobRow], row_id: int, interval: float):
        super().__init__(name=f"heartbeat-{model._meta.model_name}-{row_id}", daemon=True)
        self.model, self.row_id, self.interval, self.stopped = model, row_id, interval, threading.Event()

    def run(self):
        while not self.stopped.is_set():
            try:  # the database's clock, which the reaper compares with: worker clocks may differ
                self.model.objects.filter(pk=self.row_id, status=JobStatus.RUNNING).update(heartbeat_at=Now())
            except Exception:  # keep beating once the database is back; never crash the job's thread
                logger.exception("heartbeat of %s %s failed; retrying", self.model._meta.verbose_name, self.row_id)
                connection.close()
            self.stopped.wait(self.interval)
        connection.close()

    def stop(self):
        self.stopped.set()
        self.join(timeout=5)


def start_heartbeat(row: LiveJobRow, **fields) -> Heartbeat | None:
    """Record this process as ``row``'s worker with a first heartbeat (and any other ``fields``, in
    the same update), then start its Heartbeat thread; stop it with ``.stop()`` once the job ends.

    Returns None, starting no thread, when the job's own connection is inside a transaction (never
    so under a worker; so in tests that call a job directly): a thread cannot see, and would wait
    on, rows of an uncommitted transaction.
    """
    type(row).objects.filter(pk=row.pk).update(worker=worker_identity(), heartbeat_at=Now(), **fields)
    if connection.in_atomic_block:
        return None
    heartbeat = Heartbeat(type(row), row.pk, settings.TRAINING_HEARTBEAT_SECONDS)
    heartbeat.start()
    return heartbeat


def reap_lost(model: type[LiveJobRow], advice: str, *, on_lost: Callable[[LiveJobRow, str], object] | None = None,
              **fields) -> list[int]:
    """Fail ``model``'s running rows whose last heartbeat (or start) is older than
    TRAINING_HEARTBEAT_SECONDS + TRAINING_HEARTBEAT_MARGIN_SECONDS on the database's clock.

    Each becomes failed with the error "worker lost on host:pid: no heartbeat for N s (killed, or
    likely out of memory); <advice>" and any other ``fields`` (e.g. a failure reason);
    ``on_lost(row, error)`` runs in the same transaction. A row locked by another process (its
    job ending it, another reaper) is skipped: the next pass sees what it became. Returns the
    ids failed.
    """
    silence = timedelta(seconds=settings.TRAINING_HEARTBEAT_SECONDS + settings.TRAINING_HEARTBEAT_MARGIN_SECONDS)
    limit = model.objects.annotate(limit=ExpressionWrapper(Now() - silence, output_field=DateTimeField())
                                   ).values_list("limit", flat=True).first()
    if limit is None:
        return []  # no rows at all
    stale = model.objects.filter(status=JobStatus.RUNNING).filter(
        Q(heartbeat_at__lt=limit) | Q(heartbeat_at__isnull=True, started_at__lt=limit))
    lost = []
    for row_id in stale.values_list("pk", flat=True):
        with transaction.atomic():
            row = model.objects.select_for_update(skip_locked=True).filter(pk=row_id).first()
            if row is None or row.status != JobStatus.RUNNING:
                continue
            beat = row.heartbeat_at or row.started_at
            if beat is None or beat >= limit:
                continue  # it beat again meanwhile
            seconds = (limit + silence - beat).total_seconds()
            where = f" on {row.worker}" if row.worker else ""
            error = f"worker lost{where}: no heartbeat for {seconds:.0f} s (killed, or likely out of memory); {advice}"
            finish(row, JobStatus.FAILED, where={"status": JobStatus.RUNNING}, error=error, **fields)
            if on_lost is not None:
                on_lost(row, error)
            lost.append(row.pk)
    return lost


def reap_all() -> dict[str, list[int]]:
    """Run every reaper of LOST_JOB_REAPERS once: ``{kind: [ids failed as worker lost]}``."""
    return {kind: reaper() for kind, reaper in LOST_JOB_REAPERS.items()}
