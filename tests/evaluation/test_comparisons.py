"""Comparing two eval runs over the API: paired bootstrap per metric, McNemar for exact match."""
import pytest

from evaluation.models import EvalRun, Prediction
from tests.support.clients import client_for
from tests.support.factories import EngineerFactory

pytestmark = pytest.mark.django_db


def test_the_better_run_wins_with_a_significant_difference(two_runs):
    _, (worse, better) = two_runs
    for prediction in Prediction.objects.filter(eval_run=better):
        prediction.output = prediction.references[0]  # perfect answers
        prediction.save()
    client = client_for(EngineerFactory())
    response = client.get(f"/api/v1/comparisons/?a={worse.pk}&b={better.pk}")
    assert response.status_code == 200, response.content
    body = response.json()
    n = worse.predictions.count()
    assert body["n"] == n and body["seed"] == 0 and body["resamples"] == 1000 and body["split"] == "train"
    bleu = body["metrics"]["bleu"]
    assert bleu["b"] == pytest.approx(100.0) and bleu["difference"] > 50 and bleu["ci_low"] > 0
    assert bleu["p_value"] < 0.01 and "nrefs" in bleu["signature"]
    mcnemar = body["metrics"]["exact_match_mcnemar"]
    assert (mcnemar["b01"], mcnemar["b10"], mcnemar["n"]) == (n, 0, n)
    assert mcnemar["p_value"] == pytest.approx(2 * 0.5 ** n)  # exact two-sided binomial test, all discordant

    same = client.get(f"/api/v1/comparisons/?a={better.pk}&b={better.pk}")
    assert same.status_code == 400 and "two different eval runs" in same.json()["detail"]


def test_runs_on_different_splits_are_refused_with_a_clear_error(two_runs):
    _, (a, b) = two_runs
    EvalRun.objects.filter(pk=b.pk).update(split="test")
    client = client_for(EngineerFactory())
    response = client.get(f"/api/v1/comparisons/?a={a.pk}&b={b.pk}")
    assert response.status_code == 400
    assert "are on different snapshots or splits" in response.json()["detail"]
    assert client.get("/api/v1/comparisons/?a=1").status_code == 400
    assert client.get("/api/v1/comparisons/?a=999999&b=999998").status_code == 404
