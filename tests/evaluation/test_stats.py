import math
import random

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.stats import binomtest, bootstrap

from ftml.stats import (
    ELO_SCALE,
    bootstrap_ci,
    bradley_terry,
    cohen_kappa,
    inputs_needed,
    krippendorff_alpha,
    mcnemar,
    mcnemar_inputs_needed,
    minimum_detectable_effect,
    paired_bootstrap,
)

# ---------------------------------------------------------------- bootstrap confidence intervals


def test_bootstrap_interval_contains_the_point_estimate():
    values = np.random.default_rng(1).normal(50, 10, size=96)
    result = bootstrap_ci(values)
    assert result["ci_low"] < result["score"] < result["ci_high"]
    assert result["score"] == pytest.approx(values.mean())
    assert (result["n"], result["resamples"], result["seed"], result["level"]) == (96, 1000, 0, 0.95)


def test_bootstrap_is_reproducible_with_its_seed():
    values = np.random.default_rng(2).normal(size=50)
    assert bootstrap_ci(values, seed=7) == bootstrap_ci(values, seed=7)
    assert bootstrap_ci(values, seed=7)["ci_low"] != bootstrap_ci(values, seed=8)["ci_low"]


def test_bootstrap_agrees_with_scipy_percentile_bootstrap():
    values = np.random.default_rng(3).exponential(size=200)
    ours = bootstrap_ci(values, resamples=5000)
    theirs = bootstrap((values,), np.mean, n_resamples=5000, method="percentile", rng=0).confidence_interval
    # Different random streams: the two intervals agree to Monte Carlo error, far below their width.
    width = ours["ci_high"] - ours["ci_low"]
    assert abs(ours["ci_low"] - theirs.low) < 0.05 * width
    assert abs(ours["ci_high"] - theirs.high) < 0.05 * width


def test_bootstrap_of_a_constant_is_a_point():
    result = bootstrap_ci([100.0] * 10)
    assert (result["score"], result["ci_low"], result["ci_high"]) == (100.0, 100.0, 100.0)


def test_bootstrap_with_a_corpus_statistic_resamples_rows():
    # Rows of (matches, total): the corpus statistic is a ratio of sums, not a mean of ratios.
    rows = np.array([[1, 2], [0, 10], [5, 5]])
    result = bootstrap_ci(rows, lambda r: 100 * r[:, 0].sum() / r[:, 1].sum(), resamples=200)
    assert result["score"] == pytest.approx(100 * 6 / 17)
    assert 0 <= result["ci_low"] <= result["score"] <= result["ci_high"] <= 100


def test_bootstrap_refuses_no_values_and_bad_levels():
    with pytest.raises(ValueError, match="no values"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci([1, 2], level=1.0)
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_ci([1, 2], resamples=0)


# ---------------------------------------------------------------- paired bootstrap


def test_paired_bootstrap_of_identical_systems_has_p_value_one():
    scores = np.random.default_rng(4).uniform(0, 100, size=96)
    result = paired_bootstrap(scores, scores.copy())
    assert result["p_value"] == 1.0
    assert result["difference"] == result["ci_low"] == result["ci_high"] == 0.0
    assert (result["n"], result["seed"], result["resamples"]) == (96, 0, 1000)


def test_paired_bootstrap_finds_a_clearly_better_system():
    rng = np.random.default_rng(5)
    a = rng.uniform(0, 60, size=96)
    b = a + rng.uniform(5, 15, size=96)
    result = paired_bootstrap(a, b)
    assert result["difference"] == pytest.approx(b.mean() - a.mean())
    assert result["ci_low"] > 0
    assert result["p_value"] < 0.01
    assert result["p_value"] == pytest.approx(2 / 1001)  # the smallest two-sided p with B = 1000


def test_paired_bootstrap_p_value_is_symmetric_in_the_systems():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=40), rng.normal(0.2, 1, size=40)
    forward, backward = paired_bootstrap(a, b), paired_bootstrap(b, a)
    assert forward["p_value"] == pytest.approx(backward["p_value"])
    assert forward["difference"] == pytest.approx(-backward["difference"])


def test_paired_bootstrap_resamples_both_systems_on_the_same_indexes():
    # Sufficient statistics (matches, total); the corpus score is a ratio of sums.
    rng = np.random.default_rng(7)
    totals = rng.integers(5, 20, size=(30, 1))
    a = np.hstack([rng.binomial(totals, 0.4), totals])
    b = np.hstack([rng.binomial(totals, 0.6), totals])

    def corpus_fn(rows):
        return 100 * rows[:, 0].sum() / rows[:, 1].sum()

    result = paired_bootstrap(a, b, corpus_fn, resamples=300, seed=3)
    draws = np.random.default_rng(3)
    expected = []
    for _ in range(300):
        idx = draws.integers(0, 30, size=30)
        expected.append(corpus_fn(b[idx]) - corpus_fn(a[idx]))
    assert (result["ci_low"], result["ci_high"]) == pytest.approx(tuple(np.percentile(expected, [2.5, 97.5])))


def test_paired_bootstrap_refuses_mismatched_systems_and_bare_statistics():
    with pytest.raises(ValueError, match="same examples"):
        paired_bootstrap([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="corpus_fn"):
        paired_bootstrap(np.ones((3, 2)), np.ones((3, 2)))


# ---------------------------------------------------------------- McNemar


def test_mcnemar_matches_the_exact_binomial_formula():
    # 20 examples: 8 both right, 4 both wrong, A wrong/B right 7 (b01), A right/B wrong 1 (b10).
    a = [1] * 8 + [0] * 4 + [0] * 7 + [1] * 1
    b = [1] * 8 + [0] * 4 + [1] * 7 + [0] * 1
    result = mcnemar(a, b)
    # Two-sided exact p = 2 * P(X <= 1), X ~ Binomial(8, 1/2) = 2 * (C(8,0) + C(8,1)) / 2**8 = 18/256.
    assert result == {"p_value": pytest.approx(18 / 256), "b01": 7, "b10": 1, "n": 20}


def test_mcnemar_accepts_exact_match_scores_and_handles_no_discordant_pairs():
    assert mcnemar([100, 0, 100], [100, 0, 100]) == {"p_value": 1.0, "b01": 0, "b10": 0, "n": 3}


def test_mcnemar_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match="same examples"):
        mcnemar([1, 0], [1])


# ---------------------------------------------------------------- inputs needed (power)


def test_paired_bootstrap_reports_its_standard_error_and_p_value_floor():
    rng = np.random.default_rng(11)
    a = rng.normal(50, 10, size=400)
    b = a + rng.normal(2, 8, size=400)
    result = paired_bootstrap(a, b, resamples=2000)
    # The bootstrap standard error of a mean difference is sd(d) / sqrt(n), to Monte Carlo error.
    assert result["standard_error"] == pytest.approx(np.std(b - a) / math.sqrt(400), rel=0.06)
    assert result["p_value_floor"] == pytest.approx(2 / 2001)


def test_inputs_needed_gives_the_planned_power_to_a_paired_test():
    """Simulated: paired differences N(5, 10^2) on the estimated number of inputs are detected by a
    two-sided test at 0.05 about 80 % of the time (normal approximation: n = (2.80 * 10 / 5)^2 = 31.4)."""
    n = inputs_needed(standard_error=10 / math.sqrt(50), n=50, effect=5.0)
    assert n == 32
    rng = np.random.default_rng(12)
    samples = rng.normal(5, 10, size=(4000, n))
    z = samples.mean(axis=1) / (samples.std(axis=1, ddof=1) / math.sqrt(n))
    assert np.mean(np.abs(z) > 1.959964) == pytest.approx(0.8, abs=0.03)
    assert inputs_needed(1.0, 50, effect=0.0) is None  # no number of inputs detects no difference


def test_mcnemar_inputs_needed_gives_the_planned_power_to_the_exact_test():
    """Connor (1987): discordant proportions 0.25 and 0.05; at the estimated n the exact McNemar test
    (simulated) rejects about 80 % of the time (a little less: the exact test is conservative)."""
    n = mcnemar_inputs_needed(b01=25, b10=5, n=100)
    rng = np.random.default_rng(13)
    rejected = [binomtest(int(b01), int(b01 + b10), 0.5).pvalue < 0.05 if b01 + b10 else False
                for b01, b10, _ in rng.multinomial(n, [0.25, 0.05, 0.7], size=2000)]
    assert np.mean(rejected) == pytest.approx(0.8, abs=0.05)
    assert mcnemar_inputs_needed(3, 3, 10) is None
    with pytest.raises(ValueError, match="discordant pairs among n >= 1 inputs"):
        mcnemar_inputs_needed(8, 5, 10)


def test_the_minimum_detectable_effect_is_2_8_standard_errors_at_80_percent_power():
    assert minimum_detectable_effect(10.0) == pytest.approx((1.959964 + 0.841621) * 10.0, rel=1e-6)
    with pytest.raises(ValueError, match="alpha and power"):
        minimum_detectable_effect(10.0, power=1.0)


# ---------------------------------------------------------------- Cohen's kappa


def test_cohen_kappa_matches_a_hand_computed_table():
    #              rater 2: yes  no
    # rater 1: yes          4    2
    #          no           1    3
    r1 = ["yes"] * 4 + ["yes"] * 2 + ["no"] * 1 + ["no"] * 3
    r2 = ["yes"] * 4 + ["no"] * 2 + ["yes"] * 1 + ["no"] * 3
    # p_o = (4 + 3) / 10 = 0.7; rater 1 says yes 6/10, rater 2 5/10;
    # p_e = 0.6 * 0.5 + 0.4 * 0.5 = 0.5; kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4.
    result = cohen_kappa(r1, r2)
    assert result["kappa"] == pytest.approx(0.4)
    assert result["percent_agreement"] == pytest.approx(70)
    assert result["reason"] is None


def test_linear_weighted_kappa_matches_a_hand_computation():
    r1 = [0, 1, 2, 0, 1, 2]
    r2 = [0, 1, 2, 1, 2, 0]
    # Disagreement weights |i - j|. Observed: (0 + 0 + 0 + 1 + 1 + 2) / 6 = 2/3.
    # Both raters use each label twice, so every cell expects 1/9; sum of |i - j| over the 3 x 3
    # table is 8, expected = 8/9. kappa_w = 1 - (2/3) / (8/9) = 0.25.
    assert cohen_kappa(r1, r2, weights="linear")["kappa"] == pytest.approx(0.25)


def test_cohen_kappa_is_none_with_a_reason_when_both_raters_are_constant():
    result = cohen_kappa(["good"] * 5, ["good"] * 5)
    assert result["kappa"] is None
    assert "no variance" in result["reason"]
    assert result["percent_agreement"] == 100


def test_cohen_kappa_of_one_constant_rater_is_defined():
    # p_e = p_o when one rater never varies: kappa 0, not undefined.
    assert cohen_kappa(["a"] * 4, ["a", "b", "a", "b"])["kappa"] == pytest.approx(0.0)


def test_cohen_kappa_refuses_mismatched_raters_and_unknown_weights():
    with pytest.raises(ValueError, match="rated 2 items but rater 2 1"):
        cohen_kappa([1, 2], [1])
    with pytest.raises(ValueError, match="weights"):
        cohen_kappa([1, 2], [1, 2], weights="cubic")


# ---------------------------------------------------------------- Krippendorff's alpha

NAN = math.nan
# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the worked example with
# 4 observers x 12 units and missing values: alpha .743 nominal in the paper; the krippendorff
# package's documentation quotes .815 ordinal and .797 ratio for the same data from the paper
# (p. 8); .849 interval as the package computes it.
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
]


@pytest.mark.parametrize("level, expected", [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849),
                                             ("ratio", 0.797)])
def test_krippendorff_alpha_reproduces_the_2011_worked_example(level, expected):
    result = krippendorff_alpha(KRIPPENDORFF_2011, level=level)
    assert round(result["alpha"], 3) == expected
    assert result["pairable_items"] == 11  # unit 12 has a single rating


def test_krippendorff_percent_agreement_by_hand():
    # Items (1, 1), (1, 2), (2, 2): two of three pairs agree; each item has 2 ratings, weight 1.
    result = krippendorff_alpha([[1, 1, 2], [1, 2, 2]], level="nominal")
    assert result["percent_agreement"] == pytest.approx(100 * 2 / 3)


def test_krippendorff_nominal_alpha_is_one_minus_disagreement_over_expected():
    # Same data: 6 pairable values, coincidences o_11 = 2, o_12 = o_21 = 1, o_22 = 2 (n_1 = n_2 = 3).
    # D_o = (o_12 + o_21) / n = 2/6; D_e = 2 * n_1 * n_2 / (n (n - 1)) = 18/30; alpha = 1 - (1/3)/(3/5) = 4/9.
    assert krippendorff_alpha([[1, 1, 2], [1, 2, 2]], level="nominal")["alpha"] == pytest.approx(4 / 9)


def test_krippendorff_alpha_is_none_without_variance():
    result = krippendorff_alpha([[3, 3, 3], [3, 3, NAN]])
    assert result["alpha"] is None and "no variance" in result["reason"]
    assert result["percent_agreement"] == 100


def test_krippendorff_alpha_is_none_when_no_item_has_two_ratings():
    result = krippendorff_alpha([[1, NAN, 3], [NAN, 2, NAN]])
    assert result["alpha"] is None and "at least two raters" in result["reason"]


def test_krippendorff_variance_only_in_unpairable_items_is_no_variance():
    result = krippendorff_alpha([[1, 1, 5], [1, 1, NAN]])
    assert result["alpha"] is None and "no variance" in result["reason"]


def test_krippendorff_alpha_refuses_one_rater_and_unknown_levels():
    with pytest.raises(ValueError, match="at least 2 raters"):
        krippendorff_alpha([[1, 2, 3]])
    with pytest.raises(ValueError, match="level"):
        krippendorff_alpha([[1, 2], [1, 2]], level="cardinal")


# ---------------------------------------------------------------- Bradley–Terry

# A beats B 3-1, B beats C 3-1, A beats C 3-1.
CYCLE_FREE = ([("A", "B", "a")] * 3 + [("A", "B", "b")] + [("B", "C", "a")] * 3 + [("B", "C", "b")]
              + [("A", "C", "a")] * 3 + [("A", "C", "b")])


def _direct_fit(judgments, items, virtual_ties):
    """Maximum likelihood by scipy.optimize on the stated objective, independent of choix."""
    index = {item: k for k, item in enumerate(items)}
    terms = []  # (winner, loser, weight)
    for a, b, outcome in judgments:
        i, j = index[a], index[b]
        if outcome == "a":
            terms.append((i, j, 1.0))
        elif outcome == "b":
            terms.append((j, i, 1.0))
        else:
            terms += [(i, j, 0.5), (j, i, 0.5)]
    for i in range(len(items)):
        for j in range(len(items)):
            if i != j:
                terms.append((i, j, virtual_ties / 2))

    def negative_log_likelihood(theta):
        return sum(w * np.logaddexp(0, -(theta[i] - theta[j])) for i, j, w in terms)

    theta = minimize(negative_log_likelihood, np.zeros(len(items)), method="BFGS", options={"gtol": 1e-10}).x
    return theta - theta.mean()


def _log_strengths(result):
    return {rating["item"]: rating["log_strength"] for rating in result["ratings"]}


def test_bradley_terry_orders_a_b_c():
    result = bradley_terry(CYCLE_FREE, ["C", "B", "A"], resamples=0)
    assert [(r["item"], r["rank"]) for r in result["ratings"]] == [("A", 1), ("B", 2), ("C", 3)]
    assert [(r["wins"], r["losses"]) for r in result["ratings"]] == [(6, 2), (4, 4), (2, 6)]


@pytest.mark.parametrize("virtual_ties", [0.0, 0.1, 1.0])
def test_bradley_terry_equals_a_direct_maximum_likelihood_fit(virtual_ties):
    items = ["A", "B", "C"]
    ours = _log_strengths(bradley_terry(CYCLE_FREE, items, resamples=0, virtual_ties=virtual_ties))
    direct = _direct_fit(CYCLE_FREE, items, virtual_ties)
    assert [ours[item] for item in items] == pytest.approx(list(direct), abs=1e-4)


def test_bradley_terry_counts_a_tie_as_half_a_win_each_way():
    items = ["A", "B", "C"]
    judgments = CYCLE_FREE + [("A", "B", "tie"), ("C", "B", "tie"), ("C", "B", "tie")]
    ours = _log_strengths(bradley_terry(judgments, items, resamples=0))
    assert [ours[item] for item in items] == pytest.approx(list(_direct_fit(judgments, items, 0.1)), abs=1e-4)
    # Two ties between two items and nothing else: equal ratings, both ranked first.
    even = bradley_terry([("x", "y", "tie"), ("y", "x", "tie")], ["x", "y"], resamples=0)
    assert [r["rank"] for r in even["ratings"]] == [1, 1]
    assert [r["log_strength"] for r in even["ratings"]] == pytest.approx([0, 0], abs=1e-9)


def test_bradley_terry_does_not_depend_on_judgment_order_or_orientation():
    items = ["A", "B", "C", "D"]
    rng = np.random.default_rng(8)
    judgments = []
    for _ in range(60):
        a, b = rng.choice(items, 2, replace=False)
        judgments.append((str(a), str(b), str(rng.choice(["a", "b", "tie"]))))
    shuffled = judgments[:]
    random.Random(1).shuffle(shuffled)
    flipped = [(b, a, {"a": "b", "b": "a", "tie": "tie"}[o]) for a, b, o in shuffled]
    first, second = bradley_terry(judgments, items), bradley_terry(flipped, items)
    for one, two in zip(first["ratings"], second["ratings"], strict=True):
        assert one["item"] == two["item"]
        assert one["log_strength"] == pytest.approx(two["log_strength"], abs=1e-6)
        assert one["log_strength_ci_low"] == pytest.approx(two["log_strength_ci_low"], abs=1e-6)
        assert one["log_strength_ci_high"] == pytest.approx(two["log_strength_ci_high"], abs=1e-6)


def test_bradley_terry_keeps_an_undefeated_item_finite():
    result = bradley_terry([("A", "B", "a")] * 5 + [("B", "C", "a")] * 5, ["A", "B", "C"])
    top = result["ratings"][0]
    assert top["item"] == "A" and math.isfinite(top["log_strength"]) and math.isfinite(top["elo_ci_high"])


def test_bradley_terry_without_virtual_ties_refuses_an_undefeated_item():
    with pytest.raises(ValueError, match="virtual_ties > 0"):
        bradley_terry([("A", "B", "a")] * 5, ["A", "B"], resamples=0, virtual_ties=0)


def test_bradley_terry_ratings_are_centred_with_an_elo_scale_and_intervals():
    result = bradley_terry(CYCLE_FREE, ["A", "B", "C"], resamples=100, seed=3)
    assert sum(r["log_strength"] for r in result["ratings"]) == pytest.approx(0, abs=1e-9)
    for rating in result["ratings"]:
        assert rating["elo"] == pytest.approx(rating["log_strength"] * 400 / math.log(10))
        assert rating["elo_ci_low"] == pytest.approx(rating["log_strength_ci_low"] * ELO_SCALE)
        assert rating["log_strength_ci_low"] <= rating["log_strength"] <= rating["log_strength_ci_high"]
    assert result == bradley_terry(CYCLE_FREE, ["A", "B", "C"], resamples=100, seed=3)


@pytest.mark.parametrize("judgments, items, message", [
    ([("A", "Z", "a")], ["A", "B"], "judgment 0: unknown item 'Z'"),
    ([("A", "A", "a")], ["A", "B"], "judged against itself"),
    ([("A", "B", "draw")], ["A", "B"], "outcome 'draw'"),
    ([], ["A", "B"], "no judgments"),
    ([("A", "B", "a")], ["A"], "at least 2 items"),
    ([("A", "B", "a")], ["A", "B", "A"], "duplicates"),
])
def test_bradley_terry_refuses_bad_judgments(judgments, items, message):
    with pytest.raises(ValueError, match=message):
        bradley_terry(judgments, items, resamples=0)
