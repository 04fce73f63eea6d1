"""Deterministic, leakage-safe train/validation/test splits. Plain Python: no Django here."""
import hashlib

from .formats import canonical_json, sha256_hex

DEFAULT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}
MAX_SEED = 2**31 - 1  # seeds are stored in 32-bit integer columns
SPLITS = ("train", "validation", "test")


def validate_fractions(fractions: dict) -> dict:
    """Check ``{"train": f, "validation": f, "test": f}`` (each in [0, 1], summing to 1, train > 0).

    Raises:
        ValueError: naming the bad key or the sum.
    """
    if set(fractions) != set(SPLITS):
        raise ValueError(f"split fractions must have exactly the keys {', '.join(SPLITS)}")
    for name in SPLITS:
        value = fractions[name]
        if not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"split fraction {name!r} must be a number between 0 and 1, got {value!r}")
    if abs(sum(fractions.values()) - 1) > 1e-9:
        raise ValueError(f"split fractions must sum to 1, got {sum(fractions.values())}")
    if fractions["train"] <= 0:
        raise ValueError("the train fraction must be above 0")
    return {name: float(fractions[name]) for name in SPLITS}


def input_groups(input_hashes: list[str], linked_pairs=()) -> list[list[str]]:
    """Group distinct input hashes: the connected components of the ``linked_pairs`` graph
    (scipy's DisjointSet), each sorted, singletons included; the grouping does not depend on
    the order of either argument.

    Raises:
        ValueError: a pair names a hash that is not among ``input_hashes``.
    """
    from scipy.cluster.hierarchy import DisjointSet  # here: scipy.cluster takes 0.5 s to import

    distinct = sorted(set(input_hashes))
    groups = DisjointSet(distinct)
    for first, second in linked_pairs:
        for value in (first, second):
            if value not in groups:
                raise ValueError(f"linked input {value!r} is not among the input hashes")
        groups.merge(first, second)
    return sorted(sorted(group) for group in groups.subsets())


def assign_splits(input_hashes: list[str], seed: int, fractions: dict, linked_pairs=()) -> dict[str, str]:
    """Map each distinct input hash to a split.

    Groups, not examples, are split: a group is one distinct input, or several inputs joined by
    ``linked_pairs`` (near-duplicates; see input_groups), so every example sharing an input or
    a near-duplicate input lands in the same split and a test input never has references (or
    near-copies) in train. Groups are ordered by sha256(seed:smallest input hash of the group),
    a seeded shuffle that does not depend on row order, then dealt out in that order: test,
    then validation, each until it holds round(fraction * distinct inputs) inputs (at least one
    group each when its fraction is above 0 and there are at least three groups, and never the
    last group, which train keeps); train takes the rest. Without links every group is one input
    and this is the plain cut of distinct inputs.

    Args:
        input_hashes: hex digests, duplicates allowed.
        seed: any integer.
        fractions: as accepted by validate_fractions.
        linked_pairs: (input hash, input hash) pairs to keep together.
    Returns:
        {input_hash: "train" | "validation" | "test"}.
    Raises:
        ValueError: bad fractions, or a linked hash not among ``input_hashes``.
    """
    fractions = validate_fractions(fractions)
    groups = sorted(input_groups(input_hashes, linked_pairs),
                    key=lambda g: hashlib.sha256(f"{seed}:{g[0]}".encode()).hexdigest())
    inputs = sum(len(g) for g in groups)
    assignment, position = {}, 0
    for name in ("test", "validation"):
        target = round(fractions[name] * inputs)
        if fractions[name] > 0 and len(groups) >= 3:
            target = max(target, 1)
        taken = 0
        while taken < target and position < len(groups) - 1:
            for value in groups[position]:
                assignment[value] = name
            taken += len(groups[position])
            position += 1
    for group in groups[position:]:
        for value in group:
            assignment[value] = "train"
    return assignment


def snapshot_hash(seed: int, fractions: dict, items: list[tuple[str, str]], settings: dict | None = None) -> str:
    """sha256 over the seed, the fractions, the sorted (example content hash, split) pairs and, from
    hash version 2 on, the frozen dataset ``settings`` ({name: JSON value}).

    Equal approved data with equal settings gives an equal hash, whatever the row order.
    ``settings=None`` gives hash version 1 (no settings in the payload), the hash of snapshots made
    before settings were frozen, so those stay verifiable.
    """
    payload = {"seed": seed, "fractions": validate_fractions(fractions), "items": sorted(items)}
    if settings is not None:
        payload["settings"] = settings
    return sha256_hex(canonical_json(payload))
