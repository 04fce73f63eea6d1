"""The REST layer every app shares (ftplatform.api, ftplatform.rest): authentication, and errors
answered as JSON: bad bodies, missing routes and methods, tampered cursors."""
import pytest
from rest_framework.test import APIClient

from tests.support.clients import client_for
from tests.support.factories import EngineerFactory

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
