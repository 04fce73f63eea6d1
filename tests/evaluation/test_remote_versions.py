"""A model version behind an OpenAI-compatible endpoint, created over the API and evaluated against a
local fake server (tests.support.fake_openai): never the network."""
import pytest

from evaluation.models import EvalRun
from evaluation.services import start_eval_run
from ftplatform.jobrows import JobStatus
from tests.support.clients import client_for, post_remote_version
from tests.support.factories import EngineerFactory, ReviewerFactory, snapshot_of
from training.models import BaseModel, ModelVersion


@pytest.mark.django_db(transaction=True)
def test_a_remote_version_answers_every_test_input_and_is_scored(e2e_records, fake_openai, monkeypatch, run_jobs):
    monkeypatch.setenv("FAKE_API_KEY", "sk-test-123")
    fake_openai.expected_key = "sk-test-123"
    fake_openai.reply = lambda messages: "The Eagle is a coffee shop."
    fake_openai.logprobs = [("The", -0.1), (" Eagle", -0.3)]
    engineer = EngineerFactory()
    response = client_for(engineer).post("/api/v1/model-versions/", {
        "kind": "openai_compatible", "name": "big model", "base_url": fake_openai.base_url,
        "remote_model": "fake-model", "api_key_env": "FAKE_API_KEY", "system_prompt": "Describe the venue.",
        "price_per_million_input_tokens": 2.5, "price_per_million_output_tokens": 10}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["kind"], body["api_key_env"], body["price_per_million_input_tokens"]) == (
        "openai_compatible", "FAKE_API_KEY", 2.5)
    assert "sk-test-123" not in response.content.decode()

    snapshot = snapshot_of(e2e_records[:60])
    run = start_eval_run(ModelVersion.objects.get(pk=body["id"]), snapshot, by=engineer)
    run_jobs()
    run.refresh_from_db()
    assert run.status == JobStatus.SUCCEEDED, run.error
    assert run.environment == {"backend": "openai_compatible", "base_url": fake_openai.base_url,
                               "model": "fake-model", "request": {"tokens_parameter": "max_tokens",
                                                                  "temperature": "as asked", "logprobs": True}}
    predictions = list(run.predictions.all())
    assert predictions and all(p.output == "The Eagle is a coffee shop." for p in predictions)
    assert all(p.mean_logprob == pytest.approx(-0.2) for p in predictions)
    assert all(p.prompt_tokens > 0 and p.latency_ms > 0 for p in predictions)
    sent = [r["body"] for r in fake_openai.completion_requests]
    assert {body["model"] for body in sent} == {"fake-model"} and len(sent) == len(predictions) + 1  # + check()
    # The E2E inputs carry their own system message, which wins over the version's prompt.
    assert {tuple(m["role"] for m in body["messages"]) for body in sent[1:]} == {("system", "user")}


@pytest.mark.django_db(transaction=True)
def test_an_unset_key_fails_the_eval_before_generating_with_a_readable_error(e2e_records, fake_openai, run_jobs,
                                                                             monkeypatch):
    monkeypatch.delenv("MISSING_KEY", raising=False)
    engineer = EngineerFactory()
    version = client_for(engineer).post("/api/v1/model-versions/", {
        "kind": "openai_compatible", "base_url": fake_openai.base_url, "remote_model": "fake-model",
        "api_key_env": "MISSING_KEY", "system_prompt": ""}, format="json").json()
    run = start_eval_run(ModelVersion.objects.get(pk=version["id"]), snapshot_of(e2e_records[:60]), by=engineer)
    run_jobs()
    run.refresh_from_db()
    assert run.status == JobStatus.FAILED and "MISSING_KEY" in run.error
    assert not EvalRun.objects.get(pk=run.pk).predictions.exists() and fake_openai.completion_requests == []


@pytest.mark.django_db
@pytest.mark.parametrize("fields, message", [
    ({"base_url": "ftp://x", "remote_model": "m"}, "base_url must be an http(s) URL"),
    ({"base_url": "http://vllm:8000/v1", "remote_model": " "}, "remote_model"),
    ({"base_url": "http://vllm:8000/v1"}, "remote_model: the model name"),
    ({"base_url": "http://vllm:8000/v1", "remote_model": "m", "api_key_env": "sk-abc123-def"},
     "must be the NAME of an environment variable"),
])
def test_bad_remote_versions_are_400s_naming_the_field(fields, message):
    response = client_for(EngineerFactory()).post(
        "/api/v1/model-versions/", {"kind": "openai_compatible", "system_prompt": "", **fields}, format="json")
    assert response.status_code == 400 and message in response.content.decode()
    assert client_for(ReviewerFactory()).post(
        "/api/v1/model-versions/", {"kind": "openai_compatible", "system_prompt": "", **fields},
        format="json").status_code == 403


@pytest.mark.django_db(transaction=True)
def test_an_eval_of_a_reasoning_model_records_that_decoding_was_the_servers_default(e2e_records, fake_openai,
                                                                                     run_jobs):
    fake_openai.reasoning = True
    engineer = EngineerFactory()
    response = client_for(engineer).post("/api/v1/model-versions/", {
        "kind": "openai_compatible", "name": "reasoner", "base_url": fake_openai.base_url,
        "remote_model": "fake-model", "system_prompt": "Describe the venue."}, format="json")
    assert response.status_code == 201, response.content
    version = ModelVersion.objects.get(pk=response.json()["id"])
    run = start_eval_run(version, snapshot_of(e2e_records[:30]), by=engineer)
    run_jobs()
    run.refresh_from_db()
    assert run.status == JobStatus.SUCCEEDED, run.error
    assert run.environment["request"] == {"tokens_parameter": "max_completion_tokens",
                                          "temperature": "server default", "logprobs": False}
    assert all(p.mean_logprob is None for p in run.predictions.all())


@pytest.mark.django_db
@pytest.mark.parametrize("base_url", ["http://a b/v1", "http://[::1/v1", "http://h:99999/v1", "http://h:port/v1",
                                      "http://?x", "http://user:sk-secret@h/v1", "http://h/v1?api-key=sk-secret"])
def test_bad_base_urls_are_400s_naming_the_field_and_write_nothing(base_url):
    """All these were stored (201): spaces, a broken IPv6 host, ports that are not ports, no host, and
    a key inside the URL, which the API then served back to every engineer."""
    response = post_remote_version(base_url=base_url)
    assert response.status_code == 400 and "base_url" in response.json()["detail"]
    assert not ModelVersion.objects.exists() and not BaseModel.objects.exists()


@pytest.mark.django_db
def test_a_long_remote_model_name_makes_a_version_not_a_500_and_keeps_endpoints_apart():
    """The default name "<remote_model> (API)" passed the 200-character column (PostgreSQL: DataError,
    500, with its BaseModel already written); the base model's name was cut at 200 characters, so two
    endpoints serving one long model name shared a base model whose source was the first URL."""
    long_name = "m" * 200
    first = post_remote_version(remote_model=long_name, base_url="http://one:8000/v1")
    second = post_remote_version(remote_model=long_name, base_url="http://two:8000/v1")
    assert (first.status_code, second.status_code) == (201, 201), first.content
    assert len(first.json()["name"]) <= 200
    assert BaseModel.objects.get(pk=second.json()["base_model"]).source == "http://two:8000/v1"


@pytest.mark.django_db
def test_a_boolean_price_is_refused():
    """DRF's FloatField reads true as 1.0: a version was priced at 1 per GPU-hour by a JSON boolean."""
    response = post_remote_version(price_per_gpu_hour=True)
    assert response.status_code == 400 and "price_per_gpu_hour" in response.json()
    assert not ModelVersion.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("reply", ["Pub\ud800", "Pub\x00"])
def test_an_output_no_text_column_holds_is_stored_replaced_not_left_running(e2e_records, fake_openai, run_jobs,
                                                                            reply):
    """A reply with an unpaired surrogate (any database) or a NUL (PostgreSQL) failed the predictions'
    insert, after the job's try block: the eval run stayed "running" forever with no error."""
    fake_openai.reply = lambda messages: reply
    engineer = EngineerFactory()
    version = ModelVersion.objects.get(pk=post_remote_version(base_url=fake_openai.base_url,
                                                              remote_model="fake-model").json()["id"])
    run = start_eval_run(version, snapshot_of(e2e_records[:60]), by=engineer)
    try:
        run_jobs()
    finally:
        run.refresh_from_db()
    assert run.status == JobStatus.SUCCEEDED, run.error
    assert set(run.predictions.values_list("output", flat=True)) == {"Pub\ufffd"}
