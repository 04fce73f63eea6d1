import pytest

from curation.splits import assign_splits, snapshot_hash, validate_fractions

FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}


def test_assignment_is_deterministic_and_independent_of_order():
    hashes = [f"{i:064x}" for i in range(50)]
    assert assign_splits(hashes, 3, FRACTIONS) == assign_splits(list(reversed(hashes)), 3, FRACTIONS)


def test_seed_changes_the_assignment():
    hashes = [f"{i:064x}" for i in range(50)]
    assert assign_splits(hashes, 1, FRACTIONS) != assign_splits(hashes, 2, FRACTIONS)


def test_group_counts_follow_the_fractions():
    assignment = assign_splits([f"{i:064x}" for i in range(100)], 0, FRACTIONS)
    counts = {name: list(assignment.values()).count(name) for name in FRACTIONS}
    assert counts == {"train": 80, "validation": 10, "test": 10}


def test_small_datasets_still_get_a_test_input():
    assignment = assign_splits(["a", "b", "c"], 0, FRACTIONS)
    assert sorted(assignment.values()) == ["test", "train", "validation"]


@pytest.mark.parametrize("bad", [{"train": 0.5, "validation": 0.1, "test": 0.1},
                                 {"train": 0.9, "test": 0.1},
                                 {"train": 1.2, "validation": -0.1, "test": -0.1}])
def test_bad_fractions_are_refused(bad):
    with pytest.raises(ValueError):
        validate_fractions(bad)


def test_snapshot_hash_depends_on_items_not_their_order():
    items = [("h1", "train"), ("h2", "test")]
    assert snapshot_hash(0, FRACTIONS, items) == snapshot_hash(0, FRACTIONS, list(reversed(items)))
    assert snapshot_hash(0, FRACTIONS, items) != snapshot_hash(0, FRACTIONS, [("h1", "test"), ("h2", "test")])
