"""The quality checks on crafted examples (plain Python, no database) and near-duplicate split groups."""
import random

import pytest

from curation.formats import content_hash, input_hash
from curation.near_duplicates import NEAR_DUPLICATE_THRESHOLD, near_duplicate_inputs, near_duplicates, shingles
from curation.quality import QualityExample, TokenLimits, pii_matches, quality_report, token_counts
from curation.splits import DEFAULT_FRACTIONS, assign_splits, input_groups
from tests.support.factories import conversation

SYSTEM = "Write one sentence about the restaurant."
LONG_INPUT = ("name: The Eagle, eatType: coffee shop, food: French, priceRange: moderate, "
              "customer rating: 3 out of 5, area: riverside, familyFriendly: yes, near: Burger King")


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


def example(id_, user, assistant, system=SYSTEM):
    messages = conversation(user, assistant, system)
    return QualityExample(id_, messages, input_hash(messages))


def checks(report, check):
    return [f for f in report["findings"] if f["check"] == check]


def jaccard(a, b):
    first, second = shingles(a), shingles(b)
    return len(first & second) / len(first | second)


def test_case_whitespace_and_punctuation_variants_are_near_duplicates_with_jaccard_1():
    pairs = near_duplicates({1: "The Eagle is a coffee shop.", 2: "the  eagle is a Coffee-Shop"})
    assert [(p.first, p.second, p.jaccard) for p in pairs] == [(1, 2, 1.0)]


def test_a_one_character_edit_is_a_near_duplicate_listed_with_its_jaccard():
    edited = LONG_INPUT.replace("Burger King", "Burger Kinq")
    report = quality_report([example(1, LONG_INPUT, "The Eagle is a coffee shop."),
                             example(2, edited, "The Eagle is a coffee shop.")])
    [pair] = checks(report, "near_duplicate")
    assert (pair["example_id"], pair["other_example_id"]) == (2, 1)
    expected = jaccard(f"{LONG_INPUT}\nThe Eagle is a coffee shop.", f"{edited}\nThe Eagle is a coffee shop.")
    assert NEAR_DUPLICATE_THRESHOLD <= expected < 1
    assert pair["jaccard"] == round(expected, 3)


def test_inputs_differing_in_one_attribute_value_are_not_near_duplicates():
    other = LONG_INPUT.replace("near: Burger King", "near: Crowne Plaza Hotel")
    assert jaccard(LONG_INPUT, other) < NEAR_DUPLICATE_THRESHOLD
    assert near_duplicates({1: LONG_INPUT, 2: other}) == []


def test_a_cluster_of_k_near_copies_gives_k_minus_1_pairs():
    texts = {i: LONG_INPUT + " " * i + "!" * i for i in range(5)}
    assert len(near_duplicates(texts)) == 4


def test_exact_duplicates_are_named():
    twice = [example(1, "name: Aromi", "Aromi is a pub."), example(2, "name: Aromi", "Aromi is a pub.")]
    report = quality_report(twice)
    [finding] = checks(report, "exact_duplicate")
    assert (finding["example_id"], finding["other_example_id"], finding["severity"]) == (2, 1, "warning")


def test_near_duplicate_inputs_are_reported_and_grouped():
    examples = [example(1, LONG_INPUT, "A coffee shop."), example(2, LONG_INPUT.upper(), "Another sentence entirely."),
                example(3, "name: Aromi, eatType: pub", "Aromi is a pub.")]
    report = quality_report(examples)
    [finding] = checks(report, "near_duplicate_input")
    assert (finding["example_id"], finding["other_example_id"], finding["jaccard"]) == (2, 1, 1.0)
    assert report["summary"]["near_duplicate_inputs"] == {"inputs": 3, "pairs": 1, "groups": 2, "largest_group": 2}


@pytest.mark.parametrize("text, kinds", [
    ("write to jane.doe@acme.io please", ["email"]),
    ("the docs use test@example.com", []),
    ("call +44 20 7946 0958 or (555) 123-4567", ["phone", "phone"]),
    ("+4915112345678", ["phone"]),
    ("opened 2024-05-06 10:30, room 12, 3 out of 5 stars, £20-25", []),
    ("the server is 192.168.100.200", []),
    ("key sk-proj-abcdefghijklmnopqrstuvwxyz123456", ["secret"]),
    ("AKIAIOSFODNN7EXAMPLE", ["secret"]),
    ("ghp_" + "a1B2" * 9, ["secret"]),
    ("token Ab3xY9" + "Qw7" * 10, ["secret"]),
    ("sha256 " + "0f3a" * 16, []),
    ("name: The Eagle, eatType: coffee shop, customer rating: 5 out of 5", []),
])
def test_pii_patterns(text, kinds):
    assert [kind for kind, _ in pii_matches(text)] == kinds


def test_pii_finding_names_the_message_and_masks_the_value():
    report = quality_report([example(7, "I am jane.doe@acme.io", "Noted.")])
    [finding] = checks(report, "pii")
    assert finding["example_id"] == 7 and "email j…@acme.io in message 2 (user)" in finding["detail"]
    assert "jane.doe" not in finding["detail"]


SCHEMA = {"type": "object", "required": ["answer"], "properties": {"answer": {"type": "integer"}}}


def test_outputs_failing_the_schema_are_warnings_naming_the_example_and_the_path():
    report = quality_report([example(1, "q1", '{"answer": 3}'), example(2, "q2", "three"),
                             example(3, "q3", '{"answer": "3"}')], output_json_schema=SCHEMA)
    found = {f["example_id"]: f for f in checks(report, "output_schema")}
    assert sorted(found) == [2, 3] and {f["severity"] for f in found.values()} == {"warning"}
    assert "not JSON" in found[2]["detail"]
    assert "at $.answer: '3' is not of type 'integer'" in found[3]["detail"]


def test_an_invalid_schema_is_an_error_not_a_finding():
    with pytest.raises(ValueError, match="not a valid JSON Schema"):
        quality_report([example(1, "q", "a")], output_json_schema={"type": "no-such-type"})


@pytest.mark.parametrize("output", ["   \n", "\u200b", "\ufeff \u2028"])
def test_empty_or_invisible_outputs_block(output):
    messages = conversation("name: Aromi", "x")
    messages[-1]["content"] = output
    report = quality_report([QualityExample(4, messages, input_hash(messages))])
    assert [(f["check"], f["severity"], f["example_id"]) for f in report["findings"]] == [
        ("empty_output", "blocking", 4)]


def test_invalid_format_blocks_and_names_the_message():
    messages = [{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}]
    report = quality_report([QualityExample(9, messages, "h")])
    [finding] = report["findings"]
    assert (finding["check"], finding["severity"], finding["example_id"]) == ("invalid_format", "blocking", 9)
    assert "message 2 has role 'bot'" in finding["detail"]


def test_token_counts_are_trainings_own_labels(tokenizer):
    from ftml.data import IGNORE_INDEX, tokenize_for_training

    messages = conversation(LONG_INPUT, "The Eagle is a coffee shop by the river.", SYSTEM)
    tokenized = tokenize_for_training(tokenizer, messages, 10_000)
    prompt, target, trainable = token_counts(TokenLimits(tokenizer, 10_000), messages)
    assert (prompt, target, trainable) == (tokenized.labels.count(IGNORE_INDEX), tokenized.target_tokens,
                                           tokenized.target_tokens)
    assert tokenized.labels[-1] == tokenizer.eos_token_id  # the end-of-turn token is a target


def test_zero_trainable_tokens_block_exactly_when_training_would_skip_the_example(tokenizer):
    from ftml.config import LoraConfig
    from ftml.train import tokenize_split

    messages = conversation(LONG_INPUT, "The Eagle is a coffee shop by the river.", SYSTEM)
    prompt, target, _ = token_counts(TokenLimits(tokenizer, 10_000), messages)
    outcomes = {}
    for max_seq_length in (prompt - 1, prompt, prompt + 1, prompt + target):
        report = quality_report([QualityExample(1, messages, input_hash(messages))],
                                tokens=TokenLimits(tokenizer, max_seq_length), system_prompt=SYSTEM)
        skipped = len(tokenize_split(tokenizer, [messages], LoraConfig(max_seq_length=max_seq_length)).fully_truncated)
        outcomes[max_seq_length] = ([f["check"] for f in report["findings"]], skipped)
    assert outcomes == {
        prompt - 1: (["zero_trainable_tokens"], 1),
        prompt: (["zero_trainable_tokens"], 1),
        prompt + 1: (["truncated_target"], 0),
        prompt + target: ([], 0),
    }
    assert report["summary"]["tokens"]["prompt"]["total"] == prompt


def test_the_dataset_system_prompt_is_counted_as_training_adds_it(tokenizer):
    messages = conversation("name: Aromi", "Aromi is a pub.")
    plain = quality_report([QualityExample(1, messages, "h")], tokens=TokenLimits(tokenizer, 256))
    prompted = quality_report([QualityExample(1, messages, "h")], tokens=TokenLimits(tokenizer, 256),
                              system_prompt=SYSTEM)
    assert prompted["summary"]["tokens"]["prompt"]["total"] > plain["summary"]["tokens"]["prompt"]["total"]


def test_over_the_context_limit_is_a_warning(tokenizer):
    report = quality_report([example(1, LONG_INPUT, "The Eagle is a coffee shop.")],
                            tokens=TokenLimits(tokenizer, 10_000, context_length=20, name="tiny"))
    [finding] = report["findings"]
    assert (finding["check"], finding["severity"]) == ("over_context_limit", "warning")
    assert "over the base model's context of 20" in finding["detail"]


def test_token_statistics(tokenizer):
    examples = [example(i, f"name: Place {i}", "Nice. " * i) for i in range(1, 21)]
    limits = TokenLimits(tokenizer, 10_000, name="tiny")
    targets = sorted(token_counts(limits, e.messages)[1] for e in examples)
    stats = quality_report(examples, tokens=limits)["summary"]["tokens"]["target"]
    assert (stats["min"], stats["max"], stats["total"]) == (targets[0], targets[-1], sum(targets))
    assert stats["median"] == (targets[9] + targets[10]) / 2
    assert stats["p95"] == pytest.approx(targets[18] + 0.05 * (targets[19] - targets[18]), abs=0.05)


def test_findings_beyond_the_cap_are_counted_not_kept(monkeypatch):
    monkeypatch.setattr("curation.quality.MAX_FINDINGS_PER_CHECK", 2)
    report = quality_report([example(i, f"mail me at person{i}@acme.io", "ok") for i in range(5)])
    assert len(checks(report, "pii")) == 2
    assert report["summary"]["by_check"]["pii"] == 5 and report["summary"]["findings_left_out"] == {"pii": 3}


def test_a_tokenizer_without_chat_template_is_refused(tokenizer):
    bare = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    bare.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        quality_report([example(1, "q", "a")], tokens=TokenLimits(bare, 256))


# --- near-duplicate inputs in the split ---------------------------------------------------------

def test_linked_inputs_always_land_in_the_same_split():
    hashes = [f"{i:064x}" for i in range(60)]
    links = [(hashes[0], hashes[1]), (hashes[1], hashes[2]), (hashes[10], hashes[40])]
    for seed in range(20):
        assignment = assign_splits(hashes, seed, DEFAULT_FRACTIONS, links)
        assert assignment[hashes[0]] == assignment[hashes[1]] == assignment[hashes[2]]
        assert assignment[hashes[10]] == assignment[hashes[40]]


def test_grouped_assignment_does_not_depend_on_row_or_pair_order():
    hashes = [f"{i:064x}" for i in range(60)]
    links = [(hashes[i], hashes[i + 1]) for i in range(0, 30, 3)]
    shuffled, reversed_links = hashes[:], [(b, a) for a, b in reversed(links)]
    random.Random(0).shuffle(shuffled)
    assert assign_splits(hashes, 5, DEFAULT_FRACTIONS, links) == assign_splits(shuffled, 5, DEFAULT_FRACTIONS,
                                                                              reversed_links)


def test_a_link_to_an_unknown_input_is_refused():
    with pytest.raises(ValueError, match="not among the input hashes"):
        input_groups(["a", "b"], [("a", "c")])


def test_e2e_inputs_do_not_chain_into_one_group(e2e_records):
    """213 distinct E2E inputs, many one attribute apart: groups stay small (measured: 177, largest 3)."""
    examples = {content_hash(r["messages"]): QualityExample(i, r["messages"], input_hash(r["messages"]))
                for i, r in enumerate(e2e_records)}
    pairs = near_duplicate_inputs(examples.values())
    groups = input_groups([e.input_hash for e in examples.values()], [(p.first, p.second) for p in pairs])
    assert (len(groups), max(map(len, groups))) == (177, 3)
