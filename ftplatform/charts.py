"""Small inline SVG charts for the admin pages: line charts (loss curves, the routing curve) and
grouped bar charts (score distributions).

Hand-written SVG rather than a charting library: no JavaScript charting library is vendored, the
admin must work offline and without JavaScript, and axes, lines, bars and a legend fit in a page
of code. Axes and text use the page's text colour (``currentColor``), so charts read in the
admin's light and dark themes. Every text is escaped (``format_html``), so callers may mark the
result safe.
"""
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.utils.html import format_html

Point = tuple[float, float]

# Matplotlib's "tab10" colours, in order: distinct, and readable on light and dark backgrounds.
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 56, 16, 28, 36
TICKS = 5
LEGEND_ROW, LEGEND_LEFT = 16, 8  # legend rows' height; the left end of a legend row (the right is the plot's)
LIMIT = 1e300  # axis values are clamped to ±LIMIT: beyond it, spans and steps overflow to inf
# Characters XML 1.0 forbids (C0 controls but tab and newlines, lone surrogates, U+FFFE/U+FFFF):
# escaping does not help, so names and labels that carry them lose them.
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _finite(value: float) -> float:
    """``value`` clamped to ±LIMIT; NaN is 0."""
    return 0.0 if math.isnan(value) else max(-LIMIT, min(LIMIT, value))


@dataclass
class Series:
    """One line of a line chart. ``name`` is its legend text and its CSS class (polyline
    ``class="<name>"``, markers ``class="<name>-marker"``); ``titles`` (one per point) are the
    markers' tooltips. A series of one point always gets a marker: a line of one point is invisible."""

    name: str
    points: Sequence[Point]
    colour: str = PALETTE[0]
    dashes: str = ""
    markers: bool = False
    titles: Sequence[str] = field(default_factory=list)


@dataclass
class Frame:
    """The plot area of a chart and the mapping from data to SVG coordinates."""

    width: int
    height: int
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    legend_rows: int = 1

    @property
    def left(self):
        return MARGIN_LEFT

    @property
    def right(self):
        return self.width - MARGIN_RIGHT

    @property
    def top(self):
        return MARGIN_TOP + LEGEND_ROW * (self.legend_rows - 1)

    @property
    def bottom(self):
        return self.height - MARGIN_BOTTOM

    def x(self, value: float) -> float:
        return self.left + _fraction(value, self.x_range) * (self.right - self.left)

    def y(self, value: float) -> float:
        return self.bottom - _fraction(value, self.y_range) * (self.bottom - self.top)


def _fraction(value: float, value_range: tuple[float, float]) -> float:
    """Where ``value`` lies in ``value_range`` (0 at low, 1 at high), kept within [-1, 2] (a point far
    off the chart is drawn just off it); the middle for a range of no (or no finite) width."""
    low, high = (_finite(v) for v in value_range)
    if not high > low:
        return 0.5
    return max(-1.0, min(2.0, (_finite(value) - low) / (high - low)))


def padded_range(values: Sequence[float]) -> tuple[float, float]:
    """(low, high) around ``values`` with 5 % room, never of zero width."""
    low, high = _finite(min(values)), _finite(max(values))
    pad = (high - low) * 0.05 or (abs(high) * 0.1 or 1.0)
    return low - pad, high + pad


def nice_ticks(low: float, high: float, count: int = TICKS, *, whole: bool = False) -> list[float]:
    """About ``count`` evenly spaced tick values covering [low, high] (at least two), at the step of
    1, 2, 2.5 or 5 times a power of ten nearest to (high - low) / (count - 1) (after Heckbert, "Nice
    numbers for graph labels", Graphics Gems, 1990), from a multiple of the step at or below
    ``low`` to one at or above ``high``. ``whole``: steps of at least 1 and never 2.5 (counts).
    Never raises: NaN counts as 0, infinities and values beyond ±1e300 as ±1e300, low > high are
    swapped, and a span too small to step through (e.g. equal or subnormal values) gets step 1 or
    a step of the values' own size."""
    low, high = sorted((_finite(low), _finite(high)))
    count = max(2, count)
    raw = (high - low) / (count - 1)
    if raw < 1e-200 or raw < 1e-12 * max(abs(low), abs(high)):  # flat: float steps cannot resolve it
        raw = abs(high) if abs(high) >= 1e-200 else 1.0
    exponent = math.floor(math.log10(raw))
    factors = (1, 2, 5, 10) if whole else (1, 2, 2.5, 5, 10)
    step = min((f * 10.0 ** exponent for f in factors), key=lambda candidate: abs(candidate - raw))  # nearest
    if whole:
        step = max(1.0, float(round(step)))
    start, stop = math.floor(low / step + 1e-9) * step, math.ceil(high / step - 1e-9) * step
    stop = max(stop, start + step)  # never a single tick (a zero-height axis)
    digits = max(0, 3 - math.floor(math.log10(step)))  # clean float noise, never merge two ticks
    return [round(start + i * step, digits) for i in range(round((stop - start) / step) + 1)]


def _open(frame: Frame, css_class: str, title: str) -> list[str]:
    return [format_html(
        '<svg class="{}" xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" viewBox="0 0 {} {}" '
        'role="img" font-family="sans-serif" font-size="11" style="max-width:100%;height:auto">'
        '<title>{}</title>', css_class, frame.width, frame.height, frame.width, frame.height, title)]


def _axes(frame: Frame, x_label: str, y_label: str, y_format: Callable[[float], str],
          y_ticks: Sequence[float]) -> list[str]:
    """The two axes, the y tick marks with labels, and both axis labels (x ticks are the caller's)."""
    parts = [format_html('<path d="M{} {}V{}H{}" fill="none" stroke="currentColor"/>',
                         frame.left, frame.top, frame.bottom, frame.right)]
    for value in y_ticks:
        y = frame.y(value)
        parts.append(format_html('<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="currentColor"/>'
                                 '<text x="{}" y="{}" text-anchor="end" fill="currentColor">{}</text>',
                                 frame.left - 4, f"{y:.1f}", frame.left, f"{y:.1f}", frame.left - 6, f"{y + 4:.1f}",
                                 y_format(value)))
    middle = (frame.top + frame.bottom) / 2
    parts.append(format_html('<text x="{}" y="{}" text-anchor="middle" fill="currentColor">{}</text>'
                             '<text x="12" y="{}" text-anchor="middle" fill="currentColor" '
                             'transform="rotate(-90 12 {})">{}</text>',
                             (frame.left + frame.right) / 2, frame.height - 4, x_label, middle, middle, y_label))
    return parts


def _x_tick(frame: Frame, value: float, label: str) -> str:
    x = frame.x(value)
    return format_html('<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="currentColor"/>'
                       '<text x="{}" y="{}" text-anchor="middle" fill="currentColor">{}</text>',
                       f"{x:.1f}", frame.bottom, f"{x:.1f}", frame.bottom + 4, f"{x:.1f}", frame.bottom + 16, label)


def _entry_width(name: str) -> int:
    return 28 + 7 * len(name)  # swatch, gap, about 7 px per character at font-size 11


def legend_rows(names: Sequence[str], width: int) -> list[list[tuple[int, str]]]:
    """The legend's rows for a chart ``width`` px wide: (index, shown name) per entry, in order,
    each row as full as fits between LEGEND_LEFT and the plot's right edge (no entry is ever drawn
    outside the chart); a name too long for a row of its own is cut short with "…" (its tooltip
    keeps it whole)."""
    span = width - MARGIN_RIGHT - LEGEND_LEFT
    longest = max(1, (span - 28) // 7)
    rows, used = [[]], 0
    for index, name in enumerate(names):
        shown = name if len(name) <= longest else name[:longest - 1] + "…"
        if rows[-1] and used + _entry_width(shown) > span:
            rows.append([])
            used = 0
        rows[-1].append((index, shown))
        used += _entry_width(shown)
    return rows


def _legend(frame: Frame, entries: Sequence[tuple[str, str, str]], swatch: str = "line") -> list[str]:
    """(name, colour, dashes) entries above the plot, in rows (legend_rows) ending at its right edge;
    ``swatch`` "line", "box" (bars) or "dot" (a series drawn as one marker). A dashes value of "dot"
    draws that entry's swatch as a dot whatever ``swatch`` says. Each entry's tooltip is its full name."""
    parts = []
    for row_number, row in enumerate(legend_rows([name for name, _, _ in entries], frame.width)):
        x, y = frame.right, 12 + LEGEND_ROW * row_number
        for index, shown in reversed(row):
            name, colour, dashes = entries[index]
            x -= _entry_width(shown)
            parts.append(format_html("<g><title>{}</title>", name))
            if dashes == "dot":
                parts.append(format_html('<circle cx="{}" cy="{}" r="4" fill="{}"/>', x + 9, y, colour))
            elif swatch == "line":
                parts.append(format_html('<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}" stroke-width="2" '
                                         'stroke-dasharray="{}"/>', x, y, x + 18, y, colour, dashes or "none"))
            else:
                parts.append(format_html('<rect x="{}" y="{}" width="12" height="12" fill="{}"/>', x + 3, y - 6,
                                         colour))
            parts.append(format_html('<text x="{}" y="{}" fill="currentColor">{}</text></g>', x + 22, y + 4, shown))
    return parts


def _framed(width: int, height: int, x_range, y_range, names: Sequence[str]) -> Frame:
    """The chart's frame, taller by a row for each legend row past the first (the plot keeps its size)."""
    rows = len(legend_rows(names, width))
    return Frame(width, height + LEGEND_ROW * (rows - 1), x_range, y_range, legend_rows=rows)


def line_chart_svg(series: Sequence[Series], *, title: str, x_label: str, y_label: str, css_class: str = "chart",
                   width: int = 640, height: int = 240, x_range: tuple[float, float] | None = None,
                   y_range: tuple[float, float] | None = None, integer_x: bool = False,
                   x_format: Callable[[float], str] = "{:.3g}".format,
                   y_format: Callable[[float], str] = "{:.3g}".format,
                   reference: tuple[float, str] | None = None, empty: str = "nothing to draw yet") -> str:
    """An SVG line chart: one polyline per series (dashed where ``dashes`` is set, with a marker on
    each point where ``markers``), axes with ``TICKS`` tick labels, and a legend.

    Args:
        series: the lines; non-finite points are skipped, and a series left empty is not drawn
            (it stays in the legend). ``titles``, when given, has one entry per point.
        x_range / y_range: fixed axis ranges (default: the data's, padded on y); y is widened to the
            nice_ticks around it.
        integer_x: x ticks at whole numbers (steps).
        reference: (y, label) draws a dotted horizontal line, e.g. a target quality.
        empty: the plain text returned (instead of an SVG) when no finite point is left.
    Returns:
        SVG markup, width × height pixels (scales down to the page's width), or ``empty``.
    """
    drawn = []
    for line in series:
        titles = list(line.titles) or [f"{line.name}: {y:.4g} at {x:.4g}" for x, y in line.points]
        kept = [(point, text) for point, text in zip(line.points, titles, strict=True)
                if math.isfinite(point[0]) and math.isfinite(point[1])]
        if kept:
            drawn.append((line, [point for point, _ in kept], [text for _, text in kept]))
    if not drawn:
        return empty
    xs = [x for _, points, _ in drawn for x, _ in points]
    ys = [y for _, points, _ in drawn for _, y in points] + ([reference[0]] if reference else [])
    if x_range is None:
        x_range = (min(0, *xs), max(xs) or 1)
    x_range = (_finite(x_range[0]), _finite(x_range[1]))
    y_ticks = nice_ticks(*(y_range or padded_range(ys)))
    frame = _framed(width, height, x_range, (y_ticks[0], y_ticks[-1]), [line.name for line in series])
    parts = _open(frame, css_class, title) + _axes(frame, x_label, y_label, y_format, y_ticks)
    low, high = frame.x_range
    ticks = [low + i * (high - low) / (TICKS - 1) for i in range(TICKS)]
    for value in (sorted({round(t) for t in ticks}) if integer_x else ticks):
        parts.append(_x_tick(frame, value, str(value) if integer_x else x_format(value)))
    if reference is not None:
        y = frame.y(reference[0])
        parts.append(format_html('<line class="reference" x1="{}" y1="{}" x2="{}" y2="{}" stroke="currentColor" '
                                 'stroke-dasharray="1 3"><title>{}</title></line>'
                                 '<text x="{}" y="{}" fill="currentColor">{}</text>',
                                 frame.left, f"{y:.1f}", frame.right, f"{y:.1f}", reference[1],
                                 frame.left + 4, f"{y - 4:.1f}", reference[1]))
    for line, points, titles in drawn:
        coordinates = " ".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in points)
        parts.append(format_html('<polyline class="{}" points="{}" fill="none" stroke="{}" stroke-width="2"'
                                 ' stroke-dasharray="{}"/>', line.name, coordinates, line.colour,
                                 line.dashes or "none"))
        if line.markers or len(points) == 1:
            for (x, y), text in zip(points, titles, strict=True):
                parts.append(format_html('<circle class="{}-marker" cx="{}" cy="{}" r="3" fill="{}"><title>{}</title>'
                                         '</circle>', line.name, f"{frame.x(x):.1f}", f"{frame.y(y):.1f}",
                                         line.colour, text))
    one_point = {line.name for line, points, _ in drawn if len(points) == 1}
    parts += _legend(frame, [(s.name, s.colour, "dot" if s.name in one_point else s.dashes) for s in series])
    parts.append("</svg>")
    return NOT_XML.sub("", "".join(parts))


def bar_chart_svg(categories: Sequence[str], groups: Sequence[tuple[str, Sequence[float]]], *, title: str,
                  x_label: str, y_label: str, css_class: str = "chart", width: int = 640, height: int = 240,
                  y_format: Callable[[float], str] = "{:.3g}".format, empty: str = "nothing to draw yet") -> str:
    """An SVG grouped bar chart: for each category (e.g. a score bin) one bar per group (e.g. a
    model), side by side in the group's colour (``PALETTE`` in order), with a legend.

    Args:
        categories: the x labels, left to right.
        groups: (name, values) with one value ≥ 0 per category; bars have ``class="bar"`` and
            ``data-group="<name>"``, and a tooltip with the value. The y axis has nice_ticks, whole
            numbers when every value is whole (counts).
    Returns:
        SVG markup, or ``empty`` when there is no group or no category.
    Raises:
        ValueError: a group's values and the categories differ in length.
    """
    if not categories or not groups:
        return empty
    for name, values in groups:
        if len(values) != len(categories):
            raise ValueError(f"group {name!r} has {len(values)} values for {len(categories)} categories")
    values = [v for _, group in groups for v in group if math.isfinite(v) and v >= 0]  # what a bar can show
    y_ticks = nice_ticks(0, max(values, default=0) or 1, whole=all(float(v).is_integer() for v in values))
    frame = _framed(width, height, (0, len(categories)), (0, y_ticks[-1]), [name for name, _ in groups])
    parts = _open(frame, css_class, title) + _axes(frame, x_label, y_label, y_format, y_ticks)
    slot = (frame.right - frame.left) / len(categories)
    bar = slot * 0.8 / len(groups)
    for i, category in enumerate(categories):
        parts.append(_x_tick(frame, i + 0.5, category))
        for j, (name, values) in enumerate(groups):
            x = frame.left + i * slot + slot * 0.1 + j * bar
            y = frame.y(max(0.0, min(_finite(values[i]), y_ticks[-1])))  # NaN, inf, negative: no bar or a full one
            parts.append(format_html('<rect class="bar" data-group="{}" x="{}" y="{}" width="{}" height="{}" '
                                     'fill="{}"><title>{}</title></rect>', name, f"{x:.1f}", f"{y:.1f}",
                                     f"{bar:.1f}", f"{frame.bottom - y:.1f}", PALETTE[j % len(PALETTE)],
                                     f"{name}, {category}: {values[i]:g}"))
    parts += _legend(frame, [(name, PALETTE[j % len(PALETTE)], "") for j, (name, _) in enumerate(groups)],
                     swatch="box")
    parts.append("</svg>")
    return NOT_XML.sub("", "".join(parts))
