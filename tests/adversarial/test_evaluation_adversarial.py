"""Evaluation (eval runs, comparisons, decision and model reports, rating pages) against bad input,
odd stored data and concurrent use. Each test here failed when written, except the two-worker
check at the end (asked for, and kept as a guard)."""
import math
import time

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from evaluation.decision import decision_report
from evaluation.models import EvalRun, HumanRating, PairwiseJudgment, Prediction
from evaluation.ratings import next_pair_to_judge, record_judgment, record_ratings
from evaluation.services import start_eval_run
from ftplatform.errors import ServiceError
from tests.evaluation import conftest as evaluation_fixtures
from tests.support.factories import EngineerFactory, RaterFactory, snapshot_of
from training.choices import RunStatus
from training.models import BaseModel, ModelVersion

# The evaluation fixtures (tests/evaluation/conftest.py), shared without a conftest of our own.
two_runs, tuned_vs_prompted, fake_openai = (evaluation_fixtures.two_runs, evaluation_fixtures.tuned_vs_prompted,
                                            evaluation_fixtures.fake_openai)


def api(user=None) -> APIClient:
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(user or EngineerFactory())
    return client


def signed_in(client, user):
    client.force_login(user)
    client.raise_request_exception = False
    return client


def remote_version(**fields):
    return api().post("/api/v1/model-versions/", {"kind": "openai_compatible", "system_prompt": "",
                                                  "base_url": "http://vllm:8000/v1", "remote_model": "m", **fields},
                      format="json")


# --- rating pages ---------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_rating_pages_answer_ids_and_scores_in_non_ascii_digits_without_a_500(client, two_runs):
    """str.isdigit() accepts "²" and "١"; int("²") raises: every id and score of the rating pages was a 500."""
    dataset, (run_a, run_b) = two_runs
    signed_in(client, RaterFactory())
    rate, pairwise = reverse("admin:evaluation_evalrun_rate"), reverse("admin:evaluation_evalrun_pairwise")
    assert client.get(f"{rate}?dataset=²").status_code == 200
    assert client.get(f"{pairwise}?a=²&b={run_b.pk}").status_code == 200
    prediction = run_a.predictions.first()
    for form in ({"prediction": "²"}, {"prediction": prediction.pk, "score_correctness": "²", "score_fluency": "3"}):
        response = client.post(f"{rate}?dataset={dataset.pk}", form)
        assert response.status_code == 200, form
    assert "orrectness: the score must be an integer from 1 to 5, got &#x27;²&#x27;" in response.content.decode()
    assert not HumanRating.objects.exists()


@pytest.mark.django_db
def test_a_rating_comment_with_a_nul_is_refused_naming_the_comment(two_runs):
    """PostgreSQL text columns refuse NUL: the rate page's POST was a 500 there (stored on SQLite)."""
    _, (run, _) = two_runs
    with pytest.raises(ServiceError, match="comment: contains a NUL character"):
        record_ratings(run.predictions.first(), {"correctness": 3, "fluency": 3}, by=RaterFactory(), comment="a\x00b")
    assert not HumanRating.objects.exists()


@pytest.mark.django_db
def test_a_pair_token_records_a_judgment_only_for_the_rater_it_was_shown_to(two_runs):
    """The token was not bound to a rater: another rater posting it recorded a judgment of a pair (and
    a left/right order) never shown to them."""
    _, (run_a, run_b) = two_runs
    shown_to, other = RaterFactory(), RaterFactory()
    _, _, token = next_pair_to_judge(run_a, run_b, by=shown_to)
    with pytest.raises(ServiceError, match="handed out to another rater"):
        record_judgment(token, "left", by=other)
    assert not PairwiseJudgment.objects.exists()
    record_judgment(token, "left", by=shown_to)
    assert PairwiseJudgment.objects.get().rater == shown_to


@pytest.mark.django_db
def test_judging_a_pair_whose_predictions_are_gone_is_an_error_not_a_broken_foreign_key(two_runs):
    """An eval run deleted while a rater looked at its pair: the judgment was inserted with dangling
    prediction ids and the commit failed (IntegrityError, 500)."""
    _, (run_a, run_b) = two_runs
    rater = RaterFactory()
    left, right, token = next_pair_to_judge(run_a, run_b, by=rater)
    Prediction.objects.filter(pk__in=[left.pk, right.pk]).delete()
    with pytest.raises(ServiceError, match="no longer exist"):
        record_judgment(token, "tie", by=rater)
    assert not PairwiseJudgment.objects.exists()


# --- reports ---------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_reports_survive_the_first_rater(client, tuned_vs_prompted):
    """krippendorff_alpha raises for fewer than two raters: as soon as one person had rated, the
    decision report, the model report (API and admin) and `manage.py report` were 500s."""
    dataset, prompted, tuned = tuned_vs_prompted
    record_ratings(tuned.predictions.first(), {"correctness": 4, "fluency": 5}, by=RaterFactory())
    engineer = EngineerFactory()
    response = api(engineer).get(f"/api/v1/decision-reports/?dataset={dataset.pk}")
    assert response.status_code == 200
    alpha = response.json()["fine_tuned"]["human_ratings"]["correctness"]["krippendorff_alpha"]
    assert alpha["alpha"] is None and "one rater" in alpha["reason"]
    assert api(engineer).get(f"/api/v1/model-versions/{tuned.model_version_id}/report/").status_code == 200
    signed_in(client, engineer)
    assert client.get(reverse("admin:evaluation_evalrun_decision") + f"?dataset={dataset.pk}").status_code == 200
    assert client.get(reverse("admin:evaluation_evalrun_model_report",
                              args=[tuned.model_version_id])).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("confidence", [float("-inf"), float("nan")])
def test_a_non_finite_confidence_is_unknown_not_a_500(tuned_vs_prompted, confidence):
    """A mean log-probability of -inf or NaN (PostgreSQL stores both; SQLite turns NaN into NULL) became
    a routing threshold; JSON has no such number, so the decision report API was a 500."""
    dataset, _, tuned = tuned_vs_prompted
    Prediction.objects.filter(pk=tuned.predictions.first().pk).update(mean_logprob=confidence)
    response = api().get(f"/api/v1/decision-reports/?dataset={dataset.pk}")
    assert response.status_code == 200
    points = response.json()["baselines"][0]["routing"]["points"]
    assert all(p["threshold"] is None or math.isfinite(p["threshold"]) for p in points)


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
    assert api().get(f"/api/v1/model-versions/{tuned.model_version_id}/report/").status_code == 200


@pytest.mark.django_db
def test_the_decision_report_command_prints_runs_from_before_latency_was_recorded(tuned_vs_prompted):
    """format_decision_report formatted None with :.0f: `manage.py report --decision` ended in a traceback."""
    from evaluation.decision import format_decision_report

    dataset, prompted, tuned = tuned_vs_prompted
    for run in (prompted, tuned):
        run.metrics = {"bleu": 10.0}
        run.save()
    lines = format_decision_report(decision_report(dataset, resamples=10))
    assert any("latency p50 ? ms" in line for line in lines) and "Verdict" in lines[-1]


@pytest.mark.django_db
def test_the_decision_page_shows_a_baseline_sharing_no_input_as_an_error(client, tuned_vs_prompted):
    """compare_eval_runs' ServiceError ("share no input") escaped the admin view: a 500 (the API said 400)."""
    dataset, prompted, _ = tuned_vs_prompted
    prompted.predictions.all().delete()
    response = signed_in(client, EngineerFactory()).get(
        reverse("admin:evaluation_evalrun_decision") + f"?dataset={dataset.pk}")
    assert response.status_code == 200 and "share no input" in response.content.decode()


# --- model versions behind an endpoint -------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("base_url", ["http://a b/v1", "http://[::1/v1", "http://h:99999/v1", "http://h:port/v1",
                                      "http://?x", "http://user:sk-secret@h/v1", "http://h/v1?api-key=sk-secret"])
def test_bad_base_urls_are_400s_naming_the_field_and_write_nothing(base_url):
    """All these were stored (201): spaces, a broken IPv6 host, ports that are not ports, no host, and
    a key inside the URL, which the API then served back to every engineer."""
    response = remote_version(base_url=base_url)
    assert response.status_code == 400 and "base_url" in response.json()["detail"]
    assert not ModelVersion.objects.exists() and not BaseModel.objects.exists()


@pytest.mark.django_db
def test_a_long_remote_model_name_makes_a_version_not_a_500_and_keeps_endpoints_apart():
    """The default name "<remote_model> (API)" passed the 200-character column (PostgreSQL: DataError,
    500, with its BaseModel already written); the base model's name was cut at 200 characters, so two
    endpoints serving one long model name shared a base model whose source was the first URL."""
    long_name = "m" * 200
    first = remote_version(remote_model=long_name, base_url="http://one:8000/v1")
    second = remote_version(remote_model=long_name, base_url="http://two:8000/v1")
    assert (first.status_code, second.status_code) == (201, 201), first.content
    assert len(first.json()["name"]) <= 200
    assert BaseModel.objects.get(pk=second.json()["base_model"]).source == "http://two:8000/v1"


@pytest.mark.django_db
def test_a_boolean_price_is_refused():
    """DRF's FloatField reads true as 1.0: a version was priced at 1 per GPU-hour by a JSON boolean."""
    response = remote_version(price_per_gpu_hour=True)
    assert response.status_code == 400 and "price_per_gpu_hour" in response.json()
    assert not ModelVersion.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("reply", ["Pub\ud800", "Pub\x00"])
def test_an_output_no_text_column_holds_is_stored_replaced_not_left_running(e2e_records, fake_openai, run_jobs,
                                                                            reply):
    """A reply with an unpaired surrogate (any database) or a NUL (PostgreSQL) failed the predictions'
    insert, after the job's try block: the eval run stayed "running" forever with no error."""
    fake_openai.reply = lambda messages: reply
    engineer = EngineerFactory()
    version = ModelVersion.objects.get(pk=remote_version(base_url=fake_openai.base_url,
                                                         remote_model="fake-model").json()["id"])
    run = start_eval_run(version, snapshot_of(e2e_records[:60]), by=engineer)
    try:
        run_jobs()
    finally:
        run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert set(run.predictions.values_list("output", flat=True)) == {"Pub\ufffd"}


# --- concurrency ---------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_eval_runs_of_one_version_in_two_workers_at_once_keep_their_results_apart(
        e2e_records, fake_openai, settings, artifacts_root):
    """PostgreSQL + Redis: two `manage.py worker` processes evaluate one remote version on two splits
    at the same time; each run holds exactly its own split's inputs, each answered to its own input."""
    from tests.support.workers import start_worker, stop_worker

    fake_openai.delay_s = 0.05  # both runs are generating at once
    fake_openai.reply = lambda messages: "echo: " + messages[-1]["content"]
    engineer = EngineerFactory()
    version = ModelVersion.objects.get(pk=remote_version(base_url=fake_openai.base_url,
                                                         remote_model="fake-model").json()["id"])
    snapshot = snapshot_of(e2e_records[:60])
    workers = [start_worker(settings, artifacts_root, ["evaluation"], name=f"eval-adversarial-{i}") for i in (1, 2)]
    try:
        runs = [start_eval_run(version, snapshot, by=engineer, split=split) for split in ("test", "validation")]
        deadline = time.monotonic() + 120
        while (EvalRun.objects.filter(pk__in=[r.pk for r in runs], status__in=["queued", "running"]).exists()
               and time.monotonic() < deadline):
            time.sleep(0.5)
    finally:
        logs = [stop_worker(worker) for worker in workers]
    for run in runs:
        run.refresh_from_db()
        assert run.status == RunStatus.SUCCEEDED, (run.error, logs)
        expected = {item.input_hash: "echo: " + item.messages[-2]["content"]
                    for item in snapshot.items.filter(split=run.split)}
        assert dict(run.predictions.values_list("input_hash", "output")) == expected
        assert run.done == run.total == len(expected) == run.metrics["n_inputs"]
