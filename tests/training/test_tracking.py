"""MLflow tracking of training runs and their evaluations (ftplatform.tracking), read back through
MlflowClient from a local file store: off unless MLFLOW_TRACKING_URI is set, never failing a job."""
import filecmp
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from evaluation.models import EvalRun
from evaluation.services import start_eval_run
from ftplatform.jobrows import JobStatus
from ftplatform.tracking import FILE_STORE_OPT_IN, MLFLOW_DEFAULTS
from tests.support.factories import TINY_HYPERPARAMETERS, EngineerFactory, snapshot_of, tiny_base_model
from training.choices import EventKind
from training.runs import start_training_run

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture
def mlflow_environment(monkeypatch):
    """No MLflow variables from the machine, and whatever ftplatform.tracking sets by default
    (retries, the file-store opt-in) gone again after the test. Proxies cleared: the loopback
    "server" of a test is reached directly."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", FILE_STORE_OPT_IN, *MLFLOW_DEFAULTS,
                 *PROXY_VARIABLES):
        monkeypatch.setenv(name, "")  # records the original value, restored after the test
        monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def file_store(mlflow_environment, tmp_path):
    """Tracking on, into a file store in a temporary folder; returns its URI."""
    uri = (tmp_path / "mlruns").as_uri()
    mlflow_environment.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow_environment.setenv("MLFLOW_EXPERIMENT_NAME", "ftplatform-tests")
    return uri


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused): a tracking server that is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def train(records, tiny_model_dir, run_jobs):
    run = start_training_run(snapshot_of(records), tiny_base_model(tiny_model_dir), by=EngineerFactory(),
                             hyperparameters=TINY_HYPERPARAMETERS)
    run_jobs()
    run.refresh_from_db()
    assert run.status == JobStatus.SUCCEEDED, run.error
    return run


def evaluate(version, snapshot, run_jobs) -> EvalRun:
    eval_run = start_eval_run(version, snapshot, by=EngineerFactory(), generation={"max_new_tokens": 4})
    run_jobs()
    eval_run.refresh_from_db()
    assert eval_run.status == JobStatus.SUCCEEDED, eval_run.error
    return eval_run


def metric_events(run, key: str) -> list[tuple[int, float]]:
    return [(e.step, e.payload[key]) for e in run.events.filter(kind=EventKind.METRIC) if key in e.payload]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_mlflow_holds_what_the_database_recorded_for_a_run_and_its_evaluation(
        e2e_records, tiny_model_dir, run_jobs, file_store, tmp_path):
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts

    run = train(e2e_records[:40], tiny_model_dir, run_jobs)
    evaluation = evaluate(run.model_version, run.snapshot, run_jobs)
    client = MlflowClient(tracking_uri=file_store)
    tracked = client.get_run(run.environment["mlflow_run_id"])

    assert tracked.info.status == "FINISHED"
    assert client.get_experiment(tracked.info.experiment_id).name == "ftplatform-tests"
    assert tracked.data.tags["ftplatform.training_run_id"] == str(run.pk)
    assert tracked.data.params == {
        **{name: str(value) for name, value in run.hyperparameters.items()},
        "snapshot_sha256": run.snapshot.content_hash, "snapshot_id": str(run.snapshot.pk),
        "dataset": run.snapshot.dataset.name, "base_model": run.base_model.name, "seed": str(run.seed)}
    # The losses as they came: every step's train loss and each validation loss, at their steps.
    for key in ("loss", "eval_loss"):
        history = sorted((m.step, m.value) for m in client.get_metric_history(tracked.info.run_id, key))
        assert history == metric_events(run, key) and history
    final = {name: value for name, value in run.metrics.items() if isinstance(value, int | float)}
    assert {name: tracked.data.metrics[name] for name in final} == final
    # The evaluation's scores, per split, in the same MLflow run.
    scores = {f"test_{name}": value for name, value in evaluation.metrics.items()
              if isinstance(value, int | float)}
    intervals = evaluation.metrics["confidence_intervals"]
    scores.update({f"test_{name}_{bound}": value for name, interval in intervals.items()
                   for bound, value in interval.items()})
    assert {"test_bleu", "test_chrf", "test_bleu_ci_low"} <= set(scores)
    assert {name: tracked.data.metrics[name] for name in scores} == scores
    assert evaluation.environment["mlflow_run_id"] == tracked.info.run_id
    # The adapter folder, file for file.
    copy = Path(download_artifacts(run_id=tracked.info.run_id, artifact_path="adapter",
                                   dst_path=str(tmp_path / "download"), tracking_uri=file_store))
    adapter = Path(run.model_version.adapter_path)
    names = sorted(p.relative_to(adapter).as_posix() for p in adapter.rglob("*") if p.is_file())
    assert "adapter_model.safetensors" in names
    assert sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file()) == names
    assert filecmp.cmpfiles(adapter, copy, names, shallow=False)[0] == names


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_with_tracking_off_mlflow_is_neither_imported_nor_written(
        e2e_records, tiny_model_dir, run_jobs, mlflow_environment, tmp_path):
    # mlflow may be loaded by an earlier test: unload it for this one (restored after), so that any
    # import during the run shows in sys.modules. MLflow's default store is ./mlruns: the run works
    # in an empty folder.
    for name in [name for name in sys.modules if name.split(".")[0] == "mlflow"]:
        mlflow_environment.delitem(sys.modules, name)
    (tmp_path / "cwd").mkdir()
    mlflow_environment.chdir(tmp_path / "cwd")

    run = train(e2e_records[:40], tiny_model_dir, run_jobs)
    evaluation = evaluate(run.model_version, run.snapshot, run_jobs)

    assert [name for name in sys.modules if name.split(".")[0] == "mlflow"] == []
    assert list((tmp_path / "cwd").iterdir()) == []
    assert not run.events.filter(kind=EventKind.WARNING).exists()
    assert "mlflow_run_id" not in run.environment and "mlflow_run_id" not in evaluation.environment


def test_loading_the_jobs_does_not_import_mlflow(mlflow_environment):
    """A fresh interpreter, because this one may have loaded mlflow and the jobs already."""
    code = ("import sys, django; django.setup(); import ftplatform.tracking, training.jobs, evaluation.jobs; "
            "print(sorted(name for name in sys.modules if name.split('.')[0] == 'mlflow'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[2],
                            env={**os.environ, "DJANGO_SETTINGS_MODULE": "ftplatform.settings",
                                 "FTPLATFORM_ENV_FILE": os.devnull})
    assert (result.returncode, result.stdout.strip()) == (0, "[]"), result.stderr


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_tracking_server_that_is_down_does_not_fail_the_run(
        e2e_records, tiny_model_dir, run_jobs, mlflow_environment):
    port = closed_port()
    mlflow_environment.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")

    run = train(e2e_records[:40], tiny_model_dir, run_jobs)

    warnings = list(run.events.filter(kind=EventKind.WARNING).values_list("message", flat=True))
    assert len(warnings) == 1
    assert "MLflow tracking (MLFLOW_TRACKING_URI): could not start a run" in warnings[0]
    assert f"127.0.0.1:{port}" in warnings[0]
    assert run.model_version.adapter_path and "mlflow_run_id" not in run.environment


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_tracking_server_that_is_down_does_not_fail_the_evaluation(
        e2e_records, tiny_model_dir, run_jobs, file_store):
    from mlflow import MlflowClient

    run = train(e2e_records[:40], tiny_model_dir, run_jobs)
    port = closed_port()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
        evaluation = evaluate(run.model_version, run.snapshot, run_jobs)

    assert "could not log metrics" in evaluation.environment["mlflow_warning"]
    assert f"127.0.0.1:{port}" in evaluation.environment["mlflow_warning"]
    assert evaluation.metrics["bleu"] is not None and evaluation.predictions.exists()
    tracked = MlflowClient(tracking_uri=file_store).get_run(run.environment["mlflow_run_id"])
    assert not [name for name in tracked.data.metrics if name.startswith("test_")]


def test_metric_names_mlflow_refuses_are_logged_with_underscores(file_store):
    """A dataset's regex check may be named anything ("has £", "a/../b"); MLflow refuses such metric
    names, and one refused name would lose the whole batch."""
    from mlflow import MlflowClient

    from ftplatform.tracking import start_run

    warnings = []
    tracked = start_run("names", params={}, on_warning=warnings.append)
    tracked.log_metrics({"test_regex:has £": 0.5, "test_regex:a/../b": 1.0, "test_bleu": 12.5})

    logged = MlflowClient(tracking_uri=file_store).get_run(tracked.run_id).data.metrics
    assert (logged, warnings) == ({"test_regex:has _": 0.5, "test_regex:a_.._b": 1.0, "test_bleu": 12.5}, [])


def test_a_resumed_run_logs_into_its_earlier_mlflow_run(file_store):
    from mlflow import MlflowClient

    from ftplatform.tracking import start_run

    warnings = []
    first = start_run("resumable", params={"lora_rank": 8}, on_warning=warnings.append)
    first.log_metrics({"loss": 2.0}, step=1)
    first.end("FAILED")
    again = start_run("resumable", params={"lora_rank": 8}, resume_run_id=first.run_id, on_warning=warnings.append)
    again.log_metrics({"loss": 1.5}, step=2)

    client = MlflowClient(tracking_uri=file_store)
    assert (again.run_id, client.get_run(first.run_id).info.status, warnings) == (first.run_id, "RUNNING", [])
    assert [(m.step, m.value) for m in client.get_metric_history(first.run_id, "loss")] == [(1, 2.0), (2, 1.5)]
