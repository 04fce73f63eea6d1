"""Commands name snapshots and model versions by id, by name, or by their dataset's name, so the
own-task sequence in the docs needs no id (curation.selectors.snapshot_by_reference,
training.model_versions.model_version_by_reference)."""
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from curation.selectors import snapshot_by_reference
from ftplatform.errors import ServiceError
from tests.support.factories import DatasetFactory, ReviewerFactory, approved_snapshot, unloadable_base_model
from training.model_versions import model_version_by_reference
from training.models import ModelVersion, TrainingRun

pytestmark = pytest.mark.django_db


def test_a_dataset_name_names_its_newest_snapshot_of_the_status_asked():
    dataset = DatasetFactory(name="my-task")
    approved = approved_snapshot(dataset, [("a", "b")])
    pending = approved_snapshot(dataset, [("c", "d")], approve=False)
    assert snapshot_by_reference("my-task") == approved
    assert snapshot_by_reference("my-task", status="pending_review") == pending
    assert snapshot_by_reference(str(pending.pk)) == pending
    with pytest.raises(ServiceError, match="no snapshot 'other': give a snapshot id or a dataset name"):
        snapshot_by_reference("other")
    with pytest.raises(ServiceError, match="dataset 'my-task' has no snapshot rejected"):
        snapshot_by_reference("my-task", status="rejected")


def test_review_snapshot_takes_the_dataset_name():
    dataset = DatasetFactory(name="my-task")
    pending = approved_snapshot(dataset, [("a", "b")], approve=False)
    bob = ReviewerFactory(username="bob")
    out = StringIO()
    call_command("review_snapshot", "my-task", "--approve", "--as", bob.username, stdout=out)
    assert out.getvalue().strip() == f"snapshot {pending.pk} is now approved"
    with pytest.raises(CommandError, match="dataset 'my-task' has no snapshot pending review"):
        call_command("review_snapshot", "my-task", "--approve", "--as", bob.username)


def test_a_model_version_is_named_by_id_name_or_its_dataset():
    snapshot = approved_snapshot(DatasetFactory(name="my-task"), [("a", "b")])
    base = unloadable_base_model()
    tuned = [ModelVersion.objects.create(
        name=f"tiny + LoRA (run {i})", kind="lora_adapter", base_model=base,
        training_run=TrainingRun.objects.create(snapshot=snapshot, base_model=base, hyperparameters={},
                                                status="succeeded")) for i in range(2)]
    prompted = [ModelVersion.objects.create(name="tiny (prompted)", kind="prompted_base", base_model=base,
                                            system_prompt=prompt) for prompt in ("one", "two")]
    assert model_version_by_reference("my-task") == tuned[1]  # the newest fine-tuned on the dataset
    assert model_version_by_reference("tiny + LoRA (run 0)") == tuned[0]
    assert model_version_by_reference(str(prompted[0].pk)) == prompted[0]
    with pytest.raises(ServiceError, match=rf"2 model versions are named 'tiny \(prompted\)' \(ids "
                                           rf"{prompted[0].pk}, {prompted[1].pk}\); give the id"):
        model_version_by_reference("tiny (prompted)")
    with pytest.raises(CommandError, match="no model version 'nothing': give an id, a model version's name, or a "
                                           "dataset's name"):
        call_command("report", "nothing")
