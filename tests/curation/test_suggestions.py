"""Model suggestions: drafts without an answer, prefilled suggestions, how much annotators edited them,
and the queues ordered by the model's confidence, disagreement or diversity."""
import re

import pytest

from curation.admin_views import render_suggestions
from curation.choices import ExampleStatus, QueueOrder, SuggestionOutcome
from curation.formats import FormatError, input_hash, needs_answer, validate_messages
from curation.imports import submit_import
from curation.models import Example, Suggestion
from curation.selectors import suggestion_statistics
from curation.suggestions import edit_distance
from curation.work_queues import next_example_to_annotate, next_example_to_review
from curation.workflow import edit_example, record_suggestion, submit_example
from ftplatform.errors import ServiceError
from tests.support.clients import client_for
from tests.support.factories import AnnotatorFactory, DatasetFactory, ExampleFactory, ReviewerFactory, conversation
from tests.support.openapi import assert_documented


def unanswered(dataset, author, text: str) -> Example:
    messages = [{"role": "user", "content": text}]
    return ExampleFactory(dataset=dataset, author=author, messages=messages, status=ExampleStatus.DRAFT)


def suggest(example, text, *, version=1, confidence=-0.5, by=None):
    return record_suggestion(example, model_version_id=version, model_name=f"model-{version}", text=text,
                             confidence=confidence, by=by or example.author)


def test_a_conversation_ending_in_a_user_turn_is_valid_only_where_unanswered_inputs_are_allowed():
    messages = [{"role": "user", "content": "name: Aromi"}]
    with pytest.raises(FormatError, match="no assistant turn"):
        validate_messages(messages)
    assert validate_messages(messages, allow_unanswered=True) == messages
    # Its input is the whole conversation: the answered example has the same input hash.
    assert input_hash(messages) == input_hash([*messages, {"role": "assistant", "content": "Aromi."}])


@pytest.mark.django_db
def test_imported_inputs_without_answers_become_drafts_and_answered_ones_go_to_review():
    dataset, ann = DatasetFactory(), AnnotatorFactory()
    lines = (b'{"messages": [{"role": "user", "content": "name: Aromi"}]}\n'
             b'{"messages": [{"role": "user", "content": "name: Bibimbap"}, {"role": "assistant", "content": "B."}]}\n')
    submit_import(dataset, lines, "chat_jsonl", by=ann, filename="inputs.jsonl")
    assert dict(Example.objects.values_list("messages__0__content", "status")) == {
        "name: Aromi": ExampleStatus.DRAFT, "name: Bibimbap": ExampleStatus.SUBMITTED}


@pytest.mark.django_db
def test_a_draft_without_an_answer_cannot_be_submitted():
    draft = unanswered(DatasetFactory(), AnnotatorFactory(), "name: Aromi")
    with pytest.raises(ServiceError, match=f"example {draft.pk} has no answer yet"):
        submit_example(draft, by=draft.author)


@pytest.mark.django_db
def test_a_suggestion_becomes_the_answer_of_a_draft_that_needs_one():
    draft = unanswered(DatasetFactory(), AnnotatorFactory(), "name: Aromi")
    suggestion = suggest(draft, "Aromi is a pub.", confidence=-0.25)
    draft.refresh_from_db()
    assert draft.messages[-1] == {"role": "assistant", "content": "Aromi is a pub."}
    assert (suggestion.prefilled, suggestion.confidence, suggestion.model_name) == (True, -0.25, "model-1")
    assert draft.history.first().history_change_reason == "answer suggested by model-1"


@pytest.mark.django_db
def test_a_draft_that_has_an_answer_keeps_it():
    draft = ExampleFactory(status=ExampleStatus.DRAFT)
    answer = draft.output_text
    assert not suggest(draft, "Something else.").prefilled
    draft.refresh_from_db()
    assert draft.output_text == answer


@pytest.mark.django_db
def test_submitting_an_unchanged_suggestion_counts_as_accepted():
    draft = unanswered(DatasetFactory(), AnnotatorFactory(), "name: Aromi")
    suggestion = suggest(draft, "Aromi is a pub.")
    submit_example(draft, by=draft.author)
    suggestion.refresh_from_db()
    assert (suggestion.outcome, suggestion.edit_distance, suggestion.normalized_distance) == (
        SuggestionOutcome.ACCEPTED, 0, 0.0)


@pytest.mark.django_db
def test_an_edited_suggestion_records_its_edit_distance_and_a_rewrite_is_told_apart():
    dataset, ann = DatasetFactory(), AnnotatorFactory()
    edited, rewritten = unanswered(dataset, ann, "name: Aromi"), unanswered(dataset, ann, "name: Blue")
    for example, suggested, final in ((edited, "Aromi is a pub.", "Aromi is a cafe."),
                                      (rewritten, "Blue is a pub.", "Near the river you find Blue Spice.")):
        suggestion = suggest(example, suggested)
        example.refresh_from_db()
        example = edit_example(example, by=ann, messages=conversation(example.messages[0]["content"], final),
                               expected_version=example.version)
        submit_example(example, by=ann)
        suggestion.refresh_from_db()
        assert suggestion.submitted_text == final
        assert (suggestion.edit_distance, suggestion.normalized_distance) == edit_distance(suggested, final)
    assert dict(dataset.examples.values_list("messages__0__content", "suggestions__outcome")) == {
        "name: Aromi": SuggestionOutcome.EDITED, "name: Blue": SuggestionOutcome.REWRITTEN}


def test_edit_distance_counts_characters_and_normalises_by_the_longer_text():
    assert edit_distance("Aromi is a pub.", "Aromi is a cafe.") == (4, 0.25)
    assert edit_distance("", "") == (0, 0.0)


@pytest.mark.django_db
def test_statistics_report_acceptance_rate_and_edit_effort_per_model_version():
    dataset, ann = DatasetFactory(), AnnotatorFactory()
    for version, text, final in ((1, "A is a pub.", "A is a pub."), (1, "B is a pub.", "B is a bar."),
                                 (2, "C is a pub.", "C is a pub.")):
        example = unanswered(dataset, ann, f"name: {text[0]}")
        suggest(example, text, version=version)
        example.refresh_from_db()
        example = edit_example(example, by=ann, messages=conversation(f"name: {text[0]}", final),
                               expected_version=example.version)
        submit_example(example, by=ann)
    unanswered_yet = unanswered(dataset, ann, "name: D")
    suggest(unanswered_yet, "D is a pub.", version=2)
    one, two = (next(row for row in suggestion_statistics(dataset) if row["model_name"] == name)
                for name in ("model-1", "model-2"))
    assert (one["submitted"], one["accepted"], one["acceptance_rate"]) == (2, 1, 0.5)
    assert one["mean_normalized_distance"] == pytest.approx(edit_distance("B is a pub.", "B is a bar.")[1] / 2)
    assert (two["suggestions"], two["submitted"], two["acceptance_rate"], two["rewritten_share"]) == (2, 1, 1.0, 0.0)


@pytest.mark.django_db
def test_the_annotate_queue_can_start_with_the_least_confident_suggestion():
    dataset, ann = DatasetFactory(), AnnotatorFactory()
    sure, unsure, none = (unanswered(dataset, ann, f"name: {n}") for n in ("Sure", "Unsure", "None"))
    suggest(sure, "Sure.", confidence=-0.1)
    suggest(unsure, "Unsure.", confidence=-2.0)
    assert next_example_to_annotate(ann) == sure  # oldest first by default
    assert next_example_to_annotate(AnnotatorFactory()) is None
    other = AnnotatorFactory()
    for example in (sure, unsure, none):
        Example.objects.filter(pk=example.pk).update(author=other, reserved_by=None, reserved_until=None)
    assert next_example_to_annotate(other, order=QueueOrder.LOW_CONFIDENCE) == unsure


@pytest.mark.django_db
def test_the_annotate_queue_can_start_where_two_models_disagree_most():
    dataset, ann = DatasetFactory(), AnnotatorFactory()
    agreed, disputed = unanswered(dataset, ann, "name: Agreed"), unanswered(dataset, ann, "name: Disputed")
    for example, second in ((agreed, "Agreed is a pub!"), (disputed, "Nothing alike here")):
        suggest(example, example.messages[0]["content"][6:] + " is a pub.", version=1)
        suggest(example, second, version=2)
    assert disputed.suggestions.get(model_version_id=1).disagreement > agreed.suggestions.get(
        model_version_id=1).disagreement
    assert next_example_to_annotate(ann, order=QueueOrder.DISAGREEMENT) == disputed


@pytest.mark.django_db
def test_the_review_queue_in_diversity_order_takes_one_of_each_near_duplicate_cluster_first():
    dataset = DatasetFactory()
    texts = ["name: The Golden Curry, eatType: restaurant, food: Indian, area: city centre",
             "name: The Golden Curry, eatType: restaurant, food: Indian, area: city centre.",
             "name: Blue Spice, eatType: coffee shop, priceRange: cheap, area: riverside"]
    first, near_copy, different = (ExampleFactory(dataset=dataset, messages=conversation(text, f"Answer {i}."))
                                   for i, text in enumerate(texts))
    rita, sam = ReviewerFactory(), ReviewerFactory()
    assert next_example_to_review(rita, order=QueueOrder.DIVERSITY) == first
    assert next_example_to_review(sam, order=QueueOrder.DIVERSITY) == different
    assert next_example_to_review(ReviewerFactory(), order=QueueOrder.OLDEST) == near_copy


@pytest.mark.django_db
def test_an_unknown_queue_order_is_refused_by_name():
    with pytest.raises(ServiceError, match="unknown queue order 'random'"):
        next_example_to_annotate(AnnotatorFactory(), order="random")


@pytest.mark.django_db
def test_the_api_queue_takes_an_order_and_names_a_wrong_one():
    dataset, ann = DatasetFactory(), AnnotatorFactory()
    sure, unsure = unanswered(dataset, ann, "name: Sure"), unanswered(dataset, ann, "name: Unsure")
    suggest(sure, "Sure.", confidence=-0.1)
    suggest(unsure, "Unsure.", confidence=-2.0)
    client = client_for(ann)
    wrong = client.post("/api/v1/examples/next-to-annotate/", {"order": "random"}, format="json")
    assert wrong.status_code == 400 and "random" in str(wrong.json()["order"])
    taken = client.post("/api/v1/examples/next-to-annotate/", {"order": "low_confidence"}, format="json")
    assert taken.json()["id"] == unsure.pk


@pytest.mark.django_db
def test_the_admin_review_queue_hands_out_in_the_order_chosen_and_keeps_it(client):
    dataset = DatasetFactory()
    sure, unsure = ExampleFactory(dataset=dataset), ExampleFactory(dataset=dataset)
    for example, confidence in ((sure, -0.1), (unsure, -3.0)):
        Suggestion.objects.create(example=example, model_version_id=1, model_name="m", text="x",
                                  confidence=confidence)
    client.force_login(ReviewerFactory())
    response = client.get("/admin/curation/example/review/?order=low_confidence")
    assert response.url == f"/admin/curation/example/{unsure.pk}/review/?order=low_confidence"
    page = client.get(response.url).content.decode()
    assert "Model suggestions" in page and "-3.000" in page
    skipped = client.post(response.url, {"decision": "skip", "expected_version": unsure.version})
    assert skipped.url == f"/admin/curation/example/review/?after={unsure.pk}&order=low_confidence"


@pytest.mark.django_db
def test_the_api_lists_an_undecided_suggestion_as_its_schema_documents():
    """An undecided suggestion's outcome is "", which the schema's enum (accepted, edited, rewritten)
    left out: a client generated from the schema refused the list as soon as one was not yet submitted."""
    ann = AnnotatorFactory()
    suggest(unanswered(DatasetFactory(), ann, "name: Aromi"), "Aromi is a pub.")
    client = client_for(ann)
    listed = client.get("/api/v1/suggestions/")
    assert [row["outcome"] for row in listed.json()["results"]] == [""]
    assert_documented(client, "/api/v1/suggestions/", "get", listed)


@pytest.mark.django_db
def test_an_empty_suggestion_is_shown_as_such_on_the_example_page():
    """A model that answered nothing left a blank cell beside "not used", which explained nothing."""
    draft = unanswered(DatasetFactory(), AnnotatorFactory(), "name: Aromi")
    suggest(draft, "  ")
    draft.refresh_from_db()
    assert needs_answer(draft.messages)  # not prefilled with a blank answer
    cells = re.findall(r"<td[^>]*>(.*?)</td>", render_suggestions(draft))
    assert cells[2:4] == ["not used", "(empty: the model answered nothing)"]
