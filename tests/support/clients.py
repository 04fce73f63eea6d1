"""API clients signed in as a given user."""
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.support.factories import EngineerFactory


def client_for(user) -> APIClient:
    """An APIClient sending ``user``'s token (created if missing), as a REST client would."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def api_client(user=None) -> APIClient:
    """An APIClient authenticated as ``user`` (a new engineer by default) that answers an unhandled
    error with a 500 response instead of raising it: for tests that a request is never a 500."""
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(user or EngineerFactory())
    return client


def signed_in_client(client, user):
    """Django's test ``client`` logged in as ``user``, answering an unhandled error with a 500 response."""
    client.force_login(user)
    client.raise_request_exception = False
    return client


def post_remote_version(**fields):
    """The response to a new engineer's POST of a model version behind an OpenAI-compatible endpoint:
    base URL http://vllm:8000/v1, remote model "m" and no system prompt, unless ``fields`` say otherwise."""
    return api_client().post("/api/v1/model-versions/", {"kind": "openai_compatible", "system_prompt": "",
                                                         "base_url": "http://vllm:8000/v1", "remote_model": "m",
                                                         **fields}, format="json")
