"""Progress lines for a training run, shared by the train and demo commands."""
from .models import TrainingRun


def describe_training_progress(run: TrainingRun, last_event_id: int) -> tuple[list[str], int]:
    """New events of ``run`` after ``last_event_id`` as lines, and the new cursor."""
    lines = []
    for event in run.events.filter(id__gt=last_event_id).order_by("id"):
        prefix = f"[run {run.pk}] step {event.step}/{run.total_steps}" if event.step is not None else f"[run {run.pk}]"
        lines.append(f"{prefix} {event.kind}: {event.message}")
        last_event_id = event.id
    return lines, last_event_id
