"""Serving cost per 1,000 requests and the break-even volume, by hand; unknown, never free, for a run
that recorded no latency."""
import pytest

from evaluation.costs import Pricing, break_even, cost_per_1k_requests, training_cost
from evaluation.decision import decision_report
from tests.support.clients import api_client


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


@pytest.mark.django_db
def test_a_run_that_recorded_no_latency_has_an_unknown_cost_not_a_free_one(tuned_vs_prompted):
    """Missing figures were read as 0: a GPU-hour-priced model evaluated before latency was recorded cost
    0.0 per 1,000 requests and broke even "from the first request"; a figure stored as null was a 500."""
    dataset, _, tuned = tuned_vs_prompted
    tuned.metrics = {"bleu": 50.0}
    tuned.save()
    report = decision_report(dataset, resamples=10)
    assert report["fine_tuned"]["cost_per_1k_requests"] is None
    assert report["baselines"][0]["break_even"]["monthly_requests"] is None
    tuned.metrics = {"bleu": 50.0, "latency_p50_ms": None, "mean_input_tokens": None, "mean_output_tokens": None}
    tuned.save()
    assert api_client().get(f"/api/v1/model-versions/{tuned.model_version_id}/report/").status_code == 200
