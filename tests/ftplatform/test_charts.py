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
