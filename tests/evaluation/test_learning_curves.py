"""Learning curves: nested, seeded train shares; one training run per share; each model version
evaluated once it exists; the report, chart, API, admin page and command show the points."""
import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from curation.choices import Split
from evaluation.learning_curves import (
    FOLLOW_UP_JOB,
    evaluate_learning_curve_point,
    learning_curve_chart,
    learning_curve_report,
    parse_percentages,
    start_learning_curve,
)
from evaluation.models import LearningCurve
from ftml.subsets import inputs_in_share, nested_input_subset
from ftplatform.errors import NotAllowed, ServiceError
from ftplatform.jobrows import JobStatus
from tests.support.clients import client_for
from tests.support.factories import (
    TINY_HYPERPARAMETERS,
    AnnotatorFactory,
    DatasetFactory,
    EngineerFactory,
    approved_snapshot,
    snapshot_of,
    tiny_base_model,
)
from training.models import TrainingRun
from training.runs import snapshot_conversations, subset_size

KEYS = [f"input-{i}" for i in range(200)]


def test_smaller_shares_lie_inside_larger_ones():
    shares = [nested_input_subset(KEYS, fraction, seed=3) for fraction in (0.1, 0.25, 0.5, 1.0)]
    assert [len(share) for share in shares] == [20, 50, 100, 200]
    assert shares[0] < shares[1] < shares[2] < shares[3] == set(KEYS)


def test_a_share_is_the_same_in_any_order_and_differs_by_seed():
    assert nested_input_subset(KEYS, 0.25, seed=3) == nested_input_subset(reversed(KEYS), 0.25, seed=3)
    assert nested_input_subset(KEYS, 0.25, seed=3) != nested_input_subset(KEYS, 0.25, seed=4)


def test_a_share_keeps_at_least_one_input_and_rounds_up():
    assert [inputs_in_share(30, 0.1), inputs_in_share(7, 0.1), inputs_in_share(0, 0.5)] == [3, 1, 0]
    with pytest.raises(ValueError, match="above 0 and at most 1, got 1.5"):
        inputs_in_share(10, 1.5)


def test_fractions_parse_and_name_a_bad_entry():
    assert parse_percentages("10, 25,50,100") == [10.0, 25.0, 50.0, 100.0]
    with pytest.raises(ServiceError, match=r"entry 2 \('x'\) is not a number"):
        parse_percentages("10,x")


def _two_outputs_per_input(count: int):
    """A snapshot whose inputs each have two approved outputs."""
    pairs = [(f"name: Place {i}, eatType: pub", f"Place {i} is a pub{ending}") for i in range(count) for ending in ".!"]
    return approved_snapshot(DatasetFactory(), pairs)


@pytest.mark.django_db
def test_a_share_keeps_every_output_of_its_inputs():
    snapshot = _two_outputs_per_input(20)
    train_inputs, train_examples = subset_size(snapshot, Split.TRAIN, 1.0, 0)
    assert train_examples == 2 * train_inputs
    kept = snapshot_conversations(snapshot, Split.TRAIN, fraction=0.5, subset_seed=0)[1]
    users = [conversation[-2]["content"] for conversation in kept]
    assert len(set(users)) == subset_size(snapshot, Split.TRAIN, 0.5, 0)[0] == -(-train_inputs // 2)
    assert all(users.count(user) == 2 for user in users)


@pytest.mark.django_db
def test_a_curve_creates_one_run_per_share_with_its_size(e2e_records, tiny_model_dir,
                                                         django_capture_on_commit_callbacks):
    snapshot = snapshot_of(e2e_records[:60])
    with django_capture_on_commit_callbacks(execute=False):
        curve = start_learning_curve(snapshot, tiny_base_model(tiny_model_dir), by=EngineerFactory(),
                                     percentages=[100, 25, 50], hyperparameters=TINY_HYPERPARAMETERS, seed=5)
    runs = [point.training_run for point in curve.points.order_by("train_fraction")]
    assert [run.train_fraction for run in runs] == [0.25, 0.5, 1.0]
    assert [run.train_examples for run in runs] == [subset_size(snapshot, Split.TRAIN, f, 5)[1]
                                                    for f in (0.25, 0.5, 1.0)]
    assert runs[0].train_examples < runs[1].train_examples < runs[2].train_examples == snapshot.split_counts["train"]
    assert {(run.train_subset_seed, run.follow_up_job, run.status) for run in runs} == {
        (5, FOLLOW_UP_JOB, JobStatus.QUEUED)}
    assert runs[0].preflight["train_examples"] == runs[0].train_examples  # the pre-flight saw the share


@pytest.mark.django_db
def test_shares_that_keep_as_many_inputs_are_refused(e2e_records, tiny_model_dir):
    snapshot = snapshot_of(e2e_records[:40])  # 13 distinct inputs in all: the train split has only a few
    with pytest.raises(ServiceError, match=r"fractions: 10 % and 11 % of snapshot \d+'s \d+ train inputs both keep"):
        start_learning_curve(snapshot, tiny_base_model(tiny_model_dir), by=EngineerFactory(), percentages=[10, 11])
    assert not LearningCurve.objects.exists() and not TrainingRun.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("options", "message"), [
    ({"split": "train"}, "evaluate on validation or test"),
    ({"percentages": [0, 50]}, "0 is not a percentage above 0"),
    ({"percentages": [50, 50]}, "each percentage once"),
    ({"hyperparameters": {"max_train_examples": 8}}, "max_train_examples would cap every point"),
    # The admin's JSON box takes any JSON: a list read "cannot convert dictionary update sequence element #0".
    ({"hyperparameters": [1]}, r'hyperparameters: expected an object of names and values, such as \{"epochs": 2\}, '
                               r"got list \[1\]"),
])
def test_bad_curve_requests_create_nothing(e2e_records, tiny_model_dir, options, message):
    with pytest.raises(ServiceError, match=message):
        start_learning_curve(snapshot_of(e2e_records[:40]), tiny_base_model(tiny_model_dir), by=EngineerFactory(),
                             **options)
    assert not LearningCurve.objects.exists() and not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_only_engineers_start_learning_curves(e2e_records, tiny_model_dir):
    with pytest.raises(NotAllowed, match="may not start learning curves"):
        start_learning_curve(snapshot_of(e2e_records[:40]), tiny_base_model(tiny_model_dir), by=AnnotatorFactory())
    response = client_for(AnnotatorFactory()).get("/api/v1/learning-curves/")
    assert response.status_code == 403


@pytest.mark.django_db
def test_a_run_of_no_curve_or_an_evaluated_point_starts_no_evaluation(e2e_records, tiny_model_dir,
                                                                      django_capture_on_commit_callbacks):
    from evaluation.models import EvalRun

    evaluate_learning_curve_point(999_999)
    with django_capture_on_commit_callbacks(execute=False):
        curve = start_learning_curve(snapshot_of(e2e_records[:60]), tiny_base_model(tiny_model_dir),
                                     by=EngineerFactory(), percentages=[50, 100])
    point = curve.points.first()
    evaluate_learning_curve_point(point.training_run_id)  # queued: no model version yet
    point.refresh_from_db()
    assert point.eval_run is None and "has no model version" in point.error
    assert not EvalRun.objects.exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_curve_trains_evaluates_and_shows_its_points(e2e_records, tiny_model_dir, run_jobs, admin_client):
    snapshot = snapshot_of(e2e_records[:60])
    engineer = EngineerFactory()
    base_model = tiny_base_model(tiny_model_dir)
    call_command("learning_curve", snapshot=snapshot.pk, fractions="50,100", base_model=base_model.name,
                 hyperparameters=TINY_HYPERPARAMETERS, generation={"max_new_tokens": 8}, username=engineer.username,
                 stdout=io.StringIO())
    run_jobs()  # with REDIS_URL: the training runs, their follow-up jobs, then the evaluations
    curve = LearningCurve.objects.get()
    report = learning_curve_report(curve)

    assert report["state"] == "succeeded", report
    assert [row["percent"] for row in report["points"]] == [50, 100]
    for point, row in zip(curve.points.order_by("train_fraction"), report["points"], strict=True):
        assert point.eval_run.model_version == point.training_run.model_version
        assert (point.eval_run.split, point.eval_run.status) == ("validation", JobStatus.SUCCEEDED)
        assert row["score"] == point.eval_run.metrics["chrf"] and row["ci_low"] <= row["score"] <= row["ci_high"]
    step = report["last_step"]
    assert step["difference"] == pytest.approx(report["points"][1]["score"] - report["points"][0]["score"])
    assert step["ci_low"] <= step["difference"] <= step["ci_high"]
    assert step["reading"].startswith(("still rising", "falling", "no clear change"))
    assert f"from {report['points'][0]['train_examples']} to {report['points'][1]['train_examples']}" in step["reading"]

    chart = learning_curve_chart(curve, report)
    assert chart.count('class="chrF-marker"') == 2 and "50 % (" in chart

    body = client_for(engineer).get(f"/api/v1/learning-curves/{curve.pk}/").json()
    assert [row["score"] for row in body["report"]["points"]] == [row["score"] for row in report["points"]]
    assert body["report"]["last_step"]["reading"] == step["reading"]

    page = admin_client.get(f"/admin/evaluation/learningcurve/{curve.pk}/change/").content.decode()
    assert 'class="learning-curve"' in page and step["reading"] in page and "eval run" in page
    assert "Save" not in page
    assert "2 of 2 evaluated" in admin_client.get("/admin/evaluation/learningcurve/").content.decode()


@pytest.mark.django_db
def test_the_api_starts_a_curve_and_names_a_bad_fraction(e2e_records, tiny_model_dir,
                                                         django_capture_on_commit_callbacks):
    snapshot, base_model = snapshot_of(e2e_records[:60]), tiny_base_model(tiny_model_dir)
    client = client_for(EngineerFactory())
    bad = client.post("/api/v1/learning-curves/", {"snapshot": snapshot.pk, "fractions": [50, 150],
                                                   "base_model": base_model.pk}, format="json")
    assert bad.status_code == 400 and "150.0 is not a percentage" in bad.json()["detail"]
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post("/api/v1/learning-curves/", {
            "snapshot": snapshot.pk, "fractions": [50, 100], "base_model": base_model.pk,
            "hyperparameters": TINY_HYPERPARAMETERS, "split": "test"}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["split"] == "test" and body["report"]["state"] == "running"
    assert [(row["percent"], row["training_status"], row["score"]) for row in body["report"]["points"]] == [
        (50, "queued", None), (100, "queued", None)]
    assert body["report"]["last_step"] is None
    assert learning_curve_chart(LearningCurve.objects.get(pk=body["id"])) == "no point evaluated yet"


@pytest.mark.django_db
def test_the_command_refuses_a_bad_fraction(e2e_records, tiny_model_dir):
    snapshot = snapshot_of(e2e_records[:40])
    with pytest.raises(CommandError, match="entry 1 \\('ten'\\) is not a number"):
        call_command("learning_curve", snapshot=snapshot.pk, fractions="ten", username=EngineerFactory().username,
                     base_model=tiny_base_model(tiny_model_dir).name)


@pytest.mark.django_db
def test_the_command_takes_a_dataset_name_for_its_newest_approved_snapshot(e2e_records, tiny_model_dir):
    """As train and evaluate do; --snapshot took only an id ("argument --snapshot: invalid int value")."""
    snapshot = snapshot_of(e2e_records[:40])
    options = {"fractions": "ten", "username": EngineerFactory().username,
               "base_model": tiny_base_model(tiny_model_dir).name}
    with pytest.raises(CommandError, match="entry 1 \\('ten'\\) is not a number"):  # the snapshot was found
        call_command("learning_curve", "--snapshot", snapshot.dataset.name, **options)
    with pytest.raises(CommandError, match="no-such-task"):
        call_command("learning_curve", "--snapshot", "no-such-task", **options)


@pytest.mark.django_db
def test_an_engineer_starts_a_curve_from_the_admin(e2e_records, tiny_model_dir, client,
                                                   django_capture_on_commit_callbacks):
    snapshot, base_model = snapshot_of(e2e_records[:60]), tiny_base_model(tiny_model_dir)
    client.force_login(EngineerFactory())
    form = {"snapshot": snapshot.pk, "base_model": base_model.pk, "split": "validation", "seed": 1,
            "hyperparameters": '{"max_steps": 3, "batch_size": 4}'}
    page = client.post("/admin/evaluation/learningcurve/add/", {**form, "fractions": "10,x"}).content.decode()
    assert "entry 2 (&#x27;x&#x27;) is not a number" in page and not LearningCurve.objects.exists()
    page = client.post("/admin/evaluation/learningcurve/add/", {**form, "fractions": "10,11"}, follow=True)
    assert "both keep" in page.content.decode() and not LearningCurve.objects.exists()

    with django_capture_on_commit_callbacks(execute=False):
        response = client.post("/admin/evaluation/learningcurve/add/", {**form, "fractions": "50,100"}, follow=True)
    curve = LearningCurve.objects.get()
    assert response.redirect_chain[-1][0] == f"/admin/evaluation/learningcurve/{curve.pk}/change/"
    assert f"Learning curve {curve.pk} started: 2 training runs" in response.content.decode()
    assert [(p.train_fraction, p.training_run.train_subset_seed, p.training_run.hyperparameters["max_steps"])
            for p in curve.points.all()] == [(0.5, 1, 3), (1.0, 1, 3)]


@pytest.mark.django_db
def test_missing_evaluations_start_once_and_replace_failed_ones(e2e_records, tiny_model_dir,
                                                               django_capture_on_commit_callbacks):
    from evaluation.learning_curves import evaluate_missing_points
    from training.models import ModelVersion

    engineer = EngineerFactory()
    with django_capture_on_commit_callbacks(execute=False):
        curve = start_learning_curve(snapshot_of(e2e_records[:60]), tiny_base_model(tiny_model_dir), by=engineer,
                                     percentages=[50, 100])
        first, second = curve.points.order_by("train_fraction")
        evaluate_learning_curve_point(first.training_run_id)  # as if its job had run too early
        TrainingRun.objects.filter(pk=first.training_run_id).update(status=JobStatus.SUCCEEDED)
        ModelVersion.objects.create(name="v", kind="lora_adapter", base_model=curve.base_model,
                                    training_run=first.training_run, adapter_path="/nonexistent")
        with pytest.raises(NotAllowed):
            evaluate_missing_points(curve, by=AnnotatorFactory())
        assert evaluate_missing_points(curve, by=engineer) == 1  # the second run has not finished
        first.refresh_from_db()
        assert (first.eval_run.status, first.eval_run.split, first.error) == (JobStatus.QUEUED, "validation", "")
        assert evaluate_missing_points(curve, by=engineer) == 0  # queued: not started twice
        failed = first.eval_run
        failed.status = JobStatus.FAILED
        failed.save()
        out = io.StringIO()
        call_command("learning_curve", evaluate_missing=curve.pk, username=engineer.username, stdout=out)
    first.refresh_from_db()
    assert "1 evaluation(s) started" in out.getvalue() and first.eval_run != failed
    assert learning_curve_report(curve)["points"][1]["eval_run"] is None
