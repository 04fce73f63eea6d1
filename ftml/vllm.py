"""Launch plans for serving a base model and its LoRA adapters with vLLM (multi-LoRA, OpenAI-compatible API).

The platform does not serve at scale itself: it writes the command and config for ``vllm serve`` and calls the
running server as an OpenAI-compatible backend (``evaluation.backends.OpenAICompatibleBackend``), one model
name per served model: the base model under its served name, each adapter under its LoRA name.

Flags and formats were checked against vLLM's own source on the ``main`` branch of vllm-project/vllm (the
newest release on PyPI then was 0.33.0); vLLM was not installed or run here (its wheels need CUDA):

* ``vllm/entrypoints/openai/cli_args.py``: ``--lora-modules`` takes ``name=path`` or a JSON object
  ``{"name", "path", "base_model_name"}``; the JSON form is used (a path holding ``=`` breaks the other one).
  ``--chat-template`` takes a file path. ``--api-key`` exists, but the key is passed through the
  ``VLLM_API_KEY`` environment variable, which vLLM reads when ``--api-key`` is absent, so no key is ever
  written to a file or shown by ``ps``.
* ``vllm/utils/argparse_utils.py``: ``--config`` must be a ``.yaml``/``.yml`` file of flag names without
  dashes; ``true`` becomes a bare flag, a list becomes the flag followed by each item as a string, and
  command-line flags win over the file. ``LaunchPlan.argv`` is derived from the config by the same rules.
* ``vllm/config/lora.py``: ``max_lora_rank`` must be one of ``MAX_LORA_RANKS``, so the largest adapter rank
  is rounded up to the next allowed value; ``max_loras`` (adapters in one batch) must be >= 1;
  ``lora_extra_vocab_size`` is gone (PR #23540, vLLM 0.12): every adapter shares the base vocabulary.
* ``vllm/lora/lora_model.py`` and ``vllm/lora/utils.py``: an adapter file may hold only LoRA tensors
  (``lora_A``/``lora_B``/``lora_embedding_A``/``lora_embedding_B``); anything else, such as the full
  ``embed_tokens``/``lm_head`` that peft saves when training resized the embeddings (ftml.train adds a
  ``<|pad|>`` token when the base has none distinct from EOS), is refused with "unsupported LoRA weight".
  Such an adapter is reported here (``UnservableAdapter``) instead of failing at the server's start; merge it
  (``ftml.export.export_merged``) and serve the merged folder as its own model.
* vLLM uses the base model's tokenizer for every request (per-LoRA tokenizers are deprecated), so the chat
  template the adapters were trained with is passed with ``--chat-template`` when it differs from the base's.
* ``--generation-config auto`` (vLLM's default, written out so it is visible): the model folder's
  generation_config.json gives the default sampling values, as it does for transformers' ``generate`` in
  ftml.inference; the platform asks for greedy answers per request (temperature 0).
"""
import json
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

VLLM_CHECKED = "vllm-project/vllm main (newest PyPI release 0.33.0); not run here"
MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vllm/config/lora.py MaxLoRARanks
DTYPES = ("auto", "half", "float16", "bfloat16", "float", "float32")  # vllm ModelConfig.dtype choices
SERVED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,127}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
LORA_TENSOR_SUFFIXES = (".lora_A.weight", ".lora_B.weight", ".lora_embedding_A", ".lora_embedding_B")
# Tensors vLLM skips on purpose (vllm/lora/utils.py is_base_embedding_weights).
IGNORED_TENSOR_SUFFIXES = (".embed_tokens.base_layer.weight", ".lm_head.base_layer.weight")
ADAPTER_WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin", "adapter_model.pt")
CONFIG_FILE = "vllm.yaml"
SCRIPT_FILE = "launch.sh"
SERVED_MODELS_FILE = "served_models.json"


class VllmPlanError(ValueError):
    """Bad input for a launch plan; ``field`` names the argument (``adapters.<name>`` for one adapter)."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


class UnservableAdapter(VllmPlanError):
    """An adapter vLLM cannot load (full embedding weights from added tokens, DoRA, a larger vocabulary)."""


@dataclass(frozen=True)
class ServedModel:
    """One model name the server answers to: the base model (``adapter_dir`` None) or a LoRA adapter."""

    name: str
    adapter_dir: Path | None = None
    lora_rank: int | None = None
    model_version: str | None = None


@dataclass(frozen=True)
class LaunchPlan:
    """What to run and how to call it.

    ``config`` holds vLLM's flags as ``--config`` YAML keys (the model folder is the positional argument, not a
    key); ``argv`` is the same command with the flags spelt out. ``base_url`` is the API root a backend calls
    (``http://host:port/v1``); each ``ServedModel.name`` is the ``model`` to request.
    """

    base_model_dir: Path
    config: dict
    base_url: str
    served_models: tuple[ServedModel, ...]
    api_key_env: str | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def argv(self) -> list[str]:
        """``["vllm", "serve", <base folder>, --flag, value, ...]``: ``config`` expanded by vLLM's own rules
        for a config file (vllm/utils/argparse_utils.py ``load_config_file``)."""
        return ["vllm", "serve", str(self.base_model_dir), *config_flags(self.config)]

    @property
    def base_model(self) -> ServedModel:
        return self.served_models[0]

    def config_yaml(self) -> str:
        import yaml

        header = f"# vLLM config for `vllm serve {self.base_model_dir} --config {CONFIG_FILE}` ({VLLM_CHECKED})\n"
        return header + yaml.safe_dump(self.config, sort_keys=False, allow_unicode=True, width=1000)

    def launch_script(self) -> str:
        """A bash script that serves the plan from the folder it sits in (beside ``vllm.yaml``). Extra
        arguments go to ``vllm serve`` and win over the config. ``$VLLM`` overrides the command."""
        lines = [
            "#!/usr/bin/env bash",
            f"# Serves {self.base_model.name} (base) and {len(self.served_models) - 1} LoRA adapter(s) with vLLM.",
            f"# OpenAI-compatible API: {self.base_url}; model names: {', '.join(m.name for m in self.served_models)}",
            "# Generated by ftml.vllm; see served_models.json.",
            "set -euo pipefail",
            'cd "$(dirname "$0")"',
        ]
        if self.api_key_env:
            key = self.api_key_env
            lines += [
                f': "${{{key}:?set {key} to the API key clients must send (it is never written to a file)}}"',
                f'export VLLM_API_KEY="${key}"',
            ]
        base = shlex.quote(str(self.base_model_dir))
        lines.append(f'exec "${{VLLM:-vllm}}" serve {base} --config {CONFIG_FILE} "$@"')
        return "\n".join(lines) + "\n"

    def served_models_json(self) -> str:
        """Which name answers for which model version, and where to call it."""
        return json.dumps({
            "engine": "vllm",
            "vllm_checked": VLLM_CHECKED,
            "base_url": self.base_url,
            "api_key_env": self.api_key_env,
            "base_model_dir": str(self.base_model_dir),
            "models": [{
                "served_name": model.name,
                "kind": "base" if model.adapter_dir is None else "lora",
                "adapter_dir": None if model.adapter_dir is None else str(model.adapter_dir),
                "lora_rank": model.lora_rank,
                "model_version": model.model_version,
            } for model in self.served_models],
            "warnings": list(self.warnings),
        }, indent=2) + "\n"


def config_flags(config: Mapping) -> list[str]:
    """vLLM's flattening of a ``--config`` file: ``true`` -> ``--key``, ``false`` -> nothing, a list ->
    ``--key item ...``, anything else -> ``--key str(value)``."""
    flags: list[str] = []
    for key, value in config.items():
        if isinstance(value, bool):
            flags += [f"--{key}"] if value else []
        elif isinstance(value, list):
            flags += [f"--{key}", *(str(item) for item in value)] if value else []
        else:
            flags += [f"--{key}", str(value)]
    return flags


def lora_rank(adapter_dir: Path, field_name: str = "adapter_dir") -> int:
    """The largest LoRA rank of a peft adapter folder: ``r`` of adapter_config.json, or a larger per-module
    rank from its ``rank_pattern``. Raises VllmPlanError naming ``field_name`` when it cannot be read."""
    settings = _adapter_config(Path(adapter_dir), field_name)
    return _rank(settings, field_name)


def plan_vllm_launch(
    base_model_dir: Path,
    adapters: Mapping[str, Path] | Iterable[tuple[str, Path]] = (),
    *,
    served_model_name: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    public_host: str | None = None,
    dtype: str = "auto",
    max_model_len: int | None = None,
    max_loras: int | None = None,
    gpu_memory_utilization: float = 0.9,
    api_key_env: str | None = None,
    model_versions: Mapping[str, object] | None = None,
) -> LaunchPlan:
    """Plan ``vllm serve`` for a Hugging Face base folder and LoRA adapters on top of it.

    Args:
        base_model_dir: the base model folder (config.json, weights, tokenizer) on the serving machine.
        adapters: served name -> peft adapter folder (as ftml.train writes it), as a mapping or pairs.
        served_model_name: the name the base answers to; default: the folder's name.
        host, port: where the server listens. ``public_host``: the host name the platform reaches it by, for
            ``base_url``; default ``host`` (``localhost`` when ``host`` is a wildcard such as 0.0.0.0).
        dtype: vLLM's ``--dtype``. "auto" takes the checkpoint's dtype, except that float32 checkpoints (what
            the platform trains and exports) run in half precision on GPUs (bfloat16 or float16): answers can
            differ slightly from the platform's float32 CPU evaluation; "float32" keeps them, at a cost in speed
            and memory. vLLM's CPU backend runs float32 or bfloat16 only.
        max_model_len: context length in tokens; default the base config's ``max_position_embeddings``; never
            more than that.
        max_loras: adapters in one batch; default the number of adapters (at least 1).
        gpu_memory_utilization: fraction of GPU memory vLLM may take, in (0, 1].
        api_key_env: the *name* of the environment variable holding the API key (never the key): the launch
            script hands it to vLLM as VLLM_API_KEY, and the platform's backend reads the same variable.
        model_versions: served name -> model version (id or label), recorded in served_models.json.

    Returns:
        A LaunchPlan. Its ``warnings`` list what serves but differs from the platform's own inference.
    Raises:
        VllmPlanError: bad input; the error's ``field`` names it (``adapters.<name>`` for one adapter).
        UnservableAdapter: an adapter vLLM would refuse at start (full embedding weights because training
            added a token, DoRA, a vocabulary larger than the base's).
    """
    warnings: list[str] = []
    base = _existing_folder(base_model_dir, "base_model_dir", "config.json", "a Hugging Face model folder")
    pairs = list(adapters.items()) if isinstance(adapters, Mapping) else [tuple(pair) for pair in adapters]

    base_name = served_model_name if served_model_name is not None else base.name
    _check_name(base_name, "served_model_name")
    seen = {base_name: "served_model_name"}
    for name, _ in pairs:
        _check_name(name, f"adapters.{name}")
        if name in seen:
            raise VllmPlanError(f"adapters.{name}", f"the name {name!r} is already used by {seen[name]}; "
                                                    "every served model needs its own name")
        seen[name] = f"adapters.{name}"
    versions = {str(k): v for k, v in (model_versions or {}).items()}
    unknown = sorted(set(versions) - set(seen))
    if unknown:
        raise VllmPlanError("model_versions", f"{', '.join(unknown)} is not a served name "
                                              f"(served: {', '.join(seen)})")

    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise VllmPlanError("port", f"must be a whole number from 1 to 65535, got {port!r}")
    if not isinstance(host, str) or any(c.isspace() for c in host):
        raise VllmPlanError("host", f"must be a host name or address without spaces, got {host!r}")
    if public_host is None:
        public_host = "localhost" if host in WILDCARD_HOSTS else host
        if host in WILDCARD_HOSTS:
            warnings.append(f"the server listens on every interface ({host or 'all'}); base_url uses localhost: "
                            "give public_host when the platform runs on another machine")
    if not public_host or any(c.isspace() or c in "/@?#" for c in public_host):
        raise VllmPlanError("public_host", f"must be a host name or address, got {public_host!r}")
    if dtype not in DTYPES:
        raise VllmPlanError("dtype", f"must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if not isinstance(gpu_memory_utilization, int | float) or isinstance(gpu_memory_utilization, bool) \
            or not 0 < gpu_memory_utilization <= 1:
        raise VllmPlanError("gpu_memory_utilization", f"must be a fraction in (0, 1], got {gpu_memory_utilization!r}")
    if api_key_env is not None and not ENV_NAME.fullmatch(api_key_env):
        # Never echoed: a key pasted here by mistake must not end up in a message.
        raise VllmPlanError("api_key_env", "must be the name of an environment variable (letters, digits and "
                                           "underscores, e.g. VLLM_API_KEY), not the key itself")
    if max_loras is None:
        max_loras = max(1, len(pairs))
    if not isinstance(max_loras, int) or isinstance(max_loras, bool) or max_loras < 1:
        raise VllmPlanError("max_loras", f"must be a whole number >= 1, got {max_loras!r}")

    base_config, base_tokenizer = _load_base(base)
    limit = getattr(base_config.get_text_config(), "max_position_embeddings", None)
    if max_model_len is None:
        if not limit:
            raise VllmPlanError("max_model_len", "the base config.json has no max_position_embeddings; "
                                                 "give the context length")
        max_model_len = int(limit)
    if not isinstance(max_model_len, int) or isinstance(max_model_len, bool) or max_model_len < 1:
        raise VllmPlanError("max_model_len", f"must be a whole number of tokens >= 1, got {max_model_len!r}")
    if limit and max_model_len > limit:
        raise VllmPlanError("max_model_len", f"{max_model_len} is more than the base model's "
                                             f"max_position_embeddings ({limit})")
    vocab_size = getattr(base_config.get_text_config(), "vocab_size", None)

    served = [ServedModel(base_name, None, None, _version(versions.get(base_name)))]
    templates: dict[str, tuple[str | None, Path | None]] = {}  # adapter name -> (chat template, its file)
    for name, folder in pairs:
        where = f"adapters.{name}"
        adapter = _existing_folder(folder, where, "adapter_config.json", "a peft adapter folder")
        settings = _adapter_config(adapter, where)
        rank = _rank(settings, where)
        _check_adapter(adapter, settings, base, where, warnings)
        template = _check_adapter_tokenizer(adapter, base_tokenizer, vocab_size, where, warnings)
        # An adapter without a tokenizer of its own was trained with the base's template (ftml.inference).
        templates[name] = template or (base_tokenizer.chat_template, None)
        served.append(ServedModel(name, adapter, rank, _version(versions.get(name))))

    config: dict = {
        "served-model-name": base_name,
        "host": host,
        "port": port,
        "dtype": dtype,
        "max-model-len": max_model_len,
        "gpu-memory-utilization": gpu_memory_utilization,
        "generation-config": "auto",
    }
    chat_template = _chat_template(templates, base_tokenizer.chat_template, warnings)
    if chat_template is not None:
        config["chat-template"] = str(chat_template)
    if pairs:
        largest = max(model.lora_rank for model in served[1:])
        allowed = [r for r in MAX_LORA_RANKS if r >= largest]
        if not allowed:
            raise UnservableAdapter("adapters", f"the largest LoRA rank is {largest}; vLLM serves ranks up to "
                                                f"{MAX_LORA_RANKS[-1]}")
        config.update({
            "enable-lora": True,
            "max-lora-rank": allowed[0],
            "max-loras": max_loras,
            "lora-modules": [json.dumps({"name": m.name, "path": str(m.adapter_dir), "base_model_name": base_name})
                             for m in served[1:]],
        })
    return LaunchPlan(base_model_dir=base, config=config, base_url=f"http://{_url_host(public_host)}:{port}/v1",
                      served_models=tuple(served), api_key_env=api_key_env, warnings=tuple(warnings))


def write_launch_files(plan: LaunchPlan, folder: Path, *, replace: bool = False) -> Path:
    """Write ``vllm.yaml``, ``launch.sh`` (executable) and ``served_models.json`` into ``folder``.

    The files are written into a temporary folder beside ``folder`` and renamed into place, so ``folder``
    holds either all three or none (with ``replace``, the old folder is moved aside first and deleted after).

    Raises:
        FileExistsError: ``folder`` exists and ``replace`` is False (nothing is touched).
    """
    folder = Path(folder)
    if folder.exists() and not replace:
        raise FileExistsError(f"{folder} already exists; nothing was written")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    old = None
    try:
        (staging / CONFIG_FILE).write_text(plan.config_yaml(), encoding="utf-8")
        (staging / SERVED_MODELS_FILE).write_text(plan.served_models_json(), encoding="utf-8")
        script = staging / SCRIPT_FILE
        script.write_text(plan.launch_script(), encoding="utf-8")
        script.chmod(0o755)
        os.chmod(staging, 0o755)  # mkdtemp makes it 0700
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}-old-", dir=folder.parent))
            os.rename(folder, old / folder.name)
        os.rename(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None and (old / folder.name).exists() and not folder.exists():
            os.rename(old / folder.name, folder)  # put the previous files back
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def _existing_folder(path, field_name: str, marker: str, what: str) -> Path:
    if path is None or str(path).strip() == "":
        raise VllmPlanError(field_name, "no folder given")
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise VllmPlanError(field_name, f"folder {folder} does not exist")
    if not (folder / marker).is_file():
        raise VllmPlanError(field_name, f"{folder} is not {what} (no {marker})")
    return folder.resolve()


def _check_name(name, field_name: str) -> None:
    if not isinstance(name, str) or not SERVED_NAME.fullmatch(name):
        raise VllmPlanError(field_name, f"served name {name!r} must be 1 to 128 letters, digits, '.', '_', '-' or "
                                        "'/', starting with a letter or digit (no spaces)")


def _version(value) -> str | None:
    return None if value is None else str(value)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _adapter_config(adapter: Path, field_name: str) -> dict:
    try:
        settings = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VllmPlanError(field_name, f"adapter_config.json cannot be read ({exc.__class__.__name__}: {exc})")
    if not isinstance(settings, dict):
        raise VllmPlanError(field_name, "adapter_config.json is not a JSON object")
    return settings


def _rank(settings: dict, field_name: str) -> int:
    ranks = [settings.get("r")]
    pattern = settings.get("rank_pattern") or {}
    if isinstance(pattern, dict):
        ranks += list(pattern.values())
    if not all(isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in ranks):
        raise VllmPlanError(field_name, f"LoRA rank not readable: adapter_config.json has r={settings.get('r')!r} "
                                        f"and rank_pattern={pattern!r}; expected whole numbers >= 1")
    return max(ranks)


def _check_adapter(adapter: Path, settings: dict, base: Path, where: str, warnings: list[str]) -> None:
    """What vLLM checks when it loads the adapter (peft type, DoRA, tensor names), and the base it was trained on."""
    if settings.get("peft_type", "LORA") != "LORA":
        raise UnservableAdapter(where, f"peft_type is {settings.get('peft_type')!r}; vLLM serves LoRA adapters only")
    if settings.get("use_dora"):
        raise UnservableAdapter(where, "a DoRA adapter (use_dora); vLLM does not load DoRA weights: merge it "
                                       "(ftml.export.export_merged) and serve the merged folder")
    recorded = settings.get("base_model_name_or_path")
    if not recorded:
        warnings.append(f"{where}: adapter_config.json does not name its base model; assumed to be {base}")
    elif Path(str(recorded)).expanduser().resolve() != base:
        if Path(str(recorded)).name != base.name:
            raise VllmPlanError(where, f"was trained on {recorded}, not on {base}; an adapter only works on "
                                       "its own base model")
        warnings.append(f"{where}: trained on {recorded}, served on {base} (same folder name, assumed copied)")
    for modules, label in ((settings.get("modules_to_save"), "modules_to_save"),
                           (settings.get("trainable_token_indices"), "trainable_token_indices")):
        if modules:
            raise UnservableAdapter(where, f"trains whole modules or tokens ({label}: {modules}); vLLM loads only "
                                           "LoRA weights: merge the adapter (ftml.export.export_merged) and serve "
                                           "the merged folder")
    weight_file = next((adapter / name for name in ADAPTER_WEIGHT_FILES if (adapter / name).is_file()), None)
    if weight_file is None:
        raise VllmPlanError(where, f"no adapter weights ({', '.join(ADAPTER_WEIGHT_FILES)})")
    if weight_file.suffix != ".safetensors":
        warnings.append(f"{where}: weights in {weight_file.name} were not inspected (only safetensors are)")
        return
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weight_file), framework="pt") as handle:
            names = list(handle.keys())
    except (OSError, SafetensorError) as exc:
        raise VllmPlanError(where, f"{weight_file.name} cannot be read ({exc})")
    full = sorted({name.removeprefix("base_model.model.").removesuffix(".weight") for name in names
                   if not name.endswith(LORA_TENSOR_SUFFIXES + IGNORED_TENSOR_SUFFIXES)})
    if full:
        resized = any(n.endswith(("embed_tokens", "lm_head")) for n in full)
        reason = ("training added a token and resized the embeddings (ftml.train adds <|pad|> when the base "
                  "tokenizer has no pad or unknown token distinct from EOS), so peft saved the whole "
                  "embedding matrices; vLLM 0.12+ has no extra vocabulary for adapters" if resized
                  else "vLLM loads LoRA tensors only")
        raise UnservableAdapter(where, f"holds full weights for {', '.join(full[:5])}: {reason}. Merge it "
                                       "(ftml.export.export_merged) and serve the merged folder as its own model")


def _load_base(base: Path):
    from transformers import AutoConfig, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(base)
    except (OSError, ValueError) as exc:
        raise VllmPlanError("base_model_dir", f"config.json cannot be read ({exc})")
    try:
        tokenizer = AutoTokenizer.from_pretrained(base)
    except (OSError, ValueError, TypeError) as exc:
        raise VllmPlanError("base_model_dir", f"the tokenizer cannot be loaded ({exc})")
    return config, tokenizer


def _check_adapter_tokenizer(adapter: Path, base_tokenizer, vocab_size, where: str, warnings: list[str]):
    """(chat template, file) of the adapter's own tokenizer, or None when it has none. vLLM tokenizes every
    request with the base tokenizer, so a larger vocabulary cannot be served and a different one is noted."""
    if not (adapter / "tokenizer_config.json").is_file():
        return None
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(adapter)
    except (OSError, ValueError, TypeError) as exc:
        raise VllmPlanError(where, f"the adapter's tokenizer cannot be loaded ({exc})")
    if vocab_size and len(tokenizer) > vocab_size:
        raise UnservableAdapter(where, f"its tokenizer has {len(tokenizer)} tokens, more than the base model's "
                                       f"vocabulary ({vocab_size}): tokens added in training cannot be served by "
                                       "vLLM on the base; merge the adapter (ftml.export.export_merged) and serve "
                                       "the merged folder as its own model")
    if len(tokenizer) != len(base_tokenizer):
        warnings.append(f"{where}: its tokenizer has {len(tokenizer)} tokens, the base's {len(base_tokenizer)}; "
                        "vLLM tokenizes with the base's")
    if not tokenizer.chat_template:
        return None
    candidates = [adapter / "chat_template.jinja"]
    path = next((p for p in candidates if p.is_file() and p.read_text(encoding="utf-8") == tokenizer.chat_template),
                None)
    return tokenizer.chat_template, path


def _chat_template(templates: dict[str, tuple[str | None, Path | None]], base_template: str | None,
                   warnings: list[str]) -> Path | None:
    """The ``--chat-template`` file when the adapters were trained with a template other than the base's."""
    distinct = {template for template, _ in templates.values()}
    if not distinct or distinct == {base_template}:
        if not base_template:
            warnings.append("the base model has no chat template: chat completions will fail; give the base "
                            "folder one (chat_template.jinja)")
        return None
    if len(distinct) > 1:
        names = ", ".join(sorted(templates))
        raise VllmPlanError("adapters", f"the adapters ({names}) were trained with different chat templates; vLLM "
                                        "renders every request with one: serve them from separate servers")
    (template,) = distinct
    name = min(n for n, (t, _) in templates.items() if t == template)
    path = next((p for t, p in templates.values() if t == template and p is not None), None)
    if path is None:
        raise VllmPlanError(f"adapters.{name}", "its chat template differs from the base model's and is not in a "
                                                "chat_template.jinja file vLLM can read; save the tokenizer again "
                                                "with a recent transformers")
    if base_template:
        warnings.append(f"the adapters' chat template (from {path}) differs from the base model's; requests to the "
                        "base model are rendered with it too")
    return path
