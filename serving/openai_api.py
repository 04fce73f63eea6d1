"""The OpenAI-compatible endpoint: ``POST /v1/chat/completions`` (plain and streamed) and ``GET /v1/models``.

Plain Django views, not DRF: the bodies, errors and server-sent events are OpenAI's, which the
official ``openai`` client parses (tests/serving use it against a live server). Every error answers
``{"error": {"message", "type", "param", "code"}}`` with OpenAI's status for it; no traceback, path or
setting is ever in a message. Every authenticated request is logged after its response is sent
(serving.logs), answered or not; a request is logged as answered only when an answer was sent.
"""
import json
import logging
import math
import time
import uuid

from django.core.exceptions import RequestDataTooBig
from django.db import close_old_connections
from django.http import JsonResponse, StreamingHttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from . import keys, logs
from .answering import Outcome, RequestFailed, answer_stream
from .choices import RequestStatus
from .engines import AnswerError
from .models import Deployment
from .requests import ChatRequest, InvalidRequest, parse_chat_request

logger = logging.getLogger(__name__)

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "invalid_request_error", 405: "invalid_request_error", 413: "invalid_request_error",
               429: "rate_limit_error"}
MAX_BODY_BYTES = 4 * 1024 * 1024


def error_body(message: str, *, status: int, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "api_error"), "param": param,
                      "code": code}}


class LoggedJsonResponse(JsonResponse):
    """A JSON response that writes its request's log row once the server has sent it (``close()`` is
    called by the WSGI server after the last byte): logging never delays the answer."""

    def __init__(self, data, *, log_entry: "logs.Entry | None" = None, **kwargs):
        super().__init__(data, **kwargs)
        self.log_entry = log_entry
        if log_entry is not None:  # the openai client shows it as the error's or completion's request id
            self["X-Request-Id"] = log_entry.request_id

    def close(self):
        super().close()
        if self.log_entry is not None:
            entry, self.log_entry = self.log_entry, None
            logs.write(entry)


def error_response(message: str, *, status: int, code: str | None = None, param: str | None = None,
                   log_entry=None, headers=None) -> JsonResponse:
    return LoggedJsonResponse(error_body(message, status=status, code=code, param=param), status=status,
                              log_entry=log_entry, headers=headers)


def _authenticated(request):
    """(ApiKey, None) or (None, a 401 response)."""
    try:
        return keys.authenticate(request.headers.get("Authorization")), None
    except keys.KeyRefused as exc:
        return None, error_response(str(exc), status=401, code="invalid_api_key",
                                    headers={"WWW-Authenticate": 'Bearer realm="ftplatform"'})


def _visible_deployments(key):
    deployments = Deployment.objects.filter(active=True).select_related("primary", "fallback")
    return deployments.filter(pk=key.deployment_id) if key.deployment_id else deployments


def _model_object(deployment) -> dict:
    return {"id": deployment.name, "object": "model", "created": int(deployment.created_at.timestamp()),
            "owned_by": "ftplatform"}


def _read_with_key(request):
    """(ApiKey, None) for an authenticated GET or HEAD, else (None, its 405 or 401 response)."""
    if request.method not in ("GET", "HEAD"):
        return None, error_response(f"{request.method} is not allowed on {request.path}; use GET.", status=405,
                                    code="method_not_allowed", headers={"Allow": "GET, HEAD"})
    return _authenticated(request)


@csrf_exempt
def models_view(request):
    """``GET /v1/models``: the active deployments the key may call, as OpenAI model objects."""
    key, refused = _read_with_key(request)
    if refused:
        return refused
    return JsonResponse({"object": "list", "data": [_model_object(d) for d in _visible_deployments(key)]})


@csrf_exempt
def model_view(request, name: str):
    """``GET /v1/models/{name}``: one deployment, or 404 model_not_found."""
    key, refused = _read_with_key(request)
    if refused:
        return refused
    deployment = _visible_deployments(key).filter(name=name).first()
    if deployment is None:
        return error_response(_no_model(name), status=404, code="model_not_found", param="model")
    return JsonResponse(_model_object(deployment))


def _body(request) -> bytes:
    """The request body, refused (413) from its Content-Length before it is read when it is too large."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0  # the server reads what arrives; parse_chat_request measures it
    if length > MAX_BODY_BYTES:
        raise InvalidRequest(f"The request body is {length} bytes; at most {MAX_BODY_BYTES}.", status=413,
                             code="request_too_large")
    try:
        return request.body
    except RequestDataTooBig:  # above DATA_UPLOAD_MAX_MEMORY_SIZE: Django's own HTML 400 otherwise
        raise InvalidRequest(f"The request body is larger than {MAX_BODY_BYTES} bytes.", status=413,
                             code="request_too_large") from None


def _no_model(name: str) -> str:
    if len(name) > 100:  # no deployment name is longer: the message need not repeat a huge one
        name = name[:100] + "…"
    return (f"The model '{name}' does not exist or you do not have access to it. GET /v1/models lists the "
            "deployments your key may call.")


@csrf_exempt
def chat_completions(request):
    """``POST /v1/chat/completions``. An unexpected failure answers OpenAI's 500 body naming the request id
    (the server's log has the traceback), never Django's page."""
    try:
        return _chat_completions(request)
    except Exception:
        request_id = getattr(request, "ftplatform_request_id", "")
        logger.exception("chat completion %s failed", request_id)
        return error_response("The server had an error while processing your request" +
                              (f" {request_id}" if request_id else "") + "; its log has the details.",
                              status=500, code="server_error")


def _chat_completions(request):
    arrived = timezone.now()
    started = time.perf_counter()
    if request.method != "POST":
        return error_response(f"{request.method} is not allowed on /v1/chat/completions; use POST.", status=405,
                              code="method_not_allowed", headers={"Allow": "POST"})
    key, refused = _authenticated(request)
    if refused:
        return refused
    keys.mark_used(key)
    entry = logs.Entry(request_id=f"chatcmpl-{uuid.uuid4().hex}", created_at=arrived, api_key=key)
    request.ftplatform_request_id = entry.request_id
    try:
        chat = parse_chat_request(_body(request), content_type=request.content_type, limit=MAX_BODY_BYTES)
    except InvalidRequest as exc:
        entry.fail(exc.status, exc.code or "invalid_request", str(exc), deployment_name=exc.model or "")
        # A refused request still counts against the deployment it named (monitoring, the production view).
        entry.deployment = _visible_deployments(key).filter(name=exc.model).first() if exc.model else None
        return error_response(str(exc), status=exc.status, code=exc.code, param=exc.param, log_entry=entry)
    entry.take_request(chat)
    deployment = _visible_deployments(key).filter(name=chat.model).first()
    if deployment is None:
        entry.fail(404, "model_not_found", _no_model(chat.model))
        return error_response(_no_model(chat.model), status=404, code="model_not_found", param="model",
                              log_entry=entry)
    entry.deployment = deployment
    max_tokens = chat.max_tokens or deployment.max_tokens
    if max_tokens > deployment.max_tokens:
        message = (f"max_tokens is {max_tokens}; deployment '{deployment.name}' allows at most "
                   f"{deployment.max_tokens}.")
        entry.fail(400, "invalid_value", message)
        return error_response(message, status=400, code="invalid_value", param=chat.max_tokens_param,
                              log_entry=entry)
    stream = answer_stream(deployment, chat.messages, max_tokens, pieces=chat.stream)
    try:
        first = next(stream)  # errors before the first piece get their own status, streamed or not
    except RequestFailed as exc:
        entry.take_outcome(exc.outcome, started)
        entry.fail(exc.error.status, exc.error.code, str(exc.error))
        return error_response(str(exc.error), status=exc.error.status, code=exc.error.code, log_entry=entry)
    if chat.stream:
        return _streamed(chat, deployment, entry, first, stream, started)
    return _whole(chat, deployment, entry, first, started)  # without pieces the first item is the Outcome


def _ftplatform_extra(outcome: Outcome) -> dict:
    """Which model answered and why: an extra field of the response (the openai client keeps it in
    ``completion.model_extra["ftplatform"]``), and headers."""
    version = outcome.answered_by
    return {"answered_by": outcome.role, "model_version_id": version.pk, "model_version": str(version),
            "fell_back": outcome.fell_back, "confidence": outcome.confidence, "threshold": outcome.threshold}


def _headers(outcome: Outcome, request_id: str) -> dict:
    return {"X-Request-Id": request_id, "X-Ftplatform-Answered-By": outcome.role,
            "X-Ftplatform-Model-Version": str(outcome.answered_by.pk)}


def _usage(reply) -> dict:
    return {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.output_tokens,
            "total_tokens": reply.prompt_tokens + reply.output_tokens}


def _whole(chat: ChatRequest, deployment, entry, outcome: Outcome, started: float) -> JsonResponse:
    reply = outcome.reply
    entry.take_outcome(outcome, started)
    body = {
        "id": entry.request_id, "object": "chat.completion", "created": int(entry.created_at.timestamp()),
        "model": deployment.name, "system_fingerprint": None,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text, "refusal": None},
                     "logprobs": _logprobs(reply) if chat.logprobs else None,
                     "finish_reason": reply.finish_reason}],
        "usage": _usage(reply), "ftplatform": _ftplatform_extra(outcome),
    }
    return LoggedJsonResponse(body, log_entry=entry, headers=_headers(outcome, entry.request_id))


def _logprobs(reply) -> dict | None:
    """OpenAI's ``choices[0].logprobs`` of an answer: each token's text, bytes and log-probability (the
    tokens of the answering model, EOS included; no alternatives). None when that model gave none (a
    remote model that did not return them)."""
    if reply.token_logprobs is None or not all(math.isfinite(value) for _, value in reply.token_logprobs):
        return None  # JSON has no NaN or infinity (a model whose logits overflowed)
    return {"content": [{"token": token, "logprob": value, "bytes": list(token.encode("utf-8", "replace")),
                         "top_logprobs": []} for token, value in reply.token_logprobs], "refusal": None}


def _sse(data) -> bytes:
    return f"data: {json.dumps(data) if not isinstance(data, str) else data}\n\n".encode()


def _streamed(chat: ChatRequest, deployment, entry, first, stream, started: float) -> StreamingHttpResponse:
    """Server-sent events as OpenAI sends them: a role chunk, content chunks, a chunk with the finish
    reason, a usage chunk when ``stream_options.include_usage``, then ``data: [DONE]``. The log row is
    written after the last event (or when the client goes away: then it is not logged as answered)."""
    base = {"id": entry.request_id, "object": "chat.completion.chunk", "created": int(entry.created_at.timestamp()),
            "model": deployment.name, "system_fingerprint": None}

    def chunk(delta: dict, finish_reason=None, **extra) -> bytes:
        return _sse({**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                          "finish_reason": finish_reason}], **extra})

    def events():
        sent = False
        try:
            yield chunk({"role": "assistant", "content": ""})
            item = first
            for item in _chain(first, stream):
                if isinstance(item, Outcome):
                    break
                yield chunk({"content": item})
            outcome = item
            reply = outcome.reply
            entry.take_outcome(outcome, started)
            yield chunk({}, reply.finish_reason, ftplatform=_ftplatform_extra(outcome))
            if chat.include_usage:  # the last chunk: it says which model answered too
                yield _sse({**base, "choices": [], "usage": _usage(reply), "ftplatform": _ftplatform_extra(outcome)})
            yield _sse("[DONE]")
            sent = True
        except RequestFailed as exc:  # after the first piece: the status line is gone, the error is an event
            entry.take_outcome(exc.outcome, started)
            entry.fail(exc.error.status, exc.error.code, str(exc.error))
            yield _sse(error_body(str(exc.error), status=exc.error.status, code=exc.error.code))
        except AnswerError as exc:
            entry.fail(exc.status, exc.code, str(exc))
            yield _sse(error_body(str(exc), status=exc.status, code=exc.code))
        finally:
            if not sent and entry.status != RequestStatus.FAILED:
                entry.fail(499, "client_closed_request", "the client closed the connection before the answer ended")
            stream.close()
            close_old_connections()
            logs.write(entry)

    response = StreamingHttpResponse(events(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass events on as they come
    response["X-Request-Id"] = entry.request_id
    return response


def _chain(first, rest):
    yield first
    yield from rest


@csrf_exempt
def not_found(request, rest: str = ""):
    """Any other path under /v1/: OpenAI's 404 body, not Django's page."""
    return error_response(f"Invalid URL ({request.method} /v1/{rest}). The endpoints are POST /v1/chat/completions "
                          "and GET /v1/models.", status=404, code="unknown_url")
