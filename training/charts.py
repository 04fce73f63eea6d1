"""The loss curve of a training run as a small inline SVG, for the admin (drawn by
ftplatform.charts.line_chart_svg)."""
from ftplatform.charts import Series, line_chart_svg

from .choices import EventKind
from .models import TrainingRun

Points = list[tuple[int, float]]

TRAIN_COLOUR, EVAL_COLOUR = "#1f77b4", "#d62728"


def loss_points(run: TrainingRun) -> tuple[Points, Points]:
    """(train, validation) losses of ``run`` as (step, loss) lists in event order, from its METRIC
    events' ``loss`` and ``eval_loss`` payload keys. One query; events without a step or with a
    non-numeric value are left out."""
    train, validation = [], []
    events = run.events.filter(kind=EventKind.METRIC, step__isnull=False).order_by("id")
    for step, payload in events.values_list("step", "payload"):
        for key, points in (("loss", train), ("eval_loss", validation)):
            value = (payload or {}).get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                points.append((step, float(value)))
    return train, validation


def loss_chart_svg(train_points: Points, eval_points: Points, *, width: int = 640, height: int = 240,
                   title: str = "Loss by step") -> str:
    """An SVG line chart of loss (y) by step (x): the train series as a line, the validation series
    as a dashed line with a marker on each point, axes with a few tick labels, and a legend.

    Points are (step, loss); non-finite ones are skipped. Returns the SVG markup (every text
    escaped, so the caller may mark it safe), or the plain text "no loss recorded yet" when no
    finite point is left.
    """
    return line_chart_svg(
        [Series("train", train_points, TRAIN_COLOUR),
         Series("validation", eval_points, EVAL_COLOUR, dashes="4 3", markers=True,
                titles=[f"validation loss {loss:.4g} at step {step}" for step, loss in eval_points])],
        title=title, x_label="step", y_label="loss", css_class="loss-chart", width=width, height=height,
        integer_x=True, empty="no loss recorded yet")
