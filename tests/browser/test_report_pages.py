"""The decision report page in a real browser: the verdict, the tables and both charts are shown
(an SVG that fails to parse, or is drawn at zero size, would not be)."""
import os

import pytest
from django.urls import reverse

from evaluation.models import PairwiseJudgment
from tests.support.factories import EngineerFactory, RaterFactory, tuned_vs_prompted_runs


@pytest.mark.django_db(transaction=True)
def test_the_decision_report_page_shows_its_charts(signed_in, live_server):
    dataset, prompted, tuned = tuned_vs_prompted_runs(examples=30, validation=True)  # enough inputs for a verdict
    rater = RaterFactory()
    for a, b in zip(prompted.predictions.order_by("id"), tuned.predictions.order_by("id"), strict=True):
        PairwiseJudgment.objects.create(prediction_a=a, prediction_b=b, rater=rater, left="a", outcome="b")
    page = signed_in(EngineerFactory())
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server.url}{reverse('admin:evaluation_evalrun_decision')}?dataset={dataset.pk}")
    assert page.inner_text("#ft-verdict h2") == "Verdict: FINE-TUNE"
    for chart in ("svg.score-distribution", "svg.routing-curve"):
        box = page.locator(chart).bounding_box()
        assert box and box["width"] > 300 and box["height"] > 100, chart
    # Bars and markers are drawn inside the plot, and the browser parsed them as SVG elements.
    assert page.locator("svg.score-distribution rect.bar").count() == 20
    assert page.locator("svg.routing-curve circle.suggested-marker").count() == 1
    assert page.locator("#ft-leaderboard tbody tr").count() == 2
    screenshot(page, "decision")

    # The model report and the comparison it links to draw their score distributions too.
    page.click(f"#ft-models a:text-is('{tuned.model_version.name}')")
    assert page.locator("#ft-lineage").is_visible()
    # One chart per evaluation of the version: its test split and its validation split.
    charts = page.locator("svg.score-distribution")
    assert charts.count() == 2
    for index in range(2):
        assert charts.nth(index).bounding_box()["height"] > 100
    screenshot(page, "model_report")
    page.click("text=Paired comparison with")
    assert page.locator("svg.score-distribution rect.bar").count() == 20
    assert "paired bootstrap" in page.inner_text("#content").lower()
    screenshot(page, "comparison")


def screenshot(page, name):
    """With FTPLATFORM_SCREENSHOTS=<folder>, save the whole page there, to look at by eye."""
    if os.environ.get("FTPLATFORM_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["FTPLATFORM_SCREENSHOTS"], f"{name}.png"), full_page=True)
