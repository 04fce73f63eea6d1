"""The main job end to end on real E2E examples, with a tiny model built on the fly."""
import io

import pytest
from django.core.management import call_command

from curation.choices import ExampleStatus, SnapshotStatus
from curation.models import Example, Review, Snapshot
from evaluation.models import EvalRun
from evaluation.reports import model_version_report
from ftplatform.jobrows import JobStatus
from tests.support.factories import EngineerFactory, snapshot_of, tiny_base_model
from training.models import TrainingRun


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_demo_command_runs_the_whole_pipeline(tiny_model_dir, settings):
    base_model = tiny_base_model(tiny_model_dir)
    if settings.REDIS_URL:
        pytest.skip("covered by test_demo_through_a_worker_process when jobs go to Redis")

    # The command's own output stream, not capsys: the demo serves requests from threads of this process.
    stream = io.StringIO()
    call_command("demo", limit=80, max_steps=3, base_model=base_model.name,
                 hyperparameters={"batch_size": 4, "max_eval_examples": 4}, stdout=stream)
    out = stream.getvalue()

    assert Example.objects.filter(status=ExampleStatus.APPROVED).count() == Example.objects.count() > 0
    assert set(Review.objects.values_list("reviewer__username", flat=True)) == {"demo-reviewer"}
    snapshot = Snapshot.objects.get()
    assert snapshot.status == SnapshotStatus.APPROVED and snapshot.reviewed_by.username == "demo-reviewer"
    run = TrainingRun.objects.get()
    assert run.status == JobStatus.SUCCEEDED
    evals = EvalRun.objects.all()
    assert {e.status for e in evals} == {JobStatus.SUCCEEDED}
    # zero-shot, 3-shot and tuned, each on the validation split (routing thresholds) and the test split
    assert sorted(evals.values_list("split", flat=True)) == ["test"] * 3 + ["validation"] * 3
    report = model_version_report(run.model_version)
    evaluation = report["evaluations"][0]
    assert evaluation["snapshot_hash"] == snapshot.content_hash
    assert evaluation["baseline"] is not None
    assert evaluation["difference"]["bleu"] == pytest.approx(
        evaluation["metrics"]["bleu"] - evaluation["baseline"]["metrics"]["bleu"])
    assert snapshot.content_hash in out and "prompted base" in out and "Verdict" in out
    assert "(prompted, 3-shot)" in out and out.count("\n  vs ") == 2  # the decision report weighs both baselines
    assert "Decision report: e2e-nlg-demo [test]" in out
    assert out.count("hybrid routing: ") == 2 and "chosen on the validation split" in out
    # served: every test input through the openai client, each logged with the model that answered it
    from serving.models import RequestLog

    tests = EvalRun.objects.filter(split="test", model_version=run.model_version).get().metrics["n_inputs"]
    logs = RequestLog.objects.filter(deployment__name="e2e-nlg-demo-tuned")
    assert logs.count() == tests and {log.status for log in logs} == {"answered"}
    by_fine_tuned = logs.filter(answered_by=run.model_version).count()
    assert f"{tests} test inputs sent through the openai client: {by_fine_tuned} answered by the fine-tuned" in out
    assert f"deployment e2e-nlg-demo-tuned: {tests} request(s), {tests} answered, 0 failed" in out


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_demo_through_a_worker_process(tiny_model_dir, settings, artifacts_root):
    """REDIS_URL and PostgreSQL: the demo enqueues, a separate `manage.py worker` process (forking
    work-horses, as in production) runs training and evaluation, the demo polls the rows."""
    from tests.support.workers import start_worker, stop_worker

    base_model = tiny_base_model(tiny_model_dir)
    worker = start_worker(settings, artifacts_root)
    stream = io.StringIO()
    try:
        call_command("demo", limit=80, max_steps=3, base_model=base_model.name,
                     hyperparameters={"batch_size": 4, "max_eval_examples": 4}, stdout=stream)
    finally:
        worker_log = stop_worker(worker)
    out = stream.getvalue()

    run = TrainingRun.objects.get()
    assert run.status == JobStatus.SUCCEEDED, worker_log[-3000:]
    assert [e.status for e in EvalRun.objects.all()] == [JobStatus.SUCCEEDED] * 6
    assert "training.jobs.run_training" in worker_log
    assert "Verdict" in out and "[run" in out


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_train_evaluate_and_report_commands_compare_with_the_prompted_base(tiny_model_dir, e2e_records, capsys,
                                                                          run_jobs, settings):
    from training.models import ModelVersion

    if settings.REDIS_URL:
        pytest.skip("the commands wait for a worker; covered with a worker process in test_pipeline")
    snapshot = snapshot_of(e2e_records[:40])
    base = tiny_base_model(tiny_model_dir)
    user = EngineerFactory()
    call_command("train", snapshot=snapshot.pk, base_model=base.name, username=user.username,
                 hyperparameters={"max_steps": 2, "batch_size": 4})
    tuned = ModelVersion.objects.get(kind="lora_adapter")
    call_command("evaluate", model_version=tuned.pk, snapshot=snapshot.pk, username=user.username,
                 generation={"max_new_tokens": 8})
    call_command("report", tuned.pk)
    assert "evaluate --prompted-base" in capsys.readouterr().out

    call_command("evaluate", prompted_base=True, base_model=base.name, snapshot=snapshot.pk, username=user.username,
                 generation={"max_new_tokens": 8})
    call_command("report", tuned.pk)
    out = capsys.readouterr().out
    # E2E outputs are free text: the snapshot's proposed primary metric is chrF.
    assert "chrF difference from the prompted base model" in out and snapshot.content_hash in out
