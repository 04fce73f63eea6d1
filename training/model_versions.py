"""Model versions other than a run's adapter: a base model with a prompt (zero- or few-shot) and a
remote OpenAI-compatible model; their names and prices."""
from django.db import IntegrityError, transaction

from curation.choices import SnapshotStatus, Split
from curation.formats import check_json_value
from curation.models import Snapshot
from ftplatform.errors import ServiceError
from ftplatform.roles import require_permission

from .choices import BaseModelSource, ModelVersionKind
from .models import BaseModel, ModelVersion

MAX_FEW_SHOT = 16


def few_shot_examples(snapshot: Snapshot, k: int, *, seed: int = 0) -> list[list[dict]]:
    """``k`` worked examples for a few-shot prompt: conversations of ``k`` distinct inputs drawn
    (random.Random(seed), over the inputs in item order) from the snapshot's *train* split only, so
    that no validation or test input is ever shown to the model it evaluates.

    Raises ServiceError: k outside 1..MAX_FEW_SHOT, a snapshot not approved, or fewer distinct
    train inputs than k.
    """
    import random

    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_FEW_SHOT:
        raise ServiceError(f"few_shot_k must be an integer from 1 to {MAX_FEW_SHOT}, got {k!r}")
    if snapshot.status != SnapshotStatus.APPROVED:
        raise ServiceError(f"snapshot {snapshot.pk} is {snapshot.status}; few-shot examples come from approved "
                           "snapshots only")
    by_input = {}
    for input_hash, messages in snapshot.items.filter(split=Split.TRAIN).order_by("id").values_list(
            "input_hash", "messages"):
        by_input.setdefault(input_hash, messages)
    if len(by_input) < k:
        raise ServiceError(f"snapshot {snapshot.pk} has {len(by_input)} distinct train inputs; few_shot_k is {k}")
    return random.Random(seed).sample(list(by_input.values()), k)


def model_version_by_reference(reference: str) -> ModelVersion:
    """The model version a command line names: its id, its name, or a dataset's name for the newest
    version fine-tuned on a snapshot of that dataset, so that a sequence of commands needs no id.

    Raises:
        ServiceError: nothing matches, or a name several versions share (the message lists their ids).
    """
    reference = str(reference).strip()
    if reference.isdigit():
        version = ModelVersion.objects.filter(pk=int(reference)).first()
        if version is None:
            raise ServiceError(f"no model version {reference}")
        return version
    named = list(ModelVersion.objects.filter(name=reference).order_by("id"))
    if len(named) > 1:
        raise ServiceError(f"{len(named)} model versions are named {reference!r} (ids "
                           f"{', '.join(str(v.pk) for v in named)}); give the id")
    if named:
        return named[0]
    tuned = (ModelVersion.objects.filter(kind=ModelVersionKind.LORA_ADAPTER,
                                         training_run__snapshot__dataset__name=reference)
             .order_by("-created_at", "-id").first())
    if tuned is None:
        raise ServiceError(f"no model version {reference!r}: give an id, a model version's name, or a dataset's "
                           "name (its newest fine-tuned model)")
    return tuned


def prompted_model_version(base_model: BaseModel, system_prompt: str,
                           few_shot: list[list[dict]] | None = None, *, by) -> tuple[ModelVersion, bool]:
    """The ModelVersion for ``base_model`` answering with ``system_prompt`` and, optionally, the
    ``few_shot`` worked examples (few_shot_examples) before every input: (version, created).

    One row per base model, prompt and set of examples, so every evaluation of "the prompted base"
    is comparable. Raises NotAllowed when ``by`` lacks 'training.add_modelversion' (even when the
    version exists: the API, the evaluate command and the demo all ask for it this way); ServiceError
    for a prompt a text column cannot store, or examples that are not conversations ending in an
    assistant answer (the message names the example).
    """
    import hashlib
    import json

    from curation.formats import FormatError, validate_messages

    require_permission(by, "training.add_modelversion", "add model versions")
    try:
        check_json_value(system_prompt)
    except ValueError as exc:
        raise ServiceError(f"system_prompt: {exc}") from exc
    shots = []
    for number, shot in enumerate(few_shot or [], start=1):
        try:
            shots.append(validate_messages(shot))
        except FormatError as exc:
            raise ServiceError(f"few-shot example {number}: {exc}") from exc
    key = hashlib.sha256(json.dumps(shots, sort_keys=True).encode()).hexdigest() if shots else ""
    identity = {"kind": ModelVersionKind.PROMPTED_BASE, "base_model": base_model, "system_prompt": system_prompt,
                "few_shot_key": key}
    name = f"{base_model.name} (prompted{f', {len(shots)}-shot' if shots else ''})"
    try:
        with transaction.atomic():
            return ModelVersion.objects.get_or_create(**identity, defaults={"name": name, "few_shot": shots})
    except IntegrityError:  # created concurrently by another request
        return ModelVersion.objects.get(**identity), False


def check_base_url(base_url: str) -> None:
    """An http(s) URL with a host (and a valid port), no spaces, no credentials, no query: what the
    worker's client can call. Raises ServiceError naming base_url."""
    from urllib.parse import urlsplit

    example = "an http(s) URL such as http://vllm:8000/v1"
    try:
        parts = urlsplit(base_url or "")
        _ = parts.port  # raises ValueError for a port that is not a number from 0 to 65535
    except ValueError as exc:
        raise ServiceError(f"base_url must be {example}, got {base_url!r} ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in base_url):
        raise ServiceError(f"base_url must be {example}, got {base_url!r}")
    if parts.username is not None or parts.password is not None:
        raise ServiceError("base_url must not carry credentials (user:password@): the key is read from the "
                           "variable named by api_key_env, never stored")
    if parts.query or parts.fragment:
        raise ServiceError(f"base_url must not have a query or fragment (the client appends paths to it), "
                           f"got {base_url!r}")


def _remote_base_model_name(remote_model: str, base_url: str) -> str:
    """The BaseModel name of an endpoint's model: "<model> @ <url>", shortened with a digest of the whole
    when longer than the column (plain truncation made different endpoints share one base model)."""
    import hashlib

    name = f"{remote_model} @ {base_url}"
    if len(name) <= 200:
        return name
    return f"{name[:187]}… {hashlib.sha256(name.encode()).hexdigest()[:10]}"


@transaction.atomic
def remote_model_version(*, name: str, base_url: str, remote_model: str, api_key_env: str = "",
                         system_prompt: str = "", by, prices: dict | None = None) -> ModelVersion:
    """A ModelVersion answering through an OpenAI-compatible chat-completions endpoint (vLLM,
    Ollama, a hosted API), e.g. the prompted large model a fine-tune is compared with.

    The API key is never stored: ``api_key_env`` names the environment variable the evaluation
    worker reads it from. ``prices``: price_per_million_input_tokens / _output_tokens (and/or
    price_per_gpu_hour for a self-hosted server), non-negative numbers. Nothing is written when a
    check fails.

    Raises:
        NotAllowed: ``by`` lacks 'training.add_modelversion'.
        ServiceError: a URL that is not http(s) with a host (or carries credentials or a query), an
            empty or too long model name, a variable name that is not one (e.g. a pasted key), or a
            bad price; the message names the field.
    """
    import re

    require_permission(by, "training.add_modelversion", "add model versions")
    try:
        check_json_value([name, base_url, remote_model, api_key_env, system_prompt])
    except ValueError as exc:
        raise ServiceError(str(exc)) from exc
    check_base_url(base_url)
    if not (remote_model or "").strip():
        raise ServiceError("remote_model: the model name the endpoint serves is required")
    for field_name, value, limit in (("name", name, 200), ("base_url", base_url, 500),
                                     ("remote_model", remote_model, 200)):
        if len(value or "") > limit:
            raise ServiceError(f"{field_name}: at most {limit} characters, got {len(value)}")
    if api_key_env and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,99}", api_key_env):
        raise ServiceError("api_key_env must be the NAME of an environment variable (e.g. OPENAI_API_KEY), "
                           "never the key itself")
    values = checked_prices(prices)
    base, _ = BaseModel.objects.get_or_create(
        name=_remote_base_model_name(remote_model, base_url),
        defaults={"source_kind": BaseModelSource.REMOTE, "source": base_url})
    suffix = " (API)"
    return ModelVersion.objects.create(
        name=name or f"{remote_model[:200 - len(suffix)]}{suffix}", kind=ModelVersionKind.OPENAI_COMPATIBLE,
        base_model=base, base_url=base_url, remote_model=remote_model, api_key_env=api_key_env,
        system_prompt=system_prompt, **values)


PRICE_FIELDS = ("price_per_gpu_hour", "price_per_million_input_tokens", "price_per_million_output_tokens")


MAX_PRICE = 1e9


def checked_prices(prices: dict | None) -> dict:
    """``prices`` ({price field: number or None}) checked: known fields, each None (no price) or a
    number from 0 to below MAX_PRICE (1e9; reports multiply prices, and a 1e308 made them overflow).
    Returns them as a new dict. Raises ServiceError naming the field."""
    values = {}
    for field_name, value in (prices or {}).items():
        if field_name not in PRICE_FIELDS:
            raise ServiceError(f"unknown price {field_name!r}; known: {', '.join(PRICE_FIELDS)}", field=field_name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not 0 <= value < MAX_PRICE):
            raise ServiceError(f"{field_name} must be a non-negative number below {MAX_PRICE:g}, got {value!r}",
                               field=field_name)
        values[field_name] = value
    return values


@transaction.atomic
def update_model_version(version: ModelVersion, *, by, name: str | None = None,
                         prices: dict | None = None) -> ModelVersion:
    """Rename a model version and/or set its prices (``prices`` as checked_prices: a None clears a
    price). What answered an evaluation (kind, base model, adapter, prompt, endpoint) never changes.

    Raises:
        NotAllowed: ``by`` lacks 'training.change_modelversion' (engineers hold it).
        ServiceError: an empty or too long name, or a bad price; nothing is written then.
    """
    require_permission(by, "training.change_modelversion", "change model versions")
    values = checked_prices(prices)
    if name is not None:
        if not name.strip() or len(name) > 200:
            raise ServiceError(f"name: 1 to 200 characters, got {len(name.strip())}")
        values["name"] = name
    if values:
        ModelVersion.objects.filter(pk=version.pk).update(**values)
        version.refresh_from_db()
    return version
