"""The decision report and the human-rating summaries on hand-made eval runs."""
import pytest

from evaluation.decision import decision_report, format_decision_report, leaderboard, rating_summary
from evaluation.models import HumanRating, PairwiseJudgment, RatingCriterion
from tests.factories import EngineerFactory, RaterFactory
from tests.test_api import client_for

pytestmark = pytest.mark.django_db


def test_the_decision_report_says_fine_tune_with_its_reason(tuned_vs_prompted):
    dataset, prompted, tuned = tuned_vs_prompted
    report = decision_report(dataset, resamples=200)
    assert report["verdict"] == "fine-tune" and "the fine-tuned model is better: BLEU difference +" in report["reason"]
    (baseline,) = report["baselines"]
    assert baseline["eval_run_id"] == prompted.pk and report["fine_tuned"]["eval_run_id"] == tuned.pk
    # 1,000 x 0.9 s at 1.00 per GPU-hour = 0.25; 1,000 x (60 x 2.5 + 20 x 10) / 1e6 = 0.35
    assert report["fine_tuned"]["cost_per_1k_requests"] == pytest.approx(0.25)
    assert baseline["cost_per_1k_requests"] == pytest.approx(0.35)
    assert baseline["break_even"]["monthly_requests"] == 0.0  # no training run: no training cost
    routing = baseline["routing"]
    assert routing["target_quality"] == pytest.approx(20.0)
    # Falling back below -0.1 sends the unsure ones (every fourth) to the baseline, scored 20.
    n = tuned.predictions.count()
    unsure = len(range(0, n, 4))
    labels = {p["label"]: p for p in routing["points"]}
    assert labels["confidence < -0.1"]["quality"] == pytest.approx(((n - unsure) * 100 + unsure * 20) / n)
    assert labels["confidence < -0.1"]["fallback_share"] == pytest.approx(unsure / n)
    assert routing["suggested"]["label"] == "never fall back"  # already above the target, cheapest
    text = "\n".join(format_decision_report(report))
    assert "Verdict: FINE-TUNE" in text and "cost per 1,000 requests 0.25" in text

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


def test_the_report_command_prints_the_decision_report(tuned_vs_prompted, capsys):
    from django.core.management import call_command

    dataset, _, _ = tuned_vs_prompted
    call_command("report", "--decision", dataset.name)
    assert "Verdict: FINE-TUNE" in capsys.readouterr().out
