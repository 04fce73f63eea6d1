"""Hybrid routing simulation: answer with the fine-tuned model when it is confident, else fall back
to the prompted (larger) model. Plain Python, no Django.

The fine-tuned model always answers first (its confidence is known only after it answered), so a
routed request costs the fine-tuned model's request plus, below the threshold, the fallback's.
Confidence is the mean log-probability of the fine-tuned model's output tokens (higher is more
confident); a threshold t sends every example whose confidence is below t to the fallback.
A threshold is chosen on one set of inputs (the validation split: routing_curve, suggest_threshold)
and scored on others (the test split: route_at): chosen and scored on the same inputs, its quality
would be fitted to them.
"""
import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class RoutingPoint:
    threshold: float | None  # fall back below this confidence; None for the two ends (see label)
    label: str  # "never fall back", "confidence < -0.512", "always fall back"
    fallback_share: float  # 0..1 of the traffic
    quality: float  # mean per-example score of the answers served
    cost_per_1k: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def known_confidence(value: float | None) -> bool:
    """Whether a stored confidence can route: NaN (a model whose logits overflowed) or an infinite
    mean log-probability cannot be ordered or served as JSON, so it counts as unknown, like None."""
    return value is not None and math.isfinite(value)


NEVER, ALWAYS = "never fall back", "always fall back"  # the two ends of the curve, threshold None


def _check_lengths(confidence, tuned_scores, fallback_scores) -> None:
    n = len(confidence)
    if not n or len(tuned_scores) != n or len(fallback_scores) != n:
        raise ValueError(f"need as many confidences, tuned scores and fallback scores (got {n}, "
                         f"{len(tuned_scores)}, {len(fallback_scores)}), and at least one")


def _route(cut: float, label: str, confidence, tuned_scores, fallback_scores, tuned_per_1k, fallback_per_1k):
    # Unknown confidence always falls back; -inf is "never fall back", +inf "always".
    fallback = [not known_confidence(c) or c < cut for c in confidence]
    share = sum(fallback) / len(fallback)
    quality = sum(f if use else t for use, t, f in zip(fallback, tuned_scores, fallback_scores, strict=True)) / len(
        fallback)
    cost = tuned_per_1k + share * fallback_per_1k if tuned_per_1k is not None and fallback_per_1k is not None else None
    return RoutingPoint(cut if math.isfinite(cut) else None, label, share, quality, cost)


def routing_curve(confidence: list[float | None], tuned_scores: list[float], fallback_scores: list[float], *,
                  tuned_per_1k: float | None = None, fallback_per_1k: float | None = None) -> list[RoutingPoint]:
    """One point per distinct threshold, from "never fall back" to "always fall back".

    Args:
        confidence: per example, the fine-tuned model's mean output log-probability (None, NaN or
            infinite: unknown, always falls back; a threshold is always a finite number).
        tuned_scores / fallback_scores: per example, the same metric (e.g. sentence chrF, 0-100)
            of each model's answer to the same input, same order.
    Raises:
        ValueError: the three lists differ in length, or are empty.
    """
    _check_lengths(confidence, tuned_scores, fallback_scores)
    known = sorted({c for c in confidence if known_confidence(c)})
    cuts = [(-math.inf, NEVER), *((c, f"confidence < {c:.4g}") for c in known), (math.inf, ALWAYS)]
    return [_route(cut, label, confidence, tuned_scores, fallback_scores, tuned_per_1k, fallback_per_1k)
            for cut, label in cuts]


def route_at(point: RoutingPoint, confidence: list[float | None], tuned_scores: list[float],
             fallback_scores: list[float], *, tuned_per_1k: float | None = None,
             fallback_per_1k: float | None = None) -> RoutingPoint:
    """The routing rule of ``point`` (a threshold chosen on other inputs, e.g. the validation split),
    fixed and applied to these inputs: their fallback share, quality and cost. Arguments as
    routing_curve's. Raises ValueError as routing_curve does."""
    _check_lengths(confidence, tuned_scores, fallback_scores)
    cut = point.threshold if point.threshold is not None else (-math.inf if point.label == NEVER else math.inf)
    return _route(cut, point.label, confidence, tuned_scores, fallback_scores, tuned_per_1k, fallback_per_1k)


def suggest_threshold(points: list[RoutingPoint], target_quality: float) -> RoutingPoint | None:
    """The cheapest point (fewest fallbacks when costs are unknown) whose quality reaches
    ``target_quality``; None when no threshold reaches it."""
    good = [p for p in points if p.quality >= target_quality]
    if not good:
        return None
    return min(good, key=lambda p: (p.cost_per_1k if p.cost_per_1k is not None else 0.0, p.fallback_share))
