"""Data migrations on rows written before them: snapshots freeze their dataset's settings (curation 0006),
training runs get the system prompt they trained with (training 0005)."""
from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = [("curation", "0005_dataset_metric_settings"), ("training", "0004_few_shot_prompted_versions")]
AFTER = [("curation", "0006_snapshot_frozen_settings"), ("training", "0005_run_system_prompt")]


def migrate(targets):
    """Migrate to ``targets`` and return the historical models' registry there."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return MigrationExecutor(connection).loader.project_state(targets).apps


@pytest.fixture
def old_schema():
    """The schema before the migrations under test; every app back at its newest migration afterwards."""
    apps = migrate(BEFORE)
    yield apps
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_old_rows_get_the_settings_and_prompts_they_used(old_schema):
    apps = old_schema
    now = timezone.now()
    Dataset, HistoricalDataset = apps.get_model("curation", "Dataset"), apps.get_model("curation", "HistoricalDataset")
    dataset = Dataset.objects.create(name="counting", system_prompt="Count them.", language="de",
                                     regex_checks={"digits": r"\d"})
    for when, prompt in ((now - timedelta(days=3), "Count them."), (now - timedelta(days=1), "Count them, in words.")):
        HistoricalDataset.objects.create(id=dataset.pk, name="counting", system_prompt=prompt, language="de",
                                         regex_checks={"digits": r"\d"}, approvals_required=1,
                                         blind_annotation=False, created_at=now - timedelta(days=3),
                                         history_date=when, history_type="~")
    Dataset.objects.filter(pk=dataset.pk).update(system_prompt="Count them, in words.")  # the current prompt
    snapshot = apps.get_model("curation", "Snapshot").objects.create(
        dataset=dataset, content_hash="a" * 64, seed=0, split_fractions={"train": 1.0, "validation": 0.0,
                                                                         "test": 0.0},
        split_counts={"train": 2}, example_count=2)
    for answer in ("3", "12"):
        apps.get_model("curation", "SnapshotItem").objects.create(
            snapshot=snapshot, example_content_hash=answer.rjust(64, "c"), input_hash=answer.rjust(64, "i"),
            split="train",
            messages=[{"role": "user", "content": "How many?"}, {"role": "assistant", "content": answer}])
    base = apps.get_model("training", "BaseModel").objects.create(name="tiny", source_kind="local_folder",
                                                                  source="/nonexistent")
    TrainingRun = apps.get_model("training", "TrainingRun")
    started_between = TrainingRun.objects.create(snapshot=snapshot, base_model=base, hyperparameters={})
    TrainingRun.objects.filter(pk=started_between.pk).update(started_at=now - timedelta(days=2))
    before_history = TrainingRun.objects.create(snapshot=snapshot, base_model=base, hyperparameters={})
    TrainingRun.objects.filter(pk=before_history.pk).update(created_at=now - timedelta(days=5))

    apps = migrate(AFTER)
    snapshot = apps.get_model("curation", "Snapshot").objects.get(pk=snapshot.pk)
    # The dataset's current settings, its hash untouched and marked as not covering them.
    assert (snapshot.system_prompt, snapshot.language, snapshot.regex_checks) == (
        "Count them, in words.", "de", {"digits": r"\d"})
    assert (snapshot.content_hash, snapshot.hash_version) == ("a" * 64, 1)
    assert snapshot.primary_metric == "exact_match"  # proposed: the outputs are numbers
    runs = apps.get_model("training", "TrainingRun").objects
    assert runs.get(pk=started_between.pk).system_prompt == "Count them."  # as the dataset said at its start
    assert runs.get(pk=before_history.pk).system_prompt is None  # no history that old: not known
