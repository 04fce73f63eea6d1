"""Issue 13's "done when": the whole distillation loop on a live server, through the official openai client.

A "big" model (the tiny model, prompted) is served by the platform itself; a remote model version
points at this very server's /v1 and is the primary of a pass-through deployment "teacher". Its
traffic is logged, turned into examples, reviewed, snapshotted and distilled into a LoRA version
that is deployed as "small" with the big model as its fallback below a confidence threshold.
"""
import statistics
import time

import pytest
from openai import OpenAI

from curation.choices import ExampleSource, ExampleStatus, Split
from curation.models import Example
from curation.snapshots import approve_snapshot, create_snapshot
from curation.workflow import approve_examples
from evaluation.models import EvalRun
from evaluation.services import start_eval_run
from ftplatform.jobrows import JobStatus
from serving.choices import RequestStatus, Routing
from serving.deployments import choose_threshold, create_deployment, update_deployment
from serving.distill import logs_to_examples
from serving.keys import create_api_key
from serving.models import RequestLog
from tests.support.factories import TINY_HYPERPARAMETERS, DatasetFactory, ReviewerFactory, tiny_base_model
from training.choices import ModelVersionKind
from training.model_versions import prompted_model_version, remote_model_version
from training.runs import start_training_run

from .conftest import logged

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MAX_TOKENS = 12
GENERATION = {"max_new_tokens": MAX_TOKENS}
TAGS = {"team": "support", "purpose": "distil"}


def user_turns(e2e_records, count: int) -> list[list[dict]]:
    """``count`` distinct single-turn requests: the user messages of the E2E records."""
    seen, conversations = set(), []
    for record in e2e_records:
        text = record["messages"][1]["content"]
        if text not in seen:
            seen.add(text)
            conversations.append([{"role": "user", "content": text}])
        if len(conversations) == count:
            return conversations
    raise AssertionError(f"fewer than {count} distinct inputs")


@pytest.fixture
def distiller(engineer):
    """A plain engineer: reading the request log and adding examples in bulk (as imports do) is their work."""
    return engineer


@pytest.fixture
def big_model_dir(taught_tiny_model_dir):
    """The "big" model: the tiny model taught E2E for a few seconds (a fresh one answers only newlines)."""
    return taught_tiny_model_dir


@pytest.fixture
def big_model(live_server, engineer, big_model_dir, e2e_records, monkeypatch):
    """The big model served here as deployment "big", and a remote model version calling it through
    this server's /v1 with a key scoped to "big" read from BIG_API_KEY."""
    prompted, _ = prompted_model_version(tiny_base_model(big_model_dir), e2e_records[0]["messages"][0]["content"],
                                         by=engineer)
    big = create_deployment(by=engineer, name="big", primary=prompted, max_tokens=MAX_TOKENS)
    monkeypatch.setenv("BIG_API_KEY", create_api_key(name="teacher's calls", by=engineer, deployment=big)[1])
    remote = remote_model_version(name="big (through /v1)", base_url=f"{live_server.url}/v1", remote_model="big",
                                  api_key_env="BIG_API_KEY", by=engineer)
    return big, remote


@pytest.fixture
def client(live_server, engineer):
    with OpenAI(base_url=f"{live_server.url}/v1", api_key=create_api_key(name="apps", by=engineer)[1],
                max_retries=0, timeout=120) as client:
        yield client


@pytest.fixture
def big_client(live_server):
    """A client holding the key scoped to "big" (what the remote version sends)."""
    import os

    with OpenAI(base_url=f"{live_server.url}/v1", api_key=os.environ["BIG_API_KEY"], max_retries=0,
                timeout=120) as client:
        yield client


def rows_within(queryset, count: int, timeout: float = 10.0) -> bool:
    """Whether ``queryset`` holds ``count`` rows within ``timeout`` seconds (logs are written after responses)."""
    deadline = time.monotonic() + timeout
    while queryset.count() < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return queryset.count() == count


def ask(client, model: str, messages: list[dict], **kwargs):
    return client.chat.completions.create(model=model, messages=messages, max_tokens=MAX_TOKENS, **kwargs)


def distil(teacher_logs, dataset, base_model, distiller, run_jobs):
    """Examples from the logs, approved by a reviewer, snapshotted, approved, a LoRA of ``base_model``
    trained on it: (logs_to_examples' result, the snapshot, the LoRA version)."""
    result = logs_to_examples(teacher_logs, dataset, by=distiller, submit=True)
    assert result["skipped"] == [] and result["duplicates"] == []
    reviewer = ReviewerFactory()
    approved, problems = approve_examples(Example.objects.filter(pk__in=result["created"]), by=reviewer)
    assert problems == [] and approved == len(result["created"])
    snapshot, _ = create_snapshot(dataset, by=distiller)
    snapshot = approve_snapshot(snapshot, by=reviewer)
    run = start_training_run(snapshot, base_model, by=distiller,
                             hyperparameters=TINY_HYPERPARAMETERS)
    run_jobs()
    run.refresh_from_db()
    assert run.status == JobStatus.SUCCEEDED, run.error
    assert run.model_version.kind == ModelVersionKind.LORA_ADAPTER
    return result, snapshot, run.model_version


def test_traffic_to_a_big_model_is_distilled_into_a_small_one_that_falls_back_to_it(
        live_server, engineer, distiller, big_model, client, big_client, e2e_records, tiny_model_dir, run_jobs):
    big, remote = big_model
    teacher = create_deployment(by=engineer, name="teacher", primary=remote, max_tokens=MAX_TOKENS)
    assert teacher.routing == Routing.PRIMARY_ONLY and teacher.fallback is None

    # 1. Traffic: the apps call "teacher"; a few requests carry another tag and are left out.
    inputs = user_turns(e2e_records, 34)
    traffic, others = inputs[:30], inputs[30:]
    answers = {ask(client, "teacher", messages, metadata=TAGS).id: messages for messages in traffic}
    for messages in others:
        ask(client, "teacher", messages, metadata={"team": "sales"})
    rows = [logged(request_id) for request_id in answers]
    assert {(r.status, r.deployment_id, r.answered_by_id, r.fell_back) for r in rows} == {
        (RequestStatus.ANSWERED, teacher.pk, remote.pk, False)}
    assert [r.messages for r in rows] == list(answers.values())
    # Each passed through to "big" once, asking for logprobs (as OpenAICompatibleBackend does): the teacher's
    # rows carry big's confidence.
    big_rows = RequestLog.objects.filter(deployment_name="big")
    assert rows_within(big_rows.filter(status=RequestStatus.ANSWERED), len(inputs))
    assert not big_rows.filter(status=RequestStatus.FAILED).exists()
    assert all(r.confidence is not None for r in rows)

    # 2. Engineers pick the teacher's tagged traffic and distil it.
    picked = RequestLog.objects.filter(deployment=teacher, tags__team="support", tags__purpose="distil")
    assert sorted(picked.values_list("request_id", flat=True)) == sorted(answers)
    dataset = DatasetFactory(name="restaurants from traffic", system_prompt=e2e_records[0]["messages"][0]["content"])
    result, snapshot, small_version = distil(picked, dataset, tiny_base_model(tiny_model_dir), distiller,
                                             run_jobs)
    examples = Example.objects.filter(pk__in=result["created"])
    assert examples.count() == len(answers) and {e.source for e in examples} == {ExampleSource.TRAFFIC}
    for example in examples:
        row = RequestLog.objects.get(request_id=example.metadata["request_log"]["request_id"])
        assert row.example_id == example.pk and example.status == ExampleStatus.APPROVED
        assert example.messages == [*row.messages, {"role": "assistant", "content": row.answer}]
    assert snapshot.split_counts.get(Split.VALIDATION)

    # 3. Both candidates are evaluated on the validation split (where routing thresholds are chosen).
    evals = [start_eval_run(version, snapshot, by=engineer, split=Split.VALIDATION, generation=GENERATION)
             for version in (small_version, remote)]
    run_jobs()
    for run in evals:
        run.refresh_from_db()
        assert run.status == JobStatus.SUCCEEDED, run.error
    assert EvalRun.objects.get(pk=evals[1].pk).predictions.count() == snapshot.split_counts[Split.VALIDATION]
    chosen = choose_threshold(small_version, remote)  # chosen on those two runs; the outcome depends on the weights
    assert chosen["snapshot_id"] == snapshot.pk and chosen["chosen_on"]

    # 4. "small": the LoRA version first, the big model below a threshold set at the median confidence
    # the small model shows on the probes, so that both routes are taken.
    small = create_deployment(by=engineer, name="small", primary=small_version, fallback=remote,
                              routing=Routing.CONFIDENCE, threshold=-1e9, max_tokens=MAX_TOKENS)
    probes = inputs[:4] + user_turns(e2e_records[200:], 4)
    confidences = [ask(client, "small", messages).model_extra["ftplatform"]["confidence"] for messages in probes]
    assert len(set(confidences)) == len(confidences)  # distinct: the median splits them four and four
    threshold = statistics.median(confidences)
    small = update_deployment(small, by=engineer, threshold=threshold, reason="median confidence of 8 probes")
    assert small.threshold == threshold and small.threshold_source == {"set_by": "hand"}

    routes = []
    for messages in probes:
        completion = ask(client, "small", messages)
        extra = completion.model_extra["ftplatform"]
        row = logged(completion.id)
        assert row.deployment_id == small.pk and row.status == RequestStatus.ANSWERED
        assert row.threshold == threshold and row.confidence == pytest.approx(extra["confidence"])
        assert row.fell_back is (row.confidence < threshold) is extra["fell_back"]
        assert extra["answered_by"] == ("fallback" if row.fell_back else "primary")
        assert row.answered_by_id == extra["model_version_id"] == (remote.pk if row.fell_back else small_version.pk)
        assert row.answer == completion.choices[0].message.content
        if row.fell_back:
            # The fallback's answer is the big model's: what "big" answers the same messages.
            direct = ask(big_client, "big", messages).choices[0].message.content
            assert completion.choices[0].message.content == direct
            assert row.fallback_latency_ms is not None
        routes.append(extra["answered_by"])
    assert routes.count("primary") == routes.count("fallback") == 4
