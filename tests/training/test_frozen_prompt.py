"""Training reads the system prompt its snapshot froze, and a run records what it trained with."""
import pytest

from curation.choices import Split
from tests.support.factories import DatasetFactory, EngineerFactory, approved_snapshot, tiny_base_model
from tests.support.tiny_model import CHATML_TEMPLATE
from training.runs import preflight_training_run, snapshot_conversations, start_training_run

pytestmark = pytest.mark.django_db
# SmolLM2's kind of template: a default system prompt when the conversation brings none.
DEFAULT_SYSTEM_TEMPLATE = ("{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a tiny assistant."
                           "<|im_end|>\n{% endif %}" + CHATML_TEMPLATE)


def prompted_snapshot(system_prompt: str):
    """An approved snapshot of 12 examples without their own system message, frozen with ``system_prompt``."""
    return approved_snapshot(DatasetFactory(system_prompt=system_prompt),
                             [(f"name: The Eagle {i}, food: French", f"The Eagle {i} serves food.") for i in range(12)])


def edit_prompt(snapshot, prompt: str) -> None:
    snapshot.dataset.system_prompt = prompt
    snapshot.dataset.save()


def test_training_conversations_keep_the_frozen_prompt_after_the_dataset_is_edited():
    snapshot = prompted_snapshot("Describe the restaurant.")
    edit_prompt(snapshot, "Describe the restaurant at length, listing every attribute and its meaning.")
    conversations = snapshot_conversations(snapshot, Split.TRAIN)[1]
    assert {c[0]["content"] for c in conversations} == {"Describe the restaurant."}


def test_preflight_tokens_of_a_snapshot_do_not_change_when_the_dataset_prompt_is_edited(tiny_model_dir):
    snapshot, engineer = prompted_snapshot("Describe the restaurant."), EngineerFactory()
    base = tiny_base_model(tiny_model_dir)
    before = preflight_training_run(snapshot, base, by=engineer)
    edit_prompt(snapshot, "Describe the restaurant at length, listing every attribute and its meaning.")
    after = preflight_training_run(snapshot, base, by=engineer)
    assert after["input_tokens_per_epoch"] == before["input_tokens_per_epoch"]
    assert after["system_prompt"] == "Describe the restaurant."


def test_a_run_records_its_system_prompt_and_the_text_rendered_before_the_user(tiny_model_dir):
    run = start_training_run(prompted_snapshot("Describe the restaurant."), tiny_base_model(tiny_model_dir),
                             by=EngineerFactory(), hyperparameters={"max_steps": 1})
    assert run.system_prompt == "Describe the restaurant."
    assert run.prompt_prefix == "<|im_start|>system\nDescribe the restaurant.<|im_end|>\n<|im_start|>user\n"
    assert run.preflight["prompt_prefix"] == run.prompt_prefix


def test_without_a_system_prompt_the_run_records_the_templates_default_one(tiny_model_dir):
    run = start_training_run(prompted_snapshot(""), tiny_base_model(tiny_model_dir), by=EngineerFactory(),
                             hyperparameters={"max_steps": 1, "chat_template": DEFAULT_SYSTEM_TEMPLATE})
    assert run.system_prompt == ""
    assert run.prompt_prefix == "<|im_start|>system\nYou are a tiny assistant.<|im_end|>\n<|im_start|>user\n"
