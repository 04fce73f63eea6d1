"""The curation admin: example pages show the conversation, uploads are all-or-nothing, actions and
the structured editor go through the workflow services."""
import json

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from curation.choices import ExampleStatus
from curation.models import Example, ImportBatch
from tests.support.factories import DatasetFactory, ExampleFactory, ReviewerFactory

pytestmark = pytest.mark.django_db


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


def test_an_examples_dataset_cannot_be_changed_in_the_admin(superuser_client):
    example, other = ExampleFactory(status=ExampleStatus.APPROVED), DatasetFactory()
    superuser_client.post(reverse("admin:curation_example_change", args=[example.pk]), {"dataset": other.pk})
    example.refresh_from_db()
    assert example.dataset_id != other.pk


def management(total, initial):
    return {"form-TOTAL_FORMS": str(total), "form-INITIAL_FORMS": str(initial), "form-MIN_NUM_FORMS": "0",
            "form-MAX_NUM_FORMS": "1000"}


def test_structured_editor_saves_the_conversation_and_sends_it_back_to_review(superuser_client, django_user_model):
    example = ExampleFactory(status=ExampleStatus.APPROVED, author=django_user_model.objects.get(username="root"))
    url = reverse("admin:curation_example_edit_messages", args=[example.pk])
    page = superuser_client.get(url).content.decode()
    assert 'name="form-1-content"' in page and example.output_text in page

    superuser_client.post(url, {**management(3, 2), "expected_version": example.version,
                                "form-0-role": "user", "form-0-content": "name: Aromi",
                                "form-1-role": "assistant", "form-1-content": "Aromi is a pub.",
                                "form-2-role": "system", "form-2-content": ""})
    example.refresh_from_db()
    assert example.output_text == "Aromi is a pub." and example.status == ExampleStatus.SUBMITTED


def test_structured_editor_shows_the_error_on_the_message_and_refuses_stale_versions(superuser_client,
                                                                                     django_user_model):
    example = ExampleFactory(author=django_user_model.objects.get(username="root"))
    url = reverse("admin:curation_example_edit_messages", args=[example.pk])
    bad = superuser_client.post(url, {**management(2, 2), "expected_version": example.version,
                                      "form-0-role": "user", "form-0-content": "q",
                                      "form-1-role": "assistant", "form-1-content": "   "}).content.decode()
    assert "message 2 (assistant) has empty content" in bad
    # on the second message's row, under its content, not at the top of the page
    error = f'<p class="errornote">example {example.pk}: message 2 (assistant) has empty content</p>'
    assert bad.index('name="form-1-content"') < bad.index(error)
    stale = superuser_client.post(url, {**management(2, 2), "expected_version": example.version - 1 or 99,
                                        "form-0-role": "user", "form-0-content": "q",
                                        "form-1-role": "assistant", "form-1-content": "fine"}, follow=True)
    assert "changed since you loaded it" in stale.content.decode()
    example.refresh_from_db()
    assert example.version == 1
