"""Helpers shared by the management commands (the command-line edge)."""
import time

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from training.choices import FINISHED_STATUSES


def user_named(username: str):
    """The active user ``username``. Raises CommandError naming it when missing."""
    try:
        return get_user_model().objects.get(username=username, is_active=True)
    except get_user_model().DoesNotExist:
        raise CommandError(f"no active user named {username!r}; create one with 'manage.py createsuperuser'") from None


def wait_for_run(run, describe_progress, write, poll_seconds: float = 2.0):
    """Poll a job row (TrainingRun or EvalRun) until it finishes, writing progress lines.

    ``describe_progress(run, last_event_id) -> (lines, last_event_id)`` renders what is new.
    Returns the finished row. With synchronous jobs the row is already finished.
    """
    last_event_id = 0
    while True:
        run.refresh_from_db()
        lines, last_event_id = describe_progress(run, last_event_id)
        for line in lines:
            write(line)
        if run.status in FINISHED_STATUSES:
            return run
        time.sleep(poll_seconds)
