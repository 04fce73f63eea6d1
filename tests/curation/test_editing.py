"""Edits carry the version they were made on; an edit sends an example back to review."""
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, connections
from rest_framework.test import APIClient

from curation.choices import ExampleStatus
from curation.models import Review
from curation.workflow import approve_example, edit_example
from ftplatform.errors import Conflict, NotAllowed, ServiceError
from tests.support.factories import AnnotatorFactory, ExampleFactory, ReviewerFactory, conversation


def test_editing_an_approved_example_voids_its_approval(db):
    example = approve_example(ExampleFactory(), by=ReviewerFactory())
    edited = edit_example(example, by=example.author, messages=conversation("q", "better answer"),
                          expected_version=example.version)
    assert edited.status == ExampleStatus.SUBMITTED and edited.review_round == 2
    assert edited.output_text == "better answer"
    assert edited.history.first().history_change_reason == "edited (was approved; back to review)"


def test_a_stale_edit_is_refused_and_nothing_changes(db):
    example = ExampleFactory()
    edit_example(example, by=example.author, messages=conversation("q", "first"), expected_version=1)
    with pytest.raises(Conflict, match="changed since you loaded it"):
        edit_example(example, by=example.author, messages=conversation("q", "second"), expected_version=1)
    example.refresh_from_db()
    assert example.output_text == "first"


def test_invalid_messages_name_the_message(db):
    example = ExampleFactory()
    with pytest.raises(ServiceError, match=f"example {example.pk}: message 2 has role 'bot'") as raised:
        edit_example(example, by=example.author, expected_version=example.version,
                     messages=[{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}])
    assert (raised.value.field, raised.value.position) == ("messages", 2)


def test_a_nested_problem_carries_its_message_position_and_a_conversation_level_one_none(db):
    example = ExampleFactory()
    parts = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
             {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
             {"role": "assistant", "content": "b"}]
    with pytest.raises(ServiceError, match="message 3 \\(user\\): content part 1 'type' is \"image_url\"") as raised:
        edit_example(example, by=example.author, expected_version=example.version, messages=parts)
    assert (raised.value.field, raised.value.position) == ("messages", 3)
    with pytest.raises(ServiceError, match="must end with the assistant turn") as raised:
        edit_example(example, by=example.author, expected_version=example.version,
                     messages=[*parts[:2], {"role": "user", "content": "and then?"}])
    assert (raised.value.field, raised.value.position) == ("messages", None)


def test_the_api_error_body_names_the_field_and_position(db):
    example = ExampleFactory()
    client = APIClient()
    client.force_authenticate(example.author)
    response = client.post("/api/v1/examples/", {
        "dataset": example.dataset.pk,
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "  "}]}, format="json")
    assert response.status_code == 400
    assert response.json() == {"detail": f"new example in dataset '{example.dataset.name}': message 2 (assistant) "
                                         "has empty content",
                               "field": "messages", "position": 2}


def test_an_edit_that_duplicates_another_example_is_a_conflict_naming_it_only_if_visible(db):
    other = ExampleFactory()
    # A different input: the factory pairs consecutive examples on one input, visible to each other.
    example = ExampleFactory(dataset=other.dataset, messages=conversation("name: Elsewhere", "Elsewhere is."))
    with pytest.raises(Conflict, match="another example you cannot see already holds"):
        edit_example(example, by=example.author, messages=other.messages, expected_version=example.version)
    mine = ExampleFactory(dataset=other.dataset, author=example.author)
    with pytest.raises(Conflict, match=f"example {mine.pk} already holds"):
        edit_example(example, by=example.author, messages=mine.messages, expected_version=example.version)


def test_only_the_author_edits(db):
    example = ExampleFactory()
    with pytest.raises(NotAllowed):
        edit_example(example, by=AnnotatorFactory(), messages=conversation("q", "x"), expected_version=example.version)


def test_api_patch_answers_409_on_a_stale_version(db):
    example = ExampleFactory()
    client = APIClient()
    client.force_authenticate(example.author)
    url = f"/api/v1/examples/{example.pk}/"
    ok = client.patch(url, {"messages": conversation("q", "v2"), "expected_version": 1}, format="json")
    stale = client.patch(url, {"messages": conversation("q", "v3"), "expected_version": 1}, format="json")
    assert (ok.status_code, stale.status_code) == (200, 409)
    assert client.put(url, {}, format="json").status_code == 405


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL row locks")
def test_twenty_concurrent_edits_and_decisions_exactly_the_non_stale_ones_win():
    example = ExampleFactory()
    author, reviewers = example.author, [ReviewerFactory() for _ in range(10)]

    def act(index):
        try:
            if index % 2:
                edit_example(example, by=author, messages=conversation("q", f"edit {index}"), expected_version=1)
            else:
                approve_example(example, by=reviewers[index // 2], expected_version=1)
            return "won"
        except Conflict:
            return "stale"
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(act, range(20)))

    example.refresh_from_db()
    assert outcomes.count("won") == 1 and outcomes.count("stale") == 19
    assert example.version == 2
    assert example.history.count() == 2  # created + the one winning change
    winner = outcomes.index("won")
    if winner % 2:
        assert example.output_text == f"edit {winner}" and not Review.objects.exists()
    else:
        assert example.status == ExampleStatus.APPROVED and Review.objects.count() == 1
