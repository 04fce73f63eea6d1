"""The metric registry and the primary-metric proposal: plain Python, no database."""
import pytest

from ftml.metrics import (
    METRICS,
    compare_systems,
    metric_spec,
    propose_primary_metric,
    score_corpus,
    scored_metrics,
)


@pytest.mark.parametrize("outputs, schema, expected", [
    (["3", "12", "0"], None, "exact_match"),
    (["positive", "negative", "not sure"], None, "exact_match"),
    (["正面", "负面"], None, "exact_match"),  # each Han character one token: two-character labels are short
    (['{"count": 3}', "[1, 2]"], None, "json_valid"),
    (['{"count": 3}'], {"type": "object"}, "json_schema_valid"),
    (["3", '{"count": 3}'], None, "exact_match"),  # a bare number is JSON too, but not structured output
    (['{"count": 3}', "There are three pubs."], None, "chrf"),  # mixed shapes: free text
    (["The Eagle is a cheap coffee shop near the river."], None, "chrf"),
    (["这家餐厅在河边，提供法国菜。"], None, "chrf"),
    (["", "  "], None, "chrf"),
])
def test_the_primary_metric_is_proposed_from_the_shape_of_the_outputs(outputs, schema, expected):
    assert propose_primary_metric(outputs, schema)[0] == expected


def test_a_proposal_says_why():
    assert propose_primary_metric(["3", "12"]) == (
        "exact_match", "all 2 outputs are short answers (at most 3 tokens: labels, numbers, names)")


def test_every_registered_metric_is_on_a_0_100_scale_and_higher_is_better():
    # The verdict's "better" reads the sign of b - a; a metric with the other direction needs it handled.
    assert all(spec.higher_is_better for spec in METRICS.values())
    assert {spec.aggregation for spec in METRICS.values()} == {"corpus", "mean"}


def test_a_regex_check_is_a_binary_mean_metric_and_an_unknown_name_is_named():
    spec = metric_spec("regex:has_price")
    assert (spec.label, spec.aggregation, spec.binary) == ("regex check has_price", "mean", True)
    with pytest.raises(ValueError, match="unknown metric 'bleurt'; expected one of exact_match, bleu, chrf"):
        metric_spec("bleurt")


def test_scored_metrics_follow_the_scoring_options():
    assert scored_metrics() == ["exact_match", "bleu", "chrf", "rouge_l"]
    assert scored_metrics(output_schema={}, regex_checks={"x": "y"})[4:] == ["json_valid", "json_schema_valid",
                                                                            "regex:x"]


def test_a_comparison_scores_each_system_exactly_as_score_corpus_does():
    references = [[f"第{i}号餐厅在河边，提供法国菜。"] for i in range(8)]
    a = [refs[0].replace("法国", "中国") for refs in references]
    b = [refs[0] if i % 2 else "不知道" for i, refs in enumerate(references)]
    options = {"language": "zh", "json_output": True, "regex_checks": {"full_stop": "。$"}}
    comparison = compare_systems(a, b, references, resamples=50, **options)
    for side, predictions in (("a", a), ("b", b)):
        corpus = score_corpus(predictions, references, resamples=50, **options).corpus
        assert {name: comparison[name][side] for name in corpus} == pytest.approx(
            {name: value["score"] for name, value in corpus.items()})
    assert set(comparison) == {*scored_metrics(**options), "exact_match_mcnemar", "json_valid_mcnemar",
                               "regex:full_stop_mcnemar"}
