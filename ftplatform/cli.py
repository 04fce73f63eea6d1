"""Helpers shared by the management commands (the command-line edge)."""
import argparse
import json
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


def json_object(text: str) -> dict:
    """argparse ``type`` of an option whose value is a JSON object (--hyperparameters, --generation, ...).

    argparse names the option in front of the message ("argument --hyperparameters: ..."); a
    failing json.loads alone made that "invalid loads value". Raises argparse.ArgumentTypeError
    saying what is wrong and where: the JSON error, its line and column, and the line with a caret
    under that place; or, for valid JSON that is not an object, what it is instead.
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        line = text.splitlines()[exc.lineno - 1] if text.strip() else ""
        hint = (" (JSON quotes names and strings with double quotes; in a shell, put the whole value in single "
                "quotes)" if "'" in text and "double quotes" in exc.msg else "")
        raise argparse.ArgumentTypeError(
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}{hint}\n"
            f"    {line}\n    {' ' * (exc.colno - 1)}^") from None
    if not isinstance(value, dict):
        kind = {list: "an array", str: "a string", bool: "true or false", int: "a number", float: "a number",
                type(None): "null"}[type(value)]
        raise argparse.ArgumentTypeError(f"expected a JSON object such as {{\"epochs\": 2}}, got {kind}: "
                                         f"{text.strip()[:60]}")
    return value


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
