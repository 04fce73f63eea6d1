"""Row locks and unique constraints under concurrent requests (PostgreSQL only: SQLite serialises writers)."""

import pytest
from django.db import connection

from curation.choices import ExampleStatus
from curation.models import Review, Snapshot
from curation.snapshots import create_snapshot
from curation.workflow import approve_example
from ftplatform.errors import ServiceError
from tests.support.factories import DatasetFactory, EngineerFactory, ExampleFactory, ReviewerFactory
from tests.support.threads import in_threads

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL row locks"),
]



def test_twenty_concurrent_approvals_of_one_example_record_exactly_one_decision():
    example = ExampleFactory()
    reviewers = [ReviewerFactory() for _ in range(20)]

    def approve(index):
        try:
            approve_example(example, by=reviewers[index], expected_version=example.version)
            return "approved"
        except ServiceError as exc:
            return type(exc).__name__

    outcomes = in_threads(20, approve)

    example.refresh_from_db()
    assert outcomes.count("approved") == 1
    assert set(outcomes) == {"approved", "Conflict"}
    assert example.status == ExampleStatus.APPROVED and example.version == 2
    assert Review.objects.filter(example=example).count() == 1


def test_concurrent_identical_snapshots_resolve_to_one_row():
    dataset = DatasetFactory()
    for _ in range(10):
        ExampleFactory(dataset=dataset, status=ExampleStatus.APPROVED)
    users = [EngineerFactory() for _ in range(6)]

    results = in_threads(6, lambda i: create_snapshot(dataset, by=users[i])[0].pk)

    assert len(set(results)) == 1
    assert Snapshot.objects.count() == 1

