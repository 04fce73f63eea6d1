"""Progress lines for an eval run, shared by the evaluate and demo commands."""
from .models import EvalRun


def describe_eval_progress(run: EvalRun, last_done: int) -> tuple[list[str], int]:
    """A "generated n/N" line when the count moved since ``last_done``, and the new cursor."""
    if run.done == last_done:
        return [], last_done
    return [f"[eval {run.pk}] generated {run.done}/{run.total}"], run.done
