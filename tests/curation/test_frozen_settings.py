"""A snapshot freezes the dataset settings training and evaluation read, and its hash covers them."""
import pytest

from curation.choices import ExampleStatus
from curation.formats import content_hash
from curation.models import FROZEN_DATASET_SETTINGS, Snapshot
from curation.snapshots import create_snapshot
from curation.splits import snapshot_hash
from curation.workflow import edit_example
from tests.support.clients import client_for
from tests.support.factories import DatasetFactory, EngineerFactory, ExampleFactory, conversation

pytestmark = pytest.mark.django_db

SETTINGS = {"system_prompt": "Count the restaurants.", "language": "de", "output_json_schema": None,
            "regex_checks": {"digits": r"^\d+$"}, "primary_metric": "exact_match"}


def approved(dataset, count: int, answer=lambda i: f"{i}"):
    """``count`` approved examples "name: Place <i>" -> answer(i) (numbers by default)."""
    return [ExampleFactory(dataset=dataset, status=ExampleStatus.APPROVED,
                           messages=conversation(f"name: Place {i}", answer(i))) for i in range(count)]


def test_a_snapshot_keeps_the_settings_it_froze_when_the_dataset_is_edited():
    dataset = DatasetFactory(**SETTINGS)
    approved(dataset, 6)
    snapshot, _ = create_snapshot(dataset, by=EngineerFactory())
    dataset.system_prompt, dataset.language, dataset.regex_checks = "Answer in French.", "fr", {}
    dataset.primary_metric = "chrf"
    dataset.save()
    snapshot.refresh_from_db()
    assert snapshot.frozen_settings == SETTINGS and snapshot.hash_version == 2


def test_editing_a_setting_gives_the_same_examples_a_new_snapshot_hash():
    dataset = DatasetFactory(system_prompt="Describe the place.")
    approved(dataset, 6)
    first, _ = create_snapshot(dataset, by=EngineerFactory())
    dataset.system_prompt = "Describe the place in French."
    dataset.save()
    second, created = create_snapshot(dataset, by=EngineerFactory())
    assert created and second.content_hash != first.content_hash
    assert second.system_prompt == "Describe the place in French." and first.system_prompt == "Describe the place."


def test_the_hash_covers_the_frozen_settings_and_version_1_stays_reproducible():
    dataset = DatasetFactory(**SETTINGS)
    approved(dataset, 6)
    snapshot, _ = create_snapshot(dataset, by=EngineerFactory())
    items = list(snapshot.items.values_list("example_content_hash", "split"))
    assert snapshot.content_hash == snapshot_hash(snapshot.seed, snapshot.split_fractions, items, SETTINGS)
    # Version 1 (snapshots from before the settings were frozen) hashed no settings at all.
    assert snapshot_hash(snapshot.seed, snapshot.split_fractions, items) != snapshot.content_hash


@pytest.mark.parametrize("answer, schema, expected", [
    (lambda i: str(i * 3), None, "exact_match"),  # a counting task
    (lambda i: "positive" if i % 2 else "negative", None, "exact_match"),
    (lambda i: f'{{"count": {i}}}', None, "json_valid"),
    (lambda i: f'{{"count": {i}}}', {"type": "object"}, "json_schema_valid"),
    (lambda i: f"Place {i} is a family-friendly pub near the river.", None, "chrf"),
])
def test_a_blank_primary_metric_is_proposed_from_the_outputs_and_frozen(answer, schema, expected):
    dataset = DatasetFactory(output_json_schema=schema)
    approved(dataset, 6, answer)
    assert create_snapshot(dataset, by=EngineerFactory())[0].primary_metric == expected


def test_the_datasets_own_primary_metric_wins_over_the_proposal():
    dataset = DatasetFactory(primary_metric="rouge_l")
    approved(dataset, 6)  # numbers: exact match would be proposed
    assert create_snapshot(dataset, by=EngineerFactory())[0].primary_metric == "rouge_l"


def test_a_primary_metric_the_settings_cannot_score_refuses_the_snapshot_naming_it():
    dataset = DatasetFactory(primary_metric="regex:digits")  # written past the API's check
    approved(dataset, 3)
    with pytest.raises(Exception, match="primary_metric must be blank .* got 'regex:digits'"):
        create_snapshot(dataset, by=EngineerFactory())
    assert not Snapshot.objects.exists()


def test_the_snapshot_api_shows_the_frozen_settings():
    dataset = DatasetFactory(**SETTINGS)
    approved(dataset, 6)
    snapshot, _ = create_snapshot(dataset, by=EngineerFactory())
    body = client_for(EngineerFactory()).get(f"/api/v1/snapshots/{snapshot.pk}/").json()
    assert {name: body[name] for name in FROZEN_DATASET_SETTINGS} == SETTINGS and body["hash_version"] == 2


def test_snapshot_items_show_the_frozen_text_after_the_example_is_edited():
    dataset = DatasetFactory()
    examples = approved(dataset, 6)
    snapshot, _ = create_snapshot(dataset, by=EngineerFactory())
    edited = examples[0]
    frozen_messages = edited.messages
    edit_example(edited, by=edited.author, expected_version=edited.version,
                 messages=conversation("name: Place 0", "Edited after the snapshot."))
    api = client_for(EngineerFactory())
    items = api.get(f"/api/v1/snapshots/{snapshot.pk}/items/", {"page_size": 500}).json()["results"]
    (item,) = [row for row in items if row["example"] == edited.pk]
    assert item["messages"] == frozen_messages and item["example_content_hash"] == content_hash(frozen_messages)
    assert api.get(f"/api/v1/examples/{edited.pk}/").json()["messages"][-1]["content"] == "Edited after the snapshot."


def test_snapshot_items_filter_by_split_and_page_by_cursor():
    dataset = DatasetFactory()
    approved(dataset, 10)
    snapshot, _ = create_snapshot(dataset, by=EngineerFactory())
    api = client_for(EngineerFactory())
    seen, url = [], f"/api/v1/snapshots/{snapshot.pk}/items/?split=train&page_size=3"
    while url:
        body = api.get(url).json()
        seen += [(row["id"], row["split"]) for row in body["results"]]
        url = body["next"]
    assert seen == list(snapshot.items.filter(split="train").order_by("id").values_list("id", "split"))
    bad = api.get(f"/api/v1/snapshots/{snapshot.pk}/items/?split=dev")
    assert bad.status_code == 400 and "split" in bad.json()


def test_listing_examples_by_snapshot_is_refused_pointing_to_the_frozen_items():
    dataset = DatasetFactory()
    approved(dataset, 6)
    snapshot, _ = create_snapshot(dataset, by=EngineerFactory())
    response = client_for(EngineerFactory()).get("/api/v1/examples/", {"snapshot": snapshot.pk, "split": "test"})
    assert response.status_code == 400
    assert response.json() == {"detail": "examples show their current text; what a snapshot froze is at "
                                         "GET /api/v1/snapshots/{id}/items/?split=<split>"}
