"""The job framework (ftplatform.jobrows): one status enum, an attempt row per try, one cancel protocol that
imports, exports, evaluations and training runs all honour, each stopping at a safe point with nothing half-kept."""
import json
import os
import socket
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from curation.exports import start_snapshot_export
from curation.imports import cancel_import, create_import_batch
from curation.jobs import run_import, run_snapshot_export
from curation.models import Example, ImportBatch, SnapshotExport
from evaluation.models import EvalRun
from evaluation.services import cancel_eval_run, start_eval_run
from ftplatform import queues
from ftplatform.errors import Conflict, NotAllowed
from ftplatform.jobrows import JobAttempt, JobStatus, claim, finish
from tests.support.factories import (
    AnnotatorFactory,
    DatasetFactory,
    EngineerFactory,
    conversation,
    snapshot_of,
    tiny_base_model,
)
from training.model_versions import prompted_model_version

pytestmark = pytest.mark.django_db


def queued_import(tmp_path, lines: int = 5, by=None) -> ImportBatch:
    path = tmp_path / "examples.jsonl"
    path.write_text("".join(json.dumps({"messages": conversation(f"name: Place {n}", f"Place {n} is a pub.")}) + "\n"
                            for n in range(lines)))
    return create_import_batch(DatasetFactory(), path, "chat_jsonl", by=by or AnnotatorFactory())


def test_each_try_is_an_attempt_row_naming_its_worker_and_outcome(tmp_path):
    batch = queued_import(tmp_path)
    claimed = claim(ImportBatch, batch.pk)
    attempt = JobAttempt.objects.get()
    assert (attempt.job, attempt.number, attempt.status, attempt.finished_at) == (batch, 1, JobStatus.RUNNING, None)
    assert attempt.worker == f"{socket.gethostname()}:{os.getpid()}"
    assert finish(claimed, JobStatus.FAILED, error="disk full")
    attempt.refresh_from_db()
    assert (attempt.status, attempt.error) == (JobStatus.FAILED, "disk full") and attempt.finished_at is not None
    # A conditional end that no longer matches changes neither the row nor its attempt.
    assert not finish(claimed, JobStatus.SUCCEEDED, where={"status": JobStatus.RUNNING})
    assert JobAttempt.objects.get().status == JobStatus.FAILED


def test_a_queued_job_is_cancelled_at_once_and_never_claimed(tmp_path):
    batch = queued_import(tmp_path)
    cancelled = cancel_import(batch, by=batch.created_by)
    assert (cancelled.status, cancelled.cancel_requested) == (JobStatus.CANCELLED, True)
    assert claim(ImportBatch, batch.pk) is None and not JobAttempt.objects.exists()
    with pytest.raises(Conflict, match=f"import {batch.pk} has already cancelled"):
        cancel_import(batch, by=batch.created_by)


def test_only_the_creator_or_an_engineer_may_cancel(tmp_path):
    batch = queued_import(tmp_path)
    with pytest.raises(NotAllowed, match=f"import {batch.pk}: only its creator or an engineer can cancel it"):
        cancel_import(batch, by=AnnotatorFactory())
    assert cancel_import(batch, by=EngineerFactory()).status == JobStatus.CANCELLED


def test_a_running_import_stops_at_its_next_chunk_and_imports_nothing(tmp_path):
    batch = queued_import(tmp_path, lines=50)

    def cancel_midway(done, total):  # a cancel arriving while the job reads, as from the API
        if done:
            ImportBatch.objects.filter(pk=batch.pk).update(cancel_requested=True)

    run_import(batch.pk, on_progress=cancel_midway)
    batch.refresh_from_db()
    assert (batch.status, batch.error) == (JobStatus.CANCELLED, "cancelled; nothing was imported")
    assert not Example.objects.exists()
    assert JobAttempt.objects.get().status == JobStatus.CANCELLED


def test_a_cancelled_export_keeps_no_files(tmp_path, artifacts_root, e2e_records):
    snapshot = snapshot_of(e2e_records[:30])
    export = start_snapshot_export(snapshot, by=EngineerFactory())
    SnapshotExport.objects.filter(pk=export.pk).update(cancel_requested=True)  # cancelled after a worker took it
    run_snapshot_export(export.pk)
    export.refresh_from_db()
    assert (export.status, export.error, export.path) == (JobStatus.CANCELLED, "cancelled; no files were kept", "")
    assert list((Path(artifacts_root) / "exports").iterdir()) == []


@pytest.mark.slow
def test_a_running_evaluation_stops_before_its_next_input_and_keeps_no_predictions(e2e_records, tiny_model_dir):
    from evaluation.jobs import run_evaluation

    snapshot = snapshot_of(e2e_records[:60])
    engineer = EngineerFactory()
    version, _ = prompted_model_version(tiny_base_model(tiny_model_dir), snapshot.dataset.system_prompt, by=engineer)
    run = start_eval_run(version, snapshot, by=engineer, generation={"max_new_tokens": 4})
    EvalRun.objects.filter(pk=run.pk).update(cancel_requested=True)  # asked to stop once a worker had it
    run_evaluation(run.pk)
    run.refresh_from_db()
    assert (run.status, run.error, run.done) == (JobStatus.CANCELLED, "cancelled; no predictions were kept", 0)
    assert not run.predictions.exists() and run.metrics == {}
    with pytest.raises(Conflict, match=f"eval run {run.pk} has already cancelled"):
        cancel_eval_run(run, by=engineer)


def test_the_api_cancels_for_the_creator_and_refuses_others_with_a_reason(tmp_path):
    batch = queued_import(tmp_path)
    other = APIClient()
    other.force_authenticate(AnnotatorFactory())
    refused = other.post(f"/api/v1/imports/{batch.pk}/cancel/")  # another annotator does not even see it
    assert (refused.status_code, refused.json()) == (404, {"detail": "No ImportBatch matches the given query."})
    assert ImportBatch.objects.get(pk=batch.pk).status == JobStatus.QUEUED
    creator = APIClient()
    creator.force_authenticate(batch.created_by)
    done = creator.post(f"/api/v1/imports/{batch.pk}/cancel/")
    assert (done.status_code, done.json()["status"]) == (200, "cancelled")
    again = creator.post(f"/api/v1/imports/{batch.pk}/cancel/")
    assert (again.status_code, again.json()) == (409, {"detail": f"import {batch.pk} has already cancelled"})


def test_a_job_redis_refuses_ends_failed_instead_of_staying_queued(tmp_path, settings,
                                                                   django_capture_on_commit_callbacks):
    from curation.imports import start_import

    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    path = tmp_path / "examples.jsonl"
    path.write_text(json.dumps({"messages": conversation("q", "a")}) + "\n")
    with django_capture_on_commit_callbacks(execute=True):
        batch = start_import(DatasetFactory(), path, "chat_jsonl", by=AnnotatorFactory())
    batch.refresh_from_db()
    assert (batch.status, batch.error) == (
        JobStatus.FAILED, "the job could not be queued: Redis is unavailable (ConnectionError); start it again")


_running = []
_most_at_once = []


def _count_overlap(nested: bool = False):
    """A job function for run_in_process: how many run at once; ``nested`` starts another from inside."""
    import time

    _running.append(1)
    _most_at_once.append(len(_running))
    time.sleep(0.05)
    if nested:
        queues.run_in_process("tests.ftplatform.test_jobs._count_overlap", job_id="inner")
    _running.pop()


def test_in_process_jobs_run_one_at_a_time_even_from_several_threads_and_may_start_another():
    import threading

    _most_at_once.clear()
    job = "tests.ftplatform.test_jobs._count_overlap"
    threads = [threading.Thread(target=queues.run_in_process, args=(job, i == 0), kwargs={"job_id": f"job-{i}"})
               for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)  # the nested start did not deadlock
    assert len(_most_at_once) == 5  # four jobs and the one the first started
    assert max(_most_at_once) == 2  # only the nested job ever ran beside another: its own parent
