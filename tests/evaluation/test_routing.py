"""Hybrid routing: the curve over thresholds and the suggested threshold, on a hand-made case."""
import pytest

from evaluation.routing import route_at, routing_curve, suggest_threshold


def test_the_routing_curve_and_the_cheapest_threshold_meeting_a_target():
    confidence = [-0.1, -0.5, -2.0, None]
    tuned = [90.0, 60.0, 10.0, 50.0]
    fallback = [70.0, 70.0, 70.0, 70.0]
    points = routing_curve(confidence, tuned, fallback, tuned_per_1k=1.0, fallback_per_1k=10.0)

    assert [p.label for p in points] == ["never fall back", "confidence < -2", "confidence < -0.5",
                                         "confidence < -0.1", "always fall back"]
    # never: only the unknown-confidence example falls back -> (90 + 60 + 10 + 70) / 4
    assert points[0].fallback_share == 0.25 and points[0].quality == pytest.approx(57.5)
    # confidence < -0.5: the -2.0 and the unknown one fall back -> (90 + 60 + 70 + 70) / 4
    assert points[2].fallback_share == 0.5 and points[2].quality == pytest.approx(72.5)
    assert points[2].cost_per_1k == pytest.approx(1.0 + 0.5 * 10.0)
    assert points[-1].fallback_share == 1.0 and points[-1].quality == pytest.approx(70.0)

    best = suggest_threshold(points, target_quality=72.0)
    assert best.label == "confidence < -0.5"  # the cheapest point at or above 72
    assert suggest_threshold(points, target_quality=99.0) is None


def test_mismatched_lists_are_refused():
    with pytest.raises(ValueError, match="need as many confidences"):
        routing_curve([0.1], [1.0, 2.0], [1.0])


def test_a_threshold_chosen_on_some_inputs_is_applied_unchanged_to_others():
    chosen = {p.label: p for p in routing_curve([-0.2, -1.0], [80.0, 10.0], [50.0, 50.0])}
    confidence, tuned, fallback = [-0.1, -0.5, -3.0, None], [90.0, 60.0, 10.0, 50.0], [70.0] * 4
    # "confidence < -0.2" on new inputs: -0.5, -3.0 and the unknown one fall back -> (90 + 3 * 70) / 4
    moved = route_at(chosen["confidence < -0.2"], confidence, tuned, fallback, tuned_per_1k=1.0, fallback_per_1k=10.0)
    assert (moved.threshold, moved.fallback_share, moved.quality) == (-0.2, 0.75, pytest.approx(75.0))
    assert moved.cost_per_1k == pytest.approx(1.0 + 0.75 * 10.0)
    never = route_at(chosen["never fall back"], confidence, tuned, fallback)
    assert (never.fallback_share, never.quality) == (0.25, pytest.approx((90 + 60 + 10 + 70) / 4))
    assert route_at(chosen["always fall back"], confidence, tuned, fallback).fallback_share == 1.0
