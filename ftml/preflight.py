"""Pre-flight checks of a training run, before anything is queued: no Django inside.

Everything here is cheap next to training: the tokenizer, the model's config (the module
names come from a model built on the meta device, without weights) and one tokenization
pass over the data, the same one training does (ftml.train.tokenize_split).
"""
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jinja2

from .config import LoraConfig, split_batch
from .data import conversation_parts, prompt_prefix, template_renders_tools
from .train import ExampleError, TrainingFailed, load_tokenizer, tokenize_split, train_subset

MAX_LISTED = 20  # example ids named per problem; the counts are always complete


@dataclass
class PreflightReport:
    """What a run will do and what stops it. ``blocking`` empty means the run may be queued.

    Token counts are non-padding tokens: input tokens (what the model reads, what tokens/s
    counts) and trained tokens (the answer tokens that carry the loss, as TrainingRun.trained_tokens).
    Seconds are wall-clock estimates of the training loop at the measured (or configured) tokens/s;
    cost is in the currency of the configured price per GPU-hour. ``prompt_prefix`` is what the chat
    template renders before the user's text of an example without its own system message, with
    ``system_prompt`` or any default system prompt of the template (ftml.data.prompt_prefix).
    """

    hyperparameters: dict
    auto_resolved: list[str]
    chat_template_source: str
    target_modules_found: dict[str, int]
    train_examples: int
    validation_examples: int
    over_length: int
    over_length_examples: list
    fully_truncated: int
    fully_truncated_examples: list
    input_tokens_per_epoch: int
    target_tokens_per_epoch: int
    estimated_steps: int
    estimated_input_tokens: int
    estimated_trained_tokens: int
    estimated_seconds: float | None
    tokens_per_second_used: float | None
    tokens_per_second_source: str
    estimated_cost: float | None
    system_prompt: str = ""
    prompt_prefix: str = ""
    blocking: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


# The output head stays out: TRL's chunked_nll loss (training's default) refuses a wrapped lm_head.
NOT_TARGETABLE = {"lm_head"}


def _listed(ids: list, total: int) -> str:
    return ", ".join(map(str, ids)) + (f" and {total - len(ids)} more" if total > len(ids) else "")


def module_names(base_model_dir: Path) -> Counter:
    """How many modules LoRA can wrap (peft's LoRA layers: torch Linear, Embedding, Conv1d/2d,
    transformers' Conv1D) carry each last name component, e.g. ``{"q_proj": 30, ...}``, from a
    model built on torch's meta device (no weights are read). The output head is left out."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.pytorch_utils import Conv1D

    config = AutoConfig.from_pretrained(base_model_dir)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    wrappable = (torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv1d, torch.nn.Conv2d, Conv1D)
    names = Counter(name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                    if name and isinstance(module, wrappable))
    for name in NOT_TARGETABLE:
        names.pop(name, None)
    return names


def preflight(
    base_model_dir: Path,
    train_conversations: list[list[dict] | dict],
    validation_conversations: list[list[dict] | dict],
    config: LoraConfig,
    *,
    example_ids: list | None = None,
    tokens_per_second: float | None = None,
    tokens_per_second_source: str = "",
    price_per_gpu_hour: float | None = None,
    system_prompt: str = "",
    processes: int = 1,
) -> PreflightReport:
    """Check a run before it is queued and estimate what it will cost.

    Args:
        example_ids: the train examples' ids (same order), used to name problems; default:
            their index in the train split.
        tokens_per_second: throughput used for the wall-time estimate (non-padding input
            tokens per second); None: no estimate.
        price_per_gpu_hour: with it, estimated_cost = hours * price.
        system_prompt: the system prompt the conversations were given where they had none (recorded
            with the prefix it renders to).
        processes: the data-parallel processes the run will train on (the worker's setting).

    Conversations are lists of messages, or chat lines with tools (ftml.data.conversation_parts).
    Warnings include train examples with tools when the chat template does not render tools.

    Blocking problems: no chat template; a conversation that does not render; target modules
    missing from the model; train examples whose whole target is cut by max_seq_length
    (unless ``drop_truncated``); no train example left; a batch that does not split over
    ``processes`` (config.split_batch).
    """
    ids = list(example_ids) if example_ids is not None else list(range(len(train_conversations)))
    subset = train_subset(len(train_conversations), config)  # max_train_examples: the same sample as training
    ids, train_conversations = [ids[i] for i in subset], [train_conversations[i] for i in subset]
    blocking, warnings = [], []
    names = module_names(base_model_dir)
    found = {module: names.get(module, 0) for module in config.target_modules}
    missing = [module for module, present in found.items() if not present]
    if missing:
        candidates = sorted(names)
        blocking.append(f"target_modules {', '.join(missing)} not found among the base model's layers that "
                        f"LoRA can wrap (the output head excluded); those are: {', '.join(candidates[:12]) or 'none'}")
    resolved = config.resolve_auto(len(train_conversations))
    try:
        split_batch(resolved.batch_size, resolved.gradient_accumulation_steps, processes)
    except ValueError as exc:
        blocking.append(f"{exc} (FTPLATFORM_TRAINING_PROCESSES)")
    report = PreflightReport(
        hyperparameters=resolved.to_dict(), auto_resolved=config.unresolved, chat_template_source="",
        target_modules_found=found, train_examples=len(train_conversations),
        validation_examples=min(len(validation_conversations), resolved.max_eval_examples),
        over_length=0, over_length_examples=[], fully_truncated=0, fully_truncated_examples=[],
        input_tokens_per_epoch=0, target_tokens_per_epoch=0, estimated_steps=0, estimated_input_tokens=0,
        estimated_trained_tokens=0,
        estimated_seconds=None, tokens_per_second_used=tokens_per_second,
        tokens_per_second_source=tokens_per_second_source, estimated_cost=None, system_prompt=system_prompt,
        blocking=blocking, warnings=warnings,
    )
    try:
        tokenizer, _ = load_tokenizer(base_model_dir, config.chat_template)
    except TrainingFailed as exc:
        blocking.append(str(exc))
        return report
    report.chat_template_source = "run (chat_template hyperparameter)" if config.chat_template else "base model"
    with_tools = [ids[i] for i, c in enumerate(train_conversations) if conversation_parts(c)[1]]
    if with_tools and not template_renders_tools(tokenizer):
        warnings.append(f"{len(with_tools)} train example(s) define tools or functions (ids "
                        f"{_listed(with_tools[:MAX_LISTED], len(with_tools))}) but the chat template does not render "
                        "tools: the model learns the calls without seeing the schemas; describe the tools in the "
                        "system prompt, or train with a chat_template that renders them")
    try:
        split = tokenize_split(tokenizer, train_conversations, resolved)
    except ExampleError as exc:
        blocking.append(f"train example {ids[exc.index]} does not render with the chat template: {exc.reason}")
        return report
    try:
        report.prompt_prefix = prompt_prefix(tokenizer, system_prompt)
    except (jinja2.TemplateError, ValueError) as exc:  # a template that insists on other turns first
        warnings.append(f"the chat template does not render a prompt of the system prompt and a user turn alone "
                        f"({type(exc).__name__}: {exc}); the rendered prompt prefix is not recorded")
    report.over_length = len(split.over_length)
    report.over_length_examples = [ids[i] for i in split.over_length[:MAX_LISTED]]
    report.fully_truncated = len(split.fully_truncated)
    report.fully_truncated_examples = [ids[i] for i in split.fully_truncated[:MAX_LISTED]]
    if split.fully_truncated and not resolved.drop_truncated:
        blocking.append(
            f"{len(split.fully_truncated)} train example(s) would have no target token left at max_seq_length "
            f"{resolved.max_seq_length} (ids {_listed(report.fully_truncated_examples, report.fully_truncated)}); "
            "raise max_seq_length, or set drop_truncated to train without them")
    elif split.fully_truncated:
        warnings.append(f"{len(split.fully_truncated)} train example(s) will be dropped (drop_truncated)")
    if report.over_length > report.fully_truncated:
        cut = [ids[i] for i in split.over_length if i not in set(split.fully_truncated)]
        warnings.append(f"{len(cut)} train example(s) are longer than max_seq_length {resolved.max_seq_length} "
                        f"(ids {_listed(cut[:MAX_LISTED], len(cut))}); their answers are cut and lose the final EOS")
    if not split.rows:
        blocking.append("no train example has a target token left")
        return report
    report.input_tokens_per_epoch = split.input_tokens
    report.target_tokens_per_epoch = split.target_tokens
    steps_per_epoch = math.ceil(len(split.rows) / (resolved.batch_size * resolved.gradient_accumulation_steps))
    steps = resolved.max_steps or max(1, math.ceil(steps_per_epoch * resolved.epochs))
    report.estimated_steps = steps
    epochs_covered = steps / steps_per_epoch
    report.estimated_input_tokens = int(split.input_tokens * epochs_covered)
    report.estimated_trained_tokens = int(split.target_tokens * epochs_covered)  # as TrainingRun.trained_tokens
    if tokens_per_second:
        report.estimated_seconds = round(report.estimated_input_tokens / tokens_per_second, 1)
        if price_per_gpu_hour is not None:
            report.estimated_cost = round(report.estimated_seconds / 3600 * price_per_gpu_hour, 4)
    return report
