"""Evaluation under concurrent use: two workers evaluating one version at once (PostgreSQL + Redis),
and judgments of one pair posted at once (PostgreSQL row locks)."""
import time

import pytest
from django.db import connection

from evaluation.models import EvalRun, PairwiseJudgment
from evaluation.ratings import next_pair_to_judge
from evaluation.services import start_eval_run
from ftplatform.jobrows import JobStatus
from tests.support.clients import client_for, post_remote_version
from tests.support.factories import EngineerFactory, RaterFactory, snapshot_of, two_eval_runs
from tests.support.threads import in_threads
from tests.support.workers import start_worker, stop_worker
from training.models import ModelVersion


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_eval_runs_of_one_version_in_two_workers_at_once_keep_their_results_apart(
        e2e_records, fake_openai, settings, artifacts_root):
    """PostgreSQL + Redis: two `manage.py worker` processes evaluate one remote version on two splits
    at the same time; each run holds exactly its own split's inputs, each answered to its own input."""
    fake_openai.delay_s = 0.05  # both runs are generating at once
    fake_openai.reply = lambda messages: "echo: " + messages[-1]["content"]
    engineer = EngineerFactory()
    version = ModelVersion.objects.get(pk=post_remote_version(base_url=fake_openai.base_url,
                                                              remote_model="fake-model").json()["id"])
    snapshot = snapshot_of(e2e_records[:60])
    workers = [start_worker(settings, artifacts_root, ["evaluation"], name=f"eval-adversarial-{i}") for i in (1, 2)]
    try:
        runs = [start_eval_run(version, snapshot, by=engineer, split=split) for split in ("test", "validation")]
        deadline = time.monotonic() + 120
        while (EvalRun.objects.filter(pk__in=[r.pk for r in runs], status__in=["queued", "running"]).exists()
               and time.monotonic() < deadline):
            time.sleep(0.5)
    finally:
        logs = [stop_worker(worker) for worker in workers]
    for run in runs:
        run.refresh_from_db()
        assert run.status == JobStatus.SUCCEEDED, (run.error, logs)
        expected = {item.input_hash: "echo: " + item.messages[-2]["content"]
                    for item in snapshot.items.filter(split=run.split)}
        assert dict(run.predictions.values_list("input_hash", "output")) == expected
        assert run.done == run.total == len(expected) == run.metrics["n_inputs"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL row locks")
def test_concurrent_judgments_of_one_pair_in_both_orders_store_one_and_answer_409():
    _, (run_a, run_b) = two_eval_runs()
    rater = RaterFactory()
    tokens = [next_pair_to_judge(x, y, by=rater)[2] for x, y in ((run_a, run_b), (run_b, run_a))] * 3
    statuses = in_threads(6, lambda i: client_for(rater).post(
        "/api/v1/judgments/", {"token": tokens[i], "choice": "left"}, format="json").status_code)
    assert sorted(statuses) == [201, 409, 409, 409, 409, 409]
    assert PairwiseJudgment.objects.count() == 1
