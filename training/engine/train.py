"""LoRA fine-tuning with transformers' Trainer and peft, completion-only loss."""
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from .config import LoraConfig
from .data import tokenize_for_training

RUN_CONFIG_FILE = "ftplatform_run.json"


class TrainingCancelled(Exception):
    """The run was cancelled between steps; nothing was saved."""


class TrainingFailed(RuntimeError):
    """Training cannot go on (no trainable examples, non-finite loss); the message says why."""


@dataclass
class TrainingResult:
    adapter_dir: Path
    train_loss: float
    eval_loss: float | None
    steps: int
    trained_tokens: int
    train_examples: int
    truncated_examples: int
    skipped_examples: int
    wall_seconds: float
    environment: dict = field(default_factory=dict)


def environment() -> dict:
    """Library versions and device, recorded with every run."""
    import peft
    import torch
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "torch_threads": torch.get_num_threads(),
    }


def _tokenize_all(tokenizer, conversations, max_seq_length):
    rows, truncated, skipped, warnings = [], 0, 0, []
    for index, messages in enumerate(conversations):
        tokenized = tokenize_for_training(tokenizer, messages, max_seq_length)
        truncated += tokenized.truncated
        if tokenized.target_tokens == 0:
            skipped += 1
            warnings.append(f"train example {index}: target fully truncated at {max_seq_length} tokens; skipped")
            continue
        rows.append({"input_ids": tokenized.input_ids, "labels": tokenized.labels,
                     "attention_mask": [1] * len(tokenized.input_ids)})
    return rows, truncated, skipped, warnings


def train_lora(
    base_model_dir: Path,
    train_conversations: list[list[dict]],
    validation_conversations: list[list[dict]],
    config: LoraConfig,
    output_dir: Path,
    *,
    on_progress: Callable[[int, int, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_warning: Callable[[str], None] | None = None,
    show_progress_bar: bool = True,
) -> TrainingResult:
    """Fine-tune a LoRA adapter on chat conversations (the last message of each is the target).

    Args:
        base_model_dir: a Hugging Face folder with a chat template (training.engine.base_models).
        train_conversations / validation_conversations: lists of OpenAI-style message lists.
        config: validated hyperparameters. The seed is set before the LoRA weights are created.
        output_dir: receives ``adapter/`` (peft adapter, tokenizer) and ``ftplatform_run.json``;
            written to a staging folder first, so a failed or cancelled run leaves nothing there.
        on_progress(step, total_steps, logs): called with empty logs when training starts, at
            each logging step with the Trainer's logs (``loss``, ``learning_rate``,
            ``grad_norm``), and once at the end with ``train_loss`` and ``eval_loss``.
        should_stop(): polled after every optimiser step; True cancels the run.

    Returns:
        TrainingResult (losses are mean token cross-entropy in nats).
    Raises:
        TrainingCancelled, TrainingFailed, and transformers/torch errors for broken models.
    """
    import torch
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        PrinterCallback,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        set_seed,
    )

    started = time.monotonic()
    warn = on_warning or (lambda message: None)
    set_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    if not tokenizer.chat_template:
        raise TrainingFailed(f"the base model at {base_model_dir} has no chat template")
    if tokenizer.pad_token is None:
        # Padding positions get label -100 from the collator, so pad == EOS never hides EOS targets.
        tokenizer.pad_token = tokenizer.eos_token

    conversations = list(train_conversations)
    if config.max_train_examples and len(conversations) > config.max_train_examples:
        conversations = random.Random(config.seed).sample(conversations, config.max_train_examples)
    train_rows, truncated, skipped, warnings = _tokenize_all(tokenizer, conversations, config.max_seq_length)
    for message in warnings:
        warn(message)
    if not train_rows:
        raise TrainingFailed("no train example has a target token left after truncation")
    validation = list(validation_conversations)[: config.max_eval_examples]
    eval_rows = _tokenize_all(tokenizer, validation, config.max_seq_length)[0] if validation else []

    model = AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    model = get_peft_model(
        model,
        PeftLoraConfig(
            r=config.lora_rank,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=list(config.target_modules),
            task_type="CAUSAL_LM",
        ),
    )

    steps_per_epoch = math.ceil(len(train_rows) / (config.batch_size * config.gradient_accumulation_steps))
    total_steps = config.max_steps or max(1, math.ceil(steps_per_epoch * config.epochs))
    staging = Path(output_dir).with_name(Path(output_dir).name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)

    class Reporter(TrainerCallback):
        """Progress to the caller, one terminal bar with the latest loss, cancel and NaN checks."""

        bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            if show_progress_bar:
                self.bar = tqdm(total=total_steps, desc="training", unit="step", dynamic_ncols=True)
            if on_progress:
                on_progress(0, total_steps, {})

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = dict(logs or {})
            loss = logs.get("loss")
            if loss is not None and not math.isfinite(loss):
                raise TrainingFailed(f"loss became {loss} at step {state.global_step}; lower the learning rate")
            if loss is not None and self.bar is not None:
                self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            if on_progress and "loss" in logs:
                on_progress(state.global_step, total_steps, logs)

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(1)
            if should_stop and should_stop():
                raise TrainingCancelled()

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()

    args = TrainingArguments(
        output_dir=str(staging / "trainer"),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        num_train_epochs=config.epochs,
        max_steps=total_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=int(config.warmup_ratio * total_steps),
        logging_steps=config.logging_steps,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        seed=config.seed,
        data_seed=config.seed,
        dataloader_pin_memory=False,
        remove_unused_columns=False,
        disable_tqdm=True,  # the Reporter draws one bar; the Trainer's would also print every log dict
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_rows,
        eval_dataset=eval_rows or None,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
        processing_class=tokenizer,
        callbacks=[Reporter()],
    )
    trainer.remove_callback(PrinterCallback)  # with its bar off the Trainer prints every log dict instead
    try:
        output = trainer.train()
        eval_loss = trainer.evaluate()["eval_loss"] if eval_rows else None
        train_loss = float(output.training_loss)
        if not math.isfinite(train_loss):
            raise TrainingFailed(f"training loss is {train_loss}; lower the learning rate")
        trained_tokens = _trained_tokens(train_rows, total_steps, config)
        adapter_dir = staging / "adapter"
        model.save_pretrained(adapter_dir)
        tokenizer.save_pretrained(adapter_dir)
        shutil.rmtree(staging / "trainer", ignore_errors=True)
        result = TrainingResult(
            adapter_dir=Path(output_dir) / "adapter",
            train_loss=train_loss,
            eval_loss=eval_loss,
            steps=int(output.global_step),
            trained_tokens=trained_tokens,
            train_examples=len(train_rows),
            truncated_examples=truncated,
            skipped_examples=skipped,
            wall_seconds=time.monotonic() - started,
            environment=environment(),
        )
        (staging / RUN_CONFIG_FILE).write_text(
            json.dumps({"hyperparameters": config.to_dict(), "base_model_dir": str(base_model_dir),
                        "train_loss": train_loss, "eval_loss": eval_loss, "steps": result.steps,
                        "trained_tokens": trained_tokens, "environment": result.environment}, indent=2)
        )
        if Path(output_dir).exists():
            shutil.rmtree(output_dir)
        os.rename(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if on_progress:
        on_progress(result.steps, total_steps, {"train_loss": train_loss, "eval_loss": eval_loss})
    return result


def _trained_tokens(rows, total_steps, config) -> int:
    """Target tokens seen: per-epoch target tokens times epochs completed (fractional last epoch)."""
    per_epoch = sum(sum(1 for label in row["labels"] if label != -100) for row in rows)
    examples_seen = total_steps * config.batch_size * config.gradient_accumulation_steps
    return int(per_epoch * examples_seen / len(rows))
