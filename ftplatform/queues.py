"""The one place that enqueues jobs.

With ``REDIS_URL`` set, jobs go to Redis and ``python manage.py worker`` processes run them.
With it unset (the embedded quick-start default), the job function is called directly in the
process that started it, once the transaction commits (as Label Studio does without Redis):
no queue, no fake Redis. A job that raises there is logged, as a worker would; its row already
says what went wrong (jobs end their row before they raise).

Jobs are always enqueued after the surrounding transaction commits, so a worker never
sees a job whose row does not exist yet. The row (TrainingRun, EvalRun, ImportBatch) is
the source of truth for a job's state; RQ's registries are not.
"""
import logging
import threading
from functools import cache

from django.conf import settings
from django.db import transaction
from django.utils.module_loading import import_string

QUEUE_NAMES = ("default", "training", "evaluation")
logger = logging.getLogger(__name__)


@cache
def _redis_connection(url: str):
    import redis

    return redis.Redis.from_url(url)


def get_connection():
    """Return the Redis connection for jobs (one client and pool per URL and process).

    Raises RuntimeError without ``REDIS_URL``: jobs then run in-process and there is no queue."""
    if not settings.REDIS_URL:
        raise RuntimeError("REDIS_URL is not set: jobs run in-process, there is no job queue")
    return _redis_connection(settings.REDIS_URL)


def is_async() -> bool:
    return bool(settings.REDIS_URL)


def get_queue(name: str):
    """Return the RQ queue ``name`` (one of QUEUE_NAMES). Raises ValueError for other names."""
    from rq import Queue

    if name not in QUEUE_NAMES:
        raise ValueError(f"unknown queue {name!r}; expected one of {', '.join(QUEUE_NAMES)}")
    return Queue(
        name,
        connection=get_connection(),
        default_timeout=settings.JOB_TIMEOUTS[name],
    )


def enqueue_after_commit(queue_name: str, func_path: str, *args, job_id: str, timeout: int | None = None,
                         row=None) -> None:
    """Enqueue ``func_path(*args)`` on ``queue_name`` once the current transaction commits.

    ``job_id`` is deterministic (e.g. ``training-run-12``) so the row can name its job.
    Outside a transaction the job is enqueued at once (Django's on_commit semantics). Without
    ``REDIS_URL`` the function is called then instead (run_in_process). When Redis refuses the job
    (down, or a bad REDIS_URL), the job's ``row``, if given, ends failed saying so, instead of staying
    queued with nothing to run it; the request that started it answers as usual.
    """
    if not is_async():
        transaction.on_commit(lambda: run_in_process(func_path, *args, job_id=job_id))
        return

    def enqueue():
        try:
            get_queue(queue_name).enqueue(func_path, *args, job_id=job_id, job_timeout=timeout)
        except Exception as exc:
            logger.exception("job %s could not be queued", job_id)
            if row is not None:
                from .jobrows import JobStatus, finish

                finish(row, JobStatus.FAILED, where={"status": JobStatus.QUEUED}, error=(
                    f"the job could not be queued: Redis is unavailable ({type(exc).__name__}); start it again"))

    transaction.on_commit(enqueue)


# Without Redis this process is the one worker: its jobs run one at a time, as under one RQ worker, even
# when several request threads start them. Two training runs started at once in the threaded dev server
# imported TRL in two threads for the first time, and one failed ("cannot import name 'SFTConfig'").
# Re-entrant: a job may start another (a learning curve's training run starts its evaluation).
_IN_PROCESS_JOBS = threading.RLock()


def run_in_process(func_path: str, *args, job_id: str) -> None:
    """Call the job function here and now, after any in-process job another thread is running. An
    exception is logged, not raised: the request or command that started the job is not the job, and
    the job's row records how it ended."""
    with _IN_PROCESS_JOBS:
        try:
            import_string(func_path)(*args)
        except Exception:
            logger.exception("job %s (%s) failed", job_id, func_path)


def enqueue_job_row(row, queue_name: str, func_path: str, *, timeout: int | None = None, suffix: str = "") -> None:
    """Name the row's job (``<model>-<pk>[-<suffix>]``, stored in ``row.rq_job_id``) and enqueue
    ``func_path(row.pk)`` after commit (enqueue_after_commit). ``row`` is a saved ftplatform.jobrows.JobRow;
    ``timeout`` (seconds) overrides the queue's default job timeout; ``suffix`` names a later attempt."""
    row.rq_job_id = f"{row._meta.model_name}-{row.pk}" + (f"-{suffix}" if suffix else "")
    row.save(update_fields=["rq_job_id"])
    enqueue_after_commit(queue_name, func_path, row.pk, job_id=row.rq_job_id, timeout=timeout, row=row)
