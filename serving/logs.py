"""The request log: one RequestLog row per authenticated request, written after its response is sent.

The endpoint fills an ``Entry`` while it answers and calls ``write`` once the response is out (the
response's ``close()``, or after the last streamed event), so the database write is not part of
what a client waits for (bench/serving_bench.py measures what it costs the server). Settings:
SERVING_LOG_REQUESTS (off: nothing written), SERVING_LOG_SAMPLE_RATE (the share of requests whose
messages and answer are kept; every row keeps its figures) and SERVING_LOG_RETENTION_DAYS
(``prune_request_logs``).
"""
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import OperationalError
from django.utils import timezone

from evaluation.jobs import storable_text

from .choices import RequestStatus
from .models import RequestLog

logger = logging.getLogger(__name__)


@dataclass
class Entry:
    request_id: str
    created_at: datetime
    api_key: object = None
    deployment: object = None
    deployment_name: str = ""
    status: str = ""
    http_status: int = 200
    error_code: str = ""
    error: str = ""
    messages: list = field(default_factory=list)
    answer: str = ""
    stream: bool = False
    tags: dict = field(default_factory=dict)
    end_user: str = ""
    figures: dict = field(default_factory=dict)

    def take_request(self, chat) -> None:
        self.deployment_name = chat.model
        self.messages = chat.messages
        self.stream = chat.stream
        self.tags = chat.metadata
        self.end_user = chat.user

    def take_outcome(self, outcome, started: float) -> None:
        """What the routing did (serving.answering.Outcome); answered when it has a reply."""
        reply = outcome.reply
        self.figures = {
            "answered_by": outcome.answered_by, "fell_back": outcome.fell_back, "confidence": outcome.confidence,
            "threshold": outcome.threshold, "primary_latency_ms": outcome.primary_latency_ms,
            "fallback_latency_ms": outcome.fallback_latency_ms, "cost": outcome.cost,
            "primary_cost": outcome.primary_cost, "fallback_cost": outcome.fallback_cost,
            "latency_ms": (time.perf_counter() - started) * 1000,
            "prompt_tokens": reply.prompt_tokens if reply else 0,
            "completion_tokens": reply.output_tokens if reply else 0,
        }
        if reply is not None:
            self.status, self.answer = RequestStatus.ANSWERED, reply.text

    def fail(self, http_status: int, code: str, message: str, *, deployment_name: str | None = None) -> None:
        """No answer was sent: the row says why, and names no model as having answered."""
        self.status, self.http_status, self.error_code, self.error = RequestStatus.FAILED, http_status, code, message
        self.answer = ""
        self.figures.pop("answered_by", None)
        if deployment_name is not None:
            self.deployment_name = deployment_name


LOCKED_RETRIES = 3  # attempts at a row a locked database refused; then it is reported and dropped


def write(entry: Entry) -> RequestLog | None:
    """Write ``entry`` as a RequestLog row (unless logging is off). Never raises: a request log that
    cannot be written is reported in the server's log, and the client has its answer already.

    A database that is locked (SQLite with concurrent writers: e.g. a pass-through deployment whose
    remote model is this same server, logging both requests at once) is tried again a few times after
    a short wait; the client does not wait for it. A hand-written loop: three tries need no library."""
    if not settings.SERVING_LOG_REQUESTS:
        return None
    keep = settings.SERVING_LOG_SAMPLE_RATE >= 1 or random.random() < settings.SERVING_LOG_SAMPLE_RATE
    for attempt in range(1, LOCKED_RETRIES + 1):
        try:
            return RequestLog.objects.create(
                request_id=entry.request_id, created_at=entry.created_at, deployment=entry.deployment,
                deployment_name=entry.deployment_name[:100], api_key=entry.api_key,
                status=entry.status or RequestStatus.FAILED, http_status=entry.http_status,
                error_code=entry.error_code, error=entry.error, messages=entry.messages if keep else [],
                answer=storable_text(entry.answer) if keep else "", content_logged=keep, stream=entry.stream,
                tags=entry.tags, end_user=entry.end_user, **entry.figures)
        except OperationalError as exc:
            if attempt < LOCKED_RETRIES and "locked" in str(exc):
                time.sleep(0.05 * attempt)
                continue
            logger.exception("request %s: the request log row could not be written", entry.request_id)
        except Exception:
            logger.exception("request %s: the request log row could not be written", entry.request_id)
        return None
    return None


def prune_request_logs() -> int:
    """Delete request logs older than SERVING_LOG_RETENTION_DAYS (0: keep them all) and return how many;
    run about hourly by the workers' housekeeping (ftplatform.liveness) and by ``manage.py
    prune_request_logs``. Rows that became dataset examples go too: the example keeps its own copy and
    provenance."""
    days = settings.SERVING_LOG_RETENTION_DAYS
    if not days:
        return 0
    deleted, _ = RequestLog.objects.filter(created_at__lt=timezone.now() - timedelta(days=days)).delete()
    return deleted
