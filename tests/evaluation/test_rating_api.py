"""Ratings and blind pairwise judgments over REST: the same services as the admin pages, blind."""
import pytest

from evaluation.decision import leaderboard
from evaluation.models import HumanRating, PairAssignment, PairwiseJudgment
from tests.support.clients import client_for
from tests.support.factories import RaterFactory, two_eval_runs

pytestmark = pytest.mark.django_db


def test_a_rater_scores_the_next_prediction_blind_and_moves_on(two_runs):
    dataset, _ = two_runs
    rater = RaterFactory()
    client = client_for(rater)
    first = client.get(f"/api/v1/ratings/next/?dataset={dataset.pk}")
    assert first.status_code == 200
    body = first.json()
    assert set(body["prediction"]) == {"id", "input_messages", "output"}  # no model, no scores, no run
    assert [c["name"] for c in body["criteria"]] == ["correctness", "fluency"]
    assert "secret-" not in first.content.decode()
    prediction = body["prediction"]["id"]

    saved = client.post("/api/v1/ratings/", {"prediction": prediction, "scores": {"correctness": 4, "fluency": 2},
                                              "comment": "terse"}, format="json")
    assert saved.status_code == 201, saved.content
    assert sorted(HumanRating.objects.filter(rater=rater).values_list("criterion__name", "score", "comment")) == [
        ("correctness", 4, "terse"), ("fluency", 2, "terse")]
    assert client.get(f"/api/v1/ratings/next/?dataset={dataset.pk}").json()["prediction"]["id"] != prediction

    changed = client.post("/api/v1/ratings/", {"prediction": prediction, "scores": {"correctness": 5, "fluency": 2}},
                          format="json")
    assert changed.status_code == 201
    assert HumanRating.objects.get(rater=rater, criterion__name="correctness").score == 5


@pytest.mark.parametrize("scores, message", [
    ({"correctness": 6, "fluency": 2}, "correctness: the score must be an integer from 1 to 5, got 6"),
    ({"correctness": "3", "fluency": 2}, "correctness: the score must be an integer from 1 to 5, got '3'"),
    ({"correctness": True, "fluency": 2}, "correctness: the score must be an integer from 1 to 5, got True"),
    ({"correctness": 3}, "missing scores for: fluency"),
    ({"correctness": 3, "fluency": 3, "speed": 1}, "unknown criteria: speed"),
])
def test_bad_scores_are_refused_naming_the_criterion_and_nothing_is_stored(two_runs, scores, message):
    dataset, (run, _) = two_runs
    response = client_for(RaterFactory()).post("/api/v1/ratings/", {"prediction": run.predictions.first().pk,
                                                                     "scores": scores}, format="json")
    assert response.status_code == 400 and response.json()["detail"] == message
    assert not HumanRating.objects.exists()


def test_an_unknown_prediction_or_dataset_is_named(two_runs):
    client = client_for(RaterFactory())
    response = client.post("/api/v1/ratings/", {"prediction": 999999, "scores": {}}, format="json")
    assert response.status_code == 400 and "prediction" in response.json()
    assert client.get("/api/v1/ratings/next/").status_code == 400
    assert client.get("/api/v1/ratings/next/?dataset=999999").status_code == 404


def test_a_rater_never_learns_the_name_of_a_dataset_without_criteria(two_runs, client):
    """Such a dataset used to answer 400 "dataset 'NAME' has no rating criteria" (API) and the admin
    page's title named it: a rater, who may not view datasets, could list every name by id."""
    from tests.support.factories import DatasetFactory

    hidden = DatasetFactory(name="secret-acquisition-target")
    rater = RaterFactory(is_staff=True)
    response = client_for(rater).get(f"/api/v1/ratings/next/?dataset={hidden.pk}")
    assert response.status_code == 404 and hidden.name not in response.content.decode()
    client.force_login(rater)
    page = client.get(f"/admin/evaluation/evalrun/rate/?dataset={hidden.pk}")
    assert page.status_code == 200 and hidden.name not in page.content.decode()
    assert two_runs[0].name in page.content.decode()  # the chooser: datasets with criteria


def test_a_rater_never_reads_eval_runs_of_a_dataset_without_criteria_through_blind_pairs(two_runs, client):
    """The pairwise API and page took any two eval runs by id: a rater (or a reviewer of other datasets)
    read the inputs and outputs of datasets never opened to raters, which the rating API answers 404 for."""
    dataset, (prompted, tuned) = two_runs
    dataset.rating_criteria.all().delete()
    rater = RaterFactory(is_staff=True)
    response = client_for(rater).get(f"/api/v1/judgments/next/?a={prompted.pk}&b={tuned.pk}")
    assert (response.status_code, response.json()) == (404, {"detail": "No EvalRun matches the given query."})
    client.force_login(rater)
    page = client.get(f"/admin/evaluation/evalrun/pairwise/?a={prompted.pk}&b={tuned.pk}").content.decode()
    assert "no such eval run" in page.lower() and "Venue" not in page
    assert not PairAssignment.objects.exists()


def test_a_rater_judges_blind_pairs_and_the_leaderboard_counts_them(two_runs):
    dataset, (prompted, tuned) = two_runs
    rater = RaterFactory()
    client = client_for(rater)
    url = f"/api/v1/judgments/next/?a={prompted.pk}&b={tuned.pk}"
    for _ in range(prompted.predictions.count()):
        pair = client.get(url).json()
        assert set(pair) == {"input_messages", "left", "right", "token"} and "secret-" not in str(pair)
        tuned_side = "left" if pair["left"].startswith("tuned says") else "right"
        assert client.post("/api/v1/judgments/", {"token": pair["token"], "choice": tuned_side},
                           format="json").status_code == 201
        again = client.post("/api/v1/judgments/", {"token": pair["token"], "choice": "tie"}, format="json")
        assert again.status_code == 409
    assert client.get(url).json() == {"token": None}
    assert set(PairwiseJudgment.objects.values_list("outcome", flat=True)) == {"b"}  # b: the tuned run's version
    assert leaderboard(dataset, resamples=20)["ratings"][0]["item"] == tuned.model_version_id


def test_forged_tokens_bad_choices_and_uncomparable_runs_are_refused(two_runs):
    _, (prompted, tuned) = two_runs
    client = client_for(RaterFactory())
    pair = client.get(f"/api/v1/judgments/next/?a={prompted.pk}&b={tuned.pk}").json()
    forged = client.post("/api/v1/judgments/", {"token": pair["token"][:-2] + "xx", "choice": "left"}, format="json")
    assert forged.status_code == 400 and "not handed out" in forged.json()["detail"]
    bad = client.post("/api/v1/judgments/", {"token": pair["token"], "choice": "both"}, format="json")
    assert bad.status_code == 400 and "choice" in bad.json()
    same = client.get(f"/api/v1/judgments/next/?a={prompted.pk}&b={prompted.pk}")
    assert same.status_code == 400
    assert not PairwiseJudgment.objects.exists()


def test_a_rater_judges_a_pair_once_whichever_run_is_named_first():
    """judgments/next/?a=B&b=A handed out every pair the rater had judged as ?a=A&b=B, and the second
    judgment was stored: one rater's view of one pair counted twice in the Bradley-Terry leaderboard."""
    _, (run_a, run_b) = two_eval_runs()
    client = client_for(RaterFactory())
    token = client.get(f"/api/v1/judgments/next/?a={run_a.pk}&b={run_b.pk}").json()["token"]
    assert client.post("/api/v1/judgments/", {"token": token, "choice": "left"}, format="json").status_code == 201
    first = PairwiseJudgment.objects.get().prediction_a
    for _ in range(run_a.predictions.count()):
        shown = client.get(f"/api/v1/judgments/next/?a={run_b.pk}&b={run_a.pk}").json()
        if shown["token"] is None:
            break
        assert shown["input_messages"] != first.input_messages
        assert client.post("/api/v1/judgments/", {"token": shown["token"], "choice": "tie"},
                           format="json").status_code == 201
    assert PairwiseJudgment.objects.filter(prediction_a__input_hash=first.input_hash).count() == 1
