"""The OpenAI-compatible endpoint through the official openai client against a live server."""
import json
import threading

import openai
import pytest
import requests

from curation.formats import prompt_messages
from ftml.inference import generate_greedy, load_for_inference
from serving.choices import RequestStatus
from serving.deployments import create_deployment, update_deployment
from serving.keys import create_api_key, revoke_api_key
from serving.models import RequestLog
from training.base_models import materialized_base_model_folder

from .conftest import logged

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = [{"role": "user", "content": "name: The Eagle; eatType: coffee shop; area: riverside"}]


def naive_answers(version, conversations, max_tokens):
    """What the one-request-at-a-time generate loop answers (ftml.inference.generate_greedy), as evaluation asks."""
    model, tokenizer = load_for_inference(materialized_base_model_folder(version.base_model))
    prompts = [prompt_messages(messages, version.system_prompt, version.few_shot) for messages in conversations]
    return list(generate_greedy(model, tokenizer, prompts, max_tokens))


def test_a_completion_is_the_models_greedy_answer_and_is_logged(openai_client, tiny_version, deployment):
    completion = openai_client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=12,
                                                       metadata={"team": "support"}, user="u-42")
    expected = naive_answers(tiny_version, [MESSAGES], 12)[0]
    assert completion.choices[0].message.content == expected.text
    assert completion.usage.prompt_tokens == expected.prompt_tokens
    assert completion.usage.completion_tokens == expected.output_tokens
    assert completion.choices[0].finish_reason == ("length" if expected.output_tokens == 12 else "stop")
    assert completion.model == "tiny"
    extra = completion.model_extra["ftplatform"]
    assert extra["answered_by"] == "primary" and extra["model_version_id"] == tiny_version.pk
    assert extra["fell_back"] is False
    row = logged(completion.id)
    assert row.status == RequestStatus.ANSWERED and row.http_status == 200
    assert row.deployment == deployment and row.answered_by == tiny_version and not row.fell_back
    assert row.messages == MESSAGES and row.answer == expected.text
    assert row.confidence == pytest.approx(expected.mean_logprob, abs=1e-4)
    assert (row.prompt_tokens, row.completion_tokens) == (expected.prompt_tokens, expected.output_tokens)
    assert row.tags == {"team": "support"} and row.end_user == "u-42"
    assert row.latency_ms > 0 and row.cost is None  # the tiny model has no price


def test_logprobs_are_the_answers_tokens_and_average_to_its_confidence(openai_client, tiny_version, deployment):
    completion = openai_client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=8, logprobs=True)
    tokens = completion.choices[0].logprobs.content
    assert len(tokens) == completion.usage.completion_tokens
    mean = sum(t.logprob for t in tokens) / len(tokens)
    assert mean == pytest.approx(completion.model_extra["ftplatform"]["confidence"], abs=1e-9)
    assert all(t.bytes == list(t.token.encode()) and t.top_logprobs == [] for t in tokens)
    plain = openai_client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=8)
    assert plain.choices[0].logprobs is None
    for refused in ({"top_logprobs": 3}, {"stream": True}):
        with pytest.raises(openai.BadRequestError) as error:
            openai_client.chat.completions.create(model="tiny", messages=MESSAGES, logprobs=True, **refused)
        assert error.value.code == "unsupported_parameter"


def test_a_streamed_answer_joins_to_the_same_text_with_usage_last(openai_client, tiny_version, deployment):
    plain = openai_client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=16)
    chunks = list(openai_client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=16, stream=True,
                                                        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishing) == 1 and finishing[0].choices[0].finish_reason == plain.choices[0].finish_reason
    assert finishing[0].model_extra["ftplatform"]["answered_by"] == "primary"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    assert chunks[-1].model_extra["ftplatform"]["answered_by"] == "primary"  # the last chunk says it too
    row = logged(chunks[0].id)
    assert row.stream and row.status == RequestStatus.ANSWERED and row.answer == text


def test_concurrent_requests_are_batched_and_answer_as_one_at_a_time(openai_client, tiny_version, deployment,
                                                                     e2e_records):
    conversations = [record["messages"][1:-1] for record in e2e_records[:10]]
    answers = [None] * len(conversations)

    def ask(index):
        answers[index] = openai_client.chat.completions.create(model="tiny", messages=conversations[index],
                                                               max_tokens=10)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(conversations))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = naive_answers(tiny_version, conversations, 10)
    assert [a.choices[0].message.content for a in answers] == [g.text for g in expected]
    assert [a.usage.completion_tokens for a in answers] == [g.output_tokens for g in expected]


def test_models_lists_the_deployments_a_key_may_call(live_server, engineer, deployment, tiny_version):
    from openai import OpenAI

    other = create_deployment(by=engineer, name="other", primary=tiny_version)
    create_deployment(by=engineer, name="off", primary=tiny_version, active=False)
    scoped = create_api_key(name="scoped", by=engineer, deployment=other)[1]
    everything = create_api_key(name="all", by=engineer)[1]
    with OpenAI(base_url=f"{live_server.url}/v1", api_key=everything, max_retries=0) as client:
        assert sorted(m.id for m in client.models.list()) == ["other", "tiny"]
    with OpenAI(base_url=f"{live_server.url}/v1", api_key=scoped, max_retries=0) as client:
        assert [m.id for m in client.models.list()] == ["other"]
        assert client.models.retrieve("other").id == "other"
        with pytest.raises(openai.NotFoundError) as refused:  # a scoped key cannot call another deployment
            client.chat.completions.create(model="tiny", messages=MESSAGES)
        assert refused.value.code == "model_not_found"
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("tiny")


def test_bad_keys_get_401_with_the_reason_and_are_never_logged(live_server, engineer, deployment):
    from django.utils import timezone
    from openai import OpenAI

    revoked_row, revoked = create_api_key(name="old", by=engineer)
    revoke_api_key(revoked_row, by=engineer)
    expiring_row, expiring = create_api_key(name="temp", by=engineer,
                                            expires_at=timezone.now() + timezone.timedelta(seconds=1))
    type(expiring_row).objects.filter(pk=expiring_row.pk).update(expires_at=timezone.now())  # it has expired
    cases = {"ftp-not-a-key": "Incorrect API key provided", revoked: "was revoked", expiring: "expired on"}
    for key, reason in cases.items():
        with OpenAI(base_url=f"{live_server.url}/v1", api_key=key, max_retries=0) as client:
            with pytest.raises(openai.AuthenticationError) as refused:
                client.chat.completions.create(model="tiny", messages=MESSAGES)
        assert refused.value.status_code == 401 and reason in refused.value.message
        assert refused.value.code == "invalid_api_key" and key not in refused.value.message
    answer = requests.post(f"{live_server.url}/v1/chat/completions", json={"model": "tiny", "messages": MESSAGES})
    assert answer.status_code == 401 and "didn't provide an API key" in answer.json()["error"]["message"]
    assert not RequestLog.objects.exists()


@pytest.mark.parametrize("body, param, words", [
    ({"messages": MESSAGES}, "model", "model is required"),
    ({"model": "tiny", "messages": []}, "messages", "non-empty list"),
    ({"model": "tiny", "messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role", "must be one of"),
    ({"model": "tiny", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
     "messages[1].role", "must be a user message"),
    ({"model": "tiny", "messages": MESSAGES, "max_tokens": 0}, "max_tokens", "at least 1"),
    ({"model": "tiny", "messages": MESSAGES, "max_tokens": 25}, "max_tokens", "allows at most 24"),
    ({"model": "tiny", "messages": MESSAGES, "n": 2}, "n", "n must be 1"),
    ({"model": "tiny", "messages": MESSAGES, "tools": []}, "tools", "not supported"),
    ({"model": "tiny", "messages": MESSAGES, "logprobs": "yes"}, "logprobs", "true or false"),
    ({"model": "tiny", "messages": MESSAGES, "temprature": 0}, "temprature", "Unrecognized request argument"),
])
def test_malformed_requests_get_400_naming_the_field(openai_client, deployment, body, param, words):
    with pytest.raises(openai.BadRequestError) as refused:
        openai_client.post("/chat/completions", body=body, cast_to=object)
    error = refused.value.body
    assert refused.value.status_code == 400 and error["type"] == "invalid_request_error"
    assert error["param"] == param and words in error["message"]
    row = logged(refused.value.response.headers["x-request-id"])
    assert row.status == RequestStatus.FAILED and row.http_status == 400 and row.answered_by is None
    # counted against the deployment it named (monitoring, the production view), when it names one
    assert row.deployment == (deployment if body.get("model") == "tiny" else None)
    assert row.answer == ""


def test_a_body_that_is_not_json_gets_an_openai_error(live_server, api_key, deployment):
    answer = requests.post(f"{live_server.url}/v1/chat/completions", data=b"{not json",
                        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_json" and "not valid JSON" in answer.json()["error"]["message"]
    unknown = requests.get(f"{live_server.url}/v1/completions", headers={"Authorization": f"Bearer {api_key}"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_url"
    for path in ("/v1/chat/completions/", "/v1/embeddings"):  # a POST too: no CSRF page
        posted = requests.post(f"{live_server.url}{path}", json={"model": "tiny"},
                               headers={"Authorization": f"Bearer {api_key}"})
        assert posted.status_code == 404 and posted.json()["error"]["code"] == "unknown_url"


def test_an_unknown_or_inactive_model_is_404_and_logged_as_not_answered(openai_client, engineer, deployment):
    update_deployment(deployment, by=engineer, active=False, reason="maintenance")
    rows = []
    for name in ("nope", "tiny"):
        with pytest.raises(openai.NotFoundError) as refused:
            openai_client.chat.completions.create(model=name, messages=MESSAGES)
        assert refused.value.code == "model_not_found" and f"'{name}' does not exist" in refused.value.message
        rows.append(logged(refused.value.response.headers["x-request-id"]))
    assert sorted(r.deployment_name for r in rows) == ["nope", "tiny"]
    assert all(r.status == RequestStatus.FAILED and r.http_status == 404 and r.answered_by is None for r in rows)


def test_a_request_over_the_context_length_is_refused_before_generating(openai_client, engineer, deployment):
    update_deployment(deployment, by=engineer, max_tokens=200)
    long_input = [{"role": "user", "content": " ".join(["riverside coffee shop"] * 120)}]
    rows = []
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as refused:
            openai_client.chat.completions.create(model="tiny", messages=long_input, max_tokens=200, stream=stream)
        assert refused.value.code == "context_length_exceeded"
        assert "maximum context length is 256 tokens" in refused.value.message
        rows.append(logged(refused.value.response.headers["x-request-id"]))
    assert len(rows) == 2 and all(r.status == RequestStatus.FAILED and r.answered_by is None for r in rows)
    assert {r.error_code for r in rows} == {"context_length_exceeded"}


def test_the_endpoint_answers_json_errors_to_other_methods(live_server, api_key):
    answer = requests.get(f"{live_server.url}/v1/chat/completions", headers={"Authorization": f"Bearer {api_key}"})
    assert answer.status_code == 405 and answer.headers["Allow"] == "POST"
    assert json.loads(answer.text)["error"]["code"] == "method_not_allowed"


def test_an_unexpected_failure_is_an_openai_500_naming_the_request(openai_client, deployment, monkeypatch):
    import serving.openai_api

    def broken(*args, **kwargs):
        raise RuntimeError("/srv/secret/path exploded")

    monkeypatch.setattr(serving.openai_api, "answer_stream", broken)
    with pytest.raises(openai.InternalServerError) as failed:
        openai_client.chat.completions.create(model="tiny", messages=MESSAGES)
    assert failed.value.status_code == 500 and failed.value.code == "server_error"
    assert "chatcmpl-" in failed.value.message and "/srv" not in failed.value.message


def test_a_token_scheme_is_named_but_nothing_that_may_be_a_key(live_server, api_key):
    for header, said in (("Token abc", "got the scheme 'Token'"), (f"{api_key} x", None)):
        answer = requests.post(f"{live_server.url}/v1/chat/completions", json={"model": "tiny"},
                               headers={"Authorization": header})
        message = answer.json()["error"]["message"]
        assert answer.status_code == 401 and "Bearer" in message and api_key[:12] not in message
        assert said is None or said in message
