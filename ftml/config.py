"""Hyperparameters of a LoRA fine-tuning run, validated before anything is queued."""
import math
from dataclasses import asdict, dataclass, fields, replace

MAX_EPOCHS = 1000
AUTO = "auto"
AUTO_FIELDS = ("epochs", "batch_size", "learning_rate")  # may be "auto", resolved from the train split's size
TRAIN_ON_CHOICES = ("last", "all")
# transformers' SchedulerType names; warmup_stable_decay: Hu et al. 2024 (MiniCPM), arXiv:2404.06395
AUTO_LEARNING_RATE = 1e-3  # at batch size 8; resolve_auto scales it
LR_SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup", "warmup_stable_decay")
# Inclusive bounds; the upper ones refuse values no machine could run, before anything is queued.
INTEGER_RANGES = {
    "lora_rank": (1, 1024),
    "lora_alpha": (1, 4096),
    "batch_size": (1, 4096),
    "gradient_accumulation_steps": (1, 1024),
    "max_seq_length": (1, 131_072),
    "logging_steps": (1, 1_000_000),
    "checkpoint_steps": (0, 10_000_000),
    "max_steps": (0, 10_000_000),
    "max_train_examples": (0, 1_000_000_000),
    "max_eval_examples": (0, 1_000_000_000),
    "seed": (0, 2**31 - 1),  # stored in 32-bit integer columns
}


@dataclass(frozen=True)
class LoraConfig:
    """LoRA (Hu et al. 2021, arXiv:2106.09685) and optimiser settings.

    lora_rank (r) and lora_alpha scale the update by alpha / r; target_modules name the
    linear layers that get adapters. Batch size counts sequences per optimiser micro-step,
    over all processes of a data-parallel run (split_batch): the effective (global) batch of
    an optimiser step is batch_size * gradient_accumulation_steps on any number of
    processes, so the same hyperparameters train the same thing on one or several. max_seq_length is in
    tokens. max_steps > 0 stops early (overrides epochs). max_train_examples > 0 trains on
    a seeded subset of the train split (quick runs).

    epochs, batch_size and learning_rate may be ``"auto"``: resolve_auto() picks them from
    the number of train examples, and the run records the resolved values.
    train_on: ``"last"`` trains the last assistant message only; ``"all"`` every assistant
    turn of a multi-turn conversation (system and user turns are never trained).
    drop_truncated: examples whose target is cut away entirely by max_seq_length block the
    run at pre-flight unless this is true (then they are dropped and counted).
    packing: padding-free packing of several examples per row (TRL's best-fit-decreasing);
    off by default because on CPU attention over a packed row costs more than the padding
    it saves (bench/training_bench.py).
    group_by_length: batches of similar lengths (less padding, about 1.1x the tokens/s on CPU).
        Off by default: such batches are far from random (in the E2E data length follows the
        number of attributes), and a run ending on a slice of one length lost about 2 BLEU to
        random batches at the same steps (bench/quality_bench.py, the ablation in the README).
    lr_scheduler: the learning-rate schedule after ``warmup_ratio`` of the steps (linear
        warmup): linear or cosine decay to 0, constant, or warmup_stable_decay (constant, then
        a linear decay over the last ``decay_ratio`` of the steps). max_grad_norm clips the
        gradient norm (0: no clipping).
    loraplus_lr_ratio: LoRA+ (Hayou et al. 2024, arXiv:2402.12354): the LoRA B matrices learn at
        this multiple of learning_rate, the A matrices at learning_rate (peft's
        create_loraplus_optimizer); 1 is plain LoRA, one learning rate for both. Default 4: chosen
        over 1 and 16 on the demo snapshot's validation split (3 seeds, 80 steps, learning rate
        1e-3; README, "Training quality").
    checkpoint_steps: save adapter, optimizer, scheduler, RNG state and data position every
    N optimiser steps (0: never), so a failed or cancelled run can resume.
    gradient_checkpointing: recompute activations in the backward pass: less memory for long
        sequences or big models, about 30 % slower (TRL turns it on by default; we do not).
    chat_template: a Jinja chat template to use when the base model has none (or to override it).
    """

    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    epochs: float | str = 1.0
    learning_rate: float | str = 1e-3
    batch_size: int | str = 8
    gradient_accumulation_steps: int = 1
    max_seq_length: int = 256
    warmup_ratio: float = 0.05
    lr_scheduler: str = "linear"
    decay_ratio: float = 0.2
    max_grad_norm: float = 1.0
    loraplus_lr_ratio: float = 4.0
    max_steps: int = 0
    max_train_examples: int = 0
    max_eval_examples: int = 64
    logging_steps: int = 5
    seed: int = 0
    train_on: str = "last"
    drop_truncated: bool = False
    packing: bool = False
    group_by_length: bool = False
    checkpoint_steps: int = 50
    gradient_checkpointing: bool = False
    chat_template: str = ""

    @classmethod
    def from_dict(cls, values: dict | None) -> "LoraConfig":
        """Build and validate a config; unknown keys and bad values raise ValueError naming the field."""
        if values is not None and not isinstance(values, dict):  # dict() of a list failed with Python's words
            raise ValueError(f'expected an object of names and values, such as {{"epochs": 2}}, got '
                             f"{type(values).__name__} {values!r:.60}")
        values = dict(values or {})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown hyperparameter(s): {', '.join(unknown)}; known: {', '.join(known)}")
        if "target_modules" in values:
            modules = values["target_modules"]
            if isinstance(modules, str):
                modules = [modules]
            if not (isinstance(modules, (list, tuple)) and modules and all(isinstance(m, str) and m for m in modules)):
                raise ValueError("target_modules must be a non-empty list of module names")
            values["target_modules"] = tuple(modules)
        for name, value in values.items():
            if name == "target_modules" or (name in AUTO_FIELDS and value == AUTO):
                continue
            expected = known[name].type
            if name in AUTO_FIELDS:
                expected = expected.__args__[0]  # int | str -> int: a number, or "auto"
            is_int = isinstance(value, int) and not isinstance(value, bool)
            if expected is bool and not isinstance(value, bool):
                raise ValueError(f"{name} must be true or false, got {value!r}")
            if expected is str and not isinstance(value, str):
                raise ValueError(f"{name} must be a string, got {value!r}")
            also = ' or "auto"' if name in AUTO_FIELDS else ""
            if expected is int and not is_int:
                raise ValueError(f"{name} must be an integer{also}, got {value!r}")
            if expected is float:
                if not (is_int or isinstance(value, float)):
                    raise ValueError(f"{name} must be a number{also}, got {value!r}")
                try:
                    values[name] = float(value)
                except OverflowError:
                    raise ValueError(f"{name} must be a finite number, got an integer of {len(str(value))} digits"
                                     ) from None
        config = cls(**values)
        config._check_ranges()
        return config

    def _check_ranges(self):
        for name, (low, high) in INTEGER_RANGES.items():
            value = getattr(self, name)
            if value == AUTO:
                continue
            if value < low:
                raise ValueError(f"{name} must be {'above 0' if low == 1 else f'at least {low}'}, got {value}")
            if value > high:
                raise ValueError(f"{name} must be at most {high}, got {value}")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.learning_rate != AUTO and not 0 < self.learning_rate < 1:
            raise ValueError(f"learning_rate must be in (0, 1), got {self.learning_rate}")
        if self.epochs != AUTO and not 0 < self.epochs <= MAX_EPOCHS:
            raise ValueError(f"epochs must be above 0 and at most {MAX_EPOCHS}, got {self.epochs}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.lr_scheduler not in LR_SCHEDULERS:
            raise ValueError(f"lr_scheduler must be one of {', '.join(LR_SCHEDULERS)}, got {self.lr_scheduler!r}")
        if not 0 < self.decay_ratio <= 1 or self.warmup_ratio + self.decay_ratio > 1:
            raise ValueError(f"decay_ratio must be in (0, 1] and warmup_ratio + decay_ratio at most 1, "
                             f"got {self.decay_ratio} (warmup_ratio {self.warmup_ratio})")
        if not 0 <= self.max_grad_norm < 1e6:
            raise ValueError(f"max_grad_norm must be at least 0 (0: no clipping), got {self.max_grad_norm}")
        if not 1 <= self.loraplus_lr_ratio <= 1000:
            raise ValueError(f"loraplus_lr_ratio must be between 1 (plain LoRA) and 1000, got {self.loraplus_lr_ratio}")
        if self.train_on not in TRAIN_ON_CHOICES:
            raise ValueError(f"train_on must be one of {', '.join(TRAIN_ON_CHOICES)}, got {self.train_on!r}")

    @property
    def unresolved(self) -> list[str]:
        """Names of the fields still set to "auto"."""
        return [name for name in AUTO_FIELDS if getattr(self, name) == AUTO]

    def resolve_auto(self, train_examples: int) -> "LoraConfig":
        """Replace "auto" epochs, batch size and learning rate by values for ``train_examples``.

        Rules (ftplatform's defaults, in the spirit of hosted fine-tuning services' "auto"):
        batch size 8, or 4 under 200 examples, 1 under 40; epochs so that about 2,000
        examples are seen (ceil(2000 / n)), between 1 and 10; learning rate 1e-3 scaled by
        sqrt(batch_size / 8) (square-root batch scaling, Malladi et al. 2022, arXiv:2205.10287).
        The 1e-3 at batch 8 was measured on the E2E demo snapshot (README, "Training quality").
        Values that are not "auto" are kept.
        """
        n = max(1, train_examples)
        batch = self.batch_size
        if batch == AUTO:
            batch = 8 if n >= 200 else 4 if n >= 40 else 1
        epochs = float(min(10, max(1, math.ceil(2000 / n)))) if self.epochs == AUTO else self.epochs
        rate = round(AUTO_LEARNING_RATE * math.sqrt(batch / 8), 8) if self.learning_rate == AUTO else self.learning_rate
        return replace(self, batch_size=batch, epochs=epochs, learning_rate=rate)

    def to_dict(self) -> dict:
        values = asdict(self)
        values["target_modules"] = list(self.target_modules)
        return values


def split_batch(batch_size: int, accumulation: int, processes: int) -> tuple[int, int]:
    """(per-device batch, gradient accumulation per process) that give ``processes`` data-parallel
    processes the global batch of one process: batch_size * accumulation sequences per optimiser step
    (per-device batch * processes * accumulation).

    The batch splits over the processes when it can (accumulation unchanged); else the accumulation
    does (per-device batch = batch_size). Either way one optimiser step sees the same examples as a
    single process would: accelerate deals each process whole per-device batches, in turn, from one
    seeded order (ftml.sampling).

    Raises:
        ValueError: neither batch_size nor accumulation is a multiple of ``processes``.
    """
    if processes < 1:
        raise ValueError(f"training processes must be at least 1, got {processes}")
    if batch_size % processes == 0:
        return batch_size // processes, accumulation
    if accumulation % processes == 0:
        return batch_size, accumulation // processes
    raise ValueError(f"batch_size {batch_size} x gradient_accumulation_steps {accumulation} does not split over "
                     f"{processes} training processes; make batch_size or gradient_accumulation_steps a multiple "
                     f"of {processes}")


DEFAULT_CONFIG = LoraConfig()
__all__ = ["LoraConfig", "DEFAULT_CONFIG", "split_batch"]
