"""compose.yaml and the image's entrypoint, checked without Docker: the file's shape, then the entrypoint's
own commands run from this checkout as compose would start them (web under gunicorn, a worker on Redis)."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from curation.imports import start_import
from curation.models import ImportBatch
from tests.support.factories import DatasetFactory, EngineerFactory, conversation
from tests.support.workers import start_worker, stop_worker

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
APP_SERVICES = {name: service for name, service in COMPOSE["services"].items() if service.get("build") == "."}


def test_compose_runs_the_database_redis_web_serving_and_a_worker_for_every_queue():
    assert set(COMPOSE["services"]) == {"db", "redis", "web", "serving", "worker-training", "worker"}
    assert set(APP_SERVICES) == {"web", "serving", "worker-training", "worker"}
    assert APP_SERVICES["web"]["command"] == APP_SERVICES["serving"]["command"] == ["web"]
    # Serving: one process (each deployed model loaded once) whose threads' requests are batched together.
    serving = APP_SERVICES["serving"]["environment"]
    assert serving["WEB_CONCURRENCY"] == "1" and int(serving["GUNICORN_THREADS"]) >= 8
    assert '--threads "${GUNICORN_THREADS:-4}"' in ENTRYPOINT.read_text()
    served = [queue for service in APP_SERVICES.values() if service["command"][0] == "worker"
              for queue in service["command"][1:]]
    assert sorted(served) == ["default", "evaluation", "training"]  # each queue has exactly one kind of worker
    assert APP_SERVICES["worker-training"]["command"] == ["worker", "training"]  # training alone: it takes every core
    for service in APP_SERVICES.values():
        assert service["depends_on"]  # never started before what it needs is healthy
        assert all(dependency["condition"] == "service_healthy" for dependency in service["depends_on"].values())
    assert "/health/" in " ".join(APP_SERVICES["web"]["healthcheck"]["test"])
    entrypoint_commands = set(re.findall(r"^  (\w+)\)$", ENTRYPOINT.read_text(), re.MULTILINE))
    assert {service["command"][0] for service in APP_SERVICES.values()} <= entrypoint_commands


def test_every_variable_compose_sets_is_one_the_settings_read():
    settings_source = (ROOT / "ftplatform" / "settings.py").read_text()
    environment = APP_SERVICES["web"]["environment"]
    assert {"DATABASE_URL", "REDIS_URL", "FTPLATFORM_SECRET_KEY"} <= set(environment)
    for name in environment:
        assert f'"{name}"' in settings_source, f"compose sets {name}, which ftplatform/settings.py never reads"
    assert environment["DATABASE_URL"].startswith("postgres://") and "@db:5432/" in environment["DATABASE_URL"]
    assert environment["REDIS_URL"] == "redis://redis:6379/0"


def test_an_unknown_entrypoint_command_names_the_ones_there_are():
    done = subprocess.run([str(ENTRYPOINT), "serve"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "unknown command 'serve'; use web, worker QUEUE..., migrate or manage ARGS..." in done.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_the_web_command_migrates_then_serves_the_admin_health_and_static_files_under_gunicorn(tmp_path):
    """A fresh database (SQLite here: the test database is not reachable from another process on SQLite)."""
    port = free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PORT": str(port), "WEB_CONCURRENCY": "1", "DATABASE_URL": f"sqlite:///{tmp_path / 'web.sqlite3'}",
           "FTPLATFORM_VAR": str(tmp_path / "var"), "FTPLATFORM_SECRET_KEY": "k" * 50, "FTPLATFORM_HTTPS": "false",
           "FTPLATFORM_ENV_FILE": ""}
    web = subprocess.Popen([str(ENTRYPOINT), "web"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, status = time.monotonic() + 180, None
        while time.monotonic() < deadline and web.poll() is None:
            try:
                status, body = get(f"{base}/health/")
                break
            except OSError:
                time.sleep(0.5)
        assert status == 200, web.stdout.read1().decode(errors="replace") if web.poll() is not None else status
        assert json.loads(body)["database"] == "ok"
        status, page = get(f"{base}/admin/login/")
        assert status == 200 and b'name="username"' in page
        stylesheet = re.search(rb'href="(/static/admin/css/[\w.]+\.css)"', page).group(1).decode()
        status, css = get(base + stylesheet)
        assert status == 200 and b"{" in css  # WhiteNoise serves the admin's stylesheet
        assert get(f"{base}/api/v1/datasets/")[0] == 401
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        output = web.communicate(timeout=60)[0].decode(errors="replace")
    assert "Applying curation.0001_initial... OK" in output  # migrate ran first, on the fresh database
    assert "Booting worker" in output  # gunicorn, not a development server


@pytest.mark.django_db(transaction=True)
def test_the_worker_command_runs_a_queued_job(settings, artifacts_root, tmp_path):
    path = tmp_path / "examples.jsonl"
    path.write_text("".join(json.dumps({"messages": conversation(f"q{n}", f"a{n}")}) + "\n" for n in range(5)))
    worker = start_worker(settings, artifacts_root, ["default"], name="entrypoint-worker", entrypoint=True)
    try:
        batch = start_import(DatasetFactory(), path, "chat_jsonl", by=EngineerFactory())
        deadline = time.monotonic() + 120
        while ImportBatch.objects.get(pk=batch.pk).status in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        output = stop_worker(worker)
    batch.refresh_from_db()
    assert (batch.status, batch.created_count) == ("succeeded", 5), output
