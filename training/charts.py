"""The loss curve of a training run as a small inline SVG, for the admin.

Hand-written SVG rather than a charting library: no JavaScript charting library is vendored,
the admin must work offline, and two lines with axes and a legend fit in a page of code.
Colours of axes and text follow the page's text colour (``currentColor``), so the chart
reads in the admin's light and dark themes.
"""
import math

from django.utils.html import format_html

from .choices import EventKind
from .models import TrainingRun

Points = list[tuple[int, float]]

TRAIN_COLOUR, EVAL_COLOUR = "#1f77b4", "#d62728"
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 56, 16, 28, 36
TICKS = 5


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


def _finite(points) -> Points:
    return [(step, loss) for step, loss in points if math.isfinite(step) and math.isfinite(loss)]


def _padded_range(values: list[float]) -> tuple[float, float]:
    """(low, high) around ``values`` with 5% room, never of zero width."""
    low, high = min(values), max(values)
    pad = (high - low) * 0.05 or (abs(high) * 0.1 or 1.0)
    return low - pad, high + pad


def loss_chart_svg(train_points: Points, eval_points: Points, *, width: int = 640, height: int = 240,
                   title: str = "Loss by step") -> str:
    """An SVG line chart of loss (y) by step (x): the train series as a line, the validation series
    as a dashed line with a marker on each point, axes with a few tick labels, and a legend.

    Points are (step, loss); non-finite ones are skipped. Returns the SVG markup (every text
    escaped, so the caller may mark it safe), or the plain text "no loss recorded yet" when no
    finite point is left.
    """
    train, validation = _finite(train_points), _finite(eval_points)
    if not train and not validation:
        return "no loss recorded yet"
    steps = [step for step, _ in train + validation]
    x_low, x_high = min(0, *steps), max(steps) or 1
    y_low, y_high = _padded_range([loss for _, loss in train + validation])
    left, right, top, bottom = MARGIN_LEFT, width - MARGIN_RIGHT, MARGIN_TOP, height - MARGIN_BOTTOM

    def x_of(step):
        return left + (step - x_low) / (x_high - x_low) * (right - left)

    def y_of(loss):
        return bottom - (loss - y_low) / (y_high - y_low) * (bottom - top)

    parts = [format_html(
        '<svg class="loss-chart" xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" viewBox="0 0 {} {}" '
        'role="img" font-family="sans-serif" font-size="11" style="max-width:100%;height:auto">'
        '<title>{}</title>', width, height, width, height, title)]
    # Axes, then tick marks with labels: x at whole steps, y at evenly spaced losses.
    parts.append(format_html('<path d="M{} {}V{}H{}" fill="none" stroke="currentColor"/>', left, top, bottom, right))
    for step in sorted({round(x_low + i * (x_high - x_low) / (TICKS - 1)) for i in range(TICKS)}):
        x = x_of(step)
        parts.append(format_html('<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="currentColor"/>'
                                 '<text x="{}" y="{}" text-anchor="middle" fill="currentColor">{}</text>',
                                 f"{x:.1f}", bottom, f"{x:.1f}", bottom + 4, f"{x:.1f}", bottom + 16, step))
    for i in range(TICKS):
        loss = y_low + i * (y_high - y_low) / (TICKS - 1)
        y = y_of(loss)
        parts.append(format_html('<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="currentColor"/>'
                                 '<text x="{}" y="{}" text-anchor="end" fill="currentColor">{}</text>',
                                 left - 4, f"{y:.1f}", left, f"{y:.1f}", left - 6, f"{y + 4:.1f}", f"{loss:.3g}"))
    parts.append(format_html('<text x="{}" y="{}" text-anchor="middle" fill="currentColor">step</text>'
                             '<text x="12" y="{}" text-anchor="middle" fill="currentColor" '
                             'transform="rotate(-90 12 {})">loss</text>',
                             (left + right) / 2, height - 4, (top + bottom) / 2, (top + bottom) / 2))

    # One polyline per series; a single point draws no line, so it gets a marker.
    for series, colour, name, dashes in ((train, TRAIN_COLOUR, "train", ""),
                                         (validation, EVAL_COLOUR, "validation", "4 3")):
        if not series:
            continue
        coordinates = " ".join(f"{x_of(step):.1f},{y_of(loss):.1f}" for step, loss in series)
        parts.append(format_html('<polyline class="{}" points="{}" fill="none" stroke="{}" stroke-width="2"'
                                 ' stroke-dasharray="{}"/>', name, coordinates, colour, dashes or "none"))
        if name == "validation" or len(series) == 1:
            for step, loss in series:
                parts.append(format_html('<circle class="{}-marker" cx="{}" cy="{}" r="3" fill="{}"><title>{}</title>'
                                         '</circle>', name, f"{x_of(step):.1f}", f"{y_of(loss):.1f}", colour,
                                         f"{name} loss {loss:.4g} at step {step}"))

    # Legend, top right above the plot.
    for i, (name, colour, dashes) in enumerate((("train", TRAIN_COLOUR, "none"), ("validation", EVAL_COLOUR, "4 3"))):
        x = right - 170 + i * 80
        parts.append(format_html('<line x1="{}" y1="12" x2="{}" y2="12" stroke="{}" stroke-width="2" '
                                 'stroke-dasharray="{}"/><text x="{}" y="16" fill="currentColor">{}</text>',
                                 x, x + 18, colour, dashes, x + 22, name))
    parts.append("</svg>")
    return "".join(parts)
