"""Near-duplicate texts: normalised character shingles, MinHash/LSH (datasketch) for candidates, exact
Jaccard to confirm. Plain Python: no Django here."""
import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy

from .formats import SYSTEM_ROLES

if TYPE_CHECKING:  # the quality gate's example type; quality imports this module
    from .quality import QualityExample

# Measured on examples/e2e_nlg.chat.jsonl (213 distinct inputs, many differing in one attribute):
# exact 5-gram Jaccard >= 0.85 links 37 input pairs into 177 groups, the largest of 3 inputs;
# 0.8 already chains 26 inputs into one group, 0.5 puts 203 of 213 in one. Case, whitespace and
# punctuation variants score 1.0; a one-character edit scores about (n - 5) / (n + 5) for n
# characters, so it is caught in texts of about 65 characters or more.
NEAR_DUPLICATE_THRESHOLD = 0.85


SHINGLE_SIZE = 5


NUM_PERM = 128


# LSH only proposes candidates; their exact Jaccard decides. With 128 permutations datasketch
# chooses 14 bands of 9 rows for 0.7, which proposes a pair at Jaccard 0.85 with probability
# 1 - (1 - 0.85**9)**14 = 0.975 (0.999 at 0.9); LSH tuned for 0.85 itself would find only 46%.
LSH_THRESHOLD = 0.7


# At most this many texts of one group are indexed in the LSH; later members are still linked
# through them, but no longer come back as candidates of every later query. Without the cap,
# dense clusters (100,000 inputs made from 213 templates, hundreds of near-copies each) made
# every query return hundreds of candidates: the snapshot ran for over 20 minutes. Groups up to
# this size are found exactly as without it (every E2E group has at most 3 inputs).
INDEXED_PER_GROUP = 8


MINHASH_SEED = 1


# Candidates estimated this far below the threshold are not checked exactly: the estimate's
# standard deviation, sqrt(J(1 - J) / num_perm), is at most 0.044 with 128 permutations.
ESTIMATE_MARGIN = 0.15


SHINGLE_CACHE = 8192  # shingle sets kept for exact checks (a few kB each)


@dataclass(frozen=True)
class NearDuplicate:
    first: Hashable
    second: Hashable
    jaccard: float


def message_text(message) -> str:
    """A message's text for comparison: content (string or text parts) and any tool calls."""
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, list):
        content = "\n".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    parts = [content] if isinstance(content, str) else []
    calls = [*(message.get("tool_calls") or []), {"function": message.get("function_call")}]
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            parts.append(f"{function.get('name', '')}({function.get('arguments', '')})")
    return "\n".join(parts)


def conversation_text(messages) -> str:
    """The text of every non-system (and non-developer) message, one per line. System prompts are left out: one
    prompt shared by a whole dataset would make every pair of examples look alike."""
    if not isinstance(messages, list):
        return ""
    return "\n".join(message_text(m) for m in messages
                     if not (isinstance(m, dict) and m.get("role") in SYSTEM_ROLES))


def normalise(text: str) -> str:
    """NFKC, case-folded, every run of non-word characters (punctuation, spaces) made one space."""
    return re.sub(r"[\W_]+", " ", unicodedata.normalize("NFKC", text).casefold()).strip()


def shingles(text: str, size: int = SHINGLE_SIZE) -> set[str]:
    """Character ``size``-grams of the normalised text (the whole text when it is shorter; none when empty)."""
    text = normalise(text)
    if not text:
        return set()
    return {text[i:i + size] for i in range(max(1, len(text) - size + 1))}


def near_duplicates(texts: dict, *, threshold: float = NEAR_DUPLICATE_THRESHOLD, num_perm: int = NUM_PERM
                    ) -> list[NearDuplicate]:
    """Pairs of near-duplicate texts: Jaccard similarity of their shingle sets >= ``threshold``.

    Candidates come from datasketch: MinHash signatures (``num_perm`` permutations, seed 1,
    affine32 scheme, so equal text gives equal signatures in every process) of the character
    5-gram shingles of the normalised text, indexed in MinHashLSH (LSH_THRESHOLD). A candidate
    whose estimated Jaccard (the share of equal signature values; Broder 1997, "On the
    resemblance and containment of documents") is below ``threshold - ESTIMATE_MARGIN`` is
    dropped; the rest are decided on the exact Jaccard of the two shingle sets, which is what is
    reported. (Estimates from 128 permutations scatter by about +-0.03: on the E2E inputs 31
    pairs are estimated at >= 0.9, one truly is.)

    Texts are visited in sorted key order; a candidate already linked to the text through other
    pairs is not checked again, so a cluster of k near-identical texts gives k - 1 pairs (a
    spanning forest), not k(k - 1)/2. The linked groups do not depend on the input order. Only
    the first INDEXED_PER_GROUP texts of a group are indexed: a later text joins the group when
    it is near one of those, so in a group larger than that, a text near only a later member
    can be missed (measured on 20,000 generated inputs in 213 dense clusters: 18,841 links
    instead of 18,854, in 15 s instead of 65 s; exact on the E2E inputs).

    Args:
        texts: {key: text}; keys must be sortable (example ids, input hashes). Texts without a
            letter or digit are left out.
    Returns:
        [NearDuplicate(first, second, jaccard)], first < second, jaccard rounded to 3 places.
    """
    # Imported here: datasketch takes about 0.5 s, which every Django process would pay.
    from datasketch import MinHash, MinHashLSH

    keys = sorted(k for k, text in texts.items() if normalise(text))

    @functools.lru_cache(maxsize=SHINGLE_CACHE)
    def shingle_set(index: int) -> frozenset:
        return frozenset(shingles(texts[keys[index]]))

    signatures = MinHash.bulk(([s.encode("utf-8") for s in sorted(shingle_set(i))] for i in range(len(keys))),
                              num_perm=num_perm, seed=MINHASH_SEED, scheme="affine32")
    lsh = MinHashLSH(threshold=LSH_THRESHOLD, num_perm=num_perm)
    groups = _Groups(len(keys))
    # All signatures as one array: the estimates of a text's candidates are one comparison.
    values = numpy.vstack([s.hashvalues for s in signatures]) if signatures else numpy.empty((0, num_perm))
    pairs = []
    for index, signature in enumerate(signatures):
        candidates = numpy.array(sorted(lsh.query(signature)), dtype=numpy.int64)
        if candidates.size:
            estimates = (values[candidates] == values[index]).mean(axis=1)
            candidates = candidates[estimates >= threshold - ESTIMATE_MARGIN]
        for other in candidates.tolist():
            if groups.root[other] == groups.root[index]:
                continue  # already linked through other pairs
            first, second = shingle_set(other), shingle_set(index)
            jaccard = len(first & second) / len(first | second)
            if jaccard >= threshold:
                groups.merge(index, other)
                pairs.append(NearDuplicate(keys[other], keys[index], round(jaccard, 3)))
        if groups.indexed[groups.root[index]] < INDEXED_PER_GROUP:
            lsh.insert(index, signature)
            groups.indexed[groups.root[index]] += 1
    return pairs


class _Groups:
    """Union-find (union by size) whose labels are one array, with a count of each group's
    texts indexed in the LSH. Written here rather than scipy's DisjointSet, whose
    one-pair-per-call ``connected`` dominated the time, and which keeps no per-group data.
    """

    def __init__(self, count: int):
        self.root = numpy.arange(count)
        self.members: dict[int, list[int]] = {}
        self.indexed = Counter()

    def merge(self, a: int, b: int) -> None:
        small, large = int(self.root[a]), int(self.root[b])
        if len(self.members.get(small, (small,))) > len(self.members.get(large, (large,))):
            small, large = large, small
        moved = self.members.pop(small, [small])
        self.members.setdefault(large, [large]).extend(moved)
        self.root[moved] = large
        self.indexed[large] += self.indexed.pop(small, 0)


def near_duplicate_inputs(examples: Iterable["QualityExample"], **options) -> list[NearDuplicate]:
    """Near-duplicate pairs among the distinct inputs (messages before the output), keyed by input hash."""
    texts = {}
    for example in examples:
        if example.input_hash not in texts:
            messages = example.messages if isinstance(example.messages, list) else []
            texts[example.input_hash] = conversation_text(messages[:-1])
    return near_duplicates(texts, **options)
