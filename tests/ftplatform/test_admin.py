"""The admin site as a whole: every app's changelist renders."""
import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


CHANGELISTS = ["curation_dataset", "curation_example", "curation_review", "curation_importbatch",
               "curation_snapshot", "curation_snapshotitem", "training_basemodel", "training_trainingrun",
               "training_modelversion", "evaluation_evalrun"]


@pytest.mark.parametrize("name", CHANGELISTS)
def test_changelists_render(superuser_client, name):
    assert superuser_client.get(reverse(f"admin:{name}_changelist")).status_code == 200
