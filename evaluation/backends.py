"""Model versions served elsewhere: any OpenAI-compatible chat-completions endpoint (vLLM, Ollama, a hosted API).

No Django inside: a backend is configured by a base URL, a model name and the *name* of the environment
variable that holds the API key (the key itself is never stored, logged or shown in an error).
Every failure reaches the caller as a ``BackendError`` whose message names the base URL, the model and,
for HTTP errors, the status, e.g. ``gpt-4o-mini at https://api.openai.com/v1 answered HTTP 401
Unauthorized: Incorrect API key provided.``
"""
import math
import os
import re
import time
from collections.abc import Iterable, Iterator
from urllib.parse import urlsplit

import openai
from openai import OpenAI

from training.engine.inference import Generation

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
NO_KEY = "not-needed"  # sent when no key is configured (local vLLM/Ollama ignore it; the client requires one)
SERVER_MESSAGE_CHARS = 300


class BackendError(Exception):
    """A readable failure of a remote backend; ``status`` is the HTTP status when the server answered one."""

    def __init__(self, message: str, *, base_url: str = "", model: str = "", status: int | None = None):
        super().__init__(message)
        self.base_url = base_url
        self.model = model
        self.status = status


class OpenAICompatibleBackend:
    """Generates through ``POST {base_url}/chat/completions`` with the official ``openai`` client.

    ``base_url`` is the API root including its version, e.g. ``http://localhost:8000/v1`` (vLLM),
    ``http://localhost:11434/v1`` (Ollama) or ``https://api.openai.com/v1``. ``api_key_env`` names the
    environment variable holding the key, read once here; None means no key (local servers). The client
    retries connection errors, 408, 409, 429 and 5xx answers ``max_retries`` times with backoff, and each
    attempt may take ``timeout_s`` seconds.
    """

    def __init__(self, base_url: str, model: str, api_key_env: str | None = None, *,
                 timeout_s: float = 60, max_retries: int = 2):
        self.base_url = str(base_url).strip().rstrip("/")
        self.model = str(model).strip()
        self.api_key_env = api_key_env or None
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise BackendError(f"The base URL {self.base_url!r} must start with http:// or https:// "
                               "(e.g. http://localhost:8000/v1).", base_url=self.base_url, model=self.model)
        if not self.model:
            raise BackendError(f"No model name given for {self.base_url}.", base_url=self.base_url)
        if not (isinstance(timeout_s, int | float) and timeout_s > 0) or not (
                isinstance(max_retries, int) and max_retries >= 0):
            raise BackendError("timeout_s must be positive and max_retries zero or more.",
                               base_url=self.base_url, model=self.model)
        api_key = None
        if self.api_key_env is not None:
            if not ENV_NAME.fullmatch(self.api_key_env):
                # Never echoed: a key pasted here by mistake must not end up in a message.
                raise BackendError("api_key_env must be the name of an environment variable (letters, digits and "
                                   "underscores, e.g. OPENAI_API_KEY), not the key itself.",
                                   base_url=self.base_url, model=self.model)
            api_key = os.environ.get(self.api_key_env)
            if not api_key:
                raise BackendError(f"The environment variable {self.api_key_env} is not set; it should hold the "
                                   f"API key for {self.model} at {self.base_url}.",
                                   base_url=self.base_url, model=self.model)
        self._api_key = api_key
        self._client = OpenAI(base_url=self.base_url, api_key=api_key or NO_KEY, timeout=timeout_s,
                              max_retries=max_retries)
        # The client would add OPENAI_ORG_ID/OPENAI_PROJECT_ID from this process's environment as headers to
        # every request, to whatever server this is: a backend sends only what it is configured with.
        self._client.organization = None
        self._client.project = None
        self._ask_logprobs = True  # turned off when the server refuses requests that ask for logprobs

    def __repr__(self) -> str:
        return (f"OpenAICompatibleBackend(base_url={self.base_url!r}, model={self.model!r}, "
                f"api_key_env={self.api_key_env!r})")

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "OpenAICompatibleBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def check(self) -> Generation:
        """Verify the configuration (address, key, model name) with a 1-token completion before an eval starts.

        A completion rather than ``models.list()``: some servers do not list models, and listed names need not
        match accepted ones (Ollama accepts ``llama3`` for ``llama3:latest``). Raises ``BackendError``."""
        return next(self.generate([[{"role": "user", "content": "Say OK."}]], max_new_tokens=1))

    def generate(self, messages_list: Iterable[list[dict]], *, max_new_tokens: int = 64,
                 temperature: float = 0) -> Iterator[Generation]:
        """One chat completion per conversation (messages as given), in order, one request at a time.

        - ``text``: the answer's content, stripped (a missing content, as in a refusal, is "").
        - ``latency_ms``: the duration of the HTTP request that answered (the client's retries and their
          backoff are not counted).
        - ``prompt_tokens``/``output_tokens``: from the answer's ``usage``, as the server counts them.
          Servers that omit ``usage`` (or a field of it) get 0: such counts are unknown, not zero, and
          token costs computed from them are too low.
        - ``mean_logprob``: the mean log-probability of the answer's tokens when the server returns
          ``logprobs`` (they are asked for); None when it returns none. A server that answers 400 to a
          request asking for logprobs is asked again without, and not asked for them again.

        Raises ``BackendError`` (lazily, when the failing input is reached)."""
        for messages in messages_list:
            yield self._complete(messages, max_new_tokens, temperature)

    # -- one request ---------------------------------------------------------------------------------

    def _complete(self, messages: list[dict], max_new_tokens: int, temperature: float) -> Generation:
        started = time.perf_counter()
        try:
            try:
                raw = self._create(messages, max_new_tokens, temperature, logprobs=self._ask_logprobs)
            except openai.BadRequestError:
                if not self._ask_logprobs:
                    raise
                raw = self._create(messages, max_new_tokens, temperature, logprobs=False)
                self._ask_logprobs = False  # the 400 was the logprobs: this server does not give them
            completion = raw.parse()
            latency_ms = _elapsed_ms(raw, started)
        except openai.APIStatusError as exc:
            raise self._status_error(exc) from None
        except openai.APITimeoutError:
            raise self._error(f"{self._who} did not answer within {self.timeout_s:g} s "
                              f"(after {self.max_retries + 1} attempt(s)).") from None
        except openai.APIConnectionError as exc:
            raise self._error(f"Could not connect to {self.base_url} (model {self.model}): "
                              f"{_root_cause(exc)}.") from None
        except openai.OpenAIError as exc:
            raise self._error(f"{self._who} failed: {exc}") from None
        return self._generation(completion, latency_ms)

    def _create(self, messages, max_new_tokens, temperature, *, logprobs: bool):
        extra = {"logprobs": True} if logprobs else {}
        return self._client.chat.completions.with_raw_response.create(
            model=self.model, messages=messages, max_tokens=max_new_tokens, temperature=temperature, **extra)

    def _generation(self, completion, latency_ms: float) -> Generation:
        try:
            choice = completion.choices[0]
            content = choice.message.content
            if content is not None and not isinstance(content, str):
                raise TypeError("content is not text")
            usage = getattr(completion, "usage", None)
            return Generation(
                text=(content or "").strip(),
                latency_ms=latency_ms,
                prompt_tokens=_count(usage, "prompt_tokens"),
                output_tokens=_count(usage, "completion_tokens"),
                mean_logprob=_mean_logprob(getattr(choice, "logprobs", None)),
            )
        except (AttributeError, IndexError, KeyError, TypeError):
            body = completion if isinstance(completion, str) else type(completion).__name__
            raise self._error(f"{self._who} sent a malformed answer (no choices[0].message.content): "
                              f"{_shorten(str(body))}") from None

    # -- errors --------------------------------------------------------------------------------------

    @property
    def _who(self) -> str:
        return f"{self.model} at {self.base_url}"

    def _redact(self, text: str) -> str:
        if self._api_key and len(self._api_key) >= 4:
            text = text.replace(self._api_key, "***")
        return text

    def _error(self, message: str, status: int | None = None) -> BackendError:
        return BackendError(self._redact(message), base_url=self.base_url, model=self.model, status=status)

    def _status_error(self, exc: "openai.APIStatusError") -> BackendError:
        status = exc.status_code
        reason = exc.response.reason_phrase or ""
        body = exc.body
        detail = body.get("message") if isinstance(body, dict) else body
        detail = _shorten(str(detail)) if detail else ""
        message = f"{self._who} answered HTTP {status} {reason}".rstrip() + (f": {detail}" if detail else ".")
        if status in (401, 403):
            source = f"the environment variable {self.api_key_env}" if self.api_key_env else "no key configured"
            message += f" (API key from {source})"
        elif status == 404:
            message += " (check the model name, and that the base URL ends with the API version, e.g. /v1)"
        return self._error(message, status)


def _elapsed_ms(raw, started: float) -> float:
    try:
        return raw.elapsed.total_seconds() * 1000
    except (AttributeError, RuntimeError):  # not recorded: wall time, retries included
        return (time.perf_counter() - started) * 1000


def _count(usage, field: str) -> int:
    value = getattr(usage, field, None) if usage is not None else None
    return int(value) if isinstance(value, int | float) and value >= 0 else 0


def _mean_logprob(logprobs) -> float | None:
    content = getattr(logprobs, "content", None) if logprobs is not None else None
    values = [getattr(token, "logprob", None) for token in content or []]
    values = [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]
    return sum(values) / len(values) if values else None


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return str(exc) or type(exc).__name__


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SERVER_MESSAGE_CHARS else text[:SERVER_MESSAGE_CHARS] + "…"
