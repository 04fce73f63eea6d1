"""OpenAICompatibleBackend against a local fake OpenAI server (tests.support.fake_openai), never the network."""
import socket

import pytest

from evaluation.backends import BackendError, OpenAICompatibleBackend

KEY = "sk-test-0123456789abcdef"


def backend_for(server, **kwargs) -> OpenAICompatibleBackend:
    kwargs = {"timeout_s": 5, "max_retries": 0, **kwargs}
    return OpenAICompatibleBackend(server.base_url, server.model, **kwargs)


def ask(backend, *contents, **kwargs):
    return list(backend.generate([[{"role": "user", "content": c}] for c in contents], **kwargs))


def test_each_input_gets_its_own_request_and_stripped_answer(fake_openai):
    fake_openai.reply = lambda messages: f"  {messages[-1]['content'].upper()} \n"
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "name[Blue Spice]"}]
    generations = list(backend_for(fake_openai).generate([conversation, [{"role": "user", "content": "two"}]],
                                                         max_new_tokens=12))
    assert [g.text for g in generations] == ["NAME[BLUE SPICE]", "TWO"]
    first, second = (r["body"] for r in fake_openai.completion_requests)
    assert first["messages"] == conversation and second["messages"] == [{"role": "user", "content": "two"}]
    assert first["model"] == "fake-model" and first["max_tokens"] == 12 and first["temperature"] == 0
    assert first["logprobs"] is True
    assert all(g.latency_ms > 0 for g in generations)


def test_token_counts_come_from_usage(fake_openai):
    fake_openai.reply = lambda messages: "one two three"
    (generation,) = ask(backend_for(fake_openai), "a b c d e")
    assert (generation.prompt_tokens, generation.output_tokens) == (5, 3)


def test_missing_usage_counts_zero(fake_openai):
    fake_openai.usage = False
    (generation,) = ask(backend_for(fake_openai), "a b c")
    assert (generation.prompt_tokens, generation.output_tokens) == (0, 0)
    assert generation.text == "echo: a b c"


def test_returned_logprobs_give_the_mean_and_none_without_them(fake_openai):
    backend = backend_for(fake_openai)
    (without,) = ask(backend, "hi")
    assert without.mean_logprob is None
    fake_openai.logprobs = [("echo", -0.5), (":", -1.0), (" hi", -3.0)]
    (with_logprobs,) = ask(backend, "hi")
    assert with_logprobs.mean_logprob == pytest.approx(-1.5)


def test_a_server_refusing_logprobs_is_asked_again_without_them_and_not_asked_again(fake_openai):
    fake_openai.reject_logprobs = True
    fake_openai.logprobs = [("x", -1.0)]
    generations = ask(backend_for(fake_openai), "one", "two")
    assert [g.text for g in generations] == ["echo: one", "echo: two"]
    assert all(g.mean_logprob is None for g in generations)
    assert [bool(r["body"].get("logprobs")) for r in fake_openai.completion_requests] == [True, False, False]


@pytest.mark.parametrize("status,reason", [(500, "Internal Server Error"), (503, "Service Unavailable"),
                                           (400, "Bad Request")])
def test_http_errors_name_the_status_url_and_model(fake_openai, status, reason):
    fake_openai.status, fake_openai.error_message = status, "model overloaded"
    fake_openai.reject_logprobs = False
    with pytest.raises(BackendError) as caught:
        ask(backend_for(fake_openai), "hi")
    message = str(caught.value)
    assert f"HTTP {status} {reason}" in message and fake_openai.base_url in message and "fake-model" in message
    assert "model overloaded" in message and "\n" not in message and "Traceback" not in message
    assert caught.value.status == status and caught.value.__cause__ is None and caught.value.__suppress_context__


def test_server_errors_are_retried_max_retries_times(fake_openai):
    fake_openai.status, fake_openai.fail_times = 500, 1
    (generation,) = ask(backend_for(fake_openai, max_retries=1), "hi")
    assert generation.text == "echo: hi" and len(fake_openai.completion_requests) == 2


def test_the_key_is_read_from_the_named_variable_and_sent_as_bearer(fake_openai, monkeypatch):
    monkeypatch.setenv("FAKE_LLM_KEY", KEY)
    fake_openai.expected_key = KEY
    (generation,) = ask(backend_for(fake_openai, api_key_env="FAKE_LLM_KEY"), "hi")
    assert generation.text == "echo: hi"
    assert fake_openai.completion_requests[0]["headers"]["authorization"] == f"Bearer {KEY}"


def test_without_a_key_variable_a_placeholder_is_sent_and_no_openai_variable_leaks(fake_openai, monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_ADMIN_KEY", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.setenv(name, f"{name.lower()}-secret")  # never picked up implicitly
    ask(backend_for(fake_openai), "hi")
    headers = fake_openai.completion_requests[0]["headers"]
    assert headers["authorization"] == "Bearer not-needed"
    assert not [value for value in headers.values() if "secret" in value]


def test_a_rejected_key_is_a_401_that_never_shows_the_key(fake_openai, monkeypatch):
    monkeypatch.setenv("FAKE_LLM_KEY", KEY)
    fake_openai.expected_key = "sk-the-right-one"  # the fake's 401 repeats the key it received
    backend = backend_for(fake_openai, api_key_env="FAKE_LLM_KEY")
    for attempt in (backend.check, lambda: ask(backend, "hi")):
        with pytest.raises(BackendError) as caught:
            attempt()
        message = str(caught.value)
        assert "HTTP 401 Unauthorized" in message and fake_openai.base_url in message
        assert "FAKE_LLM_KEY" in message and KEY not in message and KEY not in repr(caught.value)
    assert KEY not in repr(backend)


def test_an_unset_key_variable_is_named(fake_openai, monkeypatch):
    monkeypatch.delenv("FAKE_LLM_KEY", raising=False)
    with pytest.raises(BackendError, match="environment variable FAKE_LLM_KEY is not set"):
        backend_for(fake_openai, api_key_env="FAKE_LLM_KEY")
    monkeypatch.setenv("FAKE_LLM_KEY", "")
    with pytest.raises(BackendError, match="FAKE_LLM_KEY"):
        backend_for(fake_openai, api_key_env="FAKE_LLM_KEY")


def test_a_key_pasted_as_the_variable_name_is_refused_without_echoing_it(fake_openai):
    with pytest.raises(BackendError) as caught:
        backend_for(fake_openai, api_key_env=KEY)
    assert KEY not in str(caught.value) and "name of an environment variable" in str(caught.value)


def test_connection_refused(fake_openai):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = OpenAICompatibleBackend(f"http://127.0.0.1:{port}/v1", "fake-model", timeout_s=5, max_retries=0)
    with pytest.raises(BackendError) as caught:
        backend.check()
    message = str(caught.value)
    assert f"Could not connect to http://127.0.0.1:{port}/v1 (model fake-model)" in message
    assert caught.value.status is None


def test_a_server_slower_than_the_timeout(fake_openai):
    fake_openai.delay_s = 3
    with pytest.raises(BackendError) as caught:
        ask(backend_for(fake_openai, timeout_s=0.3), "hi")
    assert "did not answer within 0.3 s" in str(caught.value) and fake_openai.base_url in str(caught.value)


@pytest.mark.parametrize("malformed", ["not_json", "no_choices"])
def test_malformed_answers(fake_openai, malformed):
    fake_openai.malformed = malformed
    with pytest.raises(BackendError, match="malformed answer") as caught:
        ask(backend_for(fake_openai), "hi")
    assert fake_openai.base_url in str(caught.value)


def test_check_passes_with_a_good_configuration_and_names_a_wrong_model(fake_openai):
    generation = backend_for(fake_openai).check()
    assert fake_openai.completion_requests[0]["body"]["max_tokens"] == 1 and generation.latency_ms > 0
    wrong = OpenAICompatibleBackend(fake_openai.base_url, "no-such-model", max_retries=0)
    with pytest.raises(BackendError, match=r"no-such-model at .* answered HTTP 404 Not Found.*/v1"):
        wrong.check()


@pytest.mark.parametrize("base_url", ["localhost:8000/v1", "ftp://example.invalid/v1", ""])
def test_base_urls_must_be_http(base_url):
    with pytest.raises(BackendError, match="must start with http"):
        OpenAICompatibleBackend(base_url, "m")


def test_the_fake_lists_its_models(fake_openai):
    from openai import OpenAI

    client = OpenAI(base_url=fake_openai.base_url, api_key="x", max_retries=0)
    assert [m.id for m in client.models.list()] == ["fake-model"]


def test_a_reasoning_model_gets_max_completion_tokens_and_its_default_temperature(fake_openai):
    """OpenAI's reasoning models refuse max_tokens, any temperature but their default, and logprobs:
    each 400 adapts the request once, later inputs are sent adapted, and request_options says so."""
    fake_openai.reasoning = True
    backend = backend_for(fake_openai)
    assert backend.request_options == {"tokens_parameter": "max_tokens", "temperature": "as asked", "logprobs": True}
    generations = ask(backend, "one", "two", max_new_tokens=7)
    assert [g.text for g in generations] == ["echo: one", "echo: two"]
    bodies = [r["body"] for r in fake_openai.completion_requests]
    assert len(bodies) == 5  # three refusals for the first input, then one request each
    assert bodies[-1]["max_completion_tokens"] == 7 and "max_tokens" not in bodies[-1]
    assert "temperature" not in bodies[-1] and "logprobs" not in bodies[-1]
    assert backend.request_options == {"tokens_parameter": "max_completion_tokens", "temperature": "server default",
                                       "logprobs": False}


def test_a_400_that_no_adaptation_explains_is_reported(fake_openai):
    fake_openai.status, fake_openai.error_message = 400, "context too long"
    backend = backend_for(fake_openai)
    with pytest.raises(BackendError, match="HTTP 400 Bad Request: context too long"):
        ask(backend, "hi")
    assert len(fake_openai.completion_requests) == 2  # once as configured, once without logprobs
    assert backend.request_options["tokens_parameter"] == "max_tokens"
