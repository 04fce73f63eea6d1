"""The admin review page of a snapshot: report, splits, tokens, diff, history; approve and reject."""
import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from curation.choices import SnapshotStatus
from curation.snapshots import approve_snapshot, create_snapshot
from tests.support.factories import (
    DatasetFactory,
    EngineerFactory,
    ReviewerFactory,
    UserFactory,
    approved_example,
    approved_places,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewer_client(client):
    reviewer = ReviewerFactory(is_staff=True)
    reviewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_snapshot", "view_example"]))
    client.force_login(reviewer)
    client.user = reviewer
    return client


@pytest.fixture
def pending_snapshot():
    dataset = DatasetFactory()
    approved_places(dataset, 6)
    approved_example(dataset, "name: Aromi, phone: +44 20 7946 0958", "Aromi is a pub.")
    previous, _ = create_snapshot(dataset, by=EngineerFactory())
    approve_snapshot(previous, by=ReviewerFactory())
    approved_example(dataset, "name: Zizzi, eatType: pub", "Zizzi is a pub.")
    snapshot, _ = create_snapshot(dataset, by=EngineerFactory())
    return snapshot


def test_review_page_shows_report_splits_tokens_diff_and_history(reviewer_client, pending_snapshot):
    added = next(i.example for i in pending_snapshot.items.all() if "Zizzi" in i.messages[0]["content"])
    page = reviewer_client.get(reverse("admin:curation_snapshot_review", args=[pending_snapshot.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    pii = next(f for f in pending_snapshot.quality_report["findings"] if f["check"] == "pii")
    assert reverse("admin:curation_example_change", args=[pii["example_id"]]) in html and "phone" in html
    assert "<td>train</td>" in html and "median" in html and "tiny-tokenizer" in html
    assert "Added 1, removed 0" in html
    assert reverse("admin:curation_example_change", args=[added.pk]) in html
    assert reverse("admin:curation_snapshot_history", args=[pending_snapshot.pk]) in html
    assert 'value="approve"' in html and 'value="reject"' in html


def test_the_change_page_links_to_the_review_page(reviewer_client, pending_snapshot):
    page = reviewer_client.get(reverse("admin:curation_snapshot_change", args=[pending_snapshot.pk])).content.decode()
    assert reverse("admin:curation_snapshot_review", args=[pending_snapshot.pk]) in page


def test_approving_through_the_review_page(reviewer_client, pending_snapshot):
    url = reverse("admin:curation_snapshot_review", args=[pending_snapshot.pk])
    page = reviewer_client.post(url, {"decision": "approve", "comment": "splits look right"}, follow=True)
    pending_snapshot.refresh_from_db()
    assert (pending_snapshot.status, pending_snapshot.reviewed_by) == (SnapshotStatus.APPROVED, reviewer_client.user)
    assert pending_snapshot.history.first().history_user == reviewer_client.user
    assert "approved by" in page.content.decode()


def test_rejecting_without_a_comment_is_an_admin_message(reviewer_client, pending_snapshot):
    url = reverse("admin:curation_snapshot_review", args=[pending_snapshot.pk])
    page = reviewer_client.post(url, {"decision": "reject", "comment": " "}, follow=True)
    assert page.status_code == 200 and "needs a comment saying why" in page.content.decode()
    pending_snapshot.refresh_from_db()
    assert pending_snapshot.status == SnapshotStatus.PENDING_REVIEW
    reviewer_client.post(url, {"decision": "reject", "comment": "test split too small"})
    pending_snapshot.refresh_from_db()
    assert (pending_snapshot.status, pending_snapshot.review_comment) == (SnapshotStatus.REJECTED,
                                                                           "test split too small")


def test_a_user_without_the_review_permission_gets_a_message_not_a_traceback(client, pending_snapshot):
    client.force_login(EngineerFactory())  # sees every snapshot, reviews none
    url = reverse("admin:curation_snapshot_review", args=[pending_snapshot.pk])
    assert 'value="approve"' not in client.get(url).content.decode()
    page = client.post(url, {"decision": "approve"}, follow=True)
    assert page.status_code == 200 and "may not review snapshots" in page.content.decode()
    pending_snapshot.refresh_from_db()
    assert pending_snapshot.status == SnapshotStatus.PENDING_REVIEW


def test_staff_without_view_permission_cannot_open_the_review_page(client, pending_snapshot):
    client.force_login(UserFactory(is_staff=True))
    assert client.get(reverse("admin:curation_snapshot_review", args=[pending_snapshot.pk])).status_code == 403
