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


def assign_splits(input_hashes: list[str], seed: int, fractions: dict) -> dict[str, str]:
    """Map each distinct input hash to a split.

    Groups (distinct inputs), not examples, are split, so every example sharing an input
    lands in the same split and a test input never has references in train. Groups are
    ordered by sha256(seed:input_hash), a seeded shuffle that does not depend on row order,
    and cut by the fractions (rounded; validation and test get at least one group each when
    their fraction is above 0 and there are at least three groups).

    Args:
        input_hashes: hex digests, duplicates allowed.
        seed: any integer.
        fractions: as accepted by validate_fractions.
    Returns:
        {input_hash: "train" | "validation" | "test"}.
    """
    fractions = validate_fractions(fractions)
    groups = sorted(set(input_hashes), key=lambda h: hashlib.sha256(f"{seed}:{h}".encode()).hexdigest())
    n = len(groups)
    counts = {}
    for name in ("test", "validation"):
        count = round(fractions[name] * n)
        if fractions[name] > 0 and n >= 3:
            count = max(count, 1)
        counts[name] = count
    counts["train"] = max(n - counts["test"] - counts["validation"], 0)
    assignment, start = {}, 0
    for name in ("test", "validation", "train"):
        for group in groups[start : start + counts[name]]:
            assignment[group] = name
        start += counts[name]
    return assignment


def snapshot_hash(seed: int, fractions: dict, items: list[tuple[str, str]]) -> str:
    """sha256 over the seed, the fractions and the sorted (example content hash, split) pairs.

    Equal approved data with equal settings gives an equal hash, whatever the row order.
    """
    payload = {"seed": seed, "fractions": validate_fractions(fractions), "items": sorted(items)}
    return sha256_hex(canonical_json(payload))
