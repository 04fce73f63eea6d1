"""The request log's sampling, and a deployment on the vllm engine calling an OpenAI-compatible server."""
import openai
import pytest

from serving.choices import Engine
from serving.deployments import create_deployment, update_deployment
from serving.engines import vllm_model_name
from serving.keys import create_api_key
from serving.models import RequestLog

from .conftest import MESSAGES_FOR_TESTS as MESSAGES
from .conftest import logged

pytestmark = pytest.mark.django_db(transaction=True)


def test_sampled_out_requests_keep_their_figures_but_not_their_content(settings, openai_client, deployment):
    settings.SERVING_LOG_SAMPLE_RATE = 0.0
    completion = openai_client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=5)
    row = logged(completion.id)
    assert not row.content_logged and row.messages == [] and row.answer == ""
    assert row.status == "answered" and row.completion_tokens == completion.usage.completion_tokens
    assert row.confidence is not None and row.latency_ms > 0


def test_logging_off_writes_no_row(settings, openai_client, deployment):
    from serving.models import RequestLog

    settings.SERVING_LOG_REQUESTS = False
    openai_client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=5)
    with pytest.raises(AssertionError):
        logged("any", timeout=1)
    assert not RequestLog.objects.exists()


def test_a_vllm_deployment_asks_the_server_for_the_plans_model_names(live_server, engineer, tiny_version, deployment,
                                                                      openai_client, monkeypatch):
    """The platform itself stands in for the vLLM server: a deployment named as a launch plan names the base
    model (base-model-<id>) answers there, and a deployment on the vllm engine sends its requests to it by that
    name, with the key read from the variable it names."""
    served = create_deployment(by=engineer, name=vllm_model_name(tiny_version), primary=tiny_version)
    assert served.name == f"base-model-{tiny_version.base_model_id}"
    proxied = create_deployment(by=engineer, name="via-vllm", primary=tiny_version, engine=Engine.VLLM,
                                engine_base_url=f"{live_server.url}/v1", engine_api_key_env="STAND_IN_VLLM_KEY")
    monkeypatch.setenv("STAND_IN_VLLM_KEY", create_api_key(name="engine", by=engineer, deployment=served)[1])
    direct = openai_client.chat.completions.create(model=served.name, messages=MESSAGES, max_tokens=6)
    through = openai_client.chat.completions.create(model="via-vllm", messages=MESSAGES, max_tokens=6)
    assert through.choices[0].message.content == direct.choices[0].message.content
    assert through.usage.completion_tokens == direct.usage.completion_tokens
    assert logged(through.id).answered_by == tiny_version
    engine_request = RequestLog.objects.filter(deployment=served).order_by("-created_at", "-id")
    assert engine_request.count() == 2  # the client's own request, then the engine's
    monkeypatch.setenv("STAND_IN_VLLM_KEY", "ftp-wrong")
    with pytest.raises(openai.APIStatusError) as failed:
        openai_client.chat.completions.create(model="via-vllm", messages=MESSAGES, max_tokens=6)
    assert failed.value.status_code == 502 and failed.value.code == "upstream_error"
    assert "answered HTTP 401" in failed.value.message and "STAND_IN_VLLM_KEY" in failed.value.message
    update_deployment(proxied, by=engineer, engine=Engine.BUILTIN)
    local = openai_client.chat.completions.create(model="via-vllm", messages=MESSAGES, max_tokens=6)
    assert local.choices[0].message.content == direct.choices[0].message.content
