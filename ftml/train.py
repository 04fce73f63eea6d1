"""LoRA fine-tuning with TRL's SFTTrainer and peft: completion-only loss, checkpoints, resume.

The rows handed to SFTTrainer are already tokenized by ftml.data (prompt and
target tokenized apart, so the label boundary is exact and the final EOS is a label);
SFTTrainer then does what it is best at: batching (length-grouped, or padding-free
packing), token-weighted loss across gradient accumulation, checkpoints and resume.
"""
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

from .config import LoraConfig, split_batch
from .data import IGNORE_INDEX, tokenize_for_training

RUN_CONFIG_FILE = "ftplatform_run.json"
PAD_TOKEN = "<|pad|>"  # added only when the tokenizer has no usable token other than EOS


class TrainingCancelled(Exception):
    """The run was cancelled between steps; nothing was saved (checkpoints already written stay)."""


class TrainingFailed(RuntimeError):
    """Training cannot go on (no trainable examples, non-finite loss); the message says why."""


class ExampleError(ValueError):
    """A conversation cannot be tokenized for training; ``index`` is its position in the split."""

    def __init__(self, index: int, reason: str):
        super().__init__(f"example {index}: {reason}")
        self.index, self.reason = index, reason


@dataclass
class TrainingResult:
    adapter_dir: Path
    train_loss: float
    eval_loss: float | None
    steps: int
    trained_tokens: int
    input_tokens: int
    train_examples: int
    truncated_examples: int
    skipped_examples: int
    wall_seconds: float
    train_seconds: float
    bookkeeping_seconds: float
    tokens_per_second: float
    epochs: float = 0.0
    validation_examples: int = 0
    resumed_from_step: int = 0
    environment: dict = field(default_factory=dict)


@dataclass
class TokenizedSplit:
    """A split as training rows. ``over_length`` and ``fully_truncated`` hold example indexes:
    cut by max_seq_length, and cut so far that no target token is left (those are not in rows)."""

    rows: list[dict]
    over_length: list[int]
    fully_truncated: list[int]

    @property
    def input_tokens(self) -> int:
        return sum(len(row["input_ids"]) for row in self.rows)

    @property
    def target_tokens(self) -> int:
        return sum(sum(1 for label in row["labels"] if label != IGNORE_INDEX) for row in self.rows)


def precision(cuda_available: bool, bf16_supported: bool) -> dict:
    """Mixed-precision TrainingArguments for the device: bf16 where the GPU supports it, else fp16
    (the Trainer then scales the loss with torch.amp.GradScaler); float32 on CPU."""
    if not cuda_available:
        return {"bf16": False, "fp16": False, "use_cpu": True}
    return {"bf16": bf16_supported, "fp16": not bf16_supported, "use_cpu": False}


def environment() -> dict:
    """Library versions, device and data-parallel processes (with their backend: gloo on CPU, NCCL on
    GPU), recorded with every run."""
    import platform

    import peft
    import torch
    import transformers
    import trl

    cuda = torch.cuda.is_available()
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "trl": trl.__version__,
        "device": torch.cuda.get_device_name(0) if cuda else f"cpu ({platform.machine()})",
        "device_type": "cuda" if cuda else "cpu",
        "precision": next((k for k, v in precision(cuda, cuda and torch.cuda.is_bf16_supported()).items()
                           if v and k != "use_cpu"), "fp32"),
        "torch_threads": torch.get_num_threads(),
        "processes": torch.distributed.get_world_size() if distributed else 1,
        "distributed_backend": torch.distributed.get_backend() if distributed else None,
    }


def load_tokenizer(base_model_dir: Path, chat_template: str = ""):
    """The base model's tokenizer with a chat template (``chat_template`` overrides or fills in
    the model's) and a pad token distinct from EOS.

    Padding with EOS would be harmless for the labels (padding gets -100 anyway), but a
    distinct pad keeps EOS unambiguous for padding-free packing and for anyone reusing the
    adapter's tokenizer. The tokenizer's unknown token is used when it is not EOS; otherwise
    ``<|pad|>`` is added (the caller must resize the embeddings: see ``added_pad``).

    Returns:
        (tokenizer, added_pad): added_pad is True when a new token was added to the vocabulary.
    Raises:
        TrainingFailed: no chat template.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    if chat_template:
        tokenizer.chat_template = chat_template
    if not tokenizer.chat_template:
        raise TrainingFailed(f"the base model at {base_model_dir} has no chat template; "
                             "give one with the chat_template hyperparameter")
    added = False
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        if tokenizer.unk_token is not None and tokenizer.unk_token_id != tokenizer.eos_token_id:
            tokenizer.pad_token = tokenizer.unk_token
        else:
            added = tokenizer.add_special_tokens({"pad_token": PAD_TOKEN}) > 0
    return tokenizer, added


def tokenize_split(tokenizer, conversations, config: LoraConfig) -> TokenizedSplit:
    """Tokenize every conversation (ftml.data.tokenize_for_training).

    Raises:
        ExampleError: a conversation does not render; it names its index.
    """
    import jinja2

    rows, over, cut_away = [], [], []
    for index, messages in enumerate(conversations):
        try:
            tokenized = tokenize_for_training(tokenizer, messages, config.max_seq_length, config.train_on)
        except ValueError as exc:
            raise ExampleError(index, str(exc)) from exc
        except jinja2.TemplateError as exc:  # a broken chat_template: syntax, raise_exception, undefined
            raise ExampleError(index, f"the chat template fails: {type(exc).__name__}: {exc}") from exc
        if tokenized.truncated:
            over.append(index)
        if tokenized.target_tokens == 0:
            cut_away.append(index)
            continue
        rows.append({"input_ids": tokenized.input_ids, "labels": tokenized.labels})
    return TokenizedSplit(rows, over, cut_away)


def train_subset(count: int, config: LoraConfig) -> list[int]:
    """Indexes of the train examples a run uses: all of them, or with ``max_train_examples`` a
    seeded sample of that many (random.Random(seed).sample, so pre-flight sees the same ones)."""
    if config.max_train_examples and count > config.max_train_examples:
        return random.Random(config.seed).sample(range(count), config.max_train_examples)
    return list(range(count))


def _numbers(logs: dict) -> dict:
    return {k: v for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def train_lora(
    base_model_dir: Path,
    train_conversations: list[list[dict]],
    validation_conversations: list[list[dict]],
    config: LoraConfig,
    output_dir: Path,
    *,
    checkpoint_dir: Path | None = None,
    resume_from: Path | None = None,
    on_progress: Callable[[dict], None] | None = None,
    on_metrics: Callable[[int, dict], None] | None = None,
    on_checkpoint: Callable[[int, Path, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_warning: Callable[[str], None] | None = None,
    show_progress_bar: bool = True,
    progress_interval: float = 2.0,
    extra_callbacks: tuple = (),
) -> TrainingResult:
    """Fine-tune a LoRA adapter on chat conversations (the last message of each is the target).

    Args:
        base_model_dir: a Hugging Face folder (ftml.base_models).
        train_conversations / validation_conversations: lists of OpenAI-style message lists.
        config: validated hyperparameters ("auto" values are resolved here from the train
            split's size). The seed is set before the LoRA weights are created.
        output_dir: receives ``adapter/`` (peft adapter and tokenizer, pad token included) and
            ``ftplatform_run.json``; written to a staging folder first, so a failed or
            cancelled run leaves nothing there.
        checkpoint_dir: where ``checkpoint-<step>/`` folders go every ``config.checkpoint_steps``
            (adapter, optimizer, scheduler, RNG states, trainer state incl. the data position);
            they outlive a failure so the run can resume. None: no checkpoints.
        resume_from: a checkpoint folder to resume from (same data and config).
        on_progress(progress): at start, at most every ``progress_interval`` seconds, and at
            the end, with step, total_steps, epoch, elapsed_seconds, tokens_per_second
            (non-padding input tokens per second of this session) and eta_seconds.
        on_metrics(step, logs): each logging step (loss, learning_rate, grad_norm, epoch, ...)
            and each evaluation (eval_loss, after every epoch and at the end).
        on_checkpoint(step, path, info): after a checkpoint folder is completely written (by
            every process of a data-parallel run).
        should_stop(): polled after every optimiser step; True cancels the run. It may also
            raise (e.g. a timeout); the exception propagates.

        extra_callbacks: more transformers TrainerCallbacks (tests inspect gradients with one).

    Under ``accelerate launch`` / torchrun (WORLD_SIZE > 1) every process calls this: the Trainer
    takes the data-parallel setup (DDP; gloo on CPU, NCCL on GPU) from the environment, each
    process trains on batch_size / processes sequences per micro-step (config.split_batch), and only
    the main process (RANK 0) writes the output. Callbacks that report may be given to the main
    process alone; should_stop must be given to all or none (a process that stops alone leaves the
    others waiting in a collective): ftml.launch stops the whole group from outside.

    Returns:
        TrainingResult: losses are mean token cross-entropy in nats (train_loss: mean of the
        logged losses, so a resumed run reports the whole run's); times in seconds.
    Raises:
        TrainingCancelled, TrainingFailed (no chat template, a target truncated away without
        drop_truncated, non-finite loss), ValueError (an example does not render), and
        transformers/torch errors for broken models.
    """
    import datasets
    import torch
    from datasets import Dataset
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, PrinterCallback, TrainerCallback, set_seed
    from trl import SFTConfig

    from .sampling import ExactResumeSFTTrainer

    started = time.monotonic()
    warn = on_warning or (lambda message: None)
    datasets.disable_progress_bars()  # SFTTrainer's dataset-preparation bars; the Reporter draws the step bar
    tokenizer, added_pad = load_tokenizer(base_model_dir, config.chat_template)

    conversations = [train_conversations[i] for i in train_subset(len(train_conversations), config)]
    config = config.resolve_auto(len(conversations))
    train = tokenize_split(tokenizer, conversations, config)
    if train.fully_truncated:
        where = ", ".join(str(i) for i in train.fully_truncated[:10])
        message = (f"{len(train.fully_truncated)} train example(s) have no target token left at max_seq_length "
                   f"{config.max_seq_length} (indexes {where})")
        if not config.drop_truncated:
            raise TrainingFailed(message + "; raise max_seq_length or set drop_truncated")
        warn(message + "; dropped")
    if len(train.over_length) > len(train.fully_truncated):
        warn(f"{len(train.over_length) - len(train.fully_truncated)} train example(s) are longer than "
             f"max_seq_length {config.max_seq_length}: their targets are cut and lose the final EOS")
    if not train.rows:
        raise TrainingFailed("no train example has a target token left after truncation")
    validation = list(validation_conversations)[: config.max_eval_examples]
    eval_rows = tokenize_split(tokenizer, validation, config).rows if validation else []

    set_seed(config.seed)
    cuda = torch.cuda.is_available()
    mixed = precision(cuda, cuda and torch.cuda.is_bf16_supported())
    model = AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=torch.float32)
    if added_pad:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    model.config.pad_token_id = tokenizer.pad_token_id
    model = get_peft_model(model, PeftLoraConfig(
        r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules), task_type="CAUSAL_LM",
    ))

    staging = Path(output_dir).with_name(Path(output_dir).name + ".partial")
    main_process = int(os.environ.get("RANK", "0")) == 0  # accelerate launch / torchrun set RANK and WORLD_SIZE
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    try:
        per_device_batch, accumulation = split_batch(config.batch_size, config.gradient_accumulation_steps,
                                                     processes)
    except ValueError as exc:
        raise TrainingFailed(str(exc)) from None
    if main_process:
        shutil.rmtree(staging, ignore_errors=True)
    clock = {"bookkeeping": 0.0, "loop_started": None, "loop_seconds": 0.0, "tokens_at_start": 0}

    class Reporter(TrainerCallback):
        """Progress, metrics and checkpoints to the caller, one terminal bar, cancel and NaN checks.
        Time spent here (including the caller's hooks) is measured as bookkeeping."""

        bar = None
        last_progress = 0.0

        def _progress(self, state, force=False):
            now = time.monotonic()
            if not on_progress or not (force or now - self.last_progress >= progress_interval):
                return
            self.last_progress = now
            elapsed = now - clock["loop_started"]
            done = state.global_step - self.first_step
            tokens = state.num_input_tokens_seen - clock["tokens_at_start"]
            remaining = state.max_steps - state.global_step
            on_progress({
                "step": state.global_step, "total_steps": state.max_steps, "epoch": round(state.epoch or 0.0, 4),
                "elapsed_seconds": round(elapsed, 1),
                "tokens_per_second": round(tokens / elapsed, 1) if elapsed > 0 and tokens else None,
                "eta_seconds": round(elapsed / done * remaining, 1) if done else None,
            })

        def on_train_begin(self, args, state, control, **kwargs):
            tick = time.monotonic()
            clock["loop_started"], clock["tokens_at_start"] = tick, state.num_input_tokens_seen
            self.first_step = state.global_step
            if show_progress_bar:
                self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="training", unit="step",
                                dynamic_ncols=True)
            self._progress(state, force=True)
            clock["bookkeeping"] += time.monotonic() - tick

        def on_log(self, args, state, control, logs=None, **kwargs):
            tick = time.monotonic()
            logs = _numbers(dict(logs or {}))
            loss = logs.get("loss")
            if loss is not None and not math.isfinite(loss):
                raise TrainingFailed(f"loss became {loss} at step {state.global_step}; lower the learning rate")
            if loss is not None and self.bar is not None:
                self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            if on_metrics and ("loss" in logs or "eval_loss" in logs):
                # fp16 loss scaling logs grad_norm inf/nan on the steps it skips; JSON has no NaN.
                for key in [k for k, v in logs.items() if not math.isfinite(v)]:
                    warn(f"{key} was {logs[key]} at step {state.global_step}; recorded as null")
                    logs[key] = None
                on_metrics(state.global_step, logs)
            clock["bookkeeping"] += time.monotonic() - tick

        def on_save(self, args, state, control, **kwargs):
            tick = time.monotonic()
            if processes > 1:  # each process writes its own RNG state into the folder: wait for all of them
                from accelerate import PartialState

                PartialState().wait_for_everyone()
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if on_checkpoint and path.is_dir():
                on_checkpoint(state.global_step, path, {"epoch": round(state.epoch or 0.0, 4)})
            clock["bookkeeping"] += time.monotonic() - tick

        def on_step_end(self, args, state, control, **kwargs):
            tick = time.monotonic()
            if self.bar is not None:
                self.bar.update(1)
            self._progress(state)
            if should_stop and should_stop():
                raise TrainingCancelled()
            clock["bookkeeping"] += time.monotonic() - tick

        def on_train_end(self, args, state, control, **kwargs):
            clock["loop_seconds"] = time.monotonic() - clock["loop_started"]
            if self.bar is not None:
                self.bar.close()

    checkpoints = bool(checkpoint_dir and config.checkpoint_steps)
    args = SFTConfig(
        output_dir=str(checkpoint_dir if checkpoints else staging / "trainer"),
        per_device_train_batch_size=per_device_batch,
        per_device_eval_batch_size=per_device_batch,
        gradient_accumulation_steps=accumulation,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        lr_scheduler_kwargs=scheduler_kwargs(config, len(train.rows)),
        max_grad_norm=config.max_grad_norm,
        warmup_steps=config.warmup_ratio,  # below 1: a fraction of the total steps
        logging_steps=config.logging_steps,
        logging_nan_inf_filter=False,  # the Trainer's default hides a NaN loss from the logs; we stop on it
        save_strategy="steps" if checkpoints else "no",
        save_steps=config.checkpoint_steps or 500,
        save_total_limit=2,
        eval_strategy="epoch" if eval_rows else "no",
        report_to=[],
        seed=config.seed,
        data_seed=config.seed,
        dataloader_pin_memory=False,
        disable_tqdm=True,  # the Reporter draws one bar; the Trainer's would also print every log dict
        include_num_input_tokens_seen="non_padding",
        activation_checkpointing=config.gradient_checkpointing,  # TRL's default is on: ~30 % slower on CPU
        max_length=config.max_seq_length,
        packing=config.packing,
        packing_strategy="bfd",
        padding_free=config.packing,
        train_sampling_strategy="group_by_length" if config.group_by_length and not config.packing else "random",
        # Data-parallel runs only: gloo on CPU (accelerate would take MPI where torch has it), NCCL on GPU.
        ddp_backend="gloo" if processes > 1 and not cuda else None,
        ddp_find_unused_parameters=False,  # every LoRA weight gets a gradient each step: skip DDP's graph search
        **mixed,
    )
    optimizer = None  # the Trainer's AdamW with one learning rate
    if config.loraplus_lr_ratio != 1:
        from peft.optimizers import create_loraplus_optimizer

        optimizer = create_loraplus_optimizer(model, torch.optim.AdamW, lr=config.learning_rate,
                                              loraplus_lr_ratio=config.loraplus_lr_ratio, weight_decay=0.0)
    trainer = ExactResumeSFTTrainer(
        model=model,
        args=args,
        optimizers=(optimizer, None),
        train_dataset=Dataset.from_list(train.rows),
        eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
        processing_class=tokenizer,
        callbacks=[Reporter(), *extra_callbacks],
    )
    trainer.remove_callback(PrinterCallback)  # with its bar off the Trainer prints every log dict instead
    resumed_from = 0
    if resume_from is not None:
        state = json.loads((Path(resume_from) / "trainer_state.json").read_text())
        resumed_from = int(state["global_step"])
    try:
        output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        eval_loss = None
        history = trainer.state.log_history
        if eval_rows:  # the epoch-end evaluation may already have run at the last step
            last = next((e for e in reversed(history) if "eval_loss" in e), None)
            done = last is not None and last.get("step") == trainer.state.global_step
            eval_loss = last["eval_loss"] if done else trainer.evaluate()["eval_loss"]
        logged = [entry["loss"] for entry in history if "loss" in entry]
        train_loss = float(sum(logged) / len(logged)) if logged else float(output.training_loss)
        if not math.isfinite(train_loss):
            raise TrainingFailed(f"training loss is {train_loss}; lower the learning rate")
        steps = int(output.global_step)
        input_tokens = int(trainer.state.num_input_tokens_seen)
        session_tokens = input_tokens - clock["tokens_at_start"]
        result = TrainingResult(
            adapter_dir=Path(output_dir) / "adapter",
            train_loss=train_loss,
            eval_loss=eval_loss,
            steps=steps,
            trained_tokens=_trained_tokens(train, steps, config),
            input_tokens=input_tokens,
            train_examples=len(train.rows),
            truncated_examples=len(train.over_length),
            skipped_examples=len(train.fully_truncated),
            wall_seconds=time.monotonic() - started,
            train_seconds=clock["loop_seconds"],
            bookkeeping_seconds=clock["bookkeeping"],
            tokens_per_second=session_tokens / clock["loop_seconds"] if clock["loop_seconds"] else 0.0,
            epochs=round(float(trainer.state.epoch or 0.0), 4),
            validation_examples=len(eval_rows),
            resumed_from_step=resumed_from,
            environment=environment(),
        )
        if not main_process:
            return result  # several processes (accelerate launch): the main one writes the output
        adapter_dir = staging / "adapter"
        model.save_pretrained(adapter_dir)
        tokenizer.save_pretrained(adapter_dir)
        shutil.rmtree(staging / "trainer", ignore_errors=True)
        (staging / RUN_CONFIG_FILE).write_text(json.dumps({
            "hyperparameters": config.to_dict(), "base_model_dir": str(base_model_dir),
            "train_loss": train_loss, "eval_loss": eval_loss, "steps": steps,
            "trained_tokens": result.trained_tokens, "environment": result.environment,
            "log_history": history,
        }, indent=2))
        if Path(output_dir).exists():  # never replace what another run (or database) wrote
            raise TrainingFailed(f"{output_dir} already exists; nothing was overwritten")
        os.rename(staging, output_dir)
    finally:
        if main_process:
            shutil.rmtree(staging, ignore_errors=True)
    if on_progress:
        on_progress({"step": steps, "total_steps": steps, "epoch": round(trainer.state.epoch or 0.0, 4),
                     "elapsed_seconds": round(result.train_seconds, 1),
                     "tokens_per_second": round(result.tokens_per_second, 1), "eta_seconds": 0.0})
    return result


def optimizer_steps(config: LoraConfig, train_rows: int) -> int:
    """The optimiser steps of a run: max_steps, else epochs over the rows as transformers' Trainer
    counts them (a last partial batch is a step; accumulation rounds up)."""
    if config.max_steps:
        return config.max_steps
    batches = math.ceil(train_rows / config.batch_size)
    per_epoch = max(1, math.ceil(batches / config.gradient_accumulation_steps))
    return math.ceil(per_epoch * config.epochs)


def scheduler_kwargs(config: LoraConfig, train_rows: int) -> dict | None:
    """Extra arguments of the learning-rate schedule: warmup_stable_decay decays over the last
    ``decay_ratio`` of the steps (linearly to 0), after warmup and a constant stretch."""
    if config.lr_scheduler != "warmup_stable_decay":
        return None
    total = optimizer_steps(config, train_rows)
    return {"num_decay_steps": max(1, round(config.decay_ratio * total)), "decay_type": "linear"}


def _trained_tokens(split: TokenizedSplit, steps: int, config: LoraConfig) -> int:
    """Target tokens seen: per-epoch target tokens times the epochs the steps cover (fractional last epoch)."""
    examples_seen = steps * config.batch_size * config.gradient_accumulation_steps
    return int(split.target_tokens * examples_seen / len(split.rows))
