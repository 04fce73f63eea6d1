"""Hyperparameters of a LoRA fine-tuning run, validated before anything is queued."""
from dataclasses import asdict, dataclass, fields

MAX_EPOCHS = 1000
# Inclusive bounds; the upper ones refuse values no machine could run, before anything is queued.
INTEGER_RANGES = {
    "lora_rank": (1, 1024),
    "lora_alpha": (1, 4096),
    "batch_size": (1, 4096),
    "gradient_accumulation_steps": (1, 1024),
    "max_seq_length": (1, 131_072),
    "logging_steps": (1, 1_000_000),
    "max_steps": (0, 10_000_000),
    "max_train_examples": (0, 1_000_000_000),
    "max_eval_examples": (0, 1_000_000_000),
    "seed": (0, 2**31 - 1),  # stored in 32-bit integer columns
}


@dataclass(frozen=True)
class LoraConfig:
    """LoRA (Hu et al. 2021, arXiv:2106.09685) and optimiser settings.

    lora_rank (r) and lora_alpha scale the update by alpha / r; target_modules name the
    linear layers that get adapters. Batch size counts sequences per optimiser micro-step;
    the effective batch is batch_size * gradient_accumulation_steps. max_seq_length is in
    tokens. max_steps > 0 stops early (overrides epochs). max_train_examples > 0 trains on
    a seeded subset of the train split (quick runs).
    """

    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    epochs: float = 1.0
    learning_rate: float = 2e-4
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_seq_length: int = 256
    warmup_ratio: float = 0.05
    max_steps: int = 0
    max_train_examples: int = 0
    max_eval_examples: int = 64
    logging_steps: int = 5
    seed: int = 0

    @classmethod
    def from_dict(cls, values: dict | None) -> "LoraConfig":
        """Build and validate a config; unknown keys and bad values raise ValueError naming the field."""
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
            if name == "target_modules":
                continue
            expected = known[name].type
            is_int = isinstance(value, int) and not isinstance(value, bool)
            if expected is int and not is_int:
                raise ValueError(f"{name} must be an integer, got {value!r}")
            if expected is float:
                if not (is_int or isinstance(value, float)):
                    raise ValueError(f"{name} must be a number, got {value!r}")
                values[name] = float(value)
        config = cls(**values)
        config._check_ranges()
        return config

    def _check_ranges(self):
        for name, (low, high) in INTEGER_RANGES.items():
            value = getattr(self, name)
            if value < low:
                raise ValueError(f"{name} must be {'above 0' if low == 1 else f'at least {low}'}, got {value}")
            if value > high:
                raise ValueError(f"{name} must be at most {high}, got {value}")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not 0 < self.learning_rate < 1:
            raise ValueError(f"learning_rate must be in (0, 1), got {self.learning_rate}")
        if not 0 < self.epochs <= MAX_EPOCHS:
            raise ValueError(f"epochs must be above 0 and at most {MAX_EPOCHS}, got {self.epochs}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")

    def to_dict(self) -> dict:
        values = asdict(self)
        values["target_modules"] = list(self.target_modules)
        return values


DEFAULT_CONFIG = LoraConfig()
__all__ = ["LoraConfig", "DEFAULT_CONFIG"]
