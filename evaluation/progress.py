"""Progress lines for an eval run, shared by the evaluate and demo commands."""
from .models import EvalRun


def describe_eval_progress(run: EvalRun, last_done: int) -> tuple[list[str], int]:
    if run.done == last_done and run.status not in ("succeeded", "failed"):
        return [], last_done
    if run.done != last_done:
        return [f"[eval {run.pk}] generated {run.done}/{run.total}"], run.done
    return [], last_done
