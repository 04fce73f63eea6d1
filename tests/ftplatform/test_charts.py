"""The SVG charts of the report pages (ftplatform.charts) on extreme, non-finite and hostile input:
the axis ticks stay finite and distinct, and every chart is well-formed SVG."""
import math
import xml.dom.minidom

import pytest

from ftplatform.charts import Series, bar_chart_svg, line_chart_svg, nice_ticks


def well_formed(svg: str) -> None:
    assert svg.startswith("<svg"), svg
    xml.dom.minidom.parseString(svg)
    assert not any(f'"{bad}' in svg for bad in ("nan", "inf", "-inf")), svg  # no NaN/inf coordinate


NASTY = [(0, 0), (-5, -5), (1, 0), (1e308, 1e308), (-1e308, 1e308), (0, math.inf), (math.nan, 1),
         (0, 5e-324), (0, 1e-320), (1e-12, 2e-12), (1e300, 1e301)]


@pytest.mark.parametrize("whole", [False, True])
@pytest.mark.parametrize("low, high", NASTY)
def test_nice_ticks_never_raise_and_give_distinct_finite_ascending_ticks(low, high, whole):
    """(1e308, 1e308) and infinities overflowed, NaN and low > high raised ValueError, 5e-324 divided by
    zero, and (1e-12, 2e-12) gave five ticks all 0.0 (rounded to 10 decimals: a zero-height axis)."""
    ticks = nice_ticks(low, high, whole=whole)
    assert len(ticks) >= 2 and ticks == sorted(set(ticks)) and all(math.isfinite(t) for t in ticks)


@pytest.mark.parametrize("points", [[(0, 1e308), (1, -1e308)], [(0, 1e-12), (1, 2e-12)], [(-5, 1), (-5, 2)],
                                    [(1e308, 1), (-1e308, 2)], [(0, 5e-324), (1, 0)]])
def test_line_charts_of_extreme_values_are_well_formed_svg(points):
    for integer_x in (False, True):
        well_formed(line_chart_svg([Series("loss", points)], title="t", x_label="x", y_label="y",
                                   integer_x=integer_x))


def test_line_charts_with_a_flat_or_infinite_x_range_or_a_nan_reference_are_well_formed_svg():
    line = [Series("loss", [(0, 1), (1, 2)])]
    well_formed(line_chart_svg(line, title="t", x_label="x", y_label="y", x_range=(1, 1)))
    well_formed(line_chart_svg(line, title="t", x_label="x", y_label="y", x_range=(0, math.inf), integer_x=True))
    well_formed(line_chart_svg(line, title="t", x_label="x", y_label="y", reference=(math.nan, "target")))


@pytest.mark.parametrize("values", [[math.nan], [math.inf], [-5], [1e-320], [1e308]])
def test_bar_charts_of_nan_infinite_negative_or_tiny_values_are_well_formed_svg(values):
    well_formed(bar_chart_svg(["bin"], [("model", values)], title="t", x_label="x", y_label="y"))


def test_control_characters_in_names_never_make_the_svg_invalid_xml():
    """Escaping leaves U+0001 (a model name may hold it) as is: XML 1.0 forbids it, the SVG did not parse."""
    well_formed(bar_chart_svg(["bin\x01"], [("model\x00\ud800", [1])], title="t\x0b", x_label="x", y_label="y"))
    well_formed(line_chart_svg([Series("a\x01", [(0, 1), (1, 2)])], title="t", x_label="x", y_label="y"))


def _legend_texts(svg: str) -> list[tuple[float, float, str]]:
    """(x, y, text) of the legend's entries (the texts inside <g><title> groups)."""
    document = xml.dom.minidom.parseString(svg)
    return [(float(text.getAttribute("x")), float(text.getAttribute("y")), text.firstChild.data)
            for group in document.getElementsByTagName("g") for text in group.getElementsByTagName("text")]


@pytest.mark.parametrize("names", [
    ["secret-tuned-model-lora-r16-on-venues-snapshot-3", "prompted SmolLM2-135M-Instruct baseline, few-shot"],
    ["a" * 200],
    [f"model version {i}" for i in range(9)],
])
def test_every_legend_entry_is_drawn_inside_the_chart(names):
    """The trial's decision page drew the first legend entry (the model being judged) left of the
    chart: the row was laid out right to left with no wrapping."""
    width = 640
    for svg in (bar_chart_svg(["0-10", "10-20"], [(name, [1, 2]) for name in names], title="t", x_label="x",
                              y_label="y", width=width),
                line_chart_svg([Series(name, [(0, 1), (1, 2)]) for name in names], title="t", x_label="x",
                               y_label="y", width=width)):
        well_formed(svg)
        entries = _legend_texts(svg)
        assert len(entries) == len(names)
        for x, _, text in entries:
            assert 0 <= x - 22 and x + 7 * len(text) <= width, (x, text)
        # Every full name stays readable in its tooltip.
        assert all(f"<g><title>{name}</title>" in svg for name in names)


def test_a_legend_of_several_rows_moves_the_plot_down_and_keeps_its_height():
    names = [f"model version number {i}" for i in range(6)]
    one_row = bar_chart_svg(["a"], [("m", [1])], title="t", x_label="x", y_label="y")
    rows = bar_chart_svg(["a"], [(name, [1]) for name in names], title="t", x_label="x", y_label="y")
    assert 'height="240"' in one_row
    baselines = sorted({y for _, y, _ in _legend_texts(rows)})
    assert len(baselines) > 1
    extra = 16 * (len(baselines) - 1)
    assert f'height="{240 + extra}"' in rows
    assert f'<path d="M56 {28 + extra}V{240 + extra - 36}' in rows  # the y axis starts below the legend
