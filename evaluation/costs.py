"""Serving cost and the break-even volume of fine-tuning. Plain Python, no Django.

Prices are in one currency the team chooses (the same for every model version it compares).
Two ways a model version can be priced:
  self-hosted: a price per GPU-hour; a request costs its latency's share of that hour, i.e. the
      machine serves one request at a time at the latency measured by evaluation (batch size 1):
      cost per request = price_per_gpu_hour * latency_s / 3600. Batched serving is cheaper; this
      is the conservative figure.
  API: prices per million input and output tokens; a request costs
      (input_tokens * price_in + output_tokens * price_out) / 1e6.
"""
from dataclasses import asdict, dataclass

UNKNOWN_COST = "unknown (no price, or not measured)"  # how reports show a cost of None


@dataclass(frozen=True)
class Pricing:
    """A model version's prices; every field may be None (unknown)."""

    per_gpu_hour: float | None = None
    per_million_input_tokens: float | None = None
    per_million_output_tokens: float | None = None


def cost_per_1k_requests(pricing: Pricing, *, mean_latency_ms: float | None, mean_input_tokens: float | None,
                         mean_output_tokens: float | None) -> float | None:
    """Cost of 1,000 requests like the evaluated ones, or None when the version has no price or a
    figure its price needs is unknown (None: e.g. an eval run from before latency was recorded;
    an unknown figure is never taken as 0, which would make the model look free).

    API prices win when both kinds are set (the team pays per token then)."""
    if pricing.per_million_input_tokens is not None or pricing.per_million_output_tokens is not None:
        needed = [(tokens, price) for tokens, price in ((mean_input_tokens, pricing.per_million_input_tokens),
                                                        (mean_output_tokens, pricing.per_million_output_tokens))
                  if price]
        if any(tokens is None for tokens, _ in needed):
            return None
        return 1000 * sum(tokens * price for tokens, price in needed) / 1e6
    if pricing.per_gpu_hour is not None:
        if mean_latency_ms is None:
            return None
        return 1000 * pricing.per_gpu_hour * mean_latency_ms / 1000 / 3600
    return None


def training_cost(pricing: Pricing, wall_seconds: float | None) -> float | None:
    """What a training run cost: its wall time at the fine-tuned version's GPU-hour price."""
    if pricing.per_gpu_hour is None or wall_seconds is None:
        return None
    return pricing.per_gpu_hour * wall_seconds / 3600


@dataclass(frozen=True)
class BreakEven:
    """Requests per month above which the fine-tuned model is cheaper, training included
    (training paid once and counted against the first month); None with ``reason`` otherwise."""

    monthly_requests: float | None
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def break_even(*, tuned_per_1k: float | None, baseline_per_1k: float | None,
               training: float | None) -> BreakEven:
    """Solve training + n * tuned = n * baseline for n (requests in a month).

    n = training / (baseline - tuned) per request. When the tuned model is no cheaper per request
    it never breaks even; when it is cheaper and training cost nothing known, from the first request."""
    if tuned_per_1k is None or baseline_per_1k is None:
        return BreakEven(None, "the cost per request of one of the two model versions is unknown (no price, "
                               "or its eval run recorded no latency or token counts)")
    saving = (baseline_per_1k - tuned_per_1k) / 1000
    if saving <= 0:
        return BreakEven(None, "the fine-tuned model costs as much or more per request: it never breaks even")
    if not training:
        return BreakEven(0.0, "cheaper per request and no training cost recorded: from the first request")
    return BreakEven(training / saving, "training cost divided by the saving per request")
