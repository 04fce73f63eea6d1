"""An eval run's liveness: its job's heartbeat, and failing runs whose worker is gone (ftplatform.liveness)."""
import io
import os
import signal
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from evaluation.models import EvalRun
from evaluation.services import reap_lost_eval_runs, start_eval_run
from ftplatform.jobrows import JobStatus
from tests.support.factories import EngineerFactory, snapshot_of, tiny_base_model
from training.model_versions import prompted_model_version

ADVICE = "(killed, or likely out of memory); start the evaluation again"


def queued_eval_run(snapshot, version, django_capture_on_commit_callbacks, **generation):
    with django_capture_on_commit_callbacks(execute=False):  # the test runs the job itself
        return start_eval_run(version, snapshot, by=EngineerFactory(), split="train",
                              generation={"max_new_tokens": 4, **generation})


def lose_heartbeat(run):
    """What a SIGKILLed work-horse leaves behind: a running row whose heartbeat is an hour old."""
    EvalRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))


@pytest.fixture
def eval_setup(e2e_records, tiny_model_dir, settings):
    settings.TRAINING_HEARTBEAT_SECONDS, settings.TRAINING_HEARTBEAT_MARGIN_SECONDS = 10, 20
    snapshot = snapshot_of(e2e_records[:30])
    version, _ = prompted_model_version(tiny_base_model(tiny_model_dir), snapshot.dataset.system_prompt,
                                          by=EngineerFactory())
    return snapshot, version


@pytest.mark.django_db
def test_eval_runs_without_a_recent_heartbeat_are_failed_as_worker_lost(eval_setup,
                                                                        django_capture_on_commit_callbacks):
    runs = [queued_eval_run(*eval_setup, django_capture_on_commit_callbacks) for _ in range(3)]
    now = timezone.now()
    EvalRun.objects.filter(pk=runs[0].pk).update(status=JobStatus.RUNNING, started_at=now - timedelta(hours=1),
                                                 heartbeat_at=now - timedelta(seconds=31), worker="gpu-7:4242")
    EvalRun.objects.filter(pk=runs[1].pk).update(status=JobStatus.RUNNING, started_at=now - timedelta(hours=1),
                                                 heartbeat_at=now - timedelta(seconds=20))
    # runs[2] stays queued: a queued run has no worker yet

    assert reap_lost_eval_runs() == [runs[0].pk]
    lost, alive, queued = (EvalRun.objects.get(pk=r.pk) for r in runs)
    assert lost.status == JobStatus.FAILED and lost.finished_at is not None
    assert lost.error.startswith("worker lost on gpu-7:4242: no heartbeat for 3") and lost.error.endswith(ADVICE)
    assert (alive.status, queued.status) == (JobStatus.RUNNING, JobStatus.QUEUED)
    assert reap_lost_eval_runs() == []


@pytest.mark.django_db
def test_a_reaped_eval_run_is_not_overwritten_when_its_job_finishes(eval_setup, monkeypatch,
                                                                    django_capture_on_commit_callbacks):
    """A work-horse that stops beating but is alive (SIGSTOP, VM pause, swap storm) is failed as
    worker lost while it scores; when it then finishes, the failure stands and no predictions
    are recorded."""
    from evaluation import jobs

    run = queued_eval_run(*eval_setup, django_capture_on_commit_callbacks)
    score_corpus, reaped = jobs.score_corpus, []

    def reaped_while_scoring(*args, **kwargs):
        lose_heartbeat(run)
        reaped.extend(reap_lost_eval_runs())
        return score_corpus(*args, **kwargs)

    monkeypatch.setattr(jobs, "score_corpus", reaped_while_scoring)
    jobs.run_evaluation(run.pk)
    run.refresh_from_db()
    assert reaped == [run.pk]
    assert run.status == JobStatus.FAILED and run.error.endswith(ADVICE), run.error
    assert run.metrics == {} and not run.predictions.exists()


@pytest.mark.django_db
def test_a_reaped_eval_run_stops_generating(eval_setup, monkeypatch, django_capture_on_commit_callbacks):
    from evaluation import jobs

    run = queued_eval_run(*eval_setup, django_capture_on_commit_callbacks)
    make_generator = jobs._generator

    def reaped_after_the_first_answer(*args, **kwargs):
        generate, environment = make_generator(*args, **kwargs)

        def generate_and_lose_the_worker(prompts):
            for index, generation in enumerate(generate(prompts)):
                if index == 1:
                    lose_heartbeat(run)
                    reap_lost_eval_runs()
                yield generation

        return generate_and_lose_the_worker, environment

    monkeypatch.setattr(jobs, "_generator", reaped_after_the_first_answer)
    jobs.run_evaluation(run.pk)
    run.refresh_from_db()
    assert (run.status, run.done) == (JobStatus.FAILED, 1) and run.total > 2, run.error
    assert run.error.endswith(ADVICE) and not run.predictions.exists()


@pytest.mark.django_db
def test_reading_eval_runs_changes_nothing_and_reap_jobs_fails_lost_ones(eval_setup, admin_client,
                                                                        django_capture_on_commit_callbacks):
    """GET requests and admin pages used to fail lost runs as a side effect; now the workers and
    ``manage.py reap_jobs`` do."""
    from django.core.management import call_command

    from tests.support.clients import client_for

    run = queued_eval_run(*eval_setup, django_capture_on_commit_callbacks)
    EvalRun.objects.filter(pk=run.pk).update(status=JobStatus.RUNNING, started_at=timezone.now())
    lose_heartbeat(run)
    client = client_for(EngineerFactory())
    assert client.get(f"/api/v1/eval-runs/{run.pk}/").json()["status"] == "running"
    assert client.get("/api/v1/eval-runs/").json()["results"][0]["status"] == "running"
    for page in ("/admin/evaluation/evalrun/", f"/admin/evaluation/evalrun/{run.pk}/change/"):
        assert admin_client.get(page).status_code == 200
    run.refresh_from_db()
    assert run.status == JobStatus.RUNNING
    out = io.StringIO()
    call_command("reap_jobs", stdout=out)
    run.refresh_from_db()
    assert run.status == JobStatus.FAILED and run.error.endswith(ADVICE)
    assert f"eval run {run.pk}: worker lost, marked failed" in out.getvalue()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_killed_eval_worker_is_detected_by_heartbeat_and_the_run_fails_as_worker_lost(
        e2e_records, tiny_model_dir, settings, artifacts_root):
    """A real `manage.py worker evaluation`: its work-horse is SIGKILLed mid-generation (as the
    kernel's OOM killer would); the worker's reaper fails the run within heartbeat + margin.
    Generation is slow enough to be caught: some 25 inputs of 128 tokens each (the tiny random
    model never stops early), a few tenths of a second per input."""
    from tests.support.workers import start_worker, stop_worker

    worker = start_worker(settings, artifacts_root, ["evaluation"], FTPLATFORM_HEARTBEAT_SECONDS="1",
                          FTPLATFORM_HEARTBEAT_MARGIN_SECONDS="2")
    try:
        snapshot = snapshot_of(e2e_records[:150])
        version, _ = prompted_model_version(tiny_base_model(tiny_model_dir), snapshot.dataset.system_prompt,
                                          by=EngineerFactory())
        run = start_eval_run(version, snapshot, by=EngineerFactory(), split="train",
                             generation={"max_new_tokens": 128})
        deadline = time.monotonic() + 120
        while run.done < 1:
            assert time.monotonic() < deadline, "no input generated within 120 s"
            assert run.status in (JobStatus.QUEUED, JobStatus.RUNNING), run.error
            time.sleep(0.05)
            run.refresh_from_db()
        assert run.done < run.total, "the run generated everything before it could be killed"
        os.kill(int(run.worker.rsplit(":", 1)[1]), signal.SIGKILL)  # the work-horse, not the worker
        killed = time.monotonic()
        while run.status == JobStatus.RUNNING:
            assert time.monotonic() - killed < 1 + 2 + 1 + 6, "the lost run was not failed in time"
            time.sleep(0.2)
            run.refresh_from_db()
    finally:
        log = stop_worker(worker)
    assert run.status == JobStatus.FAILED, run.error + log[-3000:]
    assert run.error.startswith(f"worker lost on {run.worker}: no heartbeat for ") and run.error.endswith(ADVICE)
    assert run.done < run.total and not run.predictions.exists()
