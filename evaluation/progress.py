"""Progress lines for an eval run, and waiting for one, shared by the evaluate and demo commands."""
from collections.abc import Callable

from .models import EvalRun


def describe_eval_progress(run: EvalRun, last_done: int) -> tuple[list[str], int]:
    """A "generated n/N" line when the count moved since ``last_done``, and the new cursor."""
    if run.done == last_done:
        return [], last_done
    return [f"[eval {run.pk}] generated {run.done}/{run.total}"], run.done


def wait_for_evaluation(run: EvalRun, write: Callable[[str], object]) -> EvalRun:
    """Poll ``run`` until it finishes (ftplatform.cli.wait_for_run), writing "generated n/N" lines
    and failing it meanwhile if its worker stops sending heartbeats (a dead machine cannot report
    it). Returns the refreshed row."""
    from ftplatform.cli import wait_for_run

    from .services import reap_lost_eval_runs

    def describe(row, cursor):
        reap_lost_eval_runs()
        return describe_eval_progress(row, cursor)

    return wait_for_run(run, describe, write)
