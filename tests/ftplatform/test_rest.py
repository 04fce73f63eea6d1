"""The REST layer every app shares (config.api, ftplatform.rest): authentication, and errors
answered as JSON: bad bodies, missing routes and methods, tampered cursors."""
import base64
from urllib.parse import urlencode

import pytest
from rest_framework.test import APIClient

from curation.choices import ExampleStatus
from curation.snapshots import create_snapshot
from tests.support.clients import client_for
from tests.support.factories import EngineerFactory, ExampleFactory

pytestmark = pytest.mark.django_db

LIST_ENDPOINTS = ["datasets", "examples", "imports", "snapshots", "base-models", "training-runs",
                  "model-versions", "eval-runs"]


@pytest.mark.parametrize("endpoint", LIST_ENDPOINTS)
def test_anonymous_requests_get_401(endpoint):
    assert APIClient().get(f"/api/v1/{endpoint}/").status_code == 401


@pytest.mark.parametrize("endpoint", LIST_ENDPOINTS)
def test_token_authenticated_user_can_list(endpoint):
    assert client_for(EngineerFactory()).get(f"/api/v1/{endpoint}/").status_code == 200


def test_session_authentication_works():
    client = APIClient()
    client.force_login(EngineerFactory())
    assert client.get("/api/v1/datasets/").status_code == 200


def test_deeply_nested_json_body_is_400():
    body = "[" * 100_000 + "]" * 100_000
    response = client_for(EngineerFactory()).post("/api/v1/datasets/", body, content_type="application/json")
    assert response.status_code == 400


@pytest.mark.parametrize("method, url", [("delete", "/api/v1/examples/{pk}/"), ("put", "/api/v1/snapshots/{pk}/"),
                                         ("post", "/api/v1/examples/{pk}/"), ("delete", "/api/v1/datasets/{pk}/")])
def test_methods_an_endpoint_lacks_are_405(method, url):
    example = ExampleFactory(status=ExampleStatus.APPROVED)
    snapshot, _ = create_snapshot(example.dataset, by=EngineerFactory())
    pk = {"examples": example.pk, "snapshots": snapshot.pk, "datasets": example.dataset_id}[url.split("/")[3]]
    assert getattr(client_for(EngineerFactory()), method)(url.format(pk=pk)).status_code == 405


@pytest.mark.parametrize("position", ["NaN", "1e5", "1' OR 1=1--", "%00"])
def test_tampered_cursors_are_404_not_500(position):
    example = ExampleFactory()
    cursor = base64.b64encode(urlencode({"p": position}).encode()).decode()
    client = client_for(EngineerFactory())
    assert client.get(f"/api/v1/examples/?cursor={cursor}").status_code == 404
    assert client.get(f"/api/v1/examples/{example.pk}/history/?cursor={cursor}").status_code == 404


def test_api_urls_no_route_matches_answer_json_as_the_schema_documents(client):
    """/api/v1/datasets/0.5/ matches no route (ids have no dot): Django answered its HTML 404 page,
    which no client generated from the schema can read."""
    client.force_login(EngineerFactory())
    response = client.get("/api/v1/datasets/0.5/history/")
    assert (response.status_code, response["Content-Type"], response.json()) == (
        404, "application/json", {"detail": "Not found."})
    assert client.get("/admin/no-such-page/")["Content-Type"].startswith("text/html")
