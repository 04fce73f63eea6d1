"""Verdicts: the fine-tuned model against one baseline (an interval and tests that must agree, on enough
test inputs) and against all of them (conservatively), with the evidence and how many inputs would settle it."""
import math

from ftml.metrics import MCNEMAR_SUFFIX, metric_spec
from ftml.stats import (
    inputs_needed,
    mcnemar_inputs_needed,
    minimum_detectable_effect,
)

from .choices import Verdict

# A verdict needs at least this many test inputs. Below about 20 the percentile bootstrap behind it
# is too sure of itself: it acts like a z-interval where Student's t applies, and t_{0.975, n-1} /
# z_{0.975} exceeds 1.07 (at 6 inputs, 1.31); and McNemar's exact test cannot reach p < 0.05 on
# fewer than 6 disagreeing inputs at all.
MIN_TEST_INPUTS = 20


POWER = 0.8  # the power the "inputs needed" estimates plan for


def format_p_value(result: dict) -> str:
    """A test result's p-value for people: ``"0.0123"``, or ``"< 0.002"`` when a bootstrap p-value sits
    at its floor 2 / (B + 1) (paired_bootstrap's ``p_value_floor``: no resample crossed zero, so the
    p-value is only known to lie below it, and "0.002" would claim a measurement). The floor is
    rounded up to two significant digits, so the bound stays true."""
    p, floor = result["p_value"], result.get("p_value_floor")
    if floor is None or p > floor:
        return f"{p:.3g}"
    scale = 10 ** (1 - math.floor(math.log10(floor)))
    return f"< {math.ceil(floor * scale) / scale:g}"


def p_value_text(result: dict) -> str:
    """``"p = 0.0123"`` or ``"p < 0.002"`` (format_p_value)."""
    shown = format_p_value(result)
    return f"p {shown}" if shown.startswith("<") else f"p = {shown}"


def _direction(significant: bool, tuned_better: bool) -> str | None:
    return ("fine-tuned" if tuned_better else "baseline") if significant else None


def verdict_evidence(comparison: dict, metric: str, *, min_inputs: int = MIN_TEST_INPUTS,
                     power: float = POWER) -> dict:
    """Whether a comparison (evaluation.comparisons.compare_eval_runs: A the baseline, B the
    fine-tuned model) holds enough evidence for a verdict on ``metric``, and if not how many test
    inputs would.

    The tests: the paired bootstrap of ``metric`` (significant when its interval excludes 0) and,
    for a metric the comparison also tests with McNemar's exact test (``<metric>_mcnemar``, exact
    match), that test at the same level. Inputs needed: the most of min_inputs and, per test, the
    inputs giving ``power`` to detect the observed difference (stats.inputs_needed from the
    bootstrap standard error; stats.mcnemar_inputs_needed, Connor 1987); the minimum detectable
    effect is stats.minimum_detectable_effect at the inputs compared.

    Returns:
        {"n", "min_inputs", "alpha", "power", "tests": [{"name", "p_value", "p_value_text",
        "better": "fine-tuned" | "baseline" | None (no significant difference)}, ...],
        "tests_agree", "enough": n >= min_inputs and the tests agree, "minimum_detectable_effect"
        (metric points; None when the resampled differences do not vary), "power_inputs" (None when
        the observed difference is 0), "inputs_needed" (None when no number of inputs is predicted
        to be enough)}.
    """
    difference = comparison["metrics"][metric]
    n, alpha = difference["n"], 1 - difference["level"]
    tests = [{"name": "paired bootstrap", "p_value": difference["p_value"], "p_value_text": p_value_text(difference),
              "better": _direction(difference["ci_low"] > 0 or difference["ci_high"] < 0,
                                   difference["ci_low"] > 0)}]
    estimates = [inputs_needed(difference["standard_error"], n, difference["difference"], alpha, power)]
    mcnemar = comparison["metrics"].get(metric + MCNEMAR_SUFFIX)
    if mcnemar is not None:
        tests.append({"name": "McNemar's exact test", "p_value": mcnemar["p_value"],
                      "p_value_text": p_value_text(mcnemar),
                      "better": _direction(mcnemar["p_value"] < alpha, mcnemar["b01"] > mcnemar["b10"])})
        estimates.append(mcnemar_inputs_needed(mcnemar["b01"], mcnemar["b10"], mcnemar["n"], alpha, power))
    estimates = [e for e in estimates if e is not None]
    power_inputs = max(estimates) if estimates else None
    agree = len({test["better"] for test in tests}) == 1
    needed = max(min_inputs, power_inputs) if power_inputs is not None else (min_inputs if n < min_inputs else None)
    return {"n": n, "min_inputs": min_inputs, "alpha": alpha, "power": power, "tests": tests, "tests_agree": agree,
            "enough": n >= min_inputs and agree,
            # No spread between resamples (the two never differ): nothing to scale an effect by.
            "minimum_detectable_effect": (minimum_detectable_effect(difference["standard_error"], alpha, power)
                                          if difference["standard_error"] > 0 else None),
            "power_inputs": power_inputs, "inputs_needed": needed}


def _more_inputs(evidence: dict, difference: float) -> str:
    n, mde = evidence["n"], evidence["minimum_detectable_effect"]
    detectable = ("the two models' scores did not differ in any resample" if mde is None else
                  f"the smallest difference {n} inputs detect with {100 * evidence['power']:.0f} % power is {mde:.2f}")
    needed = evidence["inputs_needed"]
    if needed is None:
        return f"no number of inputs is predicted to separate a difference of 0; {detectable}"
    if needed <= n:
        return f"the difference is at the edge of what {n} inputs detect ({detectable}): test on more inputs"
    planned = (f"{evidence['power_inputs']} for {100 * evidence['power']:.0f} % power to detect a difference of "
               f"{abs(difference):.2f}" if evidence["power_inputs"] is not None else "")
    floor = f"a verdict needs at least {evidence['min_inputs']}" if evidence["min_inputs"] >= needed else ""
    return f"test on about {needed} inputs ({'; '.join(x for x in (planned, floor, detectable) if x)})"


def baseline_verdict(comparison: dict, metric: str, tuned_cost, baseline_cost,
             min_inputs: int = MIN_TEST_INPUTS) -> tuple[Verdict, str, dict]:
    difference = comparison["metrics"][metric]
    evidence = verdict_evidence(comparison, metric, min_inputs=min_inputs)
    low, high, level = difference["ci_low"], difference["ci_high"], difference["level"]
    interval = (f"{metric_spec(metric).label} difference {difference['difference']:+.2f} ({100 * level:.0f} % CI "
                f"{low:+.2f} to {high:+.2f}, {p_value_text(difference)})")
    problems = []
    if evidence["n"] < min_inputs:
        problems.append(f"{evidence['n']} test inputs are fewer than the {min_inputs} a verdict needs")
    if not evidence["tests_agree"]:
        problems.append("the tests disagree (" + "; ".join(
            f"{t['name']} {t['p_value_text']}: "
            + (f"the {t['better']} model is better" if t["better"] else "no significant difference")
            for t in evidence["tests"]) + ")")
    more = _more_inputs(evidence, difference["difference"])
    if problems:
        return Verdict.NOT_ENOUGH_EVIDENCE, f"{' and '.join(problems)}: {interval}; {more}", evidence
    if low > 0:
        if tuned_cost is not None and baseline_cost is not None and tuned_cost > baseline_cost:
            reason = (f"the fine-tuned model is better ({interval}) but costs more per request "
                      f"({tuned_cost:.4g} vs {baseline_cost:.4g} per 1,000)")
            return Verdict.NOT_ENOUGH_EVIDENCE, reason, evidence
        return Verdict.FINE_TUNE, f"the fine-tuned model is better: {interval}", evidence
    if high < 0:
        return Verdict.KEEP_PROMPTING, f"the prompted model is better: {interval}", evidence
    return Verdict.NOT_ENOUGH_EVIDENCE, f"the interval includes no difference: {interval}; {more}", evidence


def overall_verdict(baselines: list[dict]) -> tuple[str, str]:
    """One verdict from the per-baseline ones (each ``{"model_version", "verdict", "reason"}``,
    strongest baseline first). Conservative: "fine-tune" only when the fine-tuned model wins
    against every baseline; "keep prompting" when any baseline is significantly better (the
    strongest such named); otherwise "not enough evidence", naming the baselines it could not
    separate from. Raises ValueError on an empty list."""
    if not baselines:
        raise ValueError("no baselines to decide between")
    losing = [b for b in baselines if b["verdict"] == Verdict.KEEP_PROMPTING]
    if losing:
        return Verdict.KEEP_PROMPTING, f"against {losing[0]['model_version']}: {losing[0]['reason']}"
    unsure = [b for b in baselines if b["verdict"] != Verdict.FINE_TUNE]
    if unsure:
        return Verdict.NOT_ENOUGH_EVIDENCE, "; ".join(f"against {b['model_version']}: {b['reason']}"
                                                      for b in unsure)
    if len(baselines) == 1:
        return Verdict.FINE_TUNE, f"against {baselines[0]['model_version']}: {baselines[0]['reason']}"
    return Verdict.FINE_TUNE, (f"better than all {len(baselines)} baselines; against the strongest, "
                         f"{baselines[0]['model_version']}: {baselines[0]['reason']}")
