"""The admin site as a whole: every app's changelist renders; pages with nothing to edit offer no Save."""
import pytest
from django.urls import reverse

from tests.support.factories import AnnotatorFactory, EngineerFactory, ExampleFactory, snapshot_of, tiny_base_model
from training.models import TrainingRun

pytestmark = pytest.mark.django_db


CHANGELISTS = ["curation_dataset", "curation_example", "curation_review", "curation_importbatch",
               "curation_snapshot", "curation_snapshotitem", "training_basemodel", "training_trainingrun",
               "training_modelversion", "evaluation_evalrun"]


@pytest.mark.parametrize("name", CHANGELISTS)
def test_changelists_render(superuser_client, name):
    assert superuser_client.get(reverse(f"admin:{name}_changelist")).status_code == 200


def _save_buttons(page: str) -> list[str]:
    return [name for name in ('name="_save"', 'name="_continue"', 'name="_addanother"') if name in page]


def test_pages_with_nothing_to_edit_show_no_save_buttons(client, tmp_path):
    """The trial: an example's page (edited in the structured editor) and a training run's page (every
    field read-only) offered Save, Save and continue editing, and Save and add another."""
    ann = AnnotatorFactory()
    example = ExampleFactory(author=ann, status="draft")
    client.force_login(ann)
    page = client.get(reverse("admin:curation_example_change", args=[example.pk])).content.decode()
    assert "Edit conversation" in page and _save_buttons(page) == []

    engineer = EngineerFactory()
    snapshot = snapshot_of([{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                                          {"role": "assistant", "content": "a"}]}])
    run = TrainingRun.objects.create(snapshot=snapshot, base_model=tiny_base_model(tmp_path), hyperparameters={})
    client.force_login(engineer)
    page = client.get(reverse("admin:training_trainingrun_change", args=[run.pk])).content.decode()
    assert "Training run" in page and _save_buttons(page) == []
    # A page with fields to edit keeps them.
    page = client.get(reverse("admin:curation_dataset_change", args=[snapshot.dataset_id])).content.decode()
    assert _save_buttons(page) == ['name="_save"', 'name="_continue"', 'name="_addanother"']
