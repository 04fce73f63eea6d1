"""A training run on a share of its snapshot's train split (a learning curve's point)."""
from pathlib import Path

import pytest

from curation.choices import Split
from ftplatform.errors import ServiceError
from ftplatform.jobrows import JobStatus
from tests.support.clients import client_for
from tests.support.factories import TINY_HYPERPARAMETERS, EngineerFactory, snapshot_of, tiny_base_model
from training.models import TrainingRun
from training.runs import start_training_run, subset_size


@pytest.mark.django_db
def test_a_run_on_a_share_trains_on_that_share_when_the_job_runs_its_preflight(
        e2e_records, tiny_model_dir, settings, django_capture_on_commit_callbacks):
    from training.jobs import run_training

    settings.PREFLIGHT_INLINE_MAX_EXAMPLES = 5  # the job's first stage runs the pre-flight of the share
    snapshot = snapshot_of(e2e_records[:60])
    engineer = EngineerFactory()
    with django_capture_on_commit_callbacks(execute=False):
        run = start_training_run(snapshot, tiny_base_model(tiny_model_dir), by=engineer,
                                 hyperparameters=TINY_HYPERPARAMETERS, train_fraction=0.5, subset_seed=2)
    share = subset_size(snapshot, Split.TRAIN, 0.5, 2)[1]
    assert (run.preflight, run.train_fraction, run.train_subset_seed, run.train_examples) == ({}, 0.5, 2, share)
    assert share < snapshot.split_counts["train"]

    run_training(run.pk)
    run.refresh_from_db()
    assert run.status == JobStatus.SUCCEEDED, run.error
    assert run.preflight["train_examples"] == run.metrics["train_examples"] == share
    logs = list(run.events.filter(kind="log").values_list("message", flat=True))
    assert f"pre-flight: checking {share} train examples" in logs
    assert any(log.startswith(f"training on {share} examples (50% of the train split's inputs, seed 2)")
               for log in logs)
    card = (Path(run.model_version.adapter_path) / "README.md").read_text()
    assert "Training used 50% of the train split's distinct inputs with all their outputs" in card
    assert "(a seeded, nested share, seed `2`: a learning curve's point)" in card
    body = client_for(engineer).get(f"/api/v1/training-runs/{run.pk}/").json()
    assert (body["train_fraction"], body["train_subset_seed"], body["train_examples"]) == (0.5, 2, share)


@pytest.mark.django_db
@pytest.mark.parametrize("fraction", [0, 1.5, -0.1])
def test_a_share_outside_zero_to_one_is_refused(e2e_records, tiny_model_dir, fraction):
    with pytest.raises(ServiceError, match=f"train fraction must be above 0 and at most 1, got {fraction}"):
        start_training_run(snapshot_of(e2e_records[:40]), tiny_base_model(tiny_model_dir), by=EngineerFactory(),
                           hyperparameters=TINY_HYPERPARAMETERS, train_fraction=fraction)
    assert not TrainingRun.objects.exists()
