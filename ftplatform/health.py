"""``GET /health/``: is this deployment able to work? For load balancers and compose health checks.

Answers JSON: ``status`` ("ok", "degraded" or "unavailable"), ``database``, ``redis`` and ``workers``.

- ``unavailable`` (HTTP 503): the database or Redis does not answer; this process cannot serve.
- ``degraded`` (HTTP 200): it can serve, but some queue has no worker seen within
  HEALTH_WORKER_SILENCE_SECONDS: jobs on it wait (the answer names the queue). Web stays in rotation.
- ``ok`` (HTTP 200).

Without ``REDIS_URL`` jobs run in the process that starts them: Redis and workers are "not used".
The check writes nothing of ours (RQ itself prunes workers it finds dead from its registry as it lists
them); it names no host, path or setting, and shows an error only by its kind.
It is answered by a middleware placed first, before host validation and the HTTPS redirect: a load
balancer probes a container by its IP address over plain HTTP.
"""
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection
from django.http import JsonResponse

from .queues import QUEUE_NAMES, get_connection

HEALTH_PATHS = ("/health/", "/health")  # probes are often configured without the slash


def check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception as exc:
        return f"unavailable ({type(exc).__name__})"


def check_redis_and_workers() -> tuple[str, dict[str, int] | str]:
    """Redis's state and, per queue, how many workers listening on it reported recently."""
    if not settings.REDIS_URL:
        return "not used", "not used"
    from rq import Worker

    try:
        redis = get_connection()
        redis.ping()
    except Exception as exc:
        return f"unavailable ({type(exc).__name__})", "unknown"
    try:  # RQ prunes workers it finds dead from its own registry as it lists them; nothing of ours is written
        workers = Worker.all(connection=redis)
    except Exception as exc:  # a malformed worker entry: Redis answers, the count is unknown
        return "ok", f"unknown ({type(exc).__name__})"
    cutoff = datetime.now(UTC) - timedelta(seconds=settings.HEALTH_WORKER_SILENCE_SECONDS)
    per_queue = dict.fromkeys(QUEUE_NAMES, 0)
    for worker in workers:
        beat = worker.last_heartbeat
        if beat is None or (beat.replace(tzinfo=UTC) if beat.tzinfo is None else beat) < cutoff:
            continue
        for name in worker.queue_names():
            if name in per_queue:
                per_queue[name] += 1
    return "ok", per_queue


def health() -> tuple[int, dict]:
    """(HTTP status, body) of the health check."""
    database = check_database()
    redis, workers = check_redis_and_workers()
    body = {"status": "ok", "database": database, "redis": redis, "workers": workers}
    if database != "ok" or redis not in ("ok", "not used"):
        body["status"] = "unavailable"
        return 503, body
    if isinstance(workers, str) and workers.startswith("unknown"):
        body["status"] = "degraded"
        return 200, body
    idle = [name for name, count in workers.items() if count == 0] if isinstance(workers, dict) else []
    if idle:
        body["status"] = "degraded"
        body["queues_without_workers"] = idle
    return 200, body


class HealthCheckMiddleware:
    """Answer ``GET``/``HEAD /health/`` before anything else runs (see the module's docstring)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path not in HEALTH_PATHS:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            response = JsonResponse({"detail": f'Method "{request.method}" not allowed.'}, status=405)
            response["Allow"] = "GET, HEAD"
            return response
        status, body = health()
        response = JsonResponse(body, status=status)
        response["Cache-Control"] = "no-store"
        response["X-Content-Type-Options"] = "nosniff"
        return response
