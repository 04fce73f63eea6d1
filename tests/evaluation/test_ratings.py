"""Human ratings: Likert scores on a dataset's criteria and blind pairwise judgments."""
import random

import pytest
from django.urls import reverse

from evaluation.models import EvalRun, HumanRating, PairwiseJudgment, Prediction, RatingCriterion
from evaluation.ratings import next_pair_to_judge, next_prediction_to_rate, record_judgment, record_ratings
from ftplatform.errors import Conflict, NotAllowed, ServiceError
from tests.support.clients import client_for, signed_in_client
from tests.support.factories import (
    AnnotatorFactory,
    DatasetFactory,
    EngineerFactory,
    RaterFactory,
    ReviewerFactory,
    two_eval_runs,
)

pytestmark = pytest.mark.django_db


def test_likert_scores_are_validated_recorded_and_can_be_changed(two_runs):
    dataset, (run, _) = two_runs
    rater = RaterFactory()
    prediction = next_prediction_to_rate(dataset, by=rater)
    assert prediction is not None
    with pytest.raises(ServiceError, match="missing scores for: fluency"):
        record_ratings(prediction, {"correctness": 4}, by=rater)
    with pytest.raises(ServiceError, match="unknown criteria: style"):
        record_ratings(prediction, {"correctness": 4, "fluency": 5, "style": 1}, by=rater)
    with pytest.raises(ServiceError, match="fluency: the score must be an integer from 1 to 5, got 6"):
        record_ratings(prediction, {"correctness": 4, "fluency": 6}, by=rater)
    with pytest.raises(ServiceError, match="correctness: the score must be an integer from 1 to 5, got True"):
        record_ratings(prediction, {"correctness": True, "fluency": 2}, by=rater)
    assert not prediction.ratings.exists()  # nothing half-written

    record_ratings(prediction, {"correctness": 4, "fluency": 5}, by=rater)
    record_ratings(prediction, {"correctness": 2, "fluency": 5}, by=rater, comment="misread the venue")
    assert sorted(prediction.ratings.values_list("criterion__name", "score")) == [("correctness", 2), ("fluency", 5)]
    assert next_prediction_to_rate(dataset, by=rater) != prediction  # the queue moves on
    assert next_prediction_to_rate(dataset, by=RaterFactory()) == prediction  # another rater starts at the top
    with pytest.raises(NotAllowed):
        record_ratings(prediction, {"correctness": 4, "fluency": 5}, by=AnnotatorFactory())


def test_pairwise_judgments_are_blind_store_the_shown_order_and_map_sides_to_models(two_runs):
    _, (run_a, run_b) = two_runs
    rater = ReviewerFactory()
    left, right, token = next_pair_to_judge(run_a, run_b, by=rater, rng=random.Random(1))
    judgment = record_judgment(token, "left", by=rater)
    # The outcome names the model whose output was on the left, whatever the random order was.
    winner = judgment.prediction_a if judgment.left == "a" else judgment.prediction_b
    assert winner == left and judgment.outcome == judgment.left
    assert {judgment.prediction_a.eval_run_id, judgment.prediction_b.eval_run_id} == {run_a.pk, run_b.pk}
    with pytest.raises(Conflict, match="you already judged this pair"):
        record_judgment(token, "tie", by=rater)
    with pytest.raises(ServiceError, match="was not handed out by the pairwise page"):
        record_judgment(token[:-2] + "xx", "tie", by=rater)

    sides = set()
    for _ in range(20):
        pair = next_pair_to_judge(run_a, run_b, by=rater)
        if pair is None:
            break
        sides.add(record_judgment(pair[2], "right", by=rater).left)
    assert sides == {"a", "b"}  # both orders were shown
    assert next_pair_to_judge(run_a, run_b, by=rater) is None
    assert PairwiseJudgment.objects.filter(rater=rater).count() == run_a.predictions.count()


def test_runs_on_different_splits_or_of_one_model_are_not_compared(two_runs):
    _, (run_a, run_b) = two_runs
    rater = RaterFactory()
    with pytest.raises(ServiceError, match="two different model versions"):
        next_pair_to_judge(run_a, run_a, by=rater)
    EvalRun.objects.filter(pk=run_b.pk).update(split="test")
    run_b.refresh_from_db()
    with pytest.raises(ServiceError, match="on different snapshots or splits"):
        next_pair_to_judge(run_a, run_b, by=rater)


def test_rating_pages_never_show_which_model_wrote_an_output(two_runs, client):
    dataset, (run_a, run_b) = two_runs
    client.force_login(RaterFactory())
    page = client.get(reverse("admin:evaluation_evalrun_rate") + f"?dataset={dataset.pk}").content.decode()
    assert "correctness" in page and "wrong" in page and "says name: Venue" in page
    pair = client.get(reverse("admin:evaluation_evalrun_pairwise") + f"?a={run_a.pk}&b={run_b.pk}").content.decode()
    assert "prompted says" in pair and "tuned says" in pair
    for page_text in (page, pair):
        assert "secret-" not in page_text
    token = pair.split('name="token" value="')[1].split('"')[0]
    response = client.post(reverse("admin:evaluation_evalrun_pairwise") + f"?a={run_a.pk}&b={run_b.pk}",
                           {"token": token, "choice": "tie"})
    assert response.status_code == 302 and PairwiseJudgment.objects.get().outcome == "tie"
    response = client.post(reverse("admin:evaluation_evalrun_rate") + f"?dataset={dataset.pk}",
                           {"prediction": Prediction.objects.first().pk, "score_correctness": "5",
                            "score_fluency": "4"})
    assert response.status_code == 302


def test_the_rate_page_scores_only_predictions_of_its_own_dataset(two_runs, client):
    dataset, (run_a, _) = two_runs
    other = DatasetFactory(name="other")
    RatingCriterion.objects.create(dataset=other, name="correctness", anchors={})
    client.force_login(RaterFactory())
    response = client.post(reverse("admin:evaluation_evalrun_rate") + f"?dataset={other.pk}",
                           {"prediction": run_a.predictions.first().pk, "score_correctness": "5"}, follow=True)
    assert "Unknown prediction: not one of other&#x27;s to rate" in response.content.decode()
    assert not HumanRating.objects.exists()


def test_a_small_rating_budget_covers_every_model_not_only_the_first_evaluated(two_runs):
    dataset, (run_a, run_b) = two_runs
    rater = RaterFactory()
    served = []
    for _ in range(4):
        prediction = next_prediction_to_rate(dataset, by=rater)
        served.append(prediction.eval_run_id)
        record_ratings(prediction, {"correctness": 3, "fluency": 3}, by=rater)
    assert served.count(run_a.pk) == served.count(run_b.pk) == 2


def test_the_pages_say_how_many_are_left_and_the_home_page_links_them(two_runs, client):
    dataset, (run_a, run_b) = two_runs
    rater = RaterFactory()
    client.force_login(rater)
    n = run_a.predictions.count()
    home = client.get(reverse("admin:index")).content.decode()
    assert reverse("admin:evaluation_evalrun_rate") in home and "Decision report" not in home  # raters rate only
    rate = client.get(reverse("admin:evaluation_evalrun_rate") + f"?dataset={dataset.pk}").content.decode()
    assert f"{2 * n} left for you" in rate
    url = reverse("admin:evaluation_evalrun_pairwise") + f"?a={run_a.pk}&b={run_b.pk}"
    pair = client.get(url).content.decode()
    assert f"{n} left for you" in pair
    token = pair.split('name="token" value="')[1].split('"')[0]
    judged = client.post(url, {"token": token, "choice": "tie"}, follow=True).content.decode()
    assert "Saved." in judged and f"{n - 1} left for you" in judged
    client.force_login(EngineerFactory())
    assert reverse("admin:evaluation_evalrun_decision") in client.get(reverse("admin:index")).content.decode()


def test_a_pair_token_reveals_nothing_and_keeps_the_shown_order(two_runs):
    """The token was a signed but readable payload: base64 of {"a", "b", "left", "rater"} told a
    rater which run was on the left. Now it is an opaque id; the assignment stays on the server."""
    import uuid

    _, (run_a, run_b) = two_runs
    rater = RaterFactory()
    left, right, token = next_pair_to_judge(run_a, run_b, by=rater)
    assert str(uuid.UUID(token)) == token  # random: nothing in it to decode
    assert next_pair_to_judge(run_a, run_b, by=rater) == (left, right, token)  # asked again: same pair, same order
    judgment = record_judgment(token, "left", by=rater)
    assert (judgment.prediction_a if judgment.left == "a" else judgment.prediction_b) == left


def test_rating_pages_answer_ids_and_scores_in_non_ascii_digits_without_a_500(client, two_runs):
    """str.isdigit() accepts "²" and "١"; int("²") raises: every id and score of the rating pages was a 500."""
    dataset, (run_a, run_b) = two_runs
    signed_in_client(client, RaterFactory())
    rate, pairwise = reverse("admin:evaluation_evalrun_rate"), reverse("admin:evaluation_evalrun_pairwise")
    assert client.get(f"{rate}?dataset=²").status_code == 200
    assert client.get(f"{pairwise}?a=²&b={run_b.pk}").status_code == 200
    prediction = run_a.predictions.first()
    for form in ({"prediction": "²"}, {"prediction": prediction.pk, "score_correctness": "²", "score_fluency": "3"}):
        response = client.post(f"{rate}?dataset={dataset.pk}", form)
        assert response.status_code == 200, form
    assert "orrectness: the score must be an integer from 1 to 5, got &#x27;²&#x27;" in response.content.decode()
    assert not HumanRating.objects.exists()


def test_a_rating_comment_with_a_nul_is_refused_naming_the_comment(two_runs):
    """PostgreSQL text columns refuse NUL: the rate page's POST was a 500 there (stored on SQLite)."""
    _, (run, _) = two_runs
    with pytest.raises(ServiceError, match="comment: contains a NUL character"):
        record_ratings(run.predictions.first(), {"correctness": 3, "fluency": 3}, by=RaterFactory(), comment="a\x00b")
    assert not HumanRating.objects.exists()


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


def test_a_token_for_the_reversed_pair_is_a_conflict():
    _, (run_a, run_b) = two_eval_runs()
    rater = RaterFactory()
    token = next_pair_to_judge(run_a, run_b, by=rater)[2]
    # The same two outputs from a page naming the runs the other way round, opened before the first was posted.
    reversed_token = next_pair_to_judge(run_b, run_a, by=rater)[2]
    record_judgment(token, "left", by=rater)
    with pytest.raises(Conflict):
        record_judgment(reversed_token, "right", by=rater)
    response = client_for(rater).post("/api/v1/judgments/", {"token": reversed_token, "choice": "left"}, format="json")
    assert response.status_code == 409 and PairwiseJudgment.objects.count() == 1


def test_an_engineer_writes_anchors_one_box_per_score_not_json(client):
    """The trial had to type the anchors as JSON; the form has a box per scale point."""
    dataset = DatasetFactory(name="menus")
    client.force_login(EngineerFactory())
    add = reverse("admin:evaluation_ratingcriterion_add")
    page = client.get(add).content.decode()
    assert all(f'name="anchor_{score}"' in page for score in range(1, 6)) and 'name="anchors"' not in page
    assert "What 3 means" in page
    client.post(add, {"dataset": dataset.pk, "name": "correctness", "description": "",
                      "anchor_1": " wrong ", "anchor_3": "partly right", "anchor_5": "right"})
    criterion = RatingCriterion.objects.get(dataset=dataset)
    assert criterion.anchors == {"1": "wrong", "3": "partly right", "5": "right"}
    change = reverse("admin:evaluation_ratingcriterion_change", args=[criterion.pk])
    assert 'name="anchor_3" value="partly right"' in client.get(change).content.decode()
    client.post(change, {"dataset": dataset.pk, "name": "correctness", "description": "", "anchor_1": "wrong",
                         "anchor_3": "", "anchor_5": "right"})
    criterion.refresh_from_db()
    assert criterion.anchors == {"1": "wrong", "5": "right"}
