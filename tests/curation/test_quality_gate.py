"""The quality gate inside create_snapshot: blocking findings refuse it, warnings are stored with it."""
import json

import pytest

from curation.choices import ExampleStatus
from curation.models import Dataset, FrozenError, Snapshot, SnapshotItem
from curation.quality import TokenLimits
from curation.snapshots import create_snapshot
from ftplatform.errors import ServiceError
from tests.support.clients import client_for
from tests.support.factories import (
    DatasetFactory,
    EngineerFactory,
    approved_example,
    approved_places,
)

pytestmark = pytest.mark.django_db

LONG_INPUT = ("name: The Eagle, eatType: coffee shop, food: French, priceRange: moderate, "
              "customer rating: 3 out of 5, area: riverside, familyFriendly: yes, near: Burger King")


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


def test_zero_trainable_tokens_block_the_snapshot_and_nothing_is_written(tokenizer):
    dataset = DatasetFactory(system_prompt="")
    approved_places(dataset, 5)
    too_long = approved_example(dataset, LONG_INPUT * 3, "The Eagle is a coffee shop.")
    with pytest.raises(ServiceError, match=rf"1 blocking finding\(s\): example {too_long.pk}: zero_trainable_tokens"):
        create_snapshot(dataset, by=EngineerFactory(), tokens=TokenLimits(tokenizer, max_seq_length=64))
    assert (Snapshot.objects.count(), SnapshotItem.objects.count()) == (0, 0)


def test_the_refusal_lists_twenty_findings_and_counts_the_rest(tokenizer):
    dataset = DatasetFactory(system_prompt="")
    for i in range(23):
        approved_example(dataset, f"{i} {LONG_INPUT}", "The Eagle is a coffee shop.")
    with pytest.raises(ServiceError) as refused:
        create_snapshot(dataset, by=EngineerFactory(), tokens=TokenLimits(tokenizer, max_seq_length=16))
    assert "23 blocking finding(s)" in str(refused.value) and str(refused.value).count("zero_trainable_tokens") == 20
    assert "; and 3 more" in str(refused.value)


def test_an_example_edited_out_of_format_behind_the_workflow_blocks(tokenizer):
    dataset = DatasetFactory()
    approved_places(dataset, 3)
    broken = approved_example(dataset, "name: Aromi", "Aromi is a pub.")
    broken.messages = [{"role": "user", "content": "name: Aromi"}]
    broken.save()
    with pytest.raises(ServiceError, match=f"example {broken.pk}: invalid_format"):
        create_snapshot(dataset, by=EngineerFactory())


def test_warnings_and_summary_are_stored_with_the_snapshot_and_frozen():
    dataset = DatasetFactory()
    approved_places(dataset, 6)
    first = approved_example(dataset, LONG_INPUT, "The Eagle is a French coffee shop.")
    copy = approved_example(dataset, LONG_INPUT.lower(), "The Eagle is a French coffee-shop.")
    leaky = approved_example(dataset, "name: Aromi, contact: jane.doe@acme.io", "Aromi is a pub.")

    snapshot, created = create_snapshot(dataset, by=EngineerFactory())

    report = Snapshot.objects.get(pk=snapshot.pk).quality_report
    found = {(f["check"], f["example_id"]) for f in report["findings"]}
    assert {("near_duplicate", copy.pk), ("near_duplicate_input", copy.pk), ("pii", leaky.pk)} <= found
    assert {f["severity"] for f in report["findings"]} == {"warning"}
    assert report["settings"]["tokenizer"] == "tiny-tokenizer" and report["settings"]["context_length"] == 256
    assert report["summary"]["tokens"]["sequence"]["max"] > 0
    assert next(f for f in report["findings"] if f["check"] == "near_duplicate")["other_example_id"] == first.pk
    snapshot.quality_report = {}
    with pytest.raises(FrozenError, match="quality_report cannot change"):
        snapshot.save()


def test_near_duplicate_inputs_end_in_one_split_whatever_the_seed():
    dataset = DatasetFactory()
    approved_places(dataset, 12)
    variants = [approved_example(dataset, text, f"Reference {i}.") for i, text in
                enumerate([LONG_INPUT, LONG_INPUT.upper(), LONG_INPUT.replace(", ", " , "), LONG_INPUT + "."])]
    assert len({v.input_hash for v in variants}) == 4
    splits_seen = set()
    for seed in range(8):
        snapshot, _ = create_snapshot(dataset, by=EngineerFactory(), seed=seed)
        splits = set(snapshot.items.filter(example__in=variants).values_list("split", flat=True))
        assert len(splits) == 1
        splits_seen |= splits
    assert len(splits_seen) > 1  # the group moves with the seed: the test would notice a constant split


def test_the_snapshot_hash_does_not_depend_on_row_order():
    texts = [(f"name: Place {i}, area: city centre", f"Place {i}.") for i in range(10)]
    texts += [(LONG_INPUT, "One."), (LONG_INPUT.upper(), "Two."), (LONG_INPUT + " !", "Three.")]
    first, second = DatasetFactory(), DatasetFactory()
    for user, assistant in texts:
        approved_example(first, user, assistant)
    for user, assistant in reversed(texts):
        approved_example(second, user, assistant)
    one, _ = create_snapshot(first, by=EngineerFactory(), seed=3)
    two, _ = create_snapshot(second, by=EngineerFactory(), seed=3)
    assert one.content_hash == two.content_hash
    assert (dict(one.items.values_list("example_content_hash", "split"))
            == dict(two.items.values_list("example_content_hash", "split")))


def test_the_default_tokenizer_loader_names_a_missing_model(settings):
    settings.SNAPSHOT_BASE_MODEL = {"name": "gone", "source_kind": "local_folder", "source": "/nonexistent/model"}
    dataset = DatasetFactory()
    approved_places(dataset, 3)
    with pytest.raises(ServiceError, match="cannot load the tokenizer of base model 'gone'"):
        create_snapshot(dataset, by=EngineerFactory())


def test_an_invalid_output_schema_is_a_service_error():
    dataset = DatasetFactory(output_json_schema={"type": "no-such-type"})
    approved_places(dataset, 3)
    with pytest.raises(ServiceError, match="not a valid JSON Schema"):
        create_snapshot(dataset, by=EngineerFactory())


def test_api_snapshot_includes_the_quality_report():
    dataset = DatasetFactory()
    approved_places(dataset, 4)
    response = client_for(EngineerFactory()).post("/api/v1/snapshots/", {"dataset": dataset.pk}, format="json")
    assert response.status_code == 201
    assert response.json()["quality_report"]["summary"]["examples"] == 4


def test_api_blocking_findings_are_400_naming_the_example():
    dataset = DatasetFactory()
    approved_places(dataset, 3)
    broken = approved_example(dataset, "name: Aromi", "Aromi is a pub.")
    broken.messages[-1]["content"] = "\u200b"
    broken.save()
    response = client_for(EngineerFactory()).post("/api/v1/snapshots/", {"dataset": dataset.pk}, format="json")
    assert response.status_code == 400 and f"example {broken.pk}: empty_output" in response.json()["detail"]


def test_the_demo_data_gives_the_documented_snapshot(e2e_records):
    """The README quotes this hash and these splits (near-duplicate inputs grouped at Jaccard 0.85),
    of the dataset as the demo makes it: the first record's system message as its system prompt, the
    other settings at their defaults (frozen into the hash: the primary metric proposed, chrF)."""
    from config.management.commands.demo import first_system_prompt
    from curation.imports import import_examples

    data = "\n".join(json.dumps(record) for record in e2e_records).encode()
    dataset = Dataset.objects.create(name="e2e", system_prompt=first_system_prompt(data.split(b"\n")))
    user = EngineerFactory()
    assert import_examples(dataset, data, "chat_jsonl", by=user).created_count == 986
    dataset.examples.update(status=ExampleStatus.APPROVED)
    snapshot, _ = create_snapshot(dataset, by=user, seed=0)
    assert snapshot.content_hash == "9a809a8be56af196d1c598658161a79fbb48dbc03a5f27a450cbe72b969fb4a7"
    assert snapshot.primary_metric == "chrf"
    assert snapshot.split_counts == {"train": 804, "validation": 86, "test": 96}
    assert snapshot.quality_report["summary"]["by_check"] == {"near_duplicate": 44, "near_duplicate_input": 36}
