import json
import time
from pathlib import Path

import numpy as np
import pytest
import sacrebleu
from rouge_score import rouge_scorer

from ftml.metrics import (
    RougeTokenizer,
    bleu_tokenizer,
    compare_systems,
    compile_regex_checks,
    corpus_statistics,
    exact_match,
    json_schema_valid,
    json_schema_validator,
    json_valid,
    latency_percentiles,
    normalize,
    rouge_l,
    score_corpus,
    token_throughput,
)

E2E_FILE = Path(__file__).resolve().parents[2] / "examples" / "e2e_nlg.chat.jsonl"


@pytest.fixture(scope="module")
def e2e_pairs():
    """96 (prediction, references) pairs from real E2E texts: each prediction is a shortened reference."""
    with open(E2E_FILE, encoding="utf-8") as handle:
        answers = [json.loads(line)["messages"][-1]["content"] for line in handle if line.strip()][:192]
    predictions = [answer[: 20 + (7 * k) % 60] for k, answer in enumerate(answers[:96])]
    references = [[answers[k], answers[96 + k]] for k in range(96)]
    return predictions, references


# ---------------------------------------------------------------- exact match and normalisation


def test_articles_are_removed_as_whole_words_only():
    assert normalize("An apple") == "apple"
    assert normalize("The theatre") == "theatre"
    assert normalize("Anthem of a nation") == "anthem of nation"


def test_normalisation_applies_nfkc_casefold_and_removes_unicode_punctuation():
    assert normalize("ＡＢＣ　Straße!") == "abc strasse"
    assert normalize("東京。「はい」") == "東京はい"
    assert normalize("«Hello», world…") == "hello world"
    assert normalize("$5 + 3 = €8, 50%") == "$5 + 3 = €8 50"  # symbols (S*) stay; % is punctuation (Po)


def test_articles_are_kept_outside_english():
    assert normalize("A casa", language="pt") == "a casa"
    assert exact_match("a casa", ["casa"], language="pt") == 0


def test_exact_match_takes_the_best_reference():
    assert exact_match("Blue Spice, a coffee shop!", ["Something else", "blue spice coffee shop"]) == 100
    assert exact_match("Blue Spice", ["Blue Spice is nice"]) == 0


def test_exact_match_of_empty_predictions_or_references_is_zero():
    assert exact_match("", [""]) == 0
    assert exact_match("   ", ["x"]) == 0
    assert exact_match("x", ["", "  "]) == 0
    assert exact_match("x", ["", "X."]) == 100


# ---------------------------------------------------------------- BLEU and chrF tokenizers


def test_bleu_tokenizer_follows_the_language():
    assert bleu_tokenizer("en") == bleu_tokenizer("de") == bleu_tokenizer("ar") == "13a"
    assert bleu_tokenizer("zh") == bleu_tokenizer("zh-Hant") == "zh"
    assert bleu_tokenizer("ja") in ("ja-mecab", "char")
    assert bleu_tokenizer("ko") in ("ko-mecab", "char")


def test_japanese_and_korean_fall_back_to_characters_without_mecab():
    try:
        import MeCab  # noqa: F401
    except ImportError:
        assert bleu_tokenizer("ja") == "char"
    try:
        import mecab_ko  # noqa: F401
    except ImportError:
        assert bleu_tokenizer("ko") == "char"


def test_chinese_bleu_uses_the_zh_tokenizer_and_reports_it():
    predictions, references = ["我喜欢吃苹果。"], [["我喜欢吃香蕉。"]]
    scores = score_corpus(predictions, references, language="zh", resamples=10)
    assert "tok:zh" in scores.bleu_signature
    assert scores.bleu == pytest.approx(sacrebleu.corpus_bleu(predictions, [["我喜欢吃香蕉。"]], tokenize="zh").score)
    assert 0 < scores.bleu < 100


def test_corpus_scores_equal_sacrebleu_with_variable_references(e2e_pairs):
    predictions, references = e2e_pairs
    references = [refs if k % 3 else refs[:1] for k, refs in enumerate(references)]
    streams = [[refs[0] for refs in references], [refs[1] if len(refs) > 1 else None for refs in references]]
    scores = score_corpus(predictions, references, resamples=10)
    assert scores.bleu == pytest.approx(sacrebleu.corpus_bleu(predictions, streams).score)
    assert scores.chrf == pytest.approx(sacrebleu.corpus_chrf(predictions, streams).score)
    assert scores.per_example[4]["bleu"] == pytest.approx(
        sacrebleu.sentence_bleu(predictions[4], references[4]).score)
    assert scores.bleu_signature.startswith("nrefs:var")


def test_sufficient_statistics_give_sacrebleus_corpus_score(e2e_pairs):
    predictions, references = e2e_pairs
    for metric, reference_score in (("bleu", sacrebleu.corpus_bleu), ("chrf", sacrebleu.corpus_chrf)):
        statistics = corpus_statistics(predictions, references, metric)
        assert statistics.stats.shape[0] == 96
        subset = [3, 3, 10, 50, 95]
        expected = reference_score([predictions[k] for k in subset],
                                   [[references[k][0] for k in subset], [references[k][1] for k in subset]]).score
        assert statistics.corpus_fn(statistics.stats[subset]) == pytest.approx(expected)


def test_corpus_bleu_interval_recomputes_sacrebleu_on_each_resample(e2e_pairs):
    predictions, references = e2e_pairs
    scores = score_corpus(predictions, references, resamples=30, seed=11)
    # The same resamples, scored by sacrebleu's public corpus_bleu from the strings themselves.
    draws = np.random.default_rng(11)
    resampled = []
    for _ in range(30):
        idx = draws.integers(0, 96, size=96)
        streams = [[references[k][0] for k in idx], [references[k][1] for k in idx]]
        resampled.append(sacrebleu.corpus_bleu([predictions[k] for k in idx], streams).score)
    low, high = np.percentile(resampled, [2.5, 97.5])
    assert (scores.corpus["bleu"]["ci_low"], scores.corpus["bleu"]["ci_high"]) == pytest.approx((low, high))


def test_bootstrap_of_96_examples_takes_well_under_a_few_seconds(e2e_pairs):
    predictions, references = e2e_pairs
    started = time.perf_counter()
    score_corpus(predictions, references, resamples=1000)
    assert time.perf_counter() - started < 5  # about 0.15 s on one core


# ---------------------------------------------------------------- ROUGE-L in any script

SAME_TEXT = {
    "zh": "今天天气很好，我们去公园散步吧。",
    "ja": "東京タワーは日本で二番目に高い建物です。",
    "ko": "서울은 한국의 수도입니다.",
    "ar": "القاهرة هي عاصمة مصر.",
    "ru": "Москва — столица России.",
    "hi": "नई दिल्ली भारत की राजधानी है।",
    "th": "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย",
    "en": "The café near the river serves Italian food.",
}


@pytest.mark.parametrize("language", sorted(SAME_TEXT))
def test_identical_strings_score_100_rouge_l_in_any_script(language):
    text = SAME_TEXT[language]
    assert rouge_l(text, [text], language) == pytest.approx(100)
    assert score_corpus([text], [[text]], language=language, resamples=10).rouge_l == pytest.approx(100)


def test_rouge_score_default_tokenizer_would_score_chinese_as_empty():
    # The reason for RougeTokenizer: rouge-score keeps only [a-z0-9].
    default = rouge_scorer.RougeScorer(["rougeL"]).score(SAME_TEXT["zh"], SAME_TEXT["zh"])["rougeL"].fmeasure
    assert default == 0


def test_rouge_tokenizer_splits_cjk_thai_and_kana_per_character_and_keeps_words_whole():
    tokenizer = RougeTokenizer()
    assert tokenizer.tokenize("東京タワーはTall") == ["東", "京", "タ", "ワ", "ー", "は", "tall"]
    assert tokenizer.tokenize("नई दिल्ली") == ["नई", "दिल्ली"]  # vowel signs stay in their word
    assert tokenizer.tokenize("Москва — СТОЛИЦА") == ["москва", "столица"]
    assert tokenizer.tokenize("ไทย") == ["ไ", "ท", "ย"]


def test_partial_overlap_in_chinese_scores_between_0_and_100():
    assert 0 < rouge_l("我喜欢吃苹果", ["我喜欢吃香蕉"], "zh") < 100


def test_rouge_l_on_ascii_english_matches_rouge_scores_own_tokenizer(e2e_pairs):
    predictions, references = e2e_pairs
    theirs = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    for prediction, refs in zip(predictions[:20], references[:20], strict=True):
        expected = 100 * theirs.score_multi(refs, prediction)["rougeL"].fmeasure
        assert rouge_l(prediction, refs, "en") == pytest.approx(expected)


def test_rouge_l_stems_only_english():
    assert rouge_l("running dogs", ["run dog"], "en") == pytest.approx(100)
    assert rouge_l("running dogs", ["run dog"], "de") == 0


# ---------------------------------------------------------------- JSON and regex checks

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "price": {"type": "number"}},
          "required": ["name", "price"], "additionalProperties": False}


def test_json_validity_is_strict():
    assert json_valid('{"name": "Blue Spice", "price": 20}') == 100
    assert json_valid(' [1, 2] ') == 100
    assert json_valid("```json\n{}\n```") == 0
    assert json_valid('{"price": NaN}') == 0
    assert json_valid("") == 0


def test_json_schema_validity_uses_draft_2020_12():
    validator = json_schema_validator(SCHEMA)
    assert json_schema_valid('{"name": "Blue Spice", "price": 20}', validator) == 100
    assert json_schema_valid('{"name": "Blue Spice"}', validator) == 0
    assert json_schema_valid('{"name": "Blue Spice", "price": 20, "extra": 1}', validator) == 0
    assert json_schema_valid("not json", validator) == 0
    # prefixItems exists in 2020-12 only.
    tuple_schema = json_schema_validator({"type": "array", "prefixItems": [{"type": "string"}], "items": False})
    assert json_schema_valid('["a"]', tuple_schema) == 100
    assert json_schema_valid('["a", 1]', tuple_schema) == 0


def test_an_invalid_output_schema_is_an_error():
    with pytest.raises(ValueError, match="not a valid JSON Schema"):
        score_corpus(["{}"], [["{}"]], output_schema={"type": "banana"})


def test_score_corpus_reports_json_and_schema_validity_when_a_schema_is_given():
    predictions = ['{"name": "A", "price": 1}', '{"name": "B"}', "no"]
    scores = score_corpus(predictions, [["x"]] * 3, output_schema=SCHEMA, resamples=50)
    assert [e["json_valid"] for e in scores.per_example] == [100, 100, 0]
    assert [e["json_schema_valid"] for e in scores.per_example] == [100, 0, 0]
    assert scores.corpus["json_schema_valid"]["score"] == pytest.approx(100 / 3)


def test_json_validity_is_not_reported_unless_asked():
    assert "json_valid" not in score_corpus(["{}"], [["{}"]], resamples=10).corpus
    assert score_corpus(["{}"], [["{}"]], json_output=True, resamples=10).corpus["json_valid"]["score"] == 100


def test_regex_checks_score_each_prediction():
    scores = score_corpus(["Price: £20.", "No price here", ""], [["x"]] * 3, resamples=10,
                          regex_checks={"has_price": r"£\d+", "polite": r"(?i)\bplease\b"})
    assert [e["regex:has_price"] for e in scores.per_example] == [100, 0, 0]
    assert scores.corpus["regex:polite"]["score"] == 0


def test_a_regex_check_that_does_not_compile_is_named():
    with pytest.raises(ValueError, match="regex check 'broken'"):
        compile_regex_checks({"fine": r"\d", "broken": r"(unclosed"})


# ---------------------------------------------------------------- empty inputs never crash


def test_empty_predictions_score_zero_on_every_metric():
    scores = score_corpus(["", "Blue Spice is a coffee shop."], [["Blue Spice is a coffee shop."]] * 2,
                          json_output=True, regex_checks={"anything": ".*"}, resamples=20)
    assert set(scores.per_example[0].values()) == {0.0}
    assert scores.per_example[1]["bleu"] == pytest.approx(100)


def test_blank_references_score_zero_and_are_ignored_beside_real_ones():
    scores = score_corpus(["Blue Spice", "Blue Spice"], [["", "  "], ["", "Blue Spice"]], resamples=20)
    assert set(scores.per_example[0].values()) == {0.0}
    assert scores.per_example[1]["exact_match"] == 100
    assert scores.per_example[1]["rouge_l"] == pytest.approx(100)


def test_an_input_without_any_reference_is_named():
    with pytest.raises(ValueError, match="input 1 has no reference"):
        score_corpus(["a", "b"], [["a"], []])
    with pytest.raises(ValueError, match="input 0 has no reference"):
        score_corpus(["a"], [[None]])
    with pytest.raises(ValueError, match="input 0: references must be a list"):
        score_corpus(["a"], ["a"])


# ---------------------------------------------------------------- intervals


def test_every_corpus_score_has_an_interval_containing_it(e2e_pairs):
    predictions, references = e2e_pairs
    scores = score_corpus(predictions, references, json_output=True, regex_checks={"near": "near"})
    assert set(scores.corpus) == {"exact_match", "bleu", "chrf", "rouge_l", "json_valid", "regex:near"}
    for name, result in scores.corpus.items():
        assert 0 <= result["ci_low"] <= result["score"] <= result["ci_high"] <= 100, name
    assert scores.corpus["bleu"]["ci_low"] < scores.corpus["bleu"]["ci_high"]
    assert scores.bootstrap == {"resamples": 1000, "seed": 0, "level": 0.95}
    assert set(scores.per_example[0]) == set(scores.corpus)


def test_intervals_are_reproducible_with_the_seed(e2e_pairs):
    predictions, references = e2e_pairs
    first = score_corpus(predictions, references, resamples=100, seed=5).corpus
    assert first == score_corpus(predictions, references, resamples=100, seed=5).corpus
    other = score_corpus(predictions, references, resamples=100, seed=6).corpus
    assert first["bleu"]["ci_low"] != other["bleu"]["ci_low"]


def test_comparing_a_system_with_itself_finds_no_difference(e2e_pairs):
    predictions, references = e2e_pairs
    result = compare_systems(predictions, predictions, references, resamples=200)
    for name in ("bleu", "chrf", "rouge_l", "exact_match"):
        assert result[name]["difference"] == 0 and result[name]["p_value"] == 1.0
    assert result["exact_match_mcnemar"]["p_value"] == 1.0


def test_comparing_with_a_clearly_better_system_is_significant(e2e_pairs):
    predictions, references = e2e_pairs
    better = [refs[0] if k % 2 else prediction
              for k, (prediction, refs) in enumerate(zip(predictions, references, strict=True))]
    result = compare_systems(predictions, better, references, resamples=500)
    for name in ("bleu", "chrf", "rouge_l", "exact_match"):
        assert result[name]["difference"] > 0 and result[name]["p_value"] < 0.01, name
    mcnemar = result["exact_match_mcnemar"]
    assert mcnemar["b10"] == 0 and mcnemar["b01"] > 40 and mcnemar["p_value"] < 1e-6


# ---------------------------------------------------------------- latency and throughput


def test_latency_percentiles_include_p99():
    percentiles = latency_percentiles(list(range(1, 101)))
    assert percentiles == pytest.approx({"latency_mean_ms": 50.5, "latency_p50_ms": 50.5, "latency_p95_ms": 95.05,
                                         "latency_p99_ms": 99.01})
    with pytest.raises(ValueError, match="no latencies"):
        latency_percentiles([])


def test_token_throughput_is_tokens_over_request_seconds():
    assert token_throughput([10, 30], [500, 1500]) == {"output_tokens_per_s": 20.0, "mean_output_tokens": 20.0}
    with pytest.raises(ValueError, match="2 token counts but 1 latencies"):
        token_throughput([1, 2], [3])
