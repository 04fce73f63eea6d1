"""Every create and decision is in the history: who, when, what changed, why."""
import json

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from curation.imports import import_examples
from curation.models import Example
from curation.snapshots import approve_snapshot, create_snapshot
from curation.workflow import approve_example, reject_example, submit_example
from tests.support.factories import AnnotatorFactory, DatasetFactory, EngineerFactory, ReviewerFactory

pytestmark = pytest.mark.django_db

LINE = json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}).encode()


def imported_example():
    author = AnnotatorFactory(username="annie")
    import_examples(DatasetFactory(), LINE, "chat_jsonl", by=author, filename="f.jsonl")
    return Example.objects.get()


def test_import_reject_resubmit_approve_are_four_history_records():
    example = imported_example()
    reviewer = ReviewerFactory(username="rita")
    reject_example(example, by=reviewer, comment="typo")
    submit_example(example, by=example.author)
    approve_example(example, by=reviewer)

    records = list(example.history.order_by("history_id"))
    assert [(r.history_type, str(r.history_user), r.history_change_reason) for r in records] == [
        ("+", "annie", f"imported (batch {example.import_batch_id}, f.jsonl)"),
        ("~", "rita", "rejected"),
        ("~", "annie", "submitted"),
        ("~", "rita", "approved (1/1)"),
    ]
    assert [r.version for r in records] == [1, 2, 3, 4]


def test_api_history_lists_changes_newest_first_with_a_cursor():
    example = imported_example()
    approve_example(example, by=ReviewerFactory(username="rita"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=EngineerFactory()).key}")

    body = client.get(f"/api/v1/examples/{example.pk}/history/").json()

    newest = body["results"][0]
    assert (newest["type"], newest["user"], newest["reason"]) == ("changed", "rita", "approved (1/1)")
    assert {"field": "status", "old": "submitted", "new": "approved"} in newest["changes"]
    assert body["results"][1]["type"] == "created" and "next" in body


def test_snapshot_history_records_its_review():
    example = imported_example()
    approve_example(example, by=ReviewerFactory())
    creator, reviewer = EngineerFactory(username="eng"), ReviewerFactory(username="sam")
    snapshot, _ = create_snapshot(example.dataset, by=creator)
    approve_snapshot(snapshot, by=reviewer, comment="ok")
    assert [(str(r.history_user), r.history_change_reason) for r in snapshot.history.order_by("history_id")] == [
        ("eng", "created"), ("sam", "approved")]


def test_admin_history_page_shows_the_decision(client, django_user_model):
    example = imported_example()
    approve_example(example, by=ReviewerFactory(username="rita"))
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw"))
    page = client.get(reverse("admin:curation_example_history", args=[example.pk])).content.decode()
    assert "approved (1/1)" in page and "rita" in page


def test_history_version_pages_never_save_a_revert(client):
    dataset = DatasetFactory(description="before")
    dataset.description = "after"
    dataset.save()
    first = dataset.history.earliest()
    for user in (AnnotatorFactory(), ReviewerFactory(), EngineerFactory()):
        client.force_login(user)
        url = reverse("admin:curation_dataset_simple_history", args=[dataset.pk, first.history_id])
        response = client.post(url, {"name": dataset.name, "description": "pwned", "approvals_required": 1})
        assert response.status_code == 403
    dataset.refresh_from_db()
    assert dataset.description == "after"
