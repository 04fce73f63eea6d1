"""The side-by-side page in a real browser: an engineer chooses a snapshot split and two model
versions, reads which side is which and what a difference's sign means, each output with its score,
and sorts by the difference."""
import pytest
from django.urls import reverse

from evaluation.models import Prediction
from tests.browser.test_report_pages import screenshot
from tests.support.factories import EngineerFactory, two_eval_runs


@pytest.mark.django_db(transaction=True)
def test_an_engineer_compares_two_versions_input_by_input(signed_in, live_server):
    _, (a, b) = two_eval_runs()
    Prediction.objects.filter(eval_run=a).update(scores={"bleu": 50.0})
    for index, prediction in enumerate(b.predictions.order_by("id")):
        prediction.scores = {"bleu": 10.0 * index}
        prediction.save()
    best = b.predictions.order_by("id").last()  # B's best input: +40 over A
    page = signed_in(EngineerFactory())
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(f"{live_server.url}{reverse('admin:evaluation_evalrun_side_by_side')}")
    chooser = page.locator("#ft-side-by-side-choose")
    chooser.locator("select[name=snapshot]").select_option(str(a.snapshot_id))
    chooser.locator("select[name=split]").select_option("train")
    versions = chooser.locator("select[name=versions]")
    versions.nth(0).select_option(str(a.model_version_id))
    versions.nth(1).select_option(str(b.model_version_id))
    chooser.locator("input[type=submit]").click()

    sides = page.locator("#ft-sides tbody tr")
    assert sides.nth(0).inner_text().startswith("A (reference)\tsecret-prompted-model")
    assert sides.nth(1).inner_text().startswith("B\tsecret-tuned-model")
    assert page.inner_text("#ft-sign").startswith(
        "difference = B − A on BLEU (per input, 0-100 scale); positive: B scored higher than A")
    header = page.locator("#ft-side-by-side thead th")
    assert [header.nth(i).text_content() for i in (3, 4)] == ["A: secret-prompted-model", "B: secret-tuned-model"]
    assert page.locator("#ft-side-by-side tbody tr").count() == 10
    assert "10 inputs in the split" in page.inner_text("#ft-counts")

    page.click("#ft-counts a.ft-sort[data-order='-difference']")
    top = page.locator("#ft-side-by-side tbody tr").first
    assert top.locator("td[data-side=B] .output").inner_text() == best.output
    assert top.locator("td[data-side=B] .score").inner_text() == "BLEU 90.0 (B − A: +40.0)"
    assert top.locator("td[data-side=A] .score").inner_text() == "BLEU 50.0"
    bottom = page.locator("#ft-side-by-side tbody tr").last
    assert bottom.locator("td[data-side=B] .score").inner_text() == "BLEU 0.0 (B − A: -50.0)"
    # The engineer may not judge pairs: the page gives the blind pairwise page to hand to raters.
    link = page.locator("#ft-sides a.ft-rate-pair")
    assert link.get_attribute("href") == f"{reverse('admin:evaluation_evalrun_pairwise')}?a={a.pk}&b={b.pk}"
    screenshot(page, "side_by_side")
