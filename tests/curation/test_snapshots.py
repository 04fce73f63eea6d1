import pytest

from curation.choices import ExampleStatus, SnapshotStatus
from curation.formats import content_hash, input_hash
from curation.models import Example, Snapshot
from curation.snapshots import approve_snapshot, create_snapshot, reject_snapshot
from ftplatform.errors import NotAllowed, ServiceError
from tests.support.clients import client_for
from tests.support.factories import (
    AnnotatorFactory,
    DatasetFactory,
    EngineerFactory,
    ExampleFactory,
    ReviewerFactory,
    engineer_and_reviewer,
)

pytestmark = pytest.mark.django_db


def approved_e2e_dataset(records):
    dataset = DatasetFactory()
    author = AnnotatorFactory()
    unique = {content_hash(r["messages"]): r for r in records}  # the E2E file repeats a few pairs
    for record in unique.values():
        ExampleFactory(dataset=dataset, messages=record["messages"], status=ExampleStatus.APPROVED, author=author)
    return dataset


def item_splits(snapshot):
    return dict(snapshot.items.values_list("example_content_hash", "split"))


def test_same_approved_data_gives_the_same_hash_and_split(e2e_records):
    records = e2e_records[:120]
    first, _ = create_snapshot(approved_e2e_dataset(records), by=EngineerFactory(), seed=7)
    second, _ = create_snapshot(approved_e2e_dataset(list(reversed(records))), by=EngineerFactory(), seed=7)

    assert first.pk != second.pk
    assert first.content_hash == second.content_hash
    assert item_splits(first) == item_splits(second)


def test_creating_again_returns_the_existing_snapshot(e2e_records):
    dataset = approved_e2e_dataset(e2e_records[:30])
    first, created_first = create_snapshot(dataset, by=EngineerFactory())
    again, created_again = create_snapshot(dataset, by=EngineerFactory())
    assert (created_first, created_again, again.pk) == (True, False, first.pk)


def test_all_examples_with_the_same_input_land_in_the_same_split(e2e_records):
    snapshot, _ = create_snapshot(approved_e2e_dataset(e2e_records[:300]), by=EngineerFactory())
    splits_per_input = {}
    for item in snapshot.items.all():
        splits_per_input.setdefault(item.input_hash, set()).add(item.split)
    assert all(len(splits) == 1 for splits in splits_per_input.values())
    assert max(len([i for i in snapshot.items.all() if i.input_hash == h]) for h in splits_per_input) > 1
    assert set().union(*splits_per_input.values()) == {"train", "validation", "test"}


def test_editing_an_example_after_a_snapshot_does_not_change_the_snapshot(e2e_records):
    dataset = approved_e2e_dataset(e2e_records[:10])
    snapshot, _ = create_snapshot(dataset, by=EngineerFactory())
    example = Example.objects.filter(dataset=dataset).first()
    frozen = snapshot.items.get(example=example).messages

    example.messages = example.messages[:-1] + [{"role": "assistant", "content": "edited"}]
    example.save()

    assert snapshot.items.get(example=example).messages == frozen
    assert Snapshot.objects.get(pk=snapshot.pk).content_hash == snapshot.content_hash


def test_only_approved_examples_are_frozen():
    dataset = DatasetFactory()
    ExampleFactory(dataset=dataset, status=ExampleStatus.APPROVED)
    ExampleFactory(dataset=dataset, status=ExampleStatus.SUBMITTED)
    snapshot, _ = create_snapshot(dataset, by=EngineerFactory())
    assert snapshot.example_count == 1


def test_dataset_without_approved_examples_cannot_be_snapshotted():
    with pytest.raises(ServiceError, match="no approved examples"):
        create_snapshot(DatasetFactory(), by=EngineerFactory())


def test_snapshot_is_pending_until_another_reviewer_approves_it(e2e_records):
    creator = engineer_and_reviewer()
    snapshot, _ = create_snapshot(approved_e2e_dataset(e2e_records[:10]), by=creator)
    assert snapshot.status == SnapshotStatus.PENDING_REVIEW
    with pytest.raises(NotAllowed, match="creator cannot review"):
        approve_snapshot(snapshot, by=creator)
    assert approve_snapshot(snapshot, by=ReviewerFactory()).status == SnapshotStatus.APPROVED


def test_rejecting_a_snapshot_needs_a_comment(e2e_records):
    snapshot, _ = create_snapshot(approved_e2e_dataset(e2e_records[:10]), by=EngineerFactory())
    with pytest.raises(ServiceError, match="comment"):
        reject_snapshot(snapshot, by=ReviewerFactory(), comment="")
    rejected = reject_snapshot(snapshot, by=ReviewerFactory(), comment="test split too small")
    assert (rejected.status, rejected.review_comment) == (SnapshotStatus.REJECTED, "test split too small")


def test_items_are_frozen_copies_that_refuse_changes(e2e_records):
    snapshot, _ = create_snapshot(approved_e2e_dataset(e2e_records[:5]), by=EngineerFactory())
    item = snapshot.items.first()
    item.split = "test"
    with pytest.raises(Exception, match="frozen"):
        item.save()


def test_input_hash_is_what_groups_examples(e2e_records):
    same_input = [r for r in e2e_records if r["messages"][1] == e2e_records[0]["messages"][1]]
    assert len({input_hash(r["messages"]) for r in same_input}) == 1 and len(same_input) > 1


def test_recreating_a_rejected_snapshot_says_so(e2e_records):
    dataset = approved_e2e_dataset(e2e_records[:10])
    snapshot, _ = create_snapshot(dataset, by=EngineerFactory())
    reject_snapshot(snapshot, by=ReviewerFactory(), comment="too small")
    with pytest.raises(ServiceError, match="was rejected .*too small"):
        create_snapshot(dataset, by=EngineerFactory())
    other_seed, created = create_snapshot(dataset, by=EngineerFactory(), seed=1)
    assert created and other_seed.pk != snapshot.pk


@pytest.mark.parametrize("seed", [-1, 2**31, "7"])
def test_seed_must_fit_a_32_bit_column(e2e_records, seed):
    with pytest.raises(ServiceError, match="seed must be an integer"):
        create_snapshot(approved_e2e_dataset(e2e_records[:5]), by=EngineerFactory(), seed=seed)


def test_empty_split_fractions_are_refused(e2e_records):
    with pytest.raises(ServiceError, match="exactly the keys"):
        create_snapshot(approved_e2e_dataset(e2e_records[:5]), by=EngineerFactory(), fractions={})


def test_snapshots_and_items_refuse_every_write_path(e2e_records):
    from curation.models import FrozenError, SnapshotItem

    snapshot, _ = create_snapshot(approved_e2e_dataset(e2e_records[:5]), by=EngineerFactory())
    snapshot.seed = 99
    with pytest.raises(FrozenError, match="seed cannot change"):
        snapshot.save()
    with pytest.raises(FrozenError):
        Snapshot.objects.filter(pk=snapshot.pk).update(content_hash="x" * 64)
    with pytest.raises(FrozenError):
        Snapshot.objects.get(pk=snapshot.pk).delete()
    with pytest.raises(FrozenError):
        Snapshot.objects.all().delete()
    with pytest.raises(FrozenError):
        SnapshotItem.objects.filter(snapshot=snapshot).update(split="test")
    with pytest.raises(FrozenError):
        snapshot.items.first().delete()
    assert Snapshot.objects.get(pk=snapshot.pk).seed == 0 and snapshot.items.count() == snapshot.example_count


def test_deleting_an_example_keeps_its_frozen_copy(e2e_records):
    dataset = approved_e2e_dataset(e2e_records[:5])
    snapshot, _ = create_snapshot(dataset, by=EngineerFactory())
    Example.objects.filter(dataset=dataset).first().delete()
    assert snapshot.items.count() == snapshot.example_count
    assert snapshot.items.filter(example__isnull=True).count() == 1


def test_snapshot_create_then_approve_by_another_reviewer():
    dataset = DatasetFactory()
    ExampleFactory(dataset=dataset, status=ExampleStatus.APPROVED)
    creator = engineer_and_reviewer()
    created = client_for(creator).post("/api/v1/snapshots/", {"dataset": dataset.pk}, format="json")
    assert created.status_code == 201
    snapshot_id = created.json()["id"]
    again = client_for(creator).post("/api/v1/snapshots/", {"dataset": dataset.pk}, format="json")
    assert (again.status_code, again.json()["id"]) == (200, snapshot_id)
    assert client_for(creator).post(f"/api/v1/snapshots/{snapshot_id}/approve/").status_code == 403
    approved = client_for(ReviewerFactory()).post(f"/api/v1/snapshots/{snapshot_id}/approve/")
    assert approved.status_code == 200 and approved.json()["status"] == "approved"


def test_out_of_range_seed_is_400_not_500():
    dataset = DatasetFactory()
    ExampleFactory(dataset=dataset, status=ExampleStatus.APPROVED)
    response = client_for(EngineerFactory()).post("/api/v1/snapshots/", {"dataset": dataset.pk, "seed": 2**31},
                                              format="json")
    assert response.status_code == 400 and "seed" in response.json()


def test_reviewers_see_only_snapshots_of_the_datasets_they_review():
    theirs, others = DatasetFactory(), DatasetFactory()
    insider, outsider = ReviewerFactory(), ReviewerFactory()
    theirs.reviewers.add(insider)
    others.reviewers.add(outsider)
    ExampleFactory(dataset=theirs, status=ExampleStatus.APPROVED)
    snapshot, _ = create_snapshot(theirs, by=EngineerFactory())
    assert client_for(insider).get(f"/api/v1/snapshots/{snapshot.pk}/").status_code == 200
    assert client_for(outsider).get(f"/api/v1/snapshots/{snapshot.pk}/diff/").status_code == 404
    assert client_for(outsider).get("/api/v1/snapshots/").json()["count"] == 0
