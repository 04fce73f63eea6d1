"""The snapshot diff: service and API."""
import pytest

from curation.choices import SnapshotStatus
from curation.formats import content_hash, input_hash
from curation.models import Snapshot, SnapshotItem
from curation.snapshot_diff import message_changes, previous_approved_snapshot, snapshot_diff
from ftplatform.errors import ServiceError
from tests.support.clients import client_for
from tests.support.factories import DatasetFactory, EngineerFactory, ExampleFactory, conversation

pytestmark = pytest.mark.django_db


def frozen(dataset, items, status=SnapshotStatus.APPROVED):
    """A snapshot written directly, with chosen items: {example: (messages, split)}."""
    snapshot = Snapshot.objects.create(dataset=dataset, content_hash=f"{Snapshot.objects.count():064x}", seed=0,
                                       split_fractions={}, split_counts={}, example_count=len(items), status=status)
    for ex, (messages, split) in items.items():
        SnapshotItem.objects.create(snapshot=snapshot, example=ex, example_content_hash=content_hash(messages),
                                    input_hash=input_hash(messages), messages=messages, split=split)
    return snapshot


@pytest.fixture
def two_snapshots():
    dataset = DatasetFactory()
    kept, edited, dropped, moved, new = (ExampleFactory(dataset=dataset) for _ in range(5))
    old = frozen(dataset, {kept: (kept.messages, "train"), edited: (edited.messages, "train"),
                           dropped: (dropped.messages, "test"), moved: (moved.messages, "train")})
    edited_messages = edited.messages[:-1] + [{"role": "assistant", "content": "A better answer.\nTwo lines."}]
    current = frozen(dataset, {kept: (kept.messages, "train"), edited: (edited_messages, "validation"),
                               moved: (moved.messages, "test"), new: (new.messages, "validation")},
                     status=SnapshotStatus.PENDING_REVIEW)
    return old, current, {"edited": edited, "dropped": dropped, "moved": moved, "new": new}


def test_diff_lists_added_removed_changed_and_moved(two_snapshots):
    old, current, ex = two_snapshots
    diff = snapshot_diff(current)
    assert diff["previous"] == old.pk
    assert diff["counts"] == {"added": 1, "removed": 1, "changed": 1, "moved": 2, "unchanged": 1}
    assert [a["example_id"] for a in diff["added"]] == [ex["new"].pk]
    assert [(r["example_id"], r["split"]) for r in diff["removed"]] == [(ex["dropped"].pk, "test")]
    assert [(m["example_id"], m["from"], m["to"]) for m in diff["moved"]] == [
        (ex["edited"].pk, "train", "validation"), (ex["moved"].pk, "train", "test")]
    [changed] = diff["changed"]
    assert (changed["example_id"], changed["previous_split"], changed["split"]) == (ex["edited"].pk, "train",
                                                                                   "validation")
    [message] = changed["messages"]
    assert (message["position"], message["change"], message["role"]) == (2, "changed", "assistant")
    assert f"-{ex['edited'].messages[-1]['content']}" in message["diff"]
    assert "+A better answer." in message["diff"] and "+Two lines." in message["diff"]


def test_the_previous_snapshot_is_the_latest_approved_one_before():
    dataset = DatasetFactory()
    example = ExampleFactory(dataset=dataset)
    items = {example: (example.messages, "train")}
    first = frozen(dataset, items)
    frozen(dataset, items, status=SnapshotStatus.REJECTED)
    second = frozen(dataset, items)
    frozen(DatasetFactory(), {})
    latest = frozen(dataset, items, status=SnapshotStatus.PENDING_REVIEW)
    later = frozen(dataset, items)
    assert previous_approved_snapshot(latest) == second
    assert previous_approved_snapshot(first) is None
    assert snapshot_diff(first)["counts"]["added"] == 1
    assert previous_approved_snapshot(later) == second


def test_a_diff_against_another_dataset_is_refused(two_snapshots):
    _, current, _ = two_snapshots
    with pytest.raises(ServiceError, match="not another snapshot of dataset"):
        snapshot_diff(current, frozen(DatasetFactory(), {}))


def test_message_changes_report_added_and_removed_turns():
    before = conversation("q", "a")
    after = conversation("q", "a", system="Be brief.")
    changes = message_changes(before, after)
    assert [(c["position"], c["change"], c["role"], c["previous_role"]) for c in changes] == [
        (1, "changed", "system", "user"), (2, "changed", "user", "assistant"), (3, "added", "assistant", None)]


def test_diff_lists_the_frozen_settings_that_changed(two_snapshots):
    old, current, _ = two_snapshots
    assert snapshot_diff(current, old)["settings_changed"] == []
    prompted = Snapshot.objects.create(dataset=old.dataset, content_hash="f" * 64, seed=0, split_fractions={},
                                       split_counts={}, example_count=0, system_prompt="Be brief.", language="de")
    assert snapshot_diff(prompted, old)["settings_changed"] == [
        {"setting": "system_prompt", "previous": "", "value": "Be brief."},
        {"setting": "language", "previous": "en", "value": "de"}]


def test_api_diff_endpoint(two_snapshots):
    old, current, ex = two_snapshots
    response = client_for(EngineerFactory()).get(f"/api/v1/snapshots/{current.pk}/diff/")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"snapshot", "previous", "previous_content_hash", "counts", "limit", "added", "removed",
                         "changed", "moved", "settings_changed"}
    assert body["previous"] == old.pk and body["counts"]["changed"] == 1
    assert set(body["changed"][0]) == {"example_id", "split", "previous_split", "content_hash",
                                       "previous_content_hash", "messages"}
    assert set(body["moved"][0]) == {"example_id", "content_hash", "from", "to"}
    limited = client_for(EngineerFactory()).get(
        f"/api/v1/snapshots/{current.pk}/diff/?limit=1&previous={old.pk}").json()
    assert len(limited["moved"]) == 1 and limited["counts"]["moved"] == 2


@pytest.mark.parametrize("query, message", [("?limit=0", "limit"), ("?previous=999999", "no snapshot 999999"),
                                            ("?previous=abc", "previous")])
def test_api_diff_bad_parameters_are_400(two_snapshots, query, message):
    _, current, _ = two_snapshots
    response = client_for(EngineerFactory()).get(f"/api/v1/snapshots/{current.pk}/diff/{query}")
    assert response.status_code == 400 and message in response.content.decode()
