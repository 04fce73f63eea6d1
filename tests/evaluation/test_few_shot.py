"""Few-shot prompted baselines: worked examples from the train split only, shown before every input."""
import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from curation.formats import prompt_messages, with_system_prompt
from curation.snapshots import approve_snapshot, create_snapshot
from evaluation.models import EvalRun
from evaluation.services import start_eval_run
from ftplatform.errors import ServiceError
from ftplatform.jobrows import JobStatus
from tests.support.clients import client_for
from tests.support.factories import EngineerFactory, ReviewerFactory, snapshot_of, unloadable_base_model
from tests.support.threads import in_threads
from training.model_versions import few_shot_examples, prompted_model_version, remote_model_version
from training.models import BaseModel, ModelVersion

SHOT = [{"role": "system", "content": "Own system."}, {"role": "user", "content": "name[A]"},
        {"role": "assistant", "content": "A is a pub."}]


def test_prompt_messages_put_the_examples_between_the_system_message_and_the_input():
    question = [{"role": "user", "content": "name[B]"}]
    assert prompt_messages(question, "Describe.", [SHOT, SHOT[1:]]) == [
        {"role": "system", "content": "Describe."},
        SHOT[1], SHOT[2], SHOT[1], SHOT[2],  # the examples' own system messages are dropped
        *question]
    own = [{"role": "system", "content": "Mine."}, *question]
    assert prompt_messages(own, "Describe.", [SHOT]) == [own[0], SHOT[1], SHOT[2], question[0]]
    assert prompt_messages(question, "Describe.") == with_system_prompt(question, "Describe.")


@pytest.mark.django_db
def test_examples_come_from_the_train_split_only_and_the_seed_decides_which(e2e_records):
    snapshot = snapshot_of(e2e_records[:120])
    held_out = set(snapshot.items.exclude(split="train").values_list("input_hash", flat=True))
    train = {str(m): h for h, m in snapshot.items.filter(split="train").values_list("input_hash", "messages")}
    shots = few_shot_examples(snapshot, 5, seed=1)
    assert len(shots) == 5 and all(str(shot) in train for shot in shots)
    assert not {train[str(shot)] for shot in shots} & held_out
    assert len({train[str(shot)] for shot in shots}) == 5  # distinct inputs
    assert few_shot_examples(snapshot, 5, seed=1) == shots and few_shot_examples(snapshot, 5, seed=2) != shots


@pytest.mark.django_db
@pytest.mark.parametrize("k, message", [(0, "from 1 to 16"), (17, "from 1 to 16"), (True, "from 1 to 16"),
                                        (16, "distinct train inputs; few_shot_k is 16")])
def test_bad_few_shot_requests_are_refused(e2e_records, k, message):
    with pytest.raises(ServiceError, match=message):
        few_shot_examples(snapshot_of(e2e_records[:12]), k)


@pytest.mark.django_db
def test_an_unapproved_snapshot_gives_no_examples(e2e_records):
    with pytest.raises(ServiceError, match="few-shot examples come from approved snapshots only"):
        few_shot_examples(snapshot_of(e2e_records[:40], approve=False), 2)


@pytest.mark.django_db
def test_each_set_of_examples_is_its_own_prompted_version(e2e_records):
    snapshot = snapshot_of(e2e_records[:60])
    base = unloadable_base_model()
    zero, _ = prompted_model_version(base, "Describe.", by=EngineerFactory())
    shots = few_shot_examples(snapshot, 3)
    three, created = prompted_model_version(base, "Describe.", shots, by=EngineerFactory())
    again, created_again = prompted_model_version(base, "Describe.", shots, by=EngineerFactory())
    assert created and not created_again and again.pk == three.pk != zero.pk
    assert three.name == "tiny (prompted, 3-shot)" and three.few_shot == shots and zero.few_shot == []
    with pytest.raises(ServiceError, match="few-shot example 1: "):
        prompted_model_version(base, "Describe.", [[{"role": "user", "content": "no answer"}]], by=EngineerFactory())


@pytest.mark.django_db
def test_the_api_creates_a_few_shot_baseline_and_names_bad_fields(e2e_records):
    snapshot = snapshot_of(e2e_records[:60])
    unloadable_base_model()
    client = client_for(EngineerFactory())
    body = {"base_model": BaseModel.objects.get().pk, "system_prompt": "Describe.", "few_shot_snapshot": snapshot.pk,
            "few_shot_k": 2}
    first = client.post("/api/v1/model-versions/", body, format="json")
    assert first.status_code == 201 and len(first.json()["few_shot"]) == 2
    assert client.post("/api/v1/model-versions/", body, format="json").json()["id"] == first.json()["id"]
    bad = client.post("/api/v1/model-versions/", {**body, "few_shot_k": 0}, format="json")
    assert bad.status_code == 400 and "few_shot_k" in bad.json()["detail"]


@pytest.mark.django_db(transaction=True)
def test_an_eval_run_sends_the_examples_before_every_input(e2e_records, fake_openai, run_jobs):
    snapshot = snapshot_of(e2e_records[:60])
    engineer = EngineerFactory()
    version = remote_model_version(name="api", base_url=fake_openai.base_url, remote_model="fake-model",
                                   system_prompt="Describe.", by=engineer)
    shots = few_shot_examples(snapshot, 2)
    ModelVersion.objects.filter(pk=version.pk).update(few_shot=shots)
    version.refresh_from_db()
    run = start_eval_run(version, snapshot, by=engineer)
    run_jobs()
    run.refresh_from_db()
    assert run.status == JobStatus.SUCCEEDED, run.error
    sent = [r["body"]["messages"] for r in fake_openai.completion_requests][1:]  # after the key check
    turns = [m for shot in shots for m in shot if m["role"] != "system"]
    assert sent and all(messages[1:1 + len(turns)] == turns for messages in sent)
    assert all(messages[0]["role"] == "system" and messages[-1]["role"] == "user" for messages in sent)


@pytest.mark.django_db
def test_the_evaluate_command_takes_few_shot_only_with_the_prompted_base():
    with pytest.raises(CommandError, match="--few-shot goes with --prompted-base"):
        call_command("evaluate", "--model-version", "1", "--snapshot", "1", "--few-shot", "3", "--as", "nobody")


@pytest.mark.django_db
def test_a_few_shot_version_is_not_evaluated_on_inputs_it_is_shown_as_examples(e2e_records):
    """Examples come from one snapshot's train split, but start_eval_run never looked: evaluating the
    version on that train split, or on a snapshot (other seed) whose test split holds an example's
    input, scored the model on answers it had been handed in its prompt."""
    snapshot = snapshot_of(e2e_records[:60])
    version, _ = prompted_model_version(unloadable_base_model(), "Describe.", few_shot_examples(snapshot, 3, seed=1),
                                        by=EngineerFactory())
    engineer = EngineerFactory()
    with pytest.raises(ServiceError, match="worked examples whose inputs are in snapshot"):
        start_eval_run(version, snapshot, by=engineer, split="train")
    shown = [item.input_hash for item in snapshot.items.filter(split="train") if item.messages in version.few_shot]
    other = next(s for seed in range(1, 200)
                 if (s := create_snapshot(snapshot.dataset, by=engineer, seed=seed)[0]).items.filter(
                     split="test", input_hash__in=shown).exists())
    other = approve_snapshot(other, by=ReviewerFactory())
    with pytest.raises(ServiceError, match="worked examples whose inputs are in snapshot"):
        start_eval_run(version, other, by=engineer, split="test")
    assert not EvalRun.objects.exists()


@pytest.mark.django_db
def test_evaluate_few_shot_on_the_train_split_is_refused(e2e_records, monkeypatch):
    def started(run, write):  # in a test transaction the job is never enqueued: waiting would never end
        raise AssertionError(f"eval run {run.pk} was started")

    monkeypatch.setattr("evaluation.management.commands.evaluate.wait_for_evaluation", started)
    snapshot = snapshot_of(e2e_records[:60])
    unloadable_base_model()
    with pytest.raises(CommandError, match="worked examples whose inputs are in snapshot"):
        call_command("evaluate", "--prompted-base", "--base-model", "tiny", "--few-shot", "3", "--snapshot",
                     str(snapshot.pk), "--split", "train", "--as", EngineerFactory().username)
    assert not EvalRun.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("field, value", [("few_shot_k", 2.5), ("few_shot_k", True), ("few_shot_k", None),
                                          ("few_shot_k", 10**30), ("few_shot_seed", "abc"), ("few_shot_seed", 1e300),
                                          ("few_shot_snapshot", 999999)])
def test_bad_few_shot_parameters_are_a_400_creating_nothing(e2e_records, field, value):
    snapshot = snapshot_of(e2e_records[:40])
    body = {"system_prompt": "", "base_model": unloadable_base_model().pk, "few_shot_snapshot": snapshot.pk,
            field: value}
    response = client_for(EngineerFactory()).post("/api/v1/model-versions/", body, format="json")
    assert response.status_code == 400, response.content
    assert not ModelVersion.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL row locks")
def test_the_same_few_shot_version_created_at_once_is_one_row(e2e_records):
    snapshot, base = snapshot_of(e2e_records[:40]), unloadable_base_model()
    shots, engineer = few_shot_examples(snapshot, 3, seed=7), EngineerFactory()
    ids = in_threads(6, lambda _: prompted_model_version(base, "Describe.", shots, by=engineer)[0].pk)
    assert len(set(ids)) == 1 and ModelVersion.objects.count() == 1
