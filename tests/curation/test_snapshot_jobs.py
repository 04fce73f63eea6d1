"""Large snapshots are made by a worker as a SnapshotJob: the API answers 202, the job records its stage and
progress, a cancel stops it at the next stage or chunk with nothing written, a refusal ends it failed with why."""
import pytest
from rest_framework.test import APIClient

from curation import snapshots
from curation.choices import ExampleStatus
from curation.jobs import run_snapshot_job
from curation.models import Snapshot, SnapshotItem, SnapshotJob
from curation.snapshots import create_snapshot, start_snapshot_job
from ftplatform.jobrows import JobCancelled, JobStatus
from tests.support.factories import DatasetFactory, EngineerFactory, ExampleFactory, conversation


def approved_dataset(n: int):
    dataset = DatasetFactory()
    for i in range(n):
        ExampleFactory(dataset=dataset, status=ExampleStatus.APPROVED,
                       messages=conversation(f"name: Place {i}; food: dish {i * 7}", f"Place {i} serves dish {i * 7}."))
    return dataset


@pytest.mark.django_db
def test_a_dataset_over_the_inline_limit_is_snapshotted_by_a_job_the_api_answers_202_for(
        settings, django_capture_on_commit_callbacks, run_jobs):
    settings.SNAPSHOT_INLINE_MAX_EXAMPLES = 5
    dataset, engineer = approved_dataset(12), EngineerFactory()
    client = APIClient()
    client.force_authenticate(engineer)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/v1/snapshots/", {"dataset": dataset.pk, "seed": 3}, format="json")
    assert response.status_code == 202
    run_jobs()  # with REDIS_URL, a worker; without, it already ran after the commit
    job = client.get(f"/api/v1/snapshot-jobs/{response.json()['id']}/").json()
    assert (job["status"], job["stage"], job["done"], job["total"], job["created"]) == (
        "succeeded", "done", 12, 12, True)
    snapshot = Snapshot.objects.get(pk=job["snapshot"])
    assert (snapshot.dataset, snapshot.seed, snapshot.example_count, snapshot.items.count()) == (dataset, 3, 12, 12)
    settings.SNAPSHOT_INLINE_MAX_EXAMPLES = 100  # small again: made in the request, the same snapshot (200)
    again = client.post("/api/v1/snapshots/", {"dataset": dataset.pk, "seed": 3}, format="json")
    assert (again.status_code, again.json()["id"]) == (200, snapshot.pk)


@pytest.mark.django_db
def test_a_cancel_after_the_worker_took_it_stops_at_the_first_stage(django_capture_on_commit_callbacks):
    dataset, engineer = approved_dataset(4), EngineerFactory()
    with django_capture_on_commit_callbacks(execute=False):
        job = start_snapshot_job(dataset, by=engineer)
    SnapshotJob.objects.filter(pk=job.pk).update(cancel_requested=True)
    run_snapshot_job(job.pk)
    job.refresh_from_db()
    assert (job.status, job.error, job.snapshot) == (JobStatus.CANCELLED, "cancelled; no snapshot was written", None)
    assert not Snapshot.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_cancel_while_items_are_written_leaves_no_snapshot_and_no_items(monkeypatch):
    monkeypatch.setattr(snapshots, "ITEMS_PER_CHUNK", 3)
    dataset, stages = approved_dataset(10), []

    def progress(stage, done, total):
        stages.append((stage, done, total))
        if stage == "writing items" and done >= 6:
            raise JobCancelled

    with pytest.raises(JobCancelled):
        create_snapshot(dataset, by=EngineerFactory(), on_progress=progress)
    assert not Snapshot.objects.exists() and not SnapshotItem.objects.exists()  # one transaction, rolled back
    assert [s for s in stages if s[0] != "quality gate"] == [
        ("reading examples", 0, None), ("near-duplicate inputs", 0, 10),
        ("writing items", 0, 10), ("writing items", 3, 10), ("writing items", 6, 10)]
    assert [s[1] for s in stages if s[0] == "quality gate"] == list(range(1, 11))


@pytest.mark.django_db
def test_a_snapshot_the_quality_gate_refuses_ends_the_job_failed_with_why(django_capture_on_commit_callbacks):
    dataset = approved_dataset(3)
    bad = ExampleFactory(dataset=dataset, status=ExampleStatus.APPROVED, messages=conversation("q", "\u200b"))
    with django_capture_on_commit_callbacks(execute=False):
        job = start_snapshot_job(dataset, by=EngineerFactory())
    run_snapshot_job(job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert f"the quality gate refused the snapshot, 1 blocking finding(s): example {bad.pk}" in job.error
    assert not Snapshot.objects.exists()
