"""Human ratings: Likert scores on a dataset's criteria and blind pairwise judgments.

Raters see an input and an output (or two outputs in random order), never the model that wrote
them, nor other raters' scores. The order a pair was shown in is stored with the judgment; the
pair handed to the page is a PairAssignment on the server, named by an opaque token, so what is
recorded is what was shown and the token reveals nothing.
"""
import itertools
import random
import uuid

from django.db import IntegrityError, transaction
from django.db.models import Count, Q

from curation.formats import check_json_value
from curation.models import Dataset
from ftplatform.errors import Conflict, ServiceError
from ftplatform.jobrows import JobStatus
from ftplatform.roles import require_permission

from .comparisons import check_comparable
from .models import EvalRun, HumanRating, PairAssignment, PairwiseJudgment, Prediction, RatingCriterion

LIKERT = range(1, 6)


def datasets_to_rate():
    """Datasets with rating criteria: the only ones the rating pages and API let a rater name. Others
    answer as missing, so a rater (who may not view datasets) never learns their names."""
    return Dataset.objects.filter(rating_criteria__isnull=False).distinct()


def judgeable_eval_runs():
    """Eval runs of datasets_to_rate(): the only runs the pairwise page and API let a rater name. Others
    answer as missing, so a rater never reads the inputs and outputs of a dataset not opened to raters."""
    return EvalRun.objects.filter(snapshot__dataset__in=datasets_to_rate())


def rateable_predictions(dataset: Dataset):
    """Predictions of succeeded eval runs on snapshots of ``dataset``."""
    return Prediction.objects.filter(eval_run__snapshot__dataset=dataset, eval_run__status=JobStatus.SUCCEEDED)


def next_prediction_to_rate(dataset: Dataset, *, by) -> Prediction | None:
    """A prediction of ``dataset`` that ``by`` has not scored on every criterion yet: input by input,
    each model's answer to an input in turn (the rater is not told which).

    Raises NotAllowed without 'evaluation.add_humanrating'; ServiceError when the dataset has no criteria."""
    require_permission(by, "evaluation.add_humanrating", "rate predictions")
    criteria = dataset.rating_criteria.count()
    if not criteria:
        raise ServiceError(f"dataset {dataset.name!r} has no rating criteria; an engineer adds them first")
    rated_fully = [pk for pk, count in _ratings_per_prediction(dataset, by).items() if count >= criteria]
    # Input by input (in input-hash order: deterministic, unrelated to the data's order), every
    # model's answer to one input before the next input: a small rating budget covers all the
    # models alike, never only the run evaluated first.
    return rateable_predictions(dataset).exclude(pk__in=rated_fully).order_by("input_hash", "id").first()


def predictions_left(dataset: Dataset, *, by) -> int:
    """How many of ``dataset``'s predictions ``by`` has yet to score on every criterion."""
    criteria = dataset.rating_criteria.count()
    rated_fully = [pk for pk, count in _ratings_per_prediction(dataset, by).items() if count >= criteria]
    return rateable_predictions(dataset).exclude(pk__in=rated_fully).count()


def pairs_left(eval_a: EvalRun, eval_b: EvalRun, *, by) -> int:
    """How many inputs both runs answered that ``by`` has yet to judge (next_pair_to_judge's queue)."""
    shared = set(eval_a.predictions.values_list("input_hash", flat=True)) & set(
        eval_b.predictions.values_list("input_hash", flat=True))
    return len(shared - _judged_inputs(eval_a, eval_b, by))


def rating_queues(*, by) -> list[dict]:
    """Each dataset open to raters with how many of its predictions ``by`` has yet to score:
    ``[{"dataset": Dataset, "left": n}]`` by dataset name (the rating page's queues)."""
    return [{"dataset": dataset, "left": predictions_left(dataset, by=by)}
            for dataset in datasets_to_rate().order_by("name")]


def pairwise_queues(*, by) -> list[dict]:
    """The blind pairs ``by`` can still judge: per snapshot split of a dataset open to raters, every two
    model versions' newest succeeded eval runs there, with inputs left to judge.

    Returns ``[{"dataset": Dataset, "split": str, "eval_a": EvalRun, "eval_b": EvalRun, "left": n}]``
    (dataset name, then snapshot, split and run ids; pairs with nothing left are left out). The
    rows name no model: the pairwise page stays blind.
    """
    newest: dict[tuple, dict[int, EvalRun]] = {}
    runs = (judgeable_eval_runs().filter(status=JobStatus.SUCCEEDED).select_related("snapshot__dataset")
            .order_by("snapshot__dataset__name", "snapshot_id", "split", "-finished_at", "-id"))
    for run in runs:
        newest.setdefault((run.snapshot_id, run.split), {}).setdefault(run.model_version_id, run)
    queues = []
    for by_version in newest.values():
        for eval_a, eval_b in itertools.combinations(sorted(by_version.values(), key=lambda run: run.pk), 2):
            left = pairs_left(eval_a, eval_b, by=by)
            if left:
                queues.append({"dataset": eval_a.snapshot.dataset, "split": eval_a.split, "eval_a": eval_a,
                               "eval_b": eval_b, "left": left})
    return queues


def _judged_inputs(eval_a: EvalRun, eval_b: EvalRun, rater) -> set[str]:
    """Inputs ``rater`` judged for this pair of runs, in either order (a=A, b=B or a=B, b=A): a pair
    of outputs is judged once by each rater, whichever run the page named first."""
    return set(PairwiseJudgment.objects.filter(
        Q(prediction_a__eval_run=eval_a, prediction_b__eval_run=eval_b)
        | Q(prediction_a__eval_run=eval_b, prediction_b__eval_run=eval_a), rater=rater)
        .values_list("prediction_a__input_hash", flat=True))


def _ratings_per_prediction(dataset: Dataset, rater) -> dict[int, int]:
    rows = (HumanRating.objects.filter(rater=rater, criterion__dataset=dataset)
            .values("prediction").annotate(n=Count("id")).values_list("prediction", "n"))
    return dict(rows)


@transaction.atomic
def record_ratings(prediction: Prediction, scores: dict[str, int], *, by, comment: str = "") -> list[HumanRating]:
    """Store ``by``'s Likert scores of ``prediction``: ``{criterion name: 1..5}``, every criterion
    of the prediction's dataset. A rater may change their own scores (the rows are updated).

    Raises:
        NotAllowed: ``by`` lacks 'evaluation.add_humanrating'.
        ServiceError: a criterion missing or unknown, a score that is not an integer 1-5 (the
            message names the criterion), or a comment no text column can hold (NUL); nothing is
            written then.
    """
    require_permission(by, "evaluation.add_humanrating", "rate predictions")
    dataset = prediction.eval_run.snapshot.dataset
    criteria = {c.name: c for c in dataset.rating_criteria.all()}
    unknown = sorted(set(scores) - set(criteria))
    missing = sorted(set(criteria) - set(scores))
    if unknown or missing:
        raise ServiceError("; ".join(filter(None, [
            f"unknown criteria: {', '.join(unknown)}" if unknown else "",
            f"missing scores for: {', '.join(missing)}" if missing else ""])))
    for name, score in scores.items():
        if isinstance(score, bool) or not isinstance(score, int) or score not in LIKERT:
            raise ServiceError(f"{name}: the score must be an integer from 1 to 5, got {score!r}")
    try:
        check_json_value(comment)
    except ValueError as exc:  # NUL or an unpaired surrogate: no text column stores them (PostgreSQL: 500)
        raise ServiceError(f"comment: {str(exc).removeprefix('$: ')}") from None
    return [HumanRating.objects.update_or_create(prediction=prediction, criterion=criteria[name], rater=by,
                                                 defaults={"score": score, "comment": comment})[0]
            for name, score in sorted(scores.items())]


def _comparable(eval_a: EvalRun, eval_b: EvalRun) -> None:
    if eval_a.model_version_id == eval_b.model_version_id:
        raise ServiceError("a pairwise comparison needs eval runs of two different model versions")
    check_comparable(eval_a, eval_b)


def next_pair_to_judge(eval_a: EvalRun, eval_b: EvalRun, *, by, rng: random.Random | None = None):
    """Two predictions for one input, one from each run, that ``by`` has not judged, in random order.

    Returns ``(left, right, token)`` or None when every input is judged; ``token`` (a string) is the
    opaque id of the PairAssignment that holds the pair, the side shown on the left and the rater,
    for record_judgment. The same pair asked for again keeps its token and order.
    Raises NotAllowed without 'evaluation.add_pairwisejudgment', ServiceError for runs that cannot be compared.
    """
    require_permission(by, "evaluation.add_pairwisejudgment", "judge pairs of predictions")
    _comparable(eval_a, eval_b)
    judged = _judged_inputs(eval_a, eval_b, by)
    b_by_input = dict(eval_b.predictions.values_list("input_hash", "pk"))
    for prediction_a in eval_a.predictions.order_by("id"):
        if prediction_a.input_hash in judged or prediction_a.input_hash not in b_by_input:
            continue
        prediction_b = Prediction.objects.get(pk=b_by_input[prediction_a.input_hash])
        assignment = _assignment(prediction_a, prediction_b, by, rng)
        shown = (prediction_a, prediction_b) if assignment.left == "a" else (prediction_b, prediction_a)
        return shown[0], shown[1], str(assignment.token)
    return None


def _assignment(prediction_a: Prediction, prediction_b: Prediction, rater, rng) -> PairAssignment:
    """The pair's assignment to ``rater``, created with a random left side the first time."""
    identity = {"prediction_a": prediction_a, "prediction_b": prediction_b, "rater": rater}
    try:
        with transaction.atomic():
            return PairAssignment.objects.get_or_create(
                **identity, defaults={"left": (rng or random.SystemRandom()).choice(PairwiseJudgment.Side.values)})[0]
    except IntegrityError:  # the same rater asked twice at once
        return PairAssignment.objects.get(**identity)


@transaction.atomic
def record_judgment(token: str, choice: str, *, by) -> PairwiseJudgment:
    """Store ``by``'s judgment of the pair in ``token``: ``choice`` is "left", "right" or "tie".

    Raises:
        NotAllowed: ``by`` lacks 'evaluation.add_pairwisejudgment'.
        ServiceError: a token that was not issued here or was issued to another rater (what is
            recorded is what ``by`` was shown), an unknown choice, or a pair whose predictions are gone.
        Conflict: ``by`` already judged this pair.
    """
    require_permission(by, "evaluation.add_pairwisejudgment", "judge pairs of predictions")
    try:
        assignment = PairAssignment.objects.filter(token=uuid.UUID(str(token))).first()
    except ValueError:  # not a UUID at all
        assignment = None
    if assignment is None:  # never handed out, or gone with its predictions (an eval run was deleted)
        raise ServiceError("this pair was not handed out by the pairwise page, or its predictions no longer exist; "
                           "open the page again")
    if assignment.rater_id != by.pk:
        raise ServiceError("this pair was handed out to another rater; open the page again to get your own")
    pair = {"a": assignment.prediction_a_id, "b": assignment.prediction_b_id, "left": assignment.left}
    sides = {"left": pair["left"], "right": "b" if pair["left"] == "a" else "a", "tie": "tie"}
    if choice not in sides:
        raise ServiceError(f"choice must be left, right or tie, got {choice!r}")
    # Locked in id order: concurrent judgments of one pair (in either order) wait for each other.
    if len(Prediction.objects.select_for_update().filter(pk__in=[pair["a"], pair["b"]]).order_by("pk")) != 2:
        raise ServiceError("this pair's predictions no longer exist (an eval run was deleted); open the page again")
    if PairwiseJudgment.objects.filter(prediction_a_id=pair["b"], prediction_b_id=pair["a"], rater=by).exists():
        raise Conflict("you already judged this pair (with the runs named the other way round)")
    try:
        with transaction.atomic():
            return PairwiseJudgment.objects.create(prediction_a_id=pair["a"], prediction_b_id=pair["b"], rater=by,
                                                   left=pair["left"], outcome=sides[choice])
    except IntegrityError:
        raise Conflict("you already judged this pair") from None


def criteria_of(dataset: Dataset) -> list[RatingCriterion]:
    return list(dataset.rating_criteria.all())
