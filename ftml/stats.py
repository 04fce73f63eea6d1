"""Statistics for comparing systems and judges. No Django here.

Confidence intervals (percentile bootstrap), paired significance tests (paired bootstrap,
exact McNemar), agreement between raters (Cohen's kappa, Krippendorff's alpha) and pairwise
preference ratings (Bradley–Terry). Inputs and outputs are plain lists, arrays and dicts.
"""
import math
from collections.abc import Callable, Hashable, Sequence

import choix
import krippendorff
import numpy as np
from scipy.stats import binomtest, norm, rankdata
from sklearn.metrics import cohen_kappa_score

ELO_SCALE = 400 / math.log(10)  # Elo points per unit of Bradley–Terry log-strength (base-10, 400-point logistic)


def _check_resampling(n: int, resamples: int, level: float | None = None) -> None:
    if n < 1:
        raise ValueError("nothing to resample: no values")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if level is not None and not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")


def _percentile_interval(distribution: np.ndarray, level: float) -> tuple[float, float]:
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(distribution, [tail, 100 - tail])
    return float(low), float(high)


def _resampled_indexes(n: int, resamples: int, seed: int):
    # One index vector per resample, drawn in order from one seeded generator: every caller with
    # the same (n, resamples, seed) sees the same resamples, so the metrics of one corpus, and the
    # two systems of a paired test, are resampled together. Drawn lazily to keep memory O(n).
    rng = np.random.default_rng(seed)
    for _ in range(resamples):
        yield rng.integers(0, n, size=n)


def _mean(rows: np.ndarray) -> float:
    return float(np.mean(rows))


def bootstrap_distribution(values, statistic: Callable[[np.ndarray], float] = _mean, resamples: int = 1000,
                           seed: int = 0) -> np.ndarray:
    """The statistic recomputed on each bootstrap resample of ``values``' rows.

    Args:
        values: array-like of shape (n,) (per-example scores) or (n, k) (per-example sufficient
            statistics, e.g. BLEU n-gram counts); rows are resampled with replacement.
        statistic: maps a resampled array of the same shape to a float; default the mean.
        resamples: number of resamples (B).
        seed: seed of numpy's default_rng; the same seed gives the same resamples.
    Returns:
        float array of shape (B,).
    Raises:
        ValueError: no values, or resamples < 1.
    """
    values = np.asarray(values)
    _check_resampling(len(values), resamples)
    return np.array([statistic(values[idx]) for idx in _resampled_indexes(len(values), resamples, seed)], dtype=float)


def bootstrap_ci(values, statistic: Callable[[np.ndarray], float] = _mean, resamples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> dict:
    """Point estimate and percentile bootstrap confidence interval of a corpus statistic.

    Resamples examples with replacement ``resamples`` times, recomputes ``statistic`` on each
    resample, and takes the (1 - level)/2 and (1 + level)/2 percentiles (numpy's linear
    interpolation): the percentile interval of Efron & Tibshirani (1993), *An Introduction to the
    Bootstrap*, ch. 13, as scipy.stats.bootstrap(method="percentile") computes it. Hand-written
    rather than through scipy so that corpus metrics given as sufficient statistics (corpus BLEU
    and chrF) and both systems of a paired test share one stream of resampled indexes.

    Args:
        values: array-like of shape (n,) or (n, k); see bootstrap_distribution.
        statistic: maps an array of ``values``' shape to a float; default the mean.
        resamples: B, default 1,000.
        seed: numpy default_rng seed.
        level: coverage of the interval, in (0, 1); default 0.95.
    Returns:
        {"score": statistic(values), "ci_low", "ci_high", "n", "resamples", "seed", "level"}, in the
        statistic's own units.
    Raises:
        ValueError: no values, resamples < 1, or level outside (0, 1).
    """
    values = np.asarray(values)
    _check_resampling(len(values), resamples, level)
    low, high = _percentile_interval(bootstrap_distribution(values, statistic, resamples, seed), level)
    return {"score": float(statistic(values)), "ci_low": low, "ci_high": high, "n": len(values),
            "resamples": resamples, "seed": seed, "level": level}


def paired_bootstrap(a_scores, b_scores, corpus_fn: Callable[[np.ndarray], float] | None = None,
                     resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Paired bootstrap test of system B against system A on the same examples (Koehn 2004).

    Koehn (2004), "Statistical Significance Tests for Machine Translation Evaluation", EMNLP:
    resample the test examples with replacement; on each resample recompute the corpus metric for
    both systems on the SAME resampled indexes and record the difference b - a. The interval is
    the percentile interval of those differences. The p-value is two-sided:
    ``min(1, 2 * min(P(d* <= 0), P(d* >= 0)))``, each tail counted as (count + 1) / (B + 1), the
    usual Monte Carlo correction (sacrebleu and MultEval use it too), so it is never 0; it is
    below 1 - level exactly when the percentile interval excludes 0, up to that +1. Identical
    systems give d* = 0 everywhere and p = 1 (sacrebleu's paired_bs instead centres |d*| and gives
    identical systems p = 1/(B+1)).

    Args:
        a_scores, b_scores: per-example values of equal length n, shape (n,) (scores averaged into
            the corpus score, e.g. exact match 0/100) or (n, k) (sufficient statistics, e.g. from
            ftml.metrics.corpus_statistics; pass its ``corpus_fn``).
        corpus_fn: maps resampled rows to the corpus score; default the mean (1-D input only).
        resamples: B, default 1,000.
        seed: numpy default_rng seed.
        level: coverage of the interval of the difference; default 0.95.
    Returns:
        {"a", "b": corpus scores, "difference": b - a, "ci_low", "ci_high", "p_value",
        "p_value_floor": 2 / (B + 1), the smallest p-value B resamples can give (none crossed 0:
        the true p-value is only known to lie below it), "standard_error": the standard deviation
        of the resampled differences (the bootstrap standard error of the difference at n
        examples; inputs_needed reads it), "n", "resamples", "seed", "level"}.
    Raises:
        ValueError: lengths differ, no examples, 2-D input without corpus_fn, bad resamples/level.
    """
    a, b = np.asarray(a_scores), np.asarray(b_scores)
    if a.shape != b.shape:
        raise ValueError(f"system A has shape {a.shape} but system B {b.shape}: score the same examples")
    _check_resampling(len(a), resamples, level)
    if corpus_fn is None:
        if a.ndim != 1:
            raise ValueError("sufficient statistics (2-D input) need a corpus_fn")
        corpus_fn = _mean
    differences = np.array([corpus_fn(b[idx]) - corpus_fn(a[idx])
                            for idx in _resampled_indexes(len(a), resamples, seed)], dtype=float)
    low, high = _percentile_interval(differences, level)
    at_most_zero = (np.count_nonzero(differences <= 0) + 1) / (resamples + 1)
    at_least_zero = (np.count_nonzero(differences >= 0) + 1) / (resamples + 1)
    score_a, score_b = float(corpus_fn(a)), float(corpus_fn(b))
    return {"a": score_a, "b": score_b, "difference": score_b - score_a, "ci_low": low, "ci_high": high,
            "p_value": float(min(1.0, 2 * min(at_most_zero, at_least_zero))),
            "p_value_floor": min(1.0, 2 / (resamples + 1)),
            "standard_error": float(np.std(differences, ddof=1)) if resamples > 1 else 0.0,
            "n": len(a), "resamples": resamples, "seed": seed, "level": level}


def _z_sum(alpha: float, power: float) -> tuple[float, float]:
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha and power must lie strictly between 0 and 1, got {alpha} and {power}")
    return float(norm.ppf(1 - alpha / 2)), float(norm.ppf(power))


def minimum_detectable_effect(standard_error: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true difference a two-sided paired test at level ``alpha`` detects with
    probability ``power``, given the difference's standard error at the current number of inputs:
    (z_{1-alpha/2} + z_{power}) * SE (normal approximation; e.g. 2.80 SE at alpha 0.05, power 0.8).
    Same units as the standard error (the metric's points). Raises ValueError for alpha or power
    outside (0, 1)."""
    z_alpha, z_power = _z_sum(alpha, power)
    return (z_alpha + z_power) * standard_error


def inputs_needed(standard_error: float, n: int, effect: float, alpha: float = 0.05,
                  power: float = 0.8) -> int | None:
    """How many test inputs a paired comparison needs to detect a true difference of ``effect``.

    The normal-approximation sample size of a paired (one-sample) test,
    n = ((z_{1-alpha/2} + z_{power}) * sigma_d / delta)^2 (e.g. Chow, Shao & Wang 2008, *Sample
    Size Calculations in Clinical Research*, 2nd ed., section 3.1), with the standard deviation
    of per-input differences sigma_d estimated as standard_error * sqrt(n). Reading sigma_d from
    the bootstrap standard error (paired_bootstrap's "standard_error") makes this work for corpus
    metrics (BLEU, chrF) whose per-input differences are not defined, as for means.

    Args:
        standard_error: standard error of the difference at ``n`` inputs (metric points).
        n: inputs the standard error was measured on (>= 1).
        effect: the difference to detect (metric points; the sign is ignored).
        alpha: two-sided significance level; power: probability of detecting ``effect``.
    Returns:
        the number of inputs, rounded up (at least 1); None when ``effect`` is 0 (no finite number
        detects no difference) or the standard error is not a positive number.
    Raises:
        ValueError: n < 1, or alpha or power outside (0, 1).
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    z_alpha, z_power = _z_sum(alpha, power)
    if not effect or not math.isfinite(effect) or not standard_error > 0:
        return None
    return max(1, math.ceil(((z_alpha + z_power) * standard_error * math.sqrt(n) / abs(effect)) ** 2))


def mcnemar_inputs_needed(b01: int, b10: int, n: int, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """How many inputs McNemar's test needs to detect the observed difference in accuracy.

    Connor (1987), "Sample size for testing differences in proportions for the paired-sample
    design", Biometrics 43(1): n = (z_{1-alpha/2} sqrt(psi) + z_{power} sqrt(psi - delta^2))^2 /
    delta^2, with the discordant proportions estimated from the observed pairs: psi = (b01 + b10)
    / n, delta = (b01 - b10) / n.

    Args:
        b01, b10, n: as returned by mcnemar (A wrong and B right, A right and B wrong, inputs).
    Returns:
        the number of inputs, rounded up; None when b01 == b10 (no difference to detect).
    Raises:
        ValueError: n < 1, counts outside 0..n, or alpha or power outside (0, 1).
    """
    if n < 1 or not (0 <= b01 and 0 <= b10 and b01 + b10 <= n):
        raise ValueError(f"b01 and b10 must count discordant pairs among n >= 1 inputs, got b01={b01}, b10={b10}, "
                         f"n={n}")
    z_alpha, z_power = _z_sum(alpha, power)
    if b01 == b10:
        return None
    psi, delta = (b01 + b10) / n, (b01 - b10) / n
    return math.ceil((z_alpha * math.sqrt(psi) + z_power * math.sqrt(psi - delta ** 2)) ** 2 / delta ** 2)


def mcnemar(a_correct, b_correct) -> dict:
    """Exact McNemar test: do systems A and B differ in accuracy on the same examples?

    McNemar (1947); the exact form conditions on the discordant pairs, under H0 b01 ~
    Binomial(b01 + b10, 1/2), two-sided p from scipy.stats.binomtest.

    Args:
        a_correct, b_correct: equal-length sequences, one entry per example; truthy = correct
            (booleans, 0/1 or exact-match 0/100 scores).
    Returns:
        {"p_value": float in [0, 1] (1.0 when there is no discordant pair), "b01": A wrong and
        B right, "b10": A right and B wrong, "n": examples}.
    Raises:
        ValueError: lengths differ or no examples.
    """
    a, b = np.asarray(a_correct).astype(bool), np.asarray(b_correct).astype(bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"system A has {a.size} examples but system B {b.size}: score the same examples")
    if a.size == 0:
        raise ValueError("no examples")
    b01, b10 = int(np.count_nonzero(~a & b)), int(np.count_nonzero(a & ~b))
    p_value = binomtest(b01, b01 + b10, 0.5).pvalue if b01 + b10 else 1.0
    return {"p_value": float(p_value), "b01": b01, "b10": b10, "n": int(a.size)}


def cohen_kappa(r1: Sequence, r2: Sequence, weights: str | None = None, labels: Sequence | None = None) -> dict:
    """Cohen's kappa between two raters of the same items, with raw percent agreement.

    kappa = (p_o - p_e) / (1 - p_e) (Cohen 1960); weighted kappa with linear or quadratic
    disagreement weights (Cohen 1968), computed by sklearn.metrics.cohen_kappa_score. For weighted
    kappa the categories are ordered as ``labels`` (default: sorted).

    Args:
        r1, r2: equal-length label sequences (any hashable, sortable labels).
        weights: None, "linear" or "quadratic".
        labels: optional category order/set passed to scikit-learn.
    Returns:
        {"kappa": float in [-1, 1] or None, "percent_agreement": 0-100, "n", "weights",
        "reason": None, or why kappa is undefined (both raters gave every item one and the same
        label, so chance agreement is 1 and kappa is 0/0)}.
    Raises:
        ValueError: lengths differ, no items, or an unknown weights value.
    """
    if len(r1) != len(r2):
        raise ValueError(f"rater 1 rated {len(r1)} items but rater 2 {len(r2)}")
    if not r1:
        raise ValueError("no items rated")
    if weights not in (None, "linear", "quadratic"):
        raise ValueError(f"weights must be None, 'linear' or 'quadratic', got {weights!r}")
    agreement = 100 * sum(x == y for x, y in zip(r1, r2, strict=True)) / len(r1)
    result = {"kappa": None, "percent_agreement": agreement, "n": len(r1), "weights": weights, "reason": None}
    if len(set(r1) | set(r2)) == 1:
        result["reason"] = "no variance: both raters gave every item the same label, so kappa is 0/0"
        return result
    kappa = cohen_kappa_score(r1, r2, weights=weights, labels=labels)
    if np.isnan(kappa):
        result["reason"] = "undefined: expected disagreement is 0 for these labels"
    else:
        result["kappa"] = float(kappa)
    return result


def krippendorff_alpha(ratings_matrix, level: str = "ordinal", value_domain: Sequence | None = None) -> dict:
    """Krippendorff's alpha for any number of raters with missing ratings, and percent agreement.

    alpha = 1 - D_o / D_e (Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability"),
    computed by the ``krippendorff`` package (krippendorff.alpha) at the given level of
    measurement. Percent agreement is Krippendorff's observed agreement for nominal data,
    100 * sum_u sum_c n_uc (n_uc - 1) / (m_u - 1) / n over items u with m_u >= 2 ratings
    (n_uc: ratings of value c on item u; n: pairable ratings), i.e. the share of identical pairs
    of ratings within an item, each item weighted by its number of ratings.

    Args:
        ratings_matrix: raters x items, numbers, NaN where a rater did not rate an item.
        level: "nominal", "ordinal", "interval" or "ratio".
        value_domain: optional ordered list of possible values (else the values seen).
    Returns:
        {"alpha": float <= 1 or None, "percent_agreement": 0-100 or None, "raters", "items",
        "pairable_items", "level", "reason": None, or why alpha is undefined (fewer than two
        ratings on every item, or no variance among the pairable ratings)}.
    Raises:
        ValueError: not a 2-D matrix, fewer than 2 raters, or an unknown level.
    """
    if level not in ("nominal", "ordinal", "interval", "ratio"):
        raise ValueError(f"level must be nominal, ordinal, interval or ratio, got {level!r}")
    data = np.asarray(ratings_matrix, dtype=float)
    if data.ndim != 2:
        raise ValueError(f"ratings_matrix must be raters x items (2-D), got {data.ndim}-D")
    if data.shape[0] < 2:
        raise ValueError(f"need at least 2 raters, got {data.shape[0]}")
    rated = ~np.isnan(data)
    pairable = rated.sum(axis=0) >= 2
    result = {"alpha": None, "percent_agreement": None, "raters": data.shape[0], "items": data.shape[1],
              "pairable_items": int(pairable.sum()), "level": level, "reason": None}
    if not pairable.any():
        result["reason"] = "no item has ratings from at least two raters"
        return result
    agreeing = total = 0.0
    for column in data[:, pairable].T:
        values = column[~np.isnan(column)]
        _, counts = np.unique(values, return_counts=True)
        agreeing += float((counts * (counts - 1)).sum()) / (len(values) - 1)
        total += len(values)
    result["percent_agreement"] = 100 * agreeing / total
    pairable_values = data[:, pairable][rated[:, pairable]]
    if np.unique(pairable_values).size < 2:
        result["reason"] = "no variance: every pairable rating has the same value, so alpha is 0/0"
        return result
    result["alpha"] = float(krippendorff.alpha(reliability_data=data, level_of_measurement=level,
                                               value_domain=value_domain))
    return result


_OUTCOMES = ("a", "b", "tie")


def _comparison_matrix(n_items: int, judgments: Sequence[tuple[int, int, str]], virtual_ties: float) -> np.ndarray:
    # wins[i, j]: how often i beat j; a tie is half a win each way, and every pair of items gets
    # ``virtual_ties`` extra ties. Sums of halves are exact in floating point, so the matrix (and the
    # fit) does not depend on the judgments' order.
    wins = np.full((n_items, n_items), virtual_ties / 2)
    np.fill_diagonal(wins, 0.0)
    for i, j, outcome in judgments:
        if outcome == "a":
            wins[i, j] += 1
        elif outcome == "b":
            wins[j, i] += 1
        else:
            wins[i, j] += 0.5
            wins[j, i] += 0.5
    return wins


def _fit_bradley_terry(n_items: int, judgments, virtual_ties: float, initial=None) -> np.ndarray:
    try:
        params = choix.ilsr_pairwise_dense(_comparison_matrix(n_items, judgments, virtual_ties),
                                           initial_params=initial, max_iter=10_000, tol=1e-10)
    except (RuntimeError, ValueError) as exc:
        raise ValueError("Bradley-Terry ratings do not exist for these judgments (an item never loses or never "
                         f"wins, or the comparisons are disconnected); use virtual_ties > 0: {exc}") from exc
    return params - params.mean()


def bradley_terry(judgments: Sequence[tuple[Hashable, Hashable, str]], items: Sequence[Hashable],
                  resamples: int = 200, seed: int = 0, virtual_ties: float = 0.1, level: float = 0.95) -> dict:
    """Bradley–Terry ratings from pairwise judgments, with bootstrap intervals and ranks.

    Model (Bradley & Terry 1952): P(i beats j) = 1 / (1 + exp(-(theta_i - theta_j))). The
    log-strengths theta maximise the likelihood in which a tie counts as half a win each way
    (Davidson 1970 discusses richer tie models; half-wins are what Elo and Chatbot Arena use) and
    every pair of items also gets ``virtual_ties`` tied comparisons: a pseudo-count prior that
    keeps an undefeated or never-winning item finite and connects items never compared (the
    "virtual draws" of Coulom 2008, Whole-History Rating). With fractional counts the maximum
    likelihood estimate is computed by choix.ilsr_pairwise_dense (iterative Luce Spectral Ranking,
    Maystre & Grossglauser 2015, which converges to the ML estimate) on the matrix of wins. That
    matrix is a sum of halves, exact in any order, so the ratings do not depend on the judgments'
    order. Intervals: percentile bootstrap over judgments (resampled with replacement, seeded,
    from a canonical order), each resample refitted.

    Args:
        judgments: (a, b, outcome) triples, a and b in ``items`` and different, outcome in
            {"a", "b", "tie"}: which of a and b won.
        items: the items rated (an item without judgments is rated 0 when virtual_ties > 0).
        resamples: bootstrap resamples (0 for no intervals); default 200.
        seed: numpy default_rng seed.
        virtual_ties: tied comparisons added to every pair of items, >= 0; default 0.1.
        level: interval coverage; default 0.95.
    Returns:
        {"ratings": [{"item", "rank" (1 = best; equal ratings share the best rank), "log_strength"
        (centred at 0), "log_strength_ci_low", "log_strength_ci_high", "elo" (log_strength *
        400 / ln 10, centred at 0), "elo_ci_low", "elo_ci_high", "wins", "losses", "ties"}, ...]
        best first; "n_judgments", "resamples", "seed", "virtual_ties", "level"}. CI fields are
        None when resamples is 0.
    Raises:
        ValueError: fewer than 2 items, duplicate items, no judgments, an unknown item, an item
        judged against itself, an outcome outside {"a", "b", "tie"}, virtual_ties < 0, or (with
        virtual_ties = 0) judgments that have no finite maximum likelihood estimate.
    """
    items = list(items)
    if len(items) < 2:
        raise ValueError(f"need at least 2 items, got {len(items)}")
    index = {item: position for position, item in enumerate(items)}
    if len(index) != len(items):
        raise ValueError("items contain duplicates")
    if not judgments:
        raise ValueError("no judgments")
    if resamples < 0:
        raise ValueError(f"resamples must be 0 or more, got {resamples}")
    if virtual_ties < 0:
        raise ValueError(f"virtual_ties must be 0 or more, got {virtual_ties}")
    encoded = []
    for number, (a, b, outcome) in enumerate(judgments):
        for side in (a, b):
            if side not in index:
                raise ValueError(f"judgment {number}: unknown item {side!r}")
        if a == b:
            raise ValueError(f"judgment {number}: item {a!r} judged against itself")
        if outcome not in _OUTCOMES:
            raise ValueError(f"judgment {number}: outcome {outcome!r}; expected 'a', 'b' or 'tie'")
        i, j = index[a], index[b]
        # Canonical form (lower index first) so resampling, too, ignores order and orientation.
        if i > j:
            i, j, outcome = j, i, {"a": "b", "b": "a", "tie": "tie"}[outcome]
        encoded.append((i, j, outcome))
    encoded.sort()
    theta = _fit_bradley_terry(len(items), encoded, virtual_ties)

    low = high = [None] * len(items)
    if resamples:
        _check_resampling(len(encoded), resamples, level)
        samples = np.array([
            _fit_bradley_terry(len(items), [encoded[k] for k in idx], virtual_ties, initial=theta)
            for idx in _resampled_indexes(len(encoded), resamples, seed)
        ])
        tail = 100 * (1 - level) / 2
        low, high = np.percentile(samples, [tail, 100 - tail], axis=0)

    wins, losses, ties = np.zeros(len(items), int), np.zeros(len(items), int), np.zeros(len(items), int)
    for i, j, outcome in encoded:
        if outcome == "tie":
            ties[[i, j]] += 1
        else:
            winner, loser = (i, j) if outcome == "a" else (j, i)
            wins[winner] += 1
            losses[loser] += 1
    ranks = rankdata(-np.round(theta, 9), method="min").astype(int)

    def scaled(value, factor):
        return None if value is None else float(value) * factor

    ratings = [{
        "item": items[k], "rank": int(ranks[k]),
        "log_strength": float(theta[k]), "log_strength_ci_low": scaled(low[k], 1),
        "log_strength_ci_high": scaled(high[k], 1),
        "elo": float(theta[k]) * ELO_SCALE, "elo_ci_low": scaled(low[k], ELO_SCALE),
        "elo_ci_high": scaled(high[k], ELO_SCALE),
        "wins": int(wins[k]), "losses": int(losses[k]), "ties": int(ties[k]),
    } for k in range(len(items))]
    ratings.sort(key=lambda rating: (rating["rank"], index[rating["item"]]))
    return {"ratings": ratings, "n_judgments": len(encoded), "resamples": resamples, "seed": seed,
            "virtual_ties": virtual_ties, "level": level}
