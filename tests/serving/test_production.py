"""The decision report's production view, the request log's sampling, and the vLLM engine's requests."""
import numpy as np
import pytest
from django.utils import timezone

from evaluation.decision import decision_report, format_decision_report
from serving.deployments import create_deployment
from serving.models import RequestLog
from tests.support.factories import EngineerFactory, tuned_vs_prompted_runs

pytestmark = pytest.mark.django_db


def test_the_decision_report_shows_each_model_as_served_beside_its_estimate():
    dataset, prompted_run, tuned_run = tuned_vs_prompted_runs(examples=30, validation=True)
    tuned, prompted = tuned_run.model_version, prompted_run.model_version
    deployment = create_deployment(by=EngineerFactory(), name="venues", primary=tuned, fallback=prompted,
                                   threshold=-1.0)
    rows = [  # (fell back, primary ms, fallback ms, primary cost, fallback cost)
        (False, 800.0, None, 0.0002, None), (False, 1000.0, None, 0.0003, None), (False, 1200.0, None, 0.0004, None),
        (True, 900.0, 400.0, 0.00025, 0.001)]
    for number, (fell_back, primary_ms, fallback_ms, primary_cost, fallback_cost) in enumerate(rows):
        RequestLog.objects.create(
            request_id=f"r{number}", created_at=timezone.now(), deployment=deployment, deployment_name="venues",
            status="answered", http_status=200, answered_by=prompted if fell_back else tuned, fell_back=fell_back,
            primary_latency_ms=primary_ms, fallback_latency_ms=fallback_ms,
            latency_ms=primary_ms + (fallback_ms or 0), primary_cost=primary_cost, fallback_cost=fallback_cost,
            cost=primary_cost + (fallback_cost or 0))
    RequestLog.objects.create(request_id="failed", created_at=timezone.now(), deployment=deployment,
                              deployment_name="venues", status="failed", http_status=502, fell_back=True,
                              primary_latency_ms=5000.0)
    report = decision_report(dataset)
    [entry] = report["production"]
    assert (entry["requests"], entry["answered"], entry["failed"]) == (5, 4, 1)
    assert entry["fallback_share"] == 0.25 and entry["threshold"] == -1.0
    primary, fallback = entry["models"]
    assert primary["role"] == "primary" and primary["model_version_id"] == tuned.pk
    assert primary["measured"]["requests"] == 4  # the primary answers first on every request
    assert primary["measured"]["latency_ms"]["p50"] == pytest.approx(np.percentile([800, 1000, 1200, 900], 50))
    assert primary["measured"]["latency_ms"]["p95"] == pytest.approx(np.percentile([800, 1000, 1200, 900], 95))
    assert primary["measured"]["cost_per_1k_requests"] == pytest.approx(1000 * (0.0002 + 0.0003 + 0.0004 + 0.00025)
                                                                        / 4)
    assert fallback["measured"]["requests"] == 1 and fallback["measured"]["latency_ms"]["p50"] == 400.0
    assert fallback["measured"]["cost_per_1k_requests"] == pytest.approx(1.0)
    # the evaluation's figures for the same versions, from the report's own sides
    sides = {side["model_version_id"]: side for side in [report["fine_tuned"], *report["baselines"]]}
    for model in (primary, fallback):
        side = sides[model["model_version_id"]]
        assert model["estimated"]["latency_ms"] == {"p50": side["latency_ms"]["p50"], "p95": side["latency_ms"]["p95"]}
        assert model["estimated"]["cost_per_1k_requests"] == side["cost_per_1k_requests"]
    overall = entry["overall"]
    assert overall["cost_per_1k_requests"] == pytest.approx(1000 * (0.0002 + 0.0003 + 0.0004 + 0.00125) / 4)
    lines = "\n".join(format_decision_report(report))
    assert "deployment venues: 5 request(s), 4 answered, 1 failed, 25 % answered by the fallback" in lines
    assert f"fallback {prompted}: answered 1; latency p50 400 ms" in lines
    assert f"primary {tuned}: decoded 4, its answer sent for 3; latency p50 950 ms" in lines
    # a deployment nobody called yet is left out
    create_deployment(by=EngineerFactory(), name="idle", primary=tuned)
    assert [e["deployment"] for e in decision_report(dataset)["production"]] == ["venues"]


def test_a_request_log_without_a_price_has_no_cost_per_1k():
    dataset, prompted_run, tuned_run = tuned_vs_prompted_runs(examples=30, validation=True)
    deployment = create_deployment(by=EngineerFactory(), name="venues", primary=tuned_run.model_version)
    RequestLog.objects.create(request_id="r", created_at=timezone.now(), deployment=deployment,
                              deployment_name="venues", status="answered", http_status=200,
                              answered_by=tuned_run.model_version, primary_latency_ms=10.0, latency_ms=10.0)
    [entry] = decision_report(dataset)["production"]
    assert entry["models"][0]["measured"]["cost_per_1k_requests"] is None
    assert "cost per 1,000 requests unknown" in "\n".join(format_decision_report(decision_report(dataset)))


def test_the_admin_decision_page_shows_the_production_view(client):
    from tests.support.clients import signed_in_client

    dataset, prompted_run, tuned_run = tuned_vs_prompted_runs(examples=30, validation=True)
    engineer = EngineerFactory()
    deployment = create_deployment(by=engineer, name="venues-live", primary=tuned_run.model_version)
    RequestLog.objects.create(request_id="r", created_at=timezone.now(), deployment=deployment,
                              deployment_name="venues-live", status="answered", http_status=200,
                              answered_by=tuned_run.model_version, primary_latency_ms=10.0, latency_ms=10.0)
    page = signed_in_client(client, engineer).get(f"/admin/evaluation/evalrun/decision/?dataset={dataset.pk}")
    text = page.content.decode()
    assert page.status_code == 200 and "In production (the request log):" in text
    assert "deployment venues-live: 1 request(s), 1 answered, 0 failed" in text
