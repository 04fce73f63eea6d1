"""The training signal: which tokens are trained, EOS kept, config validation. Uses the tiny model."""
import pytest
from transformers import AutoTokenizer, DataCollatorForSeq2Seq, TrainerCallback

from ftml.config import LoraConfig
from ftml.data import IGNORE_INDEX, tokenize_for_training
from ftml.train import TrainingCancelled, train_lora


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_only_the_assistant_answer_and_its_eos_are_trained(tokenizer, e2e_records):
    messages = e2e_records[0]["messages"]
    tokenized = tokenize_for_training(tokenizer, messages, 512)

    pairs = zip(tokenized.input_ids, tokenized.labels, strict=True)
    trained = [token for token, label in pairs if label != IGNORE_INDEX]
    assert tokenizer.decode(trained) == messages[-1]["content"] + "<|im_end|>"
    assert tokenized.labels[-1] == tokenizer.eos_token_id
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    assert tokenizer.decode(tokenized.input_ids[: tokenized.labels.count(IGNORE_INDEX)]) == prompt


def test_padding_with_eos_keeps_the_eos_labels(tokenizer, e2e_records):
    assert tokenizer.pad_token_id == tokenizer.eos_token_id  # the SmolLM2 situation
    short, long = (tokenize_for_training(tokenizer, e2e_records[i]["messages"], 512) for i in (0, 5))
    rows = [{"input_ids": t.input_ids, "labels": t.labels, "attention_mask": [1] * len(t.input_ids)}
            for t in (short, long)]
    batch = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)(rows)

    labels = batch["labels"].tolist()
    shorter = min(range(2), key=lambda i: len(rows[i]["input_ids"]))
    length = len(rows[shorter]["input_ids"])
    assert labels[shorter][length - 1] == tokenizer.eos_token_id
    assert set(labels[shorter][length:]) == {IGNORE_INDEX}
    assert batch["attention_mask"][shorter][length:].sum() == 0


def test_truncation_counts_and_cuts_from_the_right(tokenizer, e2e_records):
    tokenized = tokenize_for_training(tokenizer, e2e_records[0]["messages"], 8)
    assert tokenized.truncated and len(tokenized.input_ids) == 8 and tokenized.target_tokens == 0


@pytest.mark.parametrize("values, message", [
    ({"lora_rank": 0}, "lora_rank must be above 0"),
    ({"learning_rate": "fast"}, "learning_rate must be a number"),
    ({"batch_size": 2.5}, "batch_size must be an integer"),
    ({"lora_dropout": 1.5}, "lora_dropout must be in"),
    ({"target_modules": []}, "target_modules must be a non-empty list"),
    ({"epochz": 1}, "unknown hyperparameter"),
    ({"lr_scheduler": "cyclic"}, "lr_scheduler must be one of linear, cosine, constant"),
    ({"decay_ratio": 0}, "decay_ratio must be in"),
    ({"warmup_ratio": 0.5, "decay_ratio": 0.6}, "warmup_ratio \\+ decay_ratio at most 1"),
    ({"max_grad_norm": -1.0}, "max_grad_norm must be at least 0"),
    ({"loraplus_lr_ratio": 0.5}, "loraplus_lr_ratio must be between 1 \\(plain LoRA\\) and 1000, got 0.5"),
])
def test_bad_hyperparameters_are_named(values, message):
    with pytest.raises(ValueError, match=message):
        LoraConfig.from_dict(values)


@pytest.mark.slow
def test_training_writes_an_adapter_and_reports_the_loss(tiny_model_dir, tmp_path, e2e_records):
    conversations = [r["messages"] for r in e2e_records[:24]]
    progress = []
    result = train_lora(tiny_model_dir, conversations[:16], conversations[16:],
                        LoraConfig.from_dict({"max_steps": 4, "batch_size": 4, "logging_steps": 2}),
                        tmp_path / "out", on_progress=lambda p: progress.append((p["step"], p["total_steps"])),
                        show_progress_bar=False, progress_interval=0)
    assert (tmp_path / "out" / "adapter" / "adapter_config.json").is_file()
    assert (tmp_path / "out" / "adapter" / "tokenizer_config.json").is_file()
    assert result.steps == 4 and result.train_loss > 0 and result.eval_loss > 0
    assert progress == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4), (4, 4)]
    assert result.trained_tokens > 0


@pytest.mark.slow
def test_same_seed_gives_the_same_adapter(tiny_model_dir, tmp_path, e2e_records):
    from safetensors.torch import load_file

    conversations = [r["messages"] for r in e2e_records[:12]]
    config = LoraConfig.from_dict({"max_steps": 3, "batch_size": 4, "seed": 5})
    weights = []
    for name in ("a", "b"):
        train_lora(tiny_model_dir, conversations, [], config, tmp_path / name, show_progress_bar=False)
        weights.append(load_file(tmp_path / name / "adapter" / "adapter_model.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    assert all((weights[0][k] == weights[1][k]).all() for k in weights[0])


class LearningRates(TrainerCallback):
    """The learning rate each optimiser step uses (the scheduler's value when the step begins)."""

    def __init__(self):
        self.rates = []

    def on_step_begin(self, args, state, control, lr_scheduler=None, **kwargs):
        self.rates.append(lr_scheduler.get_last_lr()[0])


@pytest.mark.slow
def test_warmup_stable_decay_holds_the_peak_then_decays_linearly_to_zero(tiny_model_dir, tmp_path, e2e_records):
    conversations = [r["messages"] for r in e2e_records[:12]]
    rates = LearningRates()
    config = LoraConfig.from_dict({"max_steps": 10, "batch_size": 2, "learning_rate": 1e-3,
                                   "lr_scheduler": "warmup_stable_decay", "warmup_ratio": 0.1, "decay_ratio": 0.3})
    train_lora(tiny_model_dir, conversations, [], config, tmp_path / "out", show_progress_bar=False,
               extra_callbacks=(rates,))
    # 1 warmup step (from 0), 6 stable steps, then 3 decay steps: 3/3, 2/3, 1/3 of the peak (0 after the last).
    assert rates.rates == pytest.approx([0.0] + [1e-3] * 7 + [1e-3 * 2 / 3, 1e-3 / 3], abs=1e-9)


class GroupRates(TrainerCallback):
    """Per optimiser step: the learning rate of the group holding LoRA A and of the one holding B."""

    def __init__(self):
        self.a, self.b = [], []

    def on_step_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        group_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
        named = dict(model.named_parameters())
        self.a.append(group_of[id(next(p for n, p in named.items() if "lora_A" in n))])
        self.b.append(group_of[id(next(p for n, p in named.items() if "lora_B" in n))])


@pytest.mark.slow
def test_loraplus_trains_the_b_matrices_at_the_ratio_times_the_learning_rate(tiny_model_dir, tmp_path, e2e_records):
    conversations = [r["messages"] for r in e2e_records[:12]]
    rates = GroupRates()
    config = LoraConfig.from_dict({"max_steps": 4, "batch_size": 2, "learning_rate": 1e-3, "warmup_ratio": 0,
                                   "lr_scheduler": "linear", "loraplus_lr_ratio": 4})
    train_lora(tiny_model_dir, conversations, [], config, tmp_path / "out", show_progress_bar=False,
               extra_callbacks=(rates,))
    # The schedule scales both groups alike: linear decay from the peak over 4 steps.
    assert rates.a == pytest.approx([1e-3, 7.5e-4, 5e-4, 2.5e-4], abs=1e-9)
    assert rates.b == pytest.approx([4e-3, 3e-3, 2e-3, 1e-3], abs=1e-9)


@pytest.mark.slow
def test_cancelled_training_leaves_nothing_behind(tiny_model_dir, tmp_path, e2e_records):
    conversations = [r["messages"] for r in e2e_records[:12]]
    with pytest.raises(TrainingCancelled):
        train_lora(tiny_model_dir, conversations, [], LoraConfig.from_dict({"max_steps": 5, "batch_size": 2}),
                   tmp_path / "out", should_stop=lambda: True, show_progress_bar=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("examples, batch, epochs, rate", [
    (804, 8, 3.0, 1e-3),  # the demo's train split: about 2,000 examples seen
    (100, 4, 10.0, 1e-3 * (4 / 8) ** 0.5),  # square-root scaling with the batch
    (20, 1, 10.0, 1e-3 * (1 / 8) ** 0.5),
])
def test_auto_hyperparameters_follow_the_documented_rule(examples, batch, epochs, rate):
    config = LoraConfig.from_dict({"epochs": "auto", "batch_size": "auto", "learning_rate": "auto"})
    resolved = config.resolve_auto(examples)
    assert (resolved.batch_size, resolved.epochs) == (batch, epochs)
    assert resolved.learning_rate == pytest.approx(rate, abs=1e-8)  # recorded rounded to 8 decimals
