"""What answers a request for a model version: the built-in engine (the model loaded once in this
process, ``ftml.serving.ModelServer``), a vLLM server, or a remote OpenAI-compatible API.

Each answerer takes the request's messages exactly as a client sent them and asks its model what the
evaluation asked it: the version's system prompt and few-shot examples around them
(``curation.formats.prompt_messages``), so that a deployment answers as its model version was scored.
"""
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from curation.formats import prompt_messages
from evaluation.backends import BackendError, OpenAICompatibleBackend
from training.choices import ModelVersionKind

from .choices import Engine

logger = logging.getLogger(__name__)


@dataclass
class Reply:
    """One model's answer to one request."""

    text: str
    prompt_tokens: int
    output_tokens: int
    confidence: float | None  # mean token log-probability; None when the model did not say
    finish_reason: str  # "stop" or "length"
    latency_ms: float
    token_logprobs: list | None = None  # [(token text, log-probability)] when the model gives them
    busy_ms: float | None = None  # the built-in engine: the request's share of its time (ftml.serving.Answer)


class AnswerError(Exception):
    """A model could not answer: ``status`` and ``code`` are what the client is told (OpenAI's error codes)."""

    def __init__(self, message: str, *, status: int = 502, code: str = "upstream_error"):
        super().__init__(message)
        self.status = status
        self.code = code


# -- the built-in engine: one ModelServer per loaded model version, per process ------------------------

_servers: "OrderedDict[int, object]" = OrderedDict()
_servers_lock = threading.Lock()
_loading: dict[int, threading.Lock] = {}


# A model unloaded to make room lets the requests it is answering finish first, for up to this long.
DRAIN_SECONDS = 300
# How often a request looks its model up again when it was unloaded before the request reached it.
LOAD_ATTEMPTS = 5


def model_server(version):
    """The ``ModelServer`` of a local model version, loaded on first use and kept (the least recently
    used of more than SERVING_MAX_LOADED_MODELS is closed, in the background once the requests it is
    answering have finished). Concurrent first requests load it once."""
    with _servers_lock:
        server = _servers.get(version.pk)
        if server is not None:
            _servers.move_to_end(version.pk)
            return server
        lock = _loading.setdefault(version.pk, threading.Lock())
    with lock:
        with _servers_lock:
            if version.pk in _servers:
                return _servers[version.pk]
        server = _load(version)
        with _servers_lock:
            _servers[version.pk] = server
            evicted = []
            while len(_servers) > settings.SERVING_MAX_LOADED_MODELS:
                evicted.append(_servers.popitem(last=False)[1])
        for old in evicted:  # other threads may be decoding with it: it stops when they are done
            threading.Thread(target=old.close, kwargs={"wait_s": DRAIN_SECONDS}, name="ftml-serving-unload",
                             daemon=True).start()
        return server


def _load(version):
    from ftml.serving import ModelServer
    from training.base_models import materialized_base_model_folder
    from training.jobs import prepare_torch

    prepare_torch()
    try:
        folder = materialized_base_model_folder(version.base_model)
        return ModelServer.load(folder, Path(version.adapter_path) if version.adapter_path else None,
                                max_batch_requests=settings.SERVING_MAX_BATCH_REQUESTS,
                                context_length=version.base_model.context_length)
    except Exception as exc:  # a missing or unreadable model folder: the client sees no path
        logger.exception("loading model version %s failed", version.pk)
        raise AnswerError(f"model version {version.pk} ({version}) could not be loaded; the server's log has the "
                          f"details ({type(exc).__name__})", status=503, code="model_unavailable") from None


def close_model_servers() -> None:
    """Close every loaded model and remote client (tests, shutdown)."""
    with _servers_lock:
        servers = list(_servers.values())
        _servers.clear()
        servers += _backends.values()
        _backends.clear()
    for server in servers:
        server.close()


# -- remote servers: one client per endpoint, model and key, per process ----------------------------------

_backends: dict[tuple, OpenAICompatibleBackend] = {}


def remote_backend(base_url: str, model: str, api_key_env: str) -> OpenAICompatibleBackend:
    """The client of one OpenAI-compatible endpoint's model, made on first use and kept: its connections
    are reused, and what it learnt about the server (a parameter it refuses, e.g. this platform's own
    /v1 refusing ``logprobs``) holds for later requests instead of costing each one a refused request.
    Keyed by the key's value too, so a changed variable takes effect. Raises BackendError (no key)."""
    key = (base_url, model, api_key_env, os.environ.get(api_key_env) if api_key_env else None,
           settings.SERVING_REMOTE_TIMEOUT_SECONDS, settings.SERVING_REMOTE_RETRIES)
    with _servers_lock:
        backend = _backends.get(key)
        if backend is None:
            backend = _backends[key] = OpenAICompatibleBackend(
                base_url, model, api_key_env or None, timeout_s=settings.SERVING_REMOTE_TIMEOUT_SECONDS,
                max_retries=settings.SERVING_REMOTE_RETRIES)
        return backend


class LocalAnswerer:
    def __init__(self, version):
        self.version = version

    def stream(self, messages: list[dict], max_tokens: int, *, pieces: bool = True) -> Iterator[str | Reply]:
        from ftml.serving import ServingError

        prompt = prompt_messages(messages, self.version.system_prompt, self.version.few_shot)
        try:
            for attempt in range(1, LOAD_ATTEMPTS + 1):
                items = self._answer(model_server(self.version), prompt, max_tokens, pieces)
                try:
                    first = next(items)
                    break
                except ServingError as exc:
                    # Unloaded (another model took its place) between the lookup and the submission, before
                    # anything was sent: load it again (each time, another request's model was loaded).
                    if exc.code != "shut_down" or attempt == LOAD_ATTEMPTS:
                        raise
            yield first
            yield from items
        except ServingError as exc:
            status = 400 if exc.code == "context_length_exceeded" else 500
            raise AnswerError(str(exc), status=status, code=exc.code) from None

    @staticmethod
    def _answer(server, prompt: list[dict], max_tokens: int, pieces: bool) -> Iterator[str | Reply]:
        from ftml.serving import Answer

        for item in server.stream(prompt, max_tokens, pieces=pieces):
            if isinstance(item, Answer):
                yield Reply(item.text, item.prompt_tokens, item.output_tokens, item.mean_logprob,
                            item.finish_reason, item.latency_ms, item.token_logprobs, item.busy_ms)
            else:
                yield item.text


class RemoteAnswerer:
    """An OpenAI-compatible server: a remote model version's own endpoint, or the deployment's vLLM
    server for a local version (``base_url`` and ``model`` given)."""

    def __init__(self, version, *, base_url: str | None = None, model: str | None = None, api_key_env: str = ""):
        self.version = version
        self.base_url = base_url or version.base_url
        self.model = model or version.remote_model
        self.api_key_env = api_key_env if base_url else version.api_key_env

    def stream(self, messages: list[dict], max_tokens: int, *, pieces: bool = True) -> Iterator[str | Reply]:
        prompt = prompt_messages(messages, self.version.system_prompt, self.version.few_shot)
        try:
            backend = remote_backend(self.base_url, self.model, self.api_key_env)
            generation = next(backend.generate([prompt], max_new_tokens=max_tokens))
        except BackendError as exc:
            if exc.status is not None and 400 <= exc.status < 500 and "context" in str(exc).lower():
                raise AnswerError(str(exc), status=400, code="context_length_exceeded") from None
            raise AnswerError(str(exc), status=502, code="upstream_error") from None
        # The whole answer arrives at once: streamed to the client as one piece.
        if pieces and generation.text:
            yield generation.text
        yield Reply(generation.text, generation.prompt_tokens, generation.output_tokens, generation.mean_logprob,
                    "length" if generation.output_tokens >= max_tokens else "stop", generation.latency_ms)


def vllm_model_name(version) -> str:
    """The name a version is served under by a launch plan (``manage.py vllm_plan``): its LoRA adapter,
    or the base model itself for a prompted version."""
    if version.kind == ModelVersionKind.LORA_ADAPTER:
        return f"model-version-{version.pk}"
    return f"base-model-{version.base_model_id}"


def answerer(deployment, version):
    """How ``version`` answers within ``deployment``."""
    if version.kind == ModelVersionKind.OPENAI_COMPATIBLE:
        return RemoteAnswerer(version)
    if deployment.engine == Engine.VLLM:
        return RemoteAnswerer(version, base_url=deployment.engine_base_url, model=vllm_model_name(version),
                              api_key_env=deployment.engine_api_key_env)
    return LocalAnswerer(version)
