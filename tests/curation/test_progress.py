import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from curation.selectors import dataset_progress
from curation.workflow import approve_example, reject_example
from tests.support.factories import AnnotatorFactory, DatasetFactory, EngineerFactory, ExampleFactory, ReviewerFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewed_dataset():
    dataset = DatasetFactory()
    ann, bea = AnnotatorFactory(username="ann"), AnnotatorFactory(username="bea")
    rita = ReviewerFactory(username="rita")
    first, second, third = (ExampleFactory(dataset=dataset, author=a) for a in (ann, ann, bea))
    approve_example(first, by=rita)
    reject_example(second, by=rita, comment="fix the area")
    ExampleFactory(author=ann)  # another dataset: not counted
    return dataset


def test_progress_counts_states_annotators_and_reviewers(reviewed_dataset):
    report = dataset_progress(reviewed_dataset)
    assert report["by_status"] == {"draft": 0, "submitted": 1, "approved": 1, "rejected": 1}
    assert report["total"] == 3
    assert report["annotators"][0] == {"annotator": "ann", "examples": 2, "draft": 0, "submitted": 0,
                                       "approved": 1, "rejected": 1}
    rita = report["reviewers"][0]
    assert (rita["reviewer"], rita["decisions"], rita["approvals"], rita["rejections"], rita["last_24h"]) == (
        "rita", 2, 1, 1, 2)


def test_progress_in_the_api_and_the_admin(reviewed_dataset, client, django_user_model):
    api = APIClient()
    api.force_authenticate(EngineerFactory())
    assert api.get(f"/api/v1/datasets/{reviewed_dataset.pk}/progress/").json()["by_status"]["approved"] == 1

    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw"))
    page = client.get(reverse("admin:curation_dataset_change", args=[reviewed_dataset.pk])).content.decode()
    assert "3 examples" in page and "<td>rita</td>" in page
