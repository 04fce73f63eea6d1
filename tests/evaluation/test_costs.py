"""Serving cost per 1,000 requests and the break-even volume, by hand."""
import pytest

from evaluation.costs import Pricing, break_even, cost_per_1k_requests, training_cost


def test_api_prices_per_million_tokens():
    # 1,000 requests x (500 in x 2.50 + 100 out x 10.00) / 1e6 = 1,000 x 0.00225 = 2.25
    pricing = Pricing(per_million_input_tokens=2.5, per_million_output_tokens=10.0)
    assert cost_per_1k_requests(pricing, mean_latency_ms=900, mean_input_tokens=500,
                                mean_output_tokens=100) == pytest.approx(2.25)


def test_self_hosted_pays_its_latency_share_of_a_gpu_hour():
    # 1,000 requests x 0.9 s = 900 s = 0.25 h at 2.00 per hour = 0.50
    assert cost_per_1k_requests(Pricing(per_gpu_hour=2.0), mean_latency_ms=900, mean_input_tokens=500,
                                mean_output_tokens=100) == pytest.approx(0.5)
    assert cost_per_1k_requests(Pricing(), mean_latency_ms=900, mean_input_tokens=1, mean_output_tokens=1) is None


def test_break_even_counts_the_training_cost_once():
    train = training_cost(Pricing(per_gpu_hour=3.6), wall_seconds=3600)  # one hour at 3.60
    assert train == pytest.approx(3.6)
    # saving 2.25 - 0.50 = 1.75 per 1,000 requests -> 3.60 / 0.00175 = 2,057.14 requests
    result = break_even(tuned_per_1k=0.5, baseline_per_1k=2.25, training=train)
    assert result.monthly_requests == pytest.approx(2057.142857)
    never = break_even(tuned_per_1k=2.5, baseline_per_1k=2.25, training=train)
    assert never.monthly_requests is None and "never breaks even" in never.reason
    assert break_even(tuned_per_1k=None, baseline_per_1k=2.25, training=train).monthly_requests is None
    assert break_even(tuned_per_1k=0.5, baseline_per_1k=2.25, training=None).monthly_requests == 0.0
