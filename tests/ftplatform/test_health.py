"""/health/ for load balancers and compose health checks, and the operators' queue pages (/admin/rq/)."""
import time

import pytest
from django.test import override_settings

from ftplatform import queues
from tests.support.factories import AnnotatorFactory, EngineerFactory
from tests.support.workers import start_worker, stop_worker

pytestmark = pytest.mark.django_db


@override_settings(SECURE_SSL_REDIRECT=True, ALLOWED_HOSTS=["ftplatform.example.com"])
def test_a_probe_by_ip_over_plain_http_is_answered_not_redirected_or_refused(client):
    """Production settings (HTTPS redirect, one allowed host); the probe comes to the container's address."""
    response = client.get("/health/", HTTP_HOST="10.0.0.7:8000")
    assert (response.status_code, response["Cache-Control"]) == (200, "no-store")
    assert response.json()["database"] == "ok"
    assert client.get("/admin/", HTTP_HOST="10.0.0.7:8000").status_code == 400  # other pages still check the host


def test_without_redis_jobs_run_in_process_and_redis_and_workers_are_not_used(client, settings):
    settings.REDIS_URL = None
    assert client.get("/health/").json() == {
        "status": "ok", "database": "ok", "redis": "not used", "workers": "not used"}


def test_health_only_reads(client):
    response = client.post("/health/")
    assert (response.status_code, response["Allow"], response.json()["detail"]) == (
        405, "GET, HEAD", 'Method "POST" not allowed.')


def test_redis_down_makes_the_service_unavailable_without_naming_the_host(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    response = client.get("/health/")
    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["redis"], body["workers"]) == ("unavailable", "unavailable (ConnectionError)",
                                                                 "unknown")
    assert "127.0.0.1" not in response.content.decode()


def test_queues_without_a_recent_worker_are_named_and_a_worker_makes_them_ok(client, settings, artifacts_root):
    if not queues.is_async():
        pytest.skip("needs REDIS_URL: workers register in Redis")
    from rq import Worker

    for worker in Worker.all(connection=queues.get_connection()):  # left by an earlier test's killed worker
        worker.register_death()
    body = client.get("/health/").json()
    assert (body["status"], body["workers"], body["queues_without_workers"]) == (
        "degraded", {"default": 0, "training": 0, "evaluation": 0}, ["default", "training", "evaluation"])

    worker = start_worker(settings, artifacts_root, ["evaluation", "default"], name="health-check-worker")
    try:
        deadline = time.monotonic() + 60
        while client.get("/health/").json()["workers"]["default"] == 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        body = client.get("/health/").json()
        assert (body["status"], body["workers"], body["queues_without_workers"]) == (
            "degraded", {"default": 1, "training": 0, "evaluation": 1}, ["training"])
    finally:
        stop_worker(worker)


def test_the_queue_pages_are_for_engineers_only(client):
    if not queues.is_async():
        client.force_login(EngineerFactory(is_staff=True))
        assert client.get("/admin/rq/").status_code == 404  # jobs run in-process: no queues to show
        return
    assert client.get("/admin/rq/")["Location"].startswith("/admin/login/")
    client.force_login(AnnotatorFactory(is_staff=True))
    assert client.get("/admin/rq/").status_code == 403
    client.force_login(EngineerFactory(is_staff=True))
    page = client.get("/admin/rq/")
    assert page.status_code == 200
    assert all(name in page.content.decode() for name in queues.QUEUE_NAMES)
    assert 'href="/admin/rq/"' in client.get("/admin/").content.decode()  # the admin home links it


def test_a_probe_without_the_trailing_slash_gets_the_same_answer(client, settings):
    settings.REDIS_URL = None
    response = client.get("/health")
    assert (response.status_code, response["X-Content-Type-Options"], response.json()["status"]) == (
        200, "nosniff", "ok")
