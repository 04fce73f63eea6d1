"""Work queues hand each person a different example; reservations expire; decisions release them."""
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone
from rest_framework.test import APIClient

from curation.choices import ExampleStatus
from curation.models import Example
from curation.work_queues import next_example_to_annotate, next_example_to_review, release
from curation.workflow import approve_example, reject_example
from tests.support.factories import AnnotatorFactory, DatasetFactory, ExampleFactory, ReviewerFactory


@pytest.mark.django_db
def test_two_reviewers_get_different_examples_and_the_same_one_again():
    first, second = ExampleFactory(), ExampleFactory()
    rita, sam = ReviewerFactory(), ReviewerFactory()
    assert next_example_to_review(rita) == first
    assert next_example_to_review(sam) == second
    assert next_example_to_review(rita) == first  # still reserved for rita
    assert next_example_to_review(ReviewerFactory()) is None


@pytest.mark.django_db
def test_an_expired_reservation_returns_the_example_to_the_queue():
    example = ExampleFactory()
    next_example_to_review(ReviewerFactory())
    Example.objects.filter(pk=example.pk).update(reserved_until=timezone.now() - timedelta(seconds=1))
    assert next_example_to_review(ReviewerFactory()) == example


@pytest.mark.django_db
def test_reviewers_never_get_their_own_or_already_approved_examples():
    rita = ReviewerFactory()
    ExampleFactory(author=rita)
    needs_two = ExampleFactory(dataset=DatasetFactory(approvals_required=2))
    approve_example(needs_two, by=rita)
    assert next_example_to_review(rita) is None
    assert next_example_to_review(AnnotatorFactory()) is None  # not a reviewer


@pytest.mark.django_db
def test_a_decision_releases_the_reservation_and_release_gives_it_back():
    first, second = ExampleFactory(), ExampleFactory()
    rita = ReviewerFactory()
    approve_example(next_example_to_review(rita), by=rita)
    first.refresh_from_db()
    assert first.reserved_by is None
    assert next_example_to_review(rita) == second
    release(second, rita)
    assert next_example_to_review(ReviewerFactory()) == second


@pytest.mark.django_db
def test_annotators_get_their_rejected_examples_back():
    ann = AnnotatorFactory()
    example = reject_example(ExampleFactory(author=ann), by=ReviewerFactory(), comment="fix it")
    ExampleFactory(author=AnnotatorFactory(), status=ExampleStatus.DRAFT)
    assert next_example_to_annotate(ann) == example


@pytest.mark.django_db
def test_queue_api_answers_204_when_empty():
    client = APIClient()
    rita = ReviewerFactory()
    client.force_authenticate(rita)
    example = ExampleFactory()
    assert client.post("/api/v1/examples/next-to-review/", {}, format="json").json()["id"] == example.pk
    approve_example(example, by=rita)
    assert client.post("/api/v1/examples/next-to-review/", {}, format="json").status_code == 204


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL row locks")
def test_concurrent_reviewers_each_get_a_different_example():
    examples = {ExampleFactory().pk for _ in range(8)}
    reviewers = [ReviewerFactory() for _ in range(8)]

    def take(index):
        try:
            return next_example_to_review(reviewers[index]).pk
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=8) as pool:
        taken = list(pool.map(take, range(8)))
    assert sorted(taken) == sorted(examples)
