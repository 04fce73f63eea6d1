"""The decision and model reports (API, admin, `manage.py report`) and the human-rating summaries on
hand-made eval runs, including odd ones: one rater, non-finite confidences, no latency recorded."""
import math
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from evaluation.decision import decision_report, format_decision_report, leaderboard, rating_summary
from evaluation.models import EvalRun, HumanRating, PairwiseJudgment, Prediction, RatingCriterion
from evaluation.ratings import record_ratings
from ftplatform.jobrows import JobStatus
from tests.support.clients import api_client, client_for, signed_in_client
from tests.support.factories import EngineerFactory, RaterFactory, answer_split, snapshot_of, tiny_base_model
from tests.support.openapi import assert_documented
from training.model_versions import prompted_model_version
from training.models import ModelVersion, TrainingRun

pytestmark = pytest.mark.django_db


def test_the_decision_report_says_fine_tune_with_its_reason(decision_runs):
    dataset, prompted, tuned = decision_runs
    report = decision_report(dataset, resamples=200)
    assert report["verdict"] == "fine-tune" and "the fine-tuned model is better: BLEU difference +" in report["reason"]
    assert report["split"] == "train"  # not the validation split, evaluated after it
    (baseline,) = report["baselines"]
    assert baseline["eval_run_id"] == prompted.pk and report["fine_tuned"]["eval_run_id"] == tuned.pk
    # 1,000 x 0.9 s at 1.00 per GPU-hour = 0.25; 1,000 x (60 x 2.5 + 20 x 10) / 1e6 = 0.35
    assert report["fine_tuned"]["cost_per_1k_requests"] == pytest.approx(0.25)
    assert baseline["cost_per_1k_requests"] == pytest.approx(0.35)
    assert baseline["break_even"]["monthly_requests"] == 0.0  # no training run: no training cost
    routing = baseline["routing"]
    assert routing["chosen_on"]["split"] == "validation" and routing["target_quality"] == pytest.approx(20.0)
    # The validation curve: falling back below -0.1 sends the unsure ones (every fourth) to the baseline, scored 20.
    n = routing["chosen_on"]["inputs"]
    unsure = len(range(0, n, 4))
    labels = {p["label"]: p for p in routing["points"]}
    assert labels["confidence < -0.1"]["quality"] == pytest.approx(((n - unsure) * 100 + unsure * 20) / n)
    assert labels["confidence < -0.1"]["fallback_share"] == pytest.approx(unsure / n)
    assert routing["suggested"]["label"] == "never fall back"  # already above the target, cheapest
    # ... and that threshold on the 24 train inputs, 18 of them right.
    held_out = routing["held_out"]
    assert (held_out["split"], held_out["inputs"], held_out["fallback_share"]) == ("train", 24, 0.0)
    assert held_out["quality"] == held_out["fine_tuned_quality"] == pytest.approx(18 * 100 / 24)
    text = "\n".join(format_decision_report(report))
    assert "Verdict: FINE-TUNE" in text and "cost per 1,000 requests 0.25" in text
    assert "chosen on the validation split (3 inputs" in text
    assert "on the train split (24 inputs) 0 % of requests" in text

    response = client_for(EngineerFactory()).get(f"/api/v1/decision-reports/?dataset={dataset.pk}&metric=bleu")
    assert response.status_code == 200 and response.json()["verdict"] == "fine-tune"


def test_without_a_baseline_there_is_not_enough_evidence(tuned_vs_prompted):
    dataset, prompted, _ = tuned_vs_prompted
    prompted.predictions.all().delete()
    prompted.delete()
    report = decision_report(dataset)
    assert report["verdict"] == "not enough evidence" and "no prompted baseline" in report["reason"]


def test_rating_summary_reports_agreement_or_why_it_is_undefined(tuned_vs_prompted):
    dataset, _, tuned = tuned_vs_prompted
    criterion = RatingCriterion.objects.get(dataset=dataset, name="correctness")
    first, second = RaterFactory(), RaterFactory()
    predictions = list(tuned.predictions.order_by("id")[:4])
    for prediction, (s1, s2) in zip(predictions, [(5, 5), (4, 4), (2, 1), (5, 4)], strict=True):
        HumanRating.objects.create(prediction=prediction, criterion=criterion, rater=first, score=s1)
        HumanRating.objects.create(prediction=prediction, criterion=criterion, rater=second, score=s2)
    summary = rating_summary(tuned)["correctness"]
    assert summary["raters"] == 2 and summary["ratings"] == 8 and summary["mean"] == pytest.approx(30 / 8)
    assert summary["cohen_kappa"]["kappa"] is not None and summary["krippendorff_alpha"]["alpha"] is not None

    HumanRating.objects.filter(rater=second).update(score=5)
    HumanRating.objects.filter(rater=first).update(score=5)
    constant = rating_summary(tuned)["correctness"]
    assert constant["cohen_kappa"]["kappa"] is None and constant["cohen_kappa"]["reason"]


def test_the_leaderboard_ranks_the_version_that_wins_pairs(tuned_vs_prompted):
    dataset, prompted, tuned = tuned_vs_prompted
    rater = RaterFactory()
    for a, b in zip(prompted.predictions.order_by("id"), tuned.predictions.order_by("id"), strict=True):
        PairwiseJudgment.objects.create(prediction_a=a, prediction_b=b, rater=rater, left="a", outcome="b")
    board = leaderboard(dataset, resamples=50)
    assert board["judgments"] == prompted.predictions.count()
    assert board["ratings"][0]["item"] == tuned.model_version_id and board["ratings"][0]["rank"] == 1


def test_the_report_command_prints_the_decision_report(decision_runs, capsys):
    from django.core.management import call_command

    dataset, _, _ = decision_runs
    call_command("report", "--decision", dataset.name)
    assert "Verdict: FINE-TUNE" in capsys.readouterr().out


def test_the_report_command_refuses_a_metric_it_would_not_use(tuned_vs_prompted):
    """``report <model version> --metric chrf`` printed the model report and ignored the metric."""
    from django.core.management import CommandError, call_command

    _, _, tuned = tuned_vs_prompted
    with pytest.raises(CommandError, match="^--metric goes with --decision DATASET$"):
        call_command("report", tuned.model_version_id, "--metric", "chrf")


def _exact_match_runs(examples: int, tuned_right: int):
    """The fine-tuned model right (exactly) on its first ``tuned_right`` inputs of the train split, the
    prompted model on none: ``(dataset, n_inputs)``."""
    from tests.support.factories import tuned_vs_prompted_runs

    dataset, _, tuned = tuned_vs_prompted_runs(examples=examples)
    for index, prediction in enumerate(Prediction.objects.filter(eval_run=tuned).order_by("id")):
        prediction.output = prediction.references[0] if index < tuned_right else "no idea"
        prediction.save()
    return dataset, tuned.predictions.count()


def test_six_test_inputs_give_no_verdict_and_say_how_many_would():
    """The issue's case: right on 4 of 6 inputs more than the baseline, "+66.67" exact match, a paired
    bootstrap interval above 0 but McNemar's exact test p = 2 * 0.5^4 = 0.125; it said FINE-TUNE."""
    dataset, n = _exact_match_runs(12, tuned_right=4)
    keep = list(Prediction.objects.filter(eval_run__snapshot__dataset=dataset,
                                          eval_run__model_version__kind="lora_adapter")
                .order_by("id").values_list("input_hash", flat=True)[:6])
    Prediction.objects.filter(eval_run__snapshot__dataset=dataset).exclude(input_hash__in=keep).delete()
    report = decision_report(dataset, metric="exact_match")
    (baseline,) = report["baselines"]
    assert report["verdict"] == baseline["verdict"] == "not enough evidence"
    reason = baseline["reason"]
    assert reason.startswith("6 test inputs are fewer than the 20 a verdict needs and the tests disagree")
    assert "exact match difference +66.67" in reason
    assert "McNemar's exact test p = 0.125: no significant difference" in reason
    assert "paired bootstrap p " in reason and ": the fine-tuned model is better" in reason
    assert "test on about 20 inputs" in reason and "a verdict needs at least 20" in reason
    evidence = baseline["evidence"]
    assert (evidence["n"], evidence["tests_agree"], evidence["inputs_needed"]) == (6, False, 20)
    # Connor (1987) with psi = delta = 4/6: (1.96 sqrt(2/3) + 0.8416 sqrt(2/3 - 4/9))^2 / (4/9) = 8.96
    assert evidence["power_inputs"] >= 9


def test_tests_that_disagree_give_no_verdict_even_on_enough_inputs():
    """24 inputs, the fine-tuned model right on 5 more: the bootstrap interval of +20.83 lies above 0
    (a resample without any of the 5 has probability (19/24)^24 = 0.4 %), McNemar's p = 2 * 0.5^5 =
    0.0625 does not; Connor (1987) with psi = delta = 5/24 needs (1.96 * 0.4564 + 0.8416 * 0.4061)^2
    / 0.0434 = 35.2 inputs, so 36."""
    dataset, n = _exact_match_runs(30, tuned_right=5)
    assert n == 24
    report = decision_report(dataset, metric="exact_match")
    (baseline,) = report["baselines"]
    assert baseline["verdict"] == "not enough evidence"
    assert baseline["reason"].startswith("the tests disagree (paired bootstrap p ")
    assert "McNemar's exact test p = 0.0625: no significant difference" in baseline["reason"]
    assert "test on about 36 inputs (36 for 80 % power to detect a difference of 20.83" in baseline["reason"]


def test_the_verdict_waits_for_the_minimum_number_of_inputs(tuned_vs_prompted):
    """10 inputs where both tests agree the fine-tuned model is better still make no verdict."""
    dataset, _, tuned = tuned_vs_prompted
    report = decision_report(dataset, resamples=200)
    n = tuned.predictions.count()
    assert n < 20 and report["verdict"] == "not enough evidence"
    assert report["baselines"][0]["reason"].startswith(f"{n} test inputs are fewer than the 20 a verdict needs: ")
    assert decision_report(dataset, resamples=200, min_inputs=n)["verdict"] == "fine-tune"


def test_the_routing_threshold_is_chosen_on_validation_and_scored_on_the_report_split(decision_runs):
    """On validation the fine-tuned model is sure (-0.05) where right and unsure (-0.5) where wrong, so
    "confidence < -0.05" reaches the target 70 there: (20 + 100 + 100) / 3 = 73.3. Fixed and applied
    to the train split, where every confidence (-0.1 or -3) is below -0.05, it sends all 24 inputs to
    the baseline: quality 20. Chosen on the train split itself it would have been "confidence < -0.1"
    with quality (18 * 100 + 6 * 20) / 24 = 80, a figure fitted to the inputs it is reported on."""
    dataset, _, tuned = decision_runs
    for prediction in Prediction.objects.filter(eval_run__model_version=tuned.model_version,
                                                eval_run__split="validation"):
        prediction.mean_logprob = -0.05 if prediction.scores["bleu"] == 100.0 else -0.5
        prediction.save()
    routing = decision_report(dataset, resamples=50, target_quality=70.0)["baselines"][0]["routing"]
    assert routing["suggested"]["label"] == "confidence < -0.05"
    assert routing["suggested"]["quality"] == pytest.approx(220 / 3)
    held_out = routing["held_out"]
    assert held_out["label"] == "confidence < -0.05" and held_out["split"] == "train"
    assert held_out["fallback_share"] == 1.0 and held_out["quality"] == pytest.approx(20.0)


def test_without_validation_runs_the_report_says_how_to_make_them(tuned_vs_prompted):
    dataset, prompted, tuned = tuned_vs_prompted
    routing = decision_report(dataset, resamples=50)["baselines"][0]["routing"]
    assert routing["points"] == [] and routing["held_out"] is None
    assert routing["reason"].startswith("routing thresholds are chosen on the validation split, where "
                                        "secret-tuned-model and secret-prompted-model have no succeeded eval run")
    for run in (tuned, prompted):
        assert (f"manage.py evaluate --model-version {run.model_version_id} --snapshot {run.snapshot_id} "
                "--split validation") in routing["reason"]


def trained_on_its_snapshot(run):
    """Give the fine-tuned version of ``run`` a training run on ``run``'s snapshot (its train split)."""
    training_run = TrainingRun.objects.create(snapshot=run.snapshot, base_model=run.model_version.base_model,
                                              hyperparameters={}, status="succeeded")
    ModelVersion.objects.filter(pk=run.model_version_id).update(training_run=training_run)


def test_the_verdict_is_on_the_test_split_not_on_a_newer_eval_of_the_inputs_the_model_trained_on(decision_runs):
    """The report took the newest eval on any split but validation: evaluating the fine-tuned model on its
    own train split (to look for overfitting) moved the verdict onto the inputs it had learned."""
    dataset, prompted, tuned = decision_runs
    trained_on_its_snapshot(tuned)
    tested = [answer_split(run.model_version, run.snapshot, "test", label)
              for run, label in ((prompted, "prompted"), (tuned, "tuned"))]
    EvalRun.objects.filter(pk__in=[run.pk for run in tested]).update(finished_at=timezone.now() - timedelta(hours=1))
    EvalRun.objects.filter(pk__in=[prompted.pk, tuned.pk]).update(finished_at=timezone.now())
    report = decision_report(dataset, resamples=50)
    assert (report["split"], report["fine_tuned"]["eval_run_id"]) == ("test", tested[1].pk)


def test_a_model_evaluated_only_on_its_training_inputs_gets_no_verdict(tuned_vs_prompted):
    dataset, _, tuned = tuned_vs_prompted
    trained_on_its_snapshot(tuned)
    assert decision_report(dataset, resamples=50) == {
        "dataset": dataset.name, "verdict": "not enough evidence",
        "reason": "the fine-tuned models were evaluated only on the inputs they were trained on (their snapshot's "
                  "train split); evaluate them on its test split"}


def test_report_shows_metrics_beside_the_prompted_base_model(tiny_model_dir, e2e_records):
    snapshot = snapshot_of(e2e_records[:20])
    base = tiny_base_model(tiny_model_dir)
    prompted, _ = prompted_model_version(base, "Describe it.", by=EngineerFactory())
    tuned = ModelVersion.objects.create(name="tuned", kind="lora_adapter", base_model=base)
    for version, bleu in ((prompted, 10.0), (tuned, 35.5)):
        EvalRun.objects.create(model_version=version, snapshot=snapshot, status=JobStatus.SUCCEEDED,
                               metrics={"bleu": bleu, "chrf": 40.0, "n_inputs": 2})

    response = client_for(EngineerFactory()).get(f"/api/v1/model-versions/{tuned.pk}/report/")

    assert response.status_code == 200
    evaluation = response.json()["evaluations"][0]
    assert evaluation["snapshot_hash"] == snapshot.content_hash
    assert evaluation["baseline"]["model_version_id"] == prompted.pk
    assert evaluation["difference"] == {"bleu": 25.5, "chrf": 0.0}
    assert response.json()["lineage"]["base_model"]["name"] == base.name


def test_reports_survive_the_first_rater(client, tuned_vs_prompted):
    """krippendorff_alpha raises for fewer than two raters: as soon as one person had rated, the
    decision report, the model report (API and admin) and `manage.py report` were 500s."""
    dataset, prompted, tuned = tuned_vs_prompted
    record_ratings(tuned.predictions.first(), {"correctness": 4, "fluency": 5}, by=RaterFactory())
    engineer = EngineerFactory()
    response = api_client(engineer).get(f"/api/v1/decision-reports/?dataset={dataset.pk}")
    assert response.status_code == 200
    alpha = response.json()["fine_tuned"]["human_ratings"]["correctness"]["krippendorff_alpha"]
    assert alpha["alpha"] is None and "one rater" in alpha["reason"]
    assert api_client(engineer).get(f"/api/v1/model-versions/{tuned.model_version_id}/report/").status_code == 200
    signed_in_client(client, engineer)
    assert client.get(reverse("admin:evaluation_evalrun_decision") + f"?dataset={dataset.pk}").status_code == 200
    assert client.get(reverse("admin:evaluation_evalrun_model_report",
                              args=[tuned.model_version_id])).status_code == 200


@pytest.mark.parametrize("confidence", [float("-inf"), float("nan")])
def test_a_non_finite_confidence_is_unknown_not_a_500(tuned_vs_prompted, confidence):
    """A mean log-probability of -inf or NaN (PostgreSQL stores both; SQLite turns NaN into NULL) became
    a routing threshold; JSON has no such number, so the decision report API was a 500."""
    dataset, _, tuned = tuned_vs_prompted
    Prediction.objects.filter(pk=tuned.predictions.first().pk).update(mean_logprob=confidence)
    response = api_client().get(f"/api/v1/decision-reports/?dataset={dataset.pk}")
    assert response.status_code == 200
    points = response.json()["baselines"][0]["routing"]["points"]
    assert all(p["threshold"] is None or math.isfinite(p["threshold"]) for p in points)


def test_the_decision_report_command_prints_runs_from_before_latency_was_recorded(tuned_vs_prompted):
    """format_decision_report formatted None with :.0f: `manage.py report --decision` ended in a traceback."""
    dataset, prompted, tuned = tuned_vs_prompted
    for run in (prompted, tuned):
        run.metrics = {"bleu": 10.0}
        run.save()
    lines = format_decision_report(decision_report(dataset, resamples=10))
    assert any("latency p50 ? ms" in line for line in lines) and "Verdict" in lines[-1]


def test_the_decision_report_api_answers_what_its_schema_documents(tuned_vs_prompted):
    """The schema documented an array of reports (drf-spectacular's guess for a ``list`` action), but
    the endpoint answers one report object: a client generated from the schema rejected every answer."""
    dataset, _, _ = tuned_vs_prompted
    client = client_for(EngineerFactory())
    response = client.get(f"/api/v1/decision-reports/?dataset={dataset.name}")
    assert response.status_code == 200 and response.json()["dataset"] == dataset.name
    assert_documented(client, "/api/v1/decision-reports/", "get", response)


def test_the_decision_report_api_takes_a_dataset_name_or_id_as_the_command_does(tuned_vs_prompted):
    dataset, _, _ = tuned_vs_prompted
    numbered = type(dataset).objects.create(name=str(dataset.pk + 1000))  # a name that reads as an id
    client = client_for(EngineerFactory())
    by_name = client.get(f"/api/v1/decision-reports/?dataset={dataset.name}").json()
    by_id = client.get(f"/api/v1/decision-reports/?dataset={dataset.pk}").json()
    assert by_name["dataset"] == by_id["dataset"] == dataset.name and by_name["verdict"] == by_id["verdict"]
    # A name wins over an id, in the API as in `manage.py report --decision`.
    assert client.get(f"/api/v1/decision-reports/?dataset={numbered.name}").json()["dataset"] == numbered.name
    missing = client.get("/api/v1/decision-reports/?dataset=no-such-task")
    assert missing.status_code == 404
    assert missing.json()["detail"] == "no dataset named 'no-such-task' (nor with that id)"
