import pytest
from rest_framework.test import APIClient

from curation.choices import ExampleStatus
from tests.support.factories import AnnotatorFactory, DatasetFactory, EngineerFactory, ExampleFactory, conversation

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():
    client = APIClient()
    client.force_authenticate(EngineerFactory())
    return client


def ids(response):
    return [row["id"] for row in response.json()["results"]]


def test_filters_by_state_author_and_text(api):
    ann = AnnotatorFactory(username="ann")
    dataset = DatasetFactory()
    target = ExampleFactory(dataset=dataset, author=ann, messages=conversation("name: Zizzi", "Zizzi is a café."))
    ExampleFactory(dataset=dataset, author=ann, status=ExampleStatus.APPROVED)
    ExampleFactory(dataset=dataset)
    response = api.get("/api/v1/examples/", {"dataset": dataset.pk, "status": "submitted", "author": "ann",
                                             "search": "zizzi"})
    assert ids(response) == [target.pk]


def test_cursor_pages_walk_every_example_once(api):
    made = [ExampleFactory().pk for _ in range(7)]
    seen, url = [], "/api/v1/examples/?page_size=3"
    while url:
        body = api.get(url).json()
        seen += [row["id"] for row in body["results"]]
        url = body["next"]
    assert seen == made


def test_cursor_pages_walk_back_with_their_reviews(api):
    from curation.workflow import approve_example
    from tests.support.factories import ReviewerFactory

    made = [ExampleFactory() for _ in range(5)]
    approve_example(made[3], by=ReviewerFactory(username="rita"))
    second = api.get(api.get("/api/v1/examples/?page_size=2").json()["next"])
    back = api.get(api.get(second.json()["next"]).json()["previous"])
    assert ids(back) == ids(second) == [made[2].pk, made[3].pk]
    assert [row["reviews"][0]["reviewer"] for row in back.json()["results"] if row["reviews"]] == ["rita"]
