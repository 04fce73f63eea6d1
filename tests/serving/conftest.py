import time

import pytest

from serving.deployments import create_deployment
from serving.engines import close_model_servers
from serving.keys import create_api_key
from serving.models import RequestLog
from tests.support.factories import EngineerFactory, tiny_base_model
from training.model_versions import prompted_model_version

MESSAGES_FOR_TESTS = [{"role": "user", "content": "name: The Eagle; eatType: coffee shop; area: riverside"}]
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture(autouse=True)
def fresh_model_servers(monkeypatch):
    """Every test loads its own models (ids repeat between tests) and talks to 127.0.0.1 directly."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    close_model_servers()
    yield
    close_model_servers()


@pytest.fixture
def engineer(db):
    return EngineerFactory()


@pytest.fixture
def tiny_version(engineer, tiny_model_dir):
    """The tiny model, prompted with a system prompt: a local model version the built-in engine serves."""
    version, _ = prompted_model_version(tiny_base_model(tiny_model_dir), "Describe the restaurant.", by=engineer)
    return version


@pytest.fixture
def deployment(engineer, tiny_version):
    return create_deployment(by=engineer, name="tiny", primary=tiny_version, max_tokens=24)


@pytest.fixture
def api_key(engineer, deployment):
    return create_api_key(name="tests", by=engineer)[1]


@pytest.fixture
def openai_client(live_server, api_key):
    from openai import OpenAI

    with OpenAI(base_url=f"{live_server.url}/v1", api_key=api_key, max_retries=0, timeout=60) as client:
        yield client


def logged(request_id: str, timeout: float = 10.0) -> RequestLog:
    """The log row of ``request_id``, written by the server after it sent the response: waited for."""
    deadline = time.monotonic() + timeout
    while True:
        row = RequestLog.objects.filter(request_id=request_id).select_related("answered_by").first()
        if row is not None or time.monotonic() > deadline:
            assert row is not None, f"no request log row for {request_id} within {timeout} s"
            return row
        time.sleep(0.05)
