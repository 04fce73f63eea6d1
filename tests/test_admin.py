"""The admin: pages render, imports upload all-or-nothing, actions call the workflow services."""
import json

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from curation.choices import ExampleStatus
from curation.models import Example, ImportBatch
from tests.factories import DatasetFactory, ExampleFactory, ReviewerFactory

pytestmark = pytest.mark.django_db

CHANGELISTS = ["curation_dataset", "curation_example", "curation_review", "curation_importbatch",
               "curation_snapshot", "curation_snapshotitem", "training_basemodel", "training_trainingrun",
               "training_modelversion", "evaluation_evalrun"]


@pytest.fixture
def superuser_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw"))
    return client


@pytest.mark.parametrize("name", CHANGELISTS)
def test_changelists_render(superuser_client, name):
    assert superuser_client.get(reverse(f"admin:{name}_changelist")).status_code == 200


def test_example_page_shows_the_conversation_readably_not_as_json(superuser_client):
    example = ExampleFactory(messages=[{"role": "user", "content": "name: Aromi"},
                                       {"role": "assistant", "content": "Aromi is a pub."}])
    page = superuser_client.get(reverse("admin:curation_example_change", args=[example.pk])).content.decode()
    assert "<strong>assistant</strong><br>Aromi is a pub." in page
    assert '"role": "assistant"' not in page


def test_upload_with_a_bad_line_imports_nothing_and_says_which_line(superuser_client):
    dataset = DatasetFactory()
    good = json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    response = superuser_client.post(reverse("admin:curation_importbatch_add"), {
        "dataset": dataset.pk, "format": "chat_jsonl",
        "file": SimpleUploadedFile("x.jsonl", f"{good}\n{{\"messages\": 3}}\n".encode()),
    }, follow=True)
    assert "line 2: &#x27;messages&#x27; must be a non-empty list" in response.content.decode()
    assert ImportBatch.objects.get().status == "failed"
    assert Example.objects.count() == 0


def test_approve_action_records_the_admin_user_as_reviewer(client):
    reviewer = ReviewerFactory(is_staff=True)
    reviewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_example", "change_example"]))
    client.force_login(reviewer)
    example = ExampleFactory()
    client.post(reverse("admin:curation_example_changelist"),
                {"action": "approve_selected", "_selected_action": [example.pk]})
    example.refresh_from_db()
    assert example.status == ExampleStatus.APPROVED
    assert example.reviews.get().reviewer == reviewer


def test_reject_action_asks_for_a_comment_first(superuser_client):
    example = ExampleFactory()
    url = reverse("admin:curation_example_changelist")
    page = superuser_client.post(url, {"action": "reject_selected", "_selected_action": [example.pk]})
    assert b"comment is shown to the author" in page.content
    example.refresh_from_db()
    assert example.status == ExampleStatus.SUBMITTED

    superuser_client.post(url, {"action": "reject_selected", "_selected_action": [example.pk], "confirm": "yes",
                                "comment": "output names the wrong area"})
    example.refresh_from_db()
    assert example.status == ExampleStatus.REJECTED
    assert example.reviews.get().comment == "output names the wrong area"
