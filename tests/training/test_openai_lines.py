"""OpenAI chat lines in the training signal (ftml.data): per-turn ``weight``, the ``developer`` role, and
``tools`` given to the chat template. Uses the tiny model."""
import copy

import pytest
from transformers import AutoTokenizer

from ftml.config import LoraConfig
from ftml.data import IGNORE_INDEX, render_prompt, tokenize_for_training
from ftml.preflight import preflight

# The weights example of https://platform.openai.com/docs/guides/supervised-fine-tuning (examples/openai_formats).
MARV = [
    {"role": "system", "content": "Marv is a factual chatbot that is also sarcastic."},
    {"role": "user", "content": "What's the capital of France?"},
    {"role": "assistant", "content": "Paris", "weight": 0},
    {"role": "user", "content": "Can you be more sarcastic?"},
    {"role": "assistant", "content": "Paris, as if everyone doesn't know that already.", "weight": 1},
]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def trained_runs(tokenizer, messages, train_on):
    """The decoded runs of consecutive trained tokens."""
    row = tokenize_for_training(tokenizer, messages, 1024, train_on)
    runs, current = [], []
    for token, label in zip(row.input_ids, row.labels, strict=True):
        if label != IGNORE_INDEX:
            current.append(token)
        elif current:
            runs.append(tokenizer.decode(current))
            current = []
    return runs + ([tokenizer.decode(current)] if current else [])


def test_a_weight_0_turn_is_not_trained_even_when_every_turn_is(tokenizer):
    eos = tokenizer.eos_token
    assert trained_runs(tokenizer, MARV, "all") == [f"Paris, as if everyone doesn't know that already.{eos}"]


def test_a_weight_1_turn_is_trained_even_when_only_the_last_is(tokenizer):
    messages = [{**m, "weight": 1} if m.get("weight") == 0 else m for m in MARV]
    eos = tokenizer.eos_token
    assert trained_runs(tokenizer, messages, "last") == [f"Paris{eos}",
                                                         f"Paris, as if everyone doesn't know that already.{eos}"]


def test_without_weights_train_on_decides_as_before(tokenizer):
    messages = [{key: value for key, value in m.items() if key != "weight"} for m in MARV]
    assert len(trained_runs(tokenizer, messages, "last")) == 1
    assert len(trained_runs(tokenizer, messages, "all")) == 2


def test_a_conversation_whose_every_turn_has_weight_0_is_refused(tokenizer):
    with pytest.raises(ValueError, match="every one has weight 0"):
        tokenize_for_training(tokenizer, [*MARV[:4], {**MARV[4], "weight": 0}], 1024, "all")


def test_a_developer_message_is_rendered_as_the_system_message_by_a_template_without_that_role(tokenizer):
    assert "developer" not in tokenizer.chat_template
    as_developer = [{"role": "developer", "content": "Answer briefly."}, {"role": "user", "content": "Hi"}]
    as_system = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Hi"}]
    assert render_prompt(tokenizer, as_developer) == render_prompt(tokenizer, as_system)


WEATHER = {"type": "function", "function": {"name": "get_current_weather", "description": "Get the current weather",
                                            "parameters": {"type": "object", "properties": {}}}}
CALL = [{"role": "user", "content": "What is the weather in San Francisco?"},
        {"role": "assistant", "tool_calls": [{"id": "call_id", "type": "function", "function": {
            "name": "get_current_weather", "arguments": "{\"location\": \"San Francisco, USA\"}"}}]},
        {"role": "tool", "tool_call_id": "call_id", "content": "21.0"},
        {"role": "assistant", "content": "It is 21 degrees celsius in San Francisco, CA"}]


def test_tools_reach_a_template_that_renders_them_as_input_never_as_target(tokenizer):
    with_tools = copy.deepcopy(tokenizer)
    with_tools.chat_template = ("{% for tool in tools or [] %}TOOL {{ tool.function.name }}\n{% endfor %}"
                                + tokenizer.chat_template)
    row = tokenize_for_training(with_tools, {"messages": CALL, "tools": [WEATHER]}, 1024)
    assert with_tools.decode(row.input_ids).startswith("TOOL get_current_weather")
    assert trained_runs(with_tools, {"messages": CALL, "tools": [WEATHER]}, "last") == [
        f"It is 21 degrees celsius in San Francisco, CA{tokenizer.eos_token}"]
    legacy = tokenize_for_training(with_tools, {"messages": CALL, "functions": [WEATHER["function"]]}, 1024)
    assert legacy.input_ids == row.input_ids  # legacy functions are given to the template as tools


def test_preflight_warns_when_the_template_drops_the_tools_of_train_examples(tiny_model_dir):
    config = LoraConfig.from_dict({"max_seq_length": 256})
    plain = [m for m in CALL if m["role"] in ("user",)] + [{"role": "assistant", "content": "Sunny."}]
    report = preflight(tiny_model_dir, [{"messages": CALL, "tools": [WEATHER]}, plain], [], config,
                       example_ids=["ex1", "ex2"])
    assert [w for w in report.warnings if "tools" in w] == [
        "1 train example(s) define tools or functions (ids ex1) but the chat template does not render tools: the "
        "model learns the calls without seeing the schemas; describe the tools in the system prompt, or train "
        "with a chat_template that renders them"]
    assert not [w for w in preflight(tiny_model_dir, [plain], [], config).warnings if "tools" in w]
