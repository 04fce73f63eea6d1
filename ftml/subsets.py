"""Nested, seeded subsets of a train split for learning curves (plain Python, no Django).

A learning curve trains on growing shares of one split; its points compare fairly only if each
smaller subset lies inside the larger ones (a bigger share adds examples, never swaps them). Each
distinct input gets a seeded rank, sha256("<seed>:<input key>"), and a share keeps the inputs of
lowest rank: the same ranks for every share make the subsets nested, and an input's rank does not
depend on the other inputs, so it is the same on every machine and in every order the rows come.
Sampling is by input, not by example, so the alternative outputs of one input stay together.
"""
import hashlib
import math
from collections.abc import Iterable


def inputs_in_share(count: int, fraction: float) -> int:
    """How many of ``count`` distinct inputs a share ``fraction`` (0 < fraction <= 1) keeps: the
    fraction of them rounded up, at least one (when there is any). Raises ValueError for a
    fraction outside (0, 1]."""
    if not (isinstance(fraction, int | float) and not isinstance(fraction, bool) and 0 < fraction <= 1):
        raise ValueError(f"a train fraction must be above 0 and at most 1, got {fraction!r}")
    # round() first: 0.1 * 30 is 3.0000000000000004 in floating point, which ceil would make 4.
    return min(count, max(1, math.ceil(round(fraction * count, 9)))) if count else 0


def nested_input_subset(input_keys: Iterable[str], fraction: float, seed: int) -> set[str]:
    """The distinct input keys (e.g. input hashes) that a share ``fraction`` of them keeps with
    ``seed``: the inputs_in_share(n, fraction) of lowest seeded rank. For one seed and key set,
    the subset of a smaller fraction is inside that of a larger one. Raises ValueError as
    inputs_in_share."""
    keys = sorted(set(input_keys))
    ranked = sorted(keys, key=lambda key: hashlib.sha256(f"{seed}:{key}".encode()).hexdigest())
    return set(ranked[:inputs_in_share(len(keys), fraction)])
