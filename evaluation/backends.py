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

from ftml.inference import Generation

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
        # What requests carry, adapted once when the server refuses a parameter (see request_options).
        self._ask_logprobs = True
        self._tokens_parameter = "max_tokens"
        self._send_temperature = True

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
          ``logprobs`` (they are asked for); None when it returns none.

        Servers differ in the parameters they accept, and a 400 says which one: a request is sent
        again, and later ones adapted, when the server refuses ``max_tokens`` and asks for
        ``max_completion_tokens`` (OpenAI's reasoning models), refuses ``temperature`` (those
        models accept only their default, so decoding is then not greedy), or refuses any other
        request that asks for logprobs. ``request_options`` says what was sent in the end.

        Raises ``BackendError`` (lazily, when the failing input is reached)."""
        for messages in messages_list:
            yield self._complete(messages, max_new_tokens, temperature)

    # -- one request ---------------------------------------------------------------------------------

    def _complete(self, messages: list[dict], max_new_tokens: int, temperature: float) -> Generation:
        started = time.perf_counter()
        try:
            while True:  # at most one retry per adaptable parameter: _adapt turns each off once
                try:
                    raw = self._create(messages, max_new_tokens, temperature)
                    break
                except openai.BadRequestError as exc:
                    if not self._adapt(exc):
                        raise
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

    def _create(self, messages, max_new_tokens, temperature):
        options = {self._tokens_parameter: max_new_tokens}
        if self._send_temperature:
            options["temperature"] = temperature
        if self._ask_logprobs:
            options["logprobs"] = True
        return self._client.chat.completions.with_raw_response.create(model=self.model, messages=messages,
                                                                      **options)

    def _adapt(self, exc: "openai.BadRequestError") -> bool:
        """Change what requests carry after a 400 that names a refused parameter (by the error's
        ``param`` or its message); False when nothing is left to change (the 400 stands)."""
        body = exc.body if isinstance(exc.body, dict) else {}
        param = str(body.get("param") or "")
        message = str(body.get("message") or exc.message or "")
        if self._tokens_parameter == "max_tokens" and "max_completion_tokens" in message:
            self._tokens_parameter = "max_completion_tokens"
        elif self._send_temperature and (param == "temperature" or "'temperature'" in message):
            self._send_temperature = False
        elif self._ask_logprobs:
            self._ask_logprobs = False  # this server does not give them, or refused something unnamed
        else:
            return False
        return True

    @property
    def request_options(self) -> dict:
        """What requests carry after any adaptation: ``{"tokens_parameter": "max_tokens" or
        "max_completion_tokens", "temperature": "as asked" or "server default", "logprobs": bool}``.
        Recorded with an eval run: "server default" temperature means decoding was not greedy."""
        return {"tokens_parameter": self._tokens_parameter,
                "temperature": "as asked" if self._send_temperature else "server default",
                "logprobs": self._ask_logprobs}

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
