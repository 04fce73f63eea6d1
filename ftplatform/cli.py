"""Helpers shared by the management commands (the command-line edge)."""
import time

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from ftplatform import queues
from ftplatform.jobrows import FINISHED_STATUSES


def user_named(username: str):
    """The active user ``username``. Raises CommandError naming it when missing."""
    try:
        return get_user_model().objects.get(username=username, is_active=True)
    except get_user_model().DoesNotExist:
        raise CommandError(f"no active user named {username!r}; create one with 'manage.py createsuperuser'") from None


def wait_for_run(run, describe_progress, write, poll_seconds: float = 2.0):
    """Poll a job row (TrainingRun or EvalRun) until it finishes, writing progress lines.

    ``describe_progress(run, cursor) -> (lines, cursor)`` renders what is new. With jobs on
    Redis, a worker elsewhere does the work and these lines are the progress shown here.
    With synchronous jobs the row is already finished and the job drew its own progress
    bars in this terminal, so nothing is replayed. Returns the refreshed row.
    """
    cursor = 0
    while True:
        run.refresh_from_db()
        if queues.is_async():
            lines, cursor = describe_progress(run, cursor)
            for line in lines:
                write(line)
        if run.status in FINISHED_STATUSES:
            return run
        time.sleep(poll_seconds)
