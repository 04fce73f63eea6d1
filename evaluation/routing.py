"""Hybrid routing simulation: answer with the fine-tuned model when it is confident, else fall back
to the prompted (larger) model. Plain Python, no Django.

The fine-tuned model always answers first (its confidence is known only after it answered), so a
routed request costs the fine-tuned model's request plus, below the threshold, the fallback's.
Confidence is the mean log-probability of the fine-tuned model's output tokens (higher is more
confident); a threshold t sends every example whose confidence is below t to the fallback.
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
    n = len(confidence)
    if not n or len(tuned_scores) != n or len(fallback_scores) != n:
        raise ValueError(f"need as many confidences, tuned scores and fallback scores (got {n}, "
                         f"{len(tuned_scores)}, {len(fallback_scores)}), and at least one")
    confidence = [c if known_confidence(c) else None for c in confidence]
    known = sorted({c for c in confidence if c is not None})
    ends = {"never": None, "always": None}
    points = []
    for threshold in ["never", *known, "always"]:
        if threshold == "never":
            fallback = [c is None for c in confidence]
        elif threshold == "always":
            fallback = [True] * n
        else:
            fallback = [c is None or c < threshold for c in confidence]
        share = sum(fallback) / n
        quality = sum(f if use else t for use, t, f in zip(fallback, tuned_scores, fallback_scores, strict=True)) / n
        cost = None
        if tuned_per_1k is not None and fallback_per_1k is not None:
            cost = tuned_per_1k + share * fallback_per_1k
        label = f"{threshold} fall back" if threshold in ends else f"confidence < {threshold:.4g}"
        points.append(RoutingPoint(None if threshold in ends else threshold, label, share, quality, cost))
    return points


def suggest_threshold(points: list[RoutingPoint], target_quality: float) -> RoutingPoint | None:
    """The cheapest point (fewest fallbacks when costs are unknown) whose quality reaches
    ``target_quality``; None when no threshold reaches it."""
    good = [p for p in points if p.quality >= target_quality]
    if not good:
        return None
    return min(good, key=lambda p: (p.cost_per_1k if p.cost_per_1k is not None else 0.0, p.fallback_share))
