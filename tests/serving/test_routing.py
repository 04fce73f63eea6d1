"""Confidence routing: the rule, a fallback that is down, and the deployment services' rules and history."""
import math
import socket

import openai
import pytest

from curation.choices import Split
from ftplatform.errors import Conflict, NotAllowed, ServiceError
from serving.answering import falls_back
from serving.choices import Engine, RequestStatus, Routing
from serving.deployments import choose_threshold, create_deployment, update_deployment
from serving.keys import create_api_key
from tests.support.factories import EngineerFactory, ReviewerFactory, tuned_vs_prompted_runs
from training.model_versions import remote_model_version
from training.models import ModelVersion, TrainingRun

from .conftest import logged
from .test_endpoint import MESSAGES, naive_answers


@pytest.mark.parametrize("confidence, threshold, expected", [
    (-1.5, -1.0, True),  # below: the fallback answers
    (-0.5, -1.0, False),
    (-1.0, -1.0, False),  # at the threshold is not below it
    (-0.5, None, False),  # no threshold: never on confidence
    (None, -1.0, True),  # unknown confidence falls back, as evaluation.routing scores it
    (math.nan, -1.0, True),
    (-math.inf, -1.0, True),
    (None, None, True),
])
def test_an_answer_falls_back_below_the_threshold_or_when_its_confidence_is_unknown(confidence, threshold,
                                                                                     expected):
    assert falls_back(confidence, threshold) is expected


# -- a fallback that is down, through the live endpoint ----------------------------------------------------


def closed_port() -> int:
    """A local port nothing listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def down_fallback(db, engineer):
    """A remote model version whose server is not running."""
    return remote_model_version(name="big (down)", base_url=f"http://127.0.0.1:{closed_port()}/v1",
                                remote_model="big", by=engineer)


@pytest.fixture
def routed(engineer, tiny_version, down_fallback, settings):
    """"routed": the tiny model first, the down fallback below a threshold of 0 (every mean token
    log-probability of an uncertain model is below it)."""
    settings.SERVING_REMOTE_RETRIES = 0  # a refused connection fails at once
    return create_deployment(by=engineer, name="routed", primary=tiny_version, fallback=down_fallback,
                             routing=Routing.CONFIDENCE, threshold=0.0, max_tokens=16)


@pytest.fixture
def client(live_server, engineer, routed):
    from openai import OpenAI

    key = create_api_key(name="tests", by=engineer, deployment=routed)[1]
    with OpenAI(base_url=f"{live_server.url}/v1", api_key=key, max_retries=0, timeout=60) as client:
        yield client


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("stream", [False, True])
def test_a_fallback_that_is_down_answers_502_fallback_unavailable_and_logs_the_primarys_confidence(
        client, routed, tiny_version, down_fallback, stream):
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model="routed", messages=MESSAGES, max_tokens=10, stream=stream)
    error = refused.value
    assert error.status_code == 502 and error.code == "fallback_unavailable"
    assert error.body["type"] == "api_error" and error.body["param"] is None
    assert "below the confidence threshold" in error.message and "could not answer" in error.message
    assert f"Could not connect to {down_fallback.base_url}" in error.message
    assert "Traceback" not in error.message
    row = logged(error.response.headers["x-request-id"])
    assert row.status == RequestStatus.FAILED and row.http_status == 502 and row.error_code == "fallback_unavailable"
    assert row.answered_by is None and row.fell_back is True and row.answer == "" and row.stream is stream
    expected = naive_answers(tiny_version, [MESSAGES], 10)[0]
    assert row.confidence == pytest.approx(expected.mean_logprob, abs=1e-4)
    assert row.threshold == 0.0 and row.confidence < row.threshold
    assert row.primary_latency_ms > 0 and row.fallback_latency_ms is not None


@pytest.mark.django_db(transaction=True)
def test_above_the_threshold_the_primary_answers_and_the_fallback_is_never_called(client, engineer, routed,
                                                                                  tiny_version):
    update_deployment(routed, by=engineer, threshold=-1e9, reason="nothing falls back")
    completion = client.chat.completions.create(model="routed", messages=MESSAGES, max_tokens=10)
    extra = completion.model_extra["ftplatform"]
    # The fallback's server is down: had it been called, the request would have failed with 502.
    assert extra["answered_by"] == "primary" and extra["model_version_id"] == tiny_version.pk
    assert extra["fell_back"] is False and extra["threshold"] == -1e9
    assert completion.choices[0].message.content == naive_answers(tiny_version, [MESSAGES], 10)[0].text
    row = logged(completion.id)
    assert row.status == RequestStatus.ANSWERED and row.answered_by == tiny_version and not row.fell_back
    assert row.fallback_latency_ms is None and row.confidence > row.threshold


# -- the services -----------------------------------------------------------------------------------------


@pytest.fixture
def other_version(db, engineer):
    return remote_model_version(name="other", base_url="http://127.0.0.1:9/v1", remote_model="other", by=engineer)


@pytest.mark.django_db
@pytest.mark.parametrize("fields, field, words", [
    ({"fallback": "primary"}, "fallback", "another model version than the primary"),
    ({"routing": Routing.CONFIDENCE, "threshold": -0.5}, "routing", "needs a fallback"),
    ({"fallback": "other", "threshold": 0.5}, "threshold", "at most 0"),
    ({"fallback": "other", "threshold": math.inf}, "threshold", "at most 0"),
    ({"engine": Engine.VLLM}, "engine_base_url", "base_url must be an http(s) URL"),
    ({"engine": Engine.VLLM, "engine_base_url": "vllm:8000"}, "engine_base_url", "got 'vllm:8000'"),
    ({"max_tokens": 0}, "max_tokens", "from 1 to"),
    ({"name": "has space"}, "name", "Letters, digits"),
])
def test_create_deployment_refuses_bad_settings_naming_the_field(engineer, tiny_version, other_version, fields,
                                                                 field, words):
    versions = {"primary": tiny_version, "other": other_version}
    values = {"name": "d", **fields}
    if "fallback" in values:
        values["fallback"] = versions[values["fallback"]]
    with pytest.raises(ServiceError) as refused:
        create_deployment(by=engineer, primary=tiny_version, **values)
    assert refused.value.field == field and words in str(refused.value)
    assert str(refused.value).startswith(f"{field}:")


@pytest.mark.django_db
def test_a_deployment_name_is_taken_once(engineer, tiny_version):
    create_deployment(by=engineer, name="tiny", primary=tiny_version)
    with pytest.raises(Conflict) as refused:
        create_deployment(by=engineer, name="tiny", primary=tiny_version)
    assert refused.value.field == "name" and "'tiny' exists already" in str(refused.value)
    other = create_deployment(by=engineer, name="other", primary=tiny_version)
    with pytest.raises(Conflict) as renamed:
        update_deployment(other, by=engineer, name="tiny")
    assert renamed.value.field == "name"


@pytest.mark.django_db
def test_update_deployment_refuses_the_same_rules_and_unknown_fields(engineer, tiny_version, other_version):
    deployment = create_deployment(by=engineer, name="d", primary=tiny_version, fallback=other_version,
                                   threshold=-0.5)
    with pytest.raises(ServiceError) as same:
        update_deployment(deployment, by=engineer, fallback=tiny_version)
    assert same.value.field == "fallback"
    with pytest.raises(ServiceError) as unknown:
        update_deployment(deployment, by=engineer, thresold=-1.0)
    assert unknown.value.field == "thresold" and "a deployment has name, description" in str(unknown.value)
    deployment.refresh_from_db()
    assert deployment.fallback == other_version and deployment.threshold == -0.5


@pytest.fixture
def trained_without_validation_evals(db):
    """A LoRA version trained on a snapshot, and a baseline: both evaluated on its train split only."""
    _, prompted_run, tuned_run = tuned_vs_prompted_runs(validation=False)
    tuned = ModelVersion.objects.get(pk=tuned_run.model_version_id)  # the factory made it a LoRA by update()
    tuned.training_run = TrainingRun.objects.create(snapshot=tuned_run.snapshot, base_model=tuned.base_model,
                                                    hyperparameters={})
    tuned.save()
    return tuned, prompted_run.model_version, tuned_run.snapshot


@pytest.mark.django_db
def test_choosing_a_threshold_without_validation_evals_says_what_to_evaluate(trained_without_validation_evals):
    tuned, baseline, snapshot = trained_without_validation_evals
    with pytest.raises(ServiceError) as refused:
        choose_threshold(tuned, baseline)
    message = str(refused.value)
    assert refused.value.field == "threshold" and "have no succeeded eval run" in message
    for version in (tuned, baseline):
        assert (f"manage.py evaluate --model-version {version.pk} --snapshot {snapshot.pk} "
                f"--split {Split.VALIDATION}") in message


@pytest.mark.django_db
def test_confidence_routing_without_a_threshold_chooses_one_or_says_why_not(trained_without_validation_evals):
    tuned, baseline, snapshot = trained_without_validation_evals
    with pytest.raises(ServiceError) as refused:
        create_deployment(by=EngineerFactory(), name="routed", primary=tuned, fallback=baseline)
    assert refused.value.field == "threshold" and f"--model-version {tuned.pk}" in str(refused.value)


@pytest.mark.django_db
def test_a_version_not_trained_here_gets_its_threshold_by_hand(engineer, tiny_version, other_version):
    with pytest.raises(ServiceError) as refused:
        choose_threshold(tiny_version, other_version)
    assert refused.value.field == "threshold" and "give the threshold by hand" in str(refused.value)


@pytest.mark.django_db
def test_every_change_is_recorded_with_who_and_why(engineer, tiny_version, other_version):
    deployment = create_deployment(by=engineer, name="d", primary=tiny_version, fallback=other_version,
                                   threshold=-0.5)
    someone_else = EngineerFactory()
    update_deployment(deployment, by=someone_else, threshold=-0.8, reason="fewer fallbacks: cost")
    update_deployment(deployment, by=engineer, fallback=None)
    history = list(deployment.history.order_by("history_id"))
    assert [(h.history_user, h.history_change_reason) for h in history] == [
        (engineer, "created"), (someone_else, "fewer fallbacks: cost"), (engineer, "changed: fallback")]
    assert [(h.threshold, h.routing, h.fallback_id) for h in history] == [
        (-0.5, Routing.CONFIDENCE, other_version.pk), (-0.8, Routing.CONFIDENCE, other_version.pk),
        (None, Routing.PRIMARY_ONLY, None)]
    assert history[0].threshold_source == {"set_by": "hand"}


@pytest.mark.django_db
def test_only_engineers_change_deployments(tiny_version):
    with pytest.raises(NotAllowed) as refused:
        create_deployment(by=ReviewerFactory(), name="d", primary=tiny_version)
    assert "serving.add_deployment" in str(refused.value)
    assert not ModelVersion.objects.filter(primary_deployments__name="d").exists()
