"""Model-assisted annotation in a real browser: inputs imported without answers, an engineer has the
tiny model (taught E2E for a few seconds) suggest answers from the admin, an annotator takes the least
confident draft first, accepts that suggestion unchanged, edits the other, and the suggestions page
shows the acceptance rate and the edit distances."""
import json

import pytest

from curation.imports import submit_import
from curation.models import Example
from curation.suggestions import edit_distance
from evaluation.models import PreannotationRun
from ftplatform import queues
from tests.support.factories import AnnotatorFactory, DatasetFactory, EngineerFactory, tiny_base_model
from training.model_versions import prompted_model_version


@pytest.mark.django_db(transaction=True)
def test_an_annotator_accepts_one_suggestion_edits_another_and_sees_the_edit_statistics(
        signed_in, live_server, e2e_records, taught_tiny_model_dir, run_jobs):
    dataset = DatasetFactory(name="suggested")
    annotator, engineer = AnnotatorFactory(username="ann"), EngineerFactory(username="eng")
    distinct = {json.dumps(record["messages"][:-1]): record["messages"][:-1] for record in e2e_records[:20]}
    inputs = list(distinct.values())[:2]
    assert len(inputs) == 2  # distinct inputs (system + user), without their answers
    submit_import(dataset, "".join(json.dumps({"messages": m}) + "\n" for m in inputs).encode(), "chat_jsonl",
                  by=annotator, filename="inputs.jsonl")
    assert set(Example.objects.values_list("status", flat=True)) == {"draft"}
    version, _ = prompted_model_version(tiny_base_model(taught_tiny_model_dir), "", by=engineer)

    # The engineer has the model draft the answers, from the admin.
    eng = signed_in(engineer)
    eng.goto(f"{live_server.url}/admin/evaluation/preannotationrun/add/")
    eng.select_option("#id_model_version", str(version.pk))
    eng.select_option("#id_dataset", str(dataset.pk))
    eng.fill("#id_max_new_tokens", "16")
    with eng.expect_navigation(timeout=120_000):
        eng.click("input[value='Start pre-annotation']")
    run = PreannotationRun.objects.get()
    shown = eng.inner_text(".messagelist")
    if queues.is_async():  # with REDIS_URL the page answers once the job is queued; a burst worker runs it
        assert f"Pre-annotation {run.pk} queued: 0 of 2 drafts have a model suggestion." in shown
        run_jobs()
    else:
        assert f"Pre-annotation {run.pk} succeeded: 2 of 2 drafts have a model suggestion." in shown
    run.refresh_from_db()
    assert (run.status, run.suggested, run.total) == ("succeeded", 2, 2)
    suggestions = {e.pk: e.suggestions.get() for e in Example.objects.all()}
    assert all(s.prefilled and s.text.strip() for s in suggestions.values())
    unsure, sure = sorted(suggestions, key=lambda pk: (suggestions[pk].confidence, pk))

    # The annotator takes the least confident draft first, sees the suggestion, and accepts it as it is.
    ann = signed_in(annotator)
    ann.goto(f"{live_server.url}/admin/curation/example/")
    ann.select_option("select[aria-label='Annotate next queue order']", "low_confidence")
    with ann.expect_navigation():
        ann.click("input[value='Annotate next']")
    assert ann.url.endswith(f"/admin/curation/example/{unsure}/change/")
    shown = ann.inner_text("table.ft-suggestions")
    assert version.name in shown and f"{suggestions[unsure].confidence:.3f}" in shown
    assert suggestions[unsure].text.strip() in shown and "not yet submitted" in shown
    with ann.expect_navigation():
        ann.click("input[value='Submit for review']")
    assert "submitted for review" in ann.inner_text(".messagelist")

    # The next one it edits: one sentence more, then submits.
    ann.goto(f"{live_server.url}/admin/curation/example/")
    with ann.expect_navigation():
        ann.click("input[value='Annotate next']")
    assert ann.url.endswith(f"/admin/curation/example/{sure}/change/")
    ann.click("text=Edit conversation")
    answer = ann.locator("textarea[name=form-2-content]")
    assert answer.input_value() == suggestions[sure].text
    edited = suggestions[sure].text + " Yes."
    answer.fill(edited)
    with ann.expect_navigation():
        ann.keyboard.press("Control+Enter")
    with ann.expect_navigation():
        ann.click("input[value='Submit for review']")
    assert "submitted for review" in ann.inner_text(".messagelist")
    assert "Edited (edit distance 5" in ann.inner_text("table.ft-suggestions")

    # The suggestions page: half accepted unchanged, and how far the edit went.
    ann.goto(f"{live_server.url}/admin/curation/suggestion/?example__dataset__id__exact={dataset.pk}")
    statistics = ann.inner_text("#ft-suggestion-statistics table")
    distance, normalized = edit_distance(suggestions[sure].text, edited)
    row = statistics.splitlines()[-1].split("\t")
    header = statistics.splitlines()[0].lower().split("\t")  # the admin's CSS shows headings in capitals
    shown = dict(zip(header, row, strict=True))
    assert (shown["model version"], shown["suggestions"], shown["accepted unchanged"], shown["edited"]) == (
        version.name, "2", "1", "1")
    assert shown["acceptance rate"] == "50%"
    assert shown["mean edit distance"] == f"{distance / 2:.1f} characters" == "2.5 characters"
    assert shown["mean normalized distance"] == f"{normalized / 2:.2f}"
    assert shown["rewritten share"] == "0%"
