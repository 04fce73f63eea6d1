"""Hostile inputs and state races against training runs: each test here failed when written.

Pre-flight and create must answer 400 naming the field (never 500); what pre-flight accepts
must train; --dry-run must change nothing; a run's row must stay consistent."""
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.support.clients import client_for
from tests.support.factories import TINY_HYPERPARAMETERS, EngineerFactory, snapshot_of, tiny_base_model
from training.choices import FailureReason, RunStatus
from training.models import TrainingRun
from training.services import preflight_training_run, start_training_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(e2e_records, tiny_model_dir):
    snapshot, base_model = snapshot_of(e2e_records[:20]), tiny_base_model(tiny_model_dir)

    def post(path, hyperparameters, **extra):
        return client_for(EngineerFactory()).post(
            f"/api/v1/training-runs/{path}",
            {"snapshot": snapshot.pk, "base_model": base_model.pk, "hyperparameters": hyperparameters, **extra},
            format="json")

    return post


@pytest.mark.parametrize("name", ["learning_rate", "epochs", "lora_dropout", "warmup_ratio"])
def test_a_huge_integer_for_a_float_hyperparameter_is_a_400_naming_it(api, name):
    # LoraConfig.from_dict: float(10**400) raises OverflowError, which nobody catches -> 500.
    for path in ("preflight/", ""):
        response = api(path, {name: 10 ** 400})
        assert response.status_code == 400, (path, response.status_code)
        assert name in response.json()["detail"]
    assert not TrainingRun.objects.exists()


@pytest.mark.parametrize("template", [
    "{% if %}",                                           # TemplateSyntaxError
    "{{ raise_exception('no system role') }}",            # TemplateError (transformers' raise_exception)
    "{{ messages[0].nope.deeper }}",                      # UndefinedError
    "{% for m in messages %}{{ m.content | nofilter }}{% endfor %}",  # TemplateAssertionError
    # Renders, but never the answer: blamed on max_seq_length 256 ("raise max_seq_length").
    "{% for m in messages %}{{ m.role }}{% endfor %}",
])
def test_a_chat_template_that_does_not_compile_or_render_is_a_400_naming_it(api, template):
    # jinja2 errors are not ValueErrors: tokenize_split / preflight_training_run let them through -> 500.
    for path in ("preflight/", ""):
        response = api(path, {"chat_template": template})
        assert response.status_code in (200, 400), (path, response.status_code)
        text = str(response.json())
        assert "chat_template" in text or "chat template" in text, text
        if response.status_code == 200:
            assert response.json()["blocking"]
    assert not TrainingRun.objects.exists()


@pytest.mark.parametrize("module", ["norm", "self_attn", "0", "lm_head"])
def test_target_modules_that_lora_cannot_wrap_block_the_preflight(api, module):
    # Pre-flight only checks that some module has that last name; peft then refuses a non-Linear
    # module ("Target module LlamaRMSNorm ... is not supported") and TRL refuses lm_head with its
    # default chunked_nll loss -- in the worker, after the run was accepted.
    response = api("preflight/", {"target_modules": [module]})
    assert response.status_code == 200
    assert any(module in problem for problem in response.json()["blocking"]), response.json()["blocking"]


def test_preflight_estimates_the_max_train_examples_subset_that_trains(e2e_records, tiny_model_dir):
    # The engine samples max_train_examples first and resolves "auto" on that subset; pre-flight
    # resolves and counts on the whole train split, so the run records a batch size chosen for
    # ~60 examples and total_steps for all of them.
    snapshot = snapshot_of(e2e_records[:80])
    assert snapshot.split_counts["train"] >= 40
    report = preflight_training_run(snapshot, tiny_base_model(tiny_model_dir),
                                    {"max_train_examples": 5, "batch_size": "auto", "epochs": 1},
                                    by=EngineerFactory())
    assert report["train_examples"] == 5
    assert report["hyperparameters"]["batch_size"] == 1  # resolve_auto(5), as train_lora does
    assert report["estimated_steps"] == 5


def test_train_resume_with_dry_run_changes_nothing(e2e_records, tiny_model_dir, django_capture_on_commit_callbacks):
    # `train --resume RUN --dry-run` ignores --dry-run and really queues the run again.
    user = EngineerFactory()
    with django_capture_on_commit_callbacks(execute=False):
        run = start_training_run(snapshot_of(e2e_records[:20]), tiny_base_model(tiny_model_dir), by=user,
                                 hyperparameters=TINY_HYPERPARAMETERS)
    TrainingRun.objects.filter(pk=run.pk).update(status=RunStatus.FAILED, failure_reason=FailureReason.ERROR,
                                                 error="boom")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        try:
            call_command("train", "--resume", str(run.pk), "--dry-run", "--no-wait", "--as", user.username)
        except CommandError:
            pass  # refusing the combination is fine too
    run.refresh_from_db()
    assert (run.status, run.error) == (RunStatus.FAILED, "boom") and callbacks == []


def test_train_timeout_minutes_zero_is_refused_not_replaced_by_the_default(e2e_records, tiny_model_dir,
                                                                             django_capture_on_commit_callbacks):
    # `timeout_minutes * 60 if timeout_minutes else None`: 0 silently becomes the 24 h default
    # (the API refuses 0 with 400; a negative value is refused by the command too).
    snapshot, user = snapshot_of(e2e_records[:20]), EngineerFactory()
    tiny_base_model(tiny_model_dir)
    with django_capture_on_commit_callbacks(execute=False), pytest.raises(CommandError, match="timeout"):
        call_command("train", "--snapshot", str(snapshot.pk), "--base-model", f"tiny-{tiny_model_dir.name}",
                     "--timeout-minutes", "0", "--hyperparameters", '{"max_steps": 1}', "--no-wait",
                     "--as", user.username)
    assert not TrainingRun.objects.exists()
