"""End to end in a real browser (Playwright driving Debian's Chromium, headless): an annotator
writes an example with the structured editor and submits it, a reviewer rejects it with a
comment using the keyboard, the annotator fixes it, the reviewer approves it, and the
example's history shows every step."""
import pytest

from curation.models import Example
from tests.support.factories import AnnotatorFactory, DatasetFactory, ReviewerFactory


@pytest.mark.django_db(transaction=True)
def test_write_reject_fix_approve_in_the_admin(signed_in, live_server):
    dataset = DatasetFactory(name="e2e", guidelines="One sentence; mention every attribute.")
    annotator = AnnotatorFactory(username="ann")
    reviewer = ReviewerFactory(username="rita")

    # The annotator writes an example in the structured editor and submits it.
    ann = signed_in(annotator)
    ann.goto(f"{live_server.url}/admin/curation/example/add/")
    ann.select_option("#id_dataset", str(dataset.pk))
    ann.fill("textarea[name=form-0-content]", "name[Aromi], eatType[pub], area[riverside]")
    ann.select_option("select[name=form-1-role]", "assistant")
    ann.fill("textarea[name=form-1-content]", "Aromi is a pub.")
    with ann.expect_navigation():
        ann.click("text=Save (Ctrl+Enter)")
    with ann.expect_navigation():
        ann.click("input[value='Submit for review']")
    assert "submitted for review" in ann.inner_text(".messagelist")
    example = Example.objects.get()
    assert example.status == "submitted"

    # The reviewer opens the queue and rejects with a comment, from the keyboard.
    rev = signed_in(reviewer)
    rev.goto(f"{live_server.url}/admin/curation/example/review/")
    assert "Aromi is a pub." in rev.inner_text("#ft-conversation")
    assert "mention every attribute" in rev.content()
    rev.keyboard.press("r")
    rev.keyboard.type("Say that it is by the riverside.")
    with rev.expect_navigation():
        rev.keyboard.press("Control+Enter")
    example.refresh_from_db()
    assert example.status == "rejected"

    # The annotator sees the comment, fixes the output, and saving sends it back to review.
    ann.goto(f"{live_server.url}/admin/curation/example/{example.pk}/change/")
    assert "Say that it is by the riverside." in ann.content()
    ann.click("text=Edit conversation")
    ann.fill("textarea[name=form-1-content]", "Aromi is a pub by the riverside.")
    with ann.expect_navigation():
        ann.keyboard.press("Control+Enter")
    example.refresh_from_db()
    assert (example.status, example.review_round) == ("submitted", 2)

    # The reviewer approves it with the 'a' key.
    rev.goto(f"{live_server.url}/admin/curation/example/review/")
    assert "by the riverside" in rev.inner_text("#ft-conversation")
    with rev.expect_navigation():
        rev.keyboard.press("a")
    example.refresh_from_db()
    assert example.status == "approved"

    # The history page lists every step with who did it.
    ann.goto(f"{live_server.url}/admin/curation/example/{example.pk}/history/")
    history = ann.inner_text("#content")
    for step in ("created", "submitted", "rejected", "edited (was rejected; back to review)", "approved (1/1)"):
        assert step in history
    assert "rita" in history and "ann" in history
