"""What hostile or careless clients and concurrent users do to the serving endpoint, and what they get:
OpenAI's error body naming the parameter (never a 500, a traceback or a path), a request log row that
says failed with no model as having answered, and a model server that keeps serving."""
import json
import threading
import time

import pytest
import requests
from django.conf import settings as django_settings

from ftml.serving import ModelServer, ServingError
from serving import engines
from serving.choices import RequestStatus
from serving.deployments import create_deployment, update_deployment
from serving.distill import MAX_LOGS
from serving.models import RequestLog
from tests.support.clients import api_client
from tests.support.factories import DatasetFactory
from training.model_versions import prompted_model_version

from .conftest import logged

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = [{"role": "user", "content": "name: The Eagle; eatType: coffee shop; area: riverside"}]
ASK = '"model": "tiny", "messages": [{"role": "user", "content": "hi"}]'


def post(live_server, api_key, body: bytes | str, *, stream: bool = False, **headers) -> requests.Response:
    return requests.post(f"{live_server.url}/v1/chat/completions", data=body, timeout=60, stream=stream,
                         headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json",
                                  **headers})


def refused(answer: requests.Response, status: int, param: str | None, words: str) -> RequestLog:
    """The OpenAI error body with ``param`` and ``words``; nothing of the server shown; the row logged as failed."""
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"] == "application/json"
    error = answer.json()["error"]
    assert error["param"] == param and words in error["message"], error
    assert "Traceback" not in answer.text and str(django_settings.BASE_DIR) not in answer.text
    row = logged(answer.headers["X-Request-Id"])
    assert row.status == RequestStatus.FAILED and row.http_status == status
    assert row.answered_by is None and row.answer == "" and row.error == error["message"]
    return row


@pytest.mark.parametrize("body, param, words", [
    # the stdlib parser recursed past Python's limit: RecursionError, a 500 page
    ('{"model": "tiny", "messages": ' + "[" * 5000 + "]" * 5000 + "}", None, "nested too deeply"),
    # JSON may spell a lone surrogate; the tokenizer then raised TypeError (500)
    ('{"model": "tiny", "messages": [{"role": "user", "content": "a\\ud800b"}]}', "messages[0].content",
     "unpaired surrogate (\\ud800)"),
    ('{"model": "tiny", "messages": [{"role": "user", "content": [{"type": "text", "text": "\\udfff"}]}]}',
     "messages[0].content[0].text", "unpaired surrogate"),
    # ... and SQLite raised UnicodeEncodeError looking the deployment up (500)
    ('{"model": "ti\\ud800ny", "messages": [{"role": "user", "content": "hi"}]}', "model", "unpaired surrogate"),
    # answered, but the log row could not be written (lost); PostgreSQL refuses NUL in text and JSON
    ('{' + ASK + ', "user": "u\\ud800"}', "user", "unpaired surrogate"),
    ('{' + ASK + ', "metadata": {"\\ud800": "x"}}', "metadata", "unpaired surrogate"),
    ('{' + ASK + ', "metadata": {"team": "a\\u0000b"}}', "metadata.team", "NUL character"),
    ('{' + ASK + ', "user": "\\u0000"}', "user", "NUL character"),
    ('{' + ASK + ', "seed": NaN}', "seed", "not a finite number"),
    # accepted before, or refused as if missing
    ('{"model": 5, "messages": [{"role": "user", "content": "hi"}]}', "model", "must be a string"),
    ('{' + ASK + ', "n": true}', "n", "integer"),
    ('{' + ASK + ', "stream_options": []}', "stream_options", "must be an object"),
    ('{' + ASK + ', "stream": true, "stream_options": 0}', "stream_options", "must be an object"),
])
def test_bodies_json_allows_but_nothing_can_answer_are_400s_naming_the_place(live_server, api_key, deployment,
                                                                             body, param, words):
    row = refused(post(live_server, api_key, body), 400, param, words)
    assert row.deployment_name == ("" if param in ("model", None) else "tiny")  # only a storable model is kept


def test_a_body_too_large_is_an_openai_413_before_it_is_read(live_server, api_key, deployment, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024  # Django's own limit, below the endpoint's (4 MiB)
    padding = "x" * (2 * 1024 * 1024)
    # Past Django's limit: its HTML "Bad Request (400)" page before.
    refused(post(live_server, api_key, '{' + ASK + ', "user": "' + padding + '"}'), 413, None,
            "larger than 4194304 bytes")
    # Past the endpoint's: refused from its Content-Length.
    refused(post(live_server, api_key, padding * 3), 413, None, "6291456 bytes; at most 4194304")


def test_a_very_long_model_name_is_not_repeated_whole(live_server, api_key, deployment):
    answer = post(live_server, api_key, json.dumps({"model": "m" * 100_000, "messages": MESSAGES}))
    row = refused(answer, 404, "model", "m" * 100 + "…' does not exist")
    assert len(row.error) < 300 and len(row.deployment_name) == 100


def test_a_client_leaving_mid_stream_is_logged_and_its_request_cancelled(live_server, api_key, deployment, engineer,
                                                                         tiny_version, monkeypatch):
    import ftml.serving

    def slow_piece(decoder, ids):  # every token shows as a piece, slowly: the client leaves while it decodes
        time.sleep(0.02)
        return "w "

    monkeypatch.setattr(ftml.serving._IncrementalDecoder, "feed", slow_piece)
    update_deployment(deployment, by=engineer, max_tokens=200)
    body = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 200,
                       "stream": True})
    with post(live_server, api_key, body, stream=True) as answer:
        assert answer.status_code == 200
        lines = answer.iter_lines()
        assert [next(lines) for _ in range(3)][-1].startswith(b"data: ")  # the role chunk, a blank, a piece
    row = logged(answer.headers["X-Request-Id"])
    assert (row.status, row.http_status, row.error_code) == (RequestStatus.FAILED, 499, "client_closed_request")
    assert row.answered_by is None and row.answer == ""
    server = engines.model_server(tiny_version)
    assert server._waiting == {}  # the request left the batch
    monkeypatch.undo()
    later = post(live_server, api_key, json.dumps({"model": "tiny", "messages": MESSAGES, "max_tokens": 5}))
    assert later.status_code == 200 and later.json()["usage"]["completion_tokens"] > 0


def test_alternating_models_over_one_loaded_slot_answer_every_concurrent_request(live_server, api_key, deployment,
                                                                                  engineer, tiny_version, settings):
    """Two versions loading at once broke each other (transformers' meta-device loading is process-wide), and
    loading one closed the other under the requests it was answering ("the model server was shut down", 500)."""
    settings.SERVING_MAX_LOADED_MODELS = 1
    other, _ = prompted_model_version(tiny_version.base_model, "Another prompt.", by=engineer)
    create_deployment(by=engineer, name="tiny2", primary=other, max_tokens=24)
    answers = {}

    def ask(index):
        body = {"model": ("tiny", "tiny2")[index % 2], "messages": MESSAGES, "max_tokens": 16,
                "stream": index % 3 == 0, "metadata": {"index": str(index)}}
        answers[index] = post(live_server, api_key, json.dumps(body))

    threads = [threading.Thread(target=ask, args=(index,)) for index in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {index: answer.text[-300:] for index, answer in answers.items() if answer.status_code != 200} == {}
    # (The rows are not counted here: the test database is SQLite's shared in-memory cache, whose table locks
    # do not wait as a database file's locks do.)
    assert {index: answered_by(answer) for index, answer in answers.items()} == {
        index: (tiny_version.pk, other.pk)[index % 2] for index in range(24)}


def answered_by(answer: requests.Response) -> int:
    """The model version id in the response's ``ftplatform`` field (the finishing chunk's when streamed)."""
    if answer.headers["Content-Type"] == "application/json":
        return answer.json()["ftplatform"]["model_version_id"]
    events = [json.loads(line[6:]) for line in answer.text.splitlines() if line.startswith("data: {")]
    return next(event["ftplatform"]["model_version_id"] for event in events if "ftplatform" in event)


def test_closing_a_model_server_lets_its_requests_finish_and_refuses_new_ones(tiny_model_dir, monkeypatch):
    import ftml.serving

    monkeypatch.setattr(ftml.serving._IncrementalDecoder, "feed", lambda decoder, ids: time.sleep(0.02) or "")
    server = ModelServer.load(tiny_model_dir, max_batch_requests=2)
    outcome = {}

    def ask():
        *_, outcome["answer"] = server.stream(MESSAGES, 40)

    asking = threading.Thread(target=ask)
    asking.start()
    while not server._waiting:
        time.sleep(0.005)
    closing = threading.Thread(target=server.close, kwargs={"wait_s": 60})
    closing.start()
    while not server._closing:
        time.sleep(0.005)
    with pytest.raises(ServingError) as refused_new:
        server.answer(MESSAGES, 4)
    assert refused_new.value.code == "shut_down"
    asking.join(timeout=60)
    closing.join(timeout=60)
    assert outcome["answer"].output_tokens > 0 and server._closed.is_set() and server._waiting == {}


def test_two_models_load_at_once_in_two_threads(tiny_model_dir):
    servers, failures = [], []

    def load():
        try:
            servers.append(ModelServer.load(tiny_model_dir, max_batch_requests=2))
        except Exception as exc:  # the test reports what went wrong in the thread
            failures.append(exc)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert failures == [] and len(servers) == 2
        assert servers[0].answer(MESSAGES, 6).text == servers[1].answer(MESSAGES, 6).text
    finally:
        for server in servers:
            server.close()


def test_to_dataset_refuses_ids_no_row_can_have_and_skips_logs_that_are_not_examples(engineer, deployment):
    from django.utils import timezone

    def row(request_id, messages):
        return RequestLog.objects.create(request_id=request_id, created_at=timezone.now(), deployment=deployment,
                                         deployment_name="tiny", status=RequestStatus.ANSWERED, http_status=200,
                                         messages=messages, answer="A coffee shop.", answered_by=deployment.primary)

    good = row("chatcmpl-good", MESSAGES)
    middle = row("chatcmpl-middle", [{"role": "user", "content": "a"}, {"role": "system", "content": "be brief"},
                                     {"role": "user", "content": "b"}])
    odd = row("chatcmpl-odd", {"role": "user", "content": "not a list"})
    client, dataset = api_client(engineer), DatasetFactory()
    for ids, words in (([2**70], "less than or equal to"), ([0], "greater than or equal to"),
                       (list(range(1, MAX_LOGS + 2)), f"no more than {MAX_LOGS}")):
        answer = client.post("/api/v1/request-logs/to-dataset/", {"dataset": dataset.pk, "ids": ids}, format="json")
        assert answer.status_code == 400 and "ids" in answer.json() and words in json.dumps(answer.json())
    answer = client.post("/api/v1/request-logs/to-dataset/", {"dataset": dataset.pk,
                                                              "ids": [good.pk, middle.pk, odd.pk]}, format="json")
    assert answer.status_code == 200, answer.json()
    result = answer.json()
    assert len(result["created"]) == 1 and RequestLog.objects.get(pk=good.pk).example_id == result["created"][0]
    reasons = {skip["request_id"]: skip["reason"] for skip in result["skipped"]}
    assert set(reasons) == {"chatcmpl-middle", "chatcmpl-odd"}
    assert all(reason.startswith("not a valid example: message") for reason in reasons.values()), reasons
