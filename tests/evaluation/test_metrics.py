import pytest
import sacrebleu

from ftml.metrics import exact_match, latency_percentiles, normalize, score_corpus


def test_a_prediction_equal_to_any_reference_scores_full_marks():
    scores = score_corpus(["Blue Spice is a coffee shop."],
                          [["A coffee shop called Blue Spice.", "Blue Spice is a coffee shop."]])
    assert scores.exact_match == 100
    assert scores.per_example[0]["bleu"] == pytest.approx(100)
    assert scores.per_example[0]["chrf"] == pytest.approx(100)
    assert scores.rouge_l == pytest.approx(100)


def test_multi_reference_bleu_matches_sacrebleu_with_variable_references():
    predictions = ["the cat sat on the mat", "a dog barks"]
    references = [["the cat is on the mat", "there is a cat on the mat"], ["a dog barks loudly"]]
    expected = sacrebleu.corpus_bleu(predictions, [["the cat is on the mat", "a dog barks loudly"],
                                                    ["there is a cat on the mat", None]]).score
    assert score_corpus(predictions, references).bleu == pytest.approx(expected)


def test_more_references_never_lower_the_score():
    prediction = ["Blue Spice is a coffee shop in the city centre."]
    one = score_corpus(prediction, [["A coffee shop called Blue Spice."]])
    two = score_corpus(prediction, [["A coffee shop called Blue Spice.", "Blue Spice is a coffee shop in riverside."]])
    assert two.bleu >= one.bleu and two.chrf >= one.chrf and two.rouge_l >= one.rouge_l


def test_signatures_record_variable_reference_counts():
    scores = score_corpus(["a b c d", "e f g h"], [["a b c d", "x"], ["e f g h"]])
    assert scores.bleu_signature.startswith("nrefs:var") and "version:" in scores.bleu_signature
    assert scores.chrf_signature.startswith("nrefs:var")


def test_normalisation_ignores_case_spacing_punctuation_and_articles():
    assert normalize("  The  Cat sat. ") == "cat sat"
    assert exact_match("the cat SAT", ["The cat sat."]) == 100
    assert exact_match("the cat", ["The cat sat."]) == 0


def test_mismatched_lengths_and_missing_references_are_errors():
    with pytest.raises(ValueError, match="2 predictions but 1"):
        score_corpus(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="input 0 has no reference"):
        score_corpus(["a"], [[]])


def test_latency_percentiles():
    percentiles = latency_percentiles([10, 20, 30, 40, 100])
    assert percentiles["latency_p50_ms"] == 30
    assert percentiles["latency_p95_ms"] == pytest.approx(88)  # 40 + 0.8 * (100 - 40)
    assert percentiles["latency_p99_ms"] == pytest.approx(97.6)  # 40 + 0.96 * (100 - 40)
    assert percentiles["latency_mean_ms"] == 40  # 200 / 5: what self-hosted requests cost in busy time
