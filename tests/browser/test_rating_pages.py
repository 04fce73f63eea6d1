"""The human-rating pages in a real browser, driven only from the keyboard: a rater scores a
prediction on every criterion with 1-5 (Tab / Shift+Tab move between criteria) and saves with
Enter; another judges blind pairs with 1 / ← (left better), 2 / → (right better) and t / ↓ (tie),
one judgment per pair however fast the keys come. Neither page shows which model wrote an
output, nor another rater's scores."""
import itertools
import types

import pytest
from django.urls import reverse

from evaluation import ratings
from evaluation.models import HumanRating, PairwiseJudgment
from tests.support.factories import RaterFactory, two_eval_runs

pytestmark = pytest.mark.django_db(transaction=True)


def highlighted(page) -> list[str]:
    """The criteria the rate page highlights as the one the number keys score."""
    return page.eval_on_selector_all(".ft-criterion",
                                     "sets => sets.filter(s => s.style.outline).map(s => s.dataset.name)")


def checked_scores(page) -> dict[str, str]:
    return dict(page.eval_on_selector_all(
        "#ft-rate input[type=radio]:checked", "inputs => inputs.map(i => [i.name.slice('score_'.length), i.value])"))


def test_rating_every_criterion_from_the_keyboard(signed_in, live_server):
    dataset, _ = two_eval_runs()
    other = RaterFactory()
    first = ratings.next_prediction_to_rate(dataset, by=other)
    ratings.record_ratings(first, {"correctness": 1, "fluency": 1}, by=other, comment="OTHER RATER'S NOTE")
    rater = RaterFactory()

    page = signed_in(rater)
    url = f"{live_server.url}{reverse('admin:evaluation_evalrun_rate')}?dataset={dataset.pk}"
    page.goto(url)
    # The queue is per rater: this one starts at the prediction the other rater already scored,
    # and sees none of their scores nor which model wrote the output.
    assert page.input_value("input[name=prediction]") == str(first.pk)
    assert page.inner_text("#ft-output") == first.output
    assert checked_scores(page) == {}
    assert "OTHER RATER" not in page.content() and "secret-" not in page.content()
    assert highlighted(page) == ["correctness"]

    page.keyboard.press("3")  # scores the highlighted criterion and moves on
    assert checked_scores(page) == {"correctness": "3"} and highlighted(page) == ["fluency"]
    page.keyboard.press("Tab")  # wraps around to the first criterion
    assert highlighted(page) == ["correctness"]
    page.keyboard.press("4")  # changes its score
    assert checked_scores(page) == {"correctness": "4"} and highlighted(page) == ["fluency"]
    page.keyboard.press("Shift+Tab")
    assert highlighted(page) == ["correctness"]
    page.keyboard.press("Shift+Tab")  # wraps around backwards
    assert highlighted(page) == ["fluency"]
    page.keyboard.press("2")
    assert checked_scores(page) == {"correctness": "4", "fluency": "2"}
    assert highlighted(page) == ["fluency"]  # the last criterion stays highlighted
    with page.expect_navigation():
        page.keyboard.press("Enter")

    assert sorted(HumanRating.objects.filter(rater=rater).values_list("prediction", "criterion__name", "score")) \
        == [(first.pk, "correctness", 4), (first.pk, "fluency", 2)]
    assert sorted(HumanRating.objects.filter(rater=other).values_list("criterion__name", "score", "comment")) \
        == [("correctness", 1, "OTHER RATER'S NOTE"), ("fluency", 1, "OTHER RATER'S NOTE")]

    # The page moves on to the rater's next prediction, blank again.
    assert "Saved." in page.inner_text(".messagelist")
    second = ratings.next_prediction_to_rate(dataset, by=rater)
    assert second.pk != first.pk
    assert page.input_value("input[name=prediction]") == str(second.pk)
    assert page.inner_text("#ft-output") == second.output
    assert checked_scores(page) == {} and highlighted(page) == ["correctness"]
    assert "OTHER RATER" not in page.content() and "secret-" not in page.content()

    # Enter with a criterion unscored saves nothing; scoring it and pressing Enter again does.
    page.keyboard.press("5")
    page.keyboard.press("Enter")
    assert not page.evaluate("document.getElementById('ft-rate').checkValidity()")
    assert page.url == url and not HumanRating.objects.filter(rater=rater, prediction=second).exists()
    page.keyboard.press("1")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert sorted(HumanRating.objects.filter(rater=rater, prediction=second).values_list("criterion__name", "score")) \
        == [("correctness", 5), ("fluency", 1)]
    third = page.input_value("input[name=prediction]")
    assert third not in (str(first.pk), str(second.pk))

    # c opens the comment; digits typed there are text, not scores; Esc leaves it, Ctrl+Enter saves from it.
    page.keyboard.press("c")
    page.keyboard.type("3 words only")
    assert checked_scores(page) == {}
    page.keyboard.press("Escape")
    page.keyboard.press("2")
    page.keyboard.press("5")
    page.keyboard.press("c")
    with page.expect_navigation():
        page.keyboard.press("Control+Enter")
    assert sorted(HumanRating.objects.filter(rater=rater, prediction=third).values_list(
        "criterion__name", "score", "comment")) == [("correctness", 2, "3 words only"), ("fluency", 5, "3 words only")]


def test_a_click_picks_the_criterion_the_keys_score_and_a_missing_score_is_named(signed_in, live_server):
    """The trial: after a mouse pick of the second criterion, the digit keys overwrote the first; and
    Enter with a criterion unscored did nothing visible (the browser's bubble sat on a radio)."""
    dataset, _ = two_eval_runs()
    page = signed_in(RaterFactory())
    page.goto(f"{live_server.url}{reverse('admin:evaluation_evalrun_rate')}?dataset={dataset.pk}")
    assert page.is_hidden("#ft-missing")
    page.click(".ft-criterion[data-name=fluency] input[value='2']")
    assert highlighted(page) == ["fluency"]
    page.keyboard.press("4")  # scores fluency, the criterion picked, then moves to the one still unscored
    assert checked_scores(page) == {"fluency": "4"} and highlighted(page) == ["correctness"]

    page.keyboard.press("Enter")
    assert page.inner_text("#ft-missing") == "Score every criterion before saving; not scored yet: correctness."
    assert not HumanRating.objects.exists()
    page.keyboard.press("5")
    assert page.is_hidden("#ft-missing")
    with page.expect_navigation():
        page.click("#ft-rate button[type=submit]")
    assert sorted(HumanRating.objects.values_list("criterion__name", "score")) == [("correctness", 5), ("fluency", 4)]


class ShownOrder:
    """Stands in for random.SystemRandom in evaluation.ratings: the side shown on the left comes
    from ``orders`` in turn (then alternates), so the test knows both orders are exercised."""

    def __init__(self, orders):
        self.orders = itertools.chain(orders, itertools.cycle("ab"))

    def choice(self, sides):
        side = next(self.orders)
        assert side in sides
        return side


def test_blind_pairs_judged_from_the_keyboard_record_the_shown_order(signed_in, live_server, monkeypatch):
    _, (run_a, run_b) = two_eval_runs()  # a: "prompted says ...", b: "tuned says ..."
    # key pressed, side the pair's order puts on the left, the outcome that must be recorded
    steps = [("1", "b", "b"), ("2", "b", "a"), ("t", "a", "tie"),
             ("ArrowLeft", "a", "a"), ("ArrowRight", "a", "b"), ("ArrowDown", "b", "tie")]
    shown = ShownOrder([left for _, left, _ in steps])
    monkeypatch.setattr(ratings, "random", types.SimpleNamespace(SystemRandom=lambda: shown))
    rater = RaterFactory()
    pairs = run_a.predictions.count()
    assert pairs > len(steps)

    page = signed_in(rater)
    page.goto(f"{live_server.url}{reverse('admin:evaluation_evalrun_pairwise')}?a={run_a.pk}&b={run_b.pk}")
    for number in range(pairs):
        key, left, outcome = steps[number] if number < len(steps) else ("t", None, "tie")
        content = page.content()
        assert "secret-" not in content and "-model" not in content
        left_text, right_text = page.inner_text("#ft-left"), page.inner_text("#ft-right")
        if left is not None:
            assert left_text.startswith({"a": "prompted says", "b": "tuned says"}[left])
        with page.expect_navigation():
            page.keyboard.press(key)
            if number == 0:
                page.keyboard.press("2")  # a second key before the next pair loads is ignored
        assert PairwiseJudgment.objects.filter(rater=rater).count() == number + 1  # one row per key press
        judgment = PairwiseJudgment.objects.filter(rater=rater).latest("id")
        assert (judgment.prediction_a.eval_run_id, judgment.prediction_b.eval_run_id) == (run_a.pk, run_b.pk)
        on_left, on_right = ((judgment.prediction_a, judgment.prediction_b) if judgment.left == "a"
                             else (judgment.prediction_b, judgment.prediction_a))
        assert (on_left.output, on_right.output) == (left_text, right_text)  # the stored order is the shown one
        assert judgment.left == (left or judgment.left) and judgment.outcome == outcome, key
        assert not page.locator(".messagelist .error").count()

    assert "Nothing left for you to judge" in page.inner_text("#content")
    assert "secret-" not in page.content()
