"""A real `manage.py worker` process on the test database (PostgreSQL + Redis only)."""
import os
import subprocess
import sys

import pytest


def start_worker(settings, artifacts_root, queues=(), name=None, entrypoint=False, **env_overrides):
    """Start `manage.py worker [queues]` (forking work-horses, as in production) on the test
    database and Redis; skips the test without REDIS_URL and PostgreSQL. Stop it with stop_worker.
    ``name``: the worker's name (default test-<pid>); workers running at once need different names.
    ``entrypoint``: start it as the image does, through `docker/entrypoint.sh worker [queues]`."""
    from django.db import connection

    if not settings.REDIS_URL or connection.vendor != "postgresql":
        pytest.skip("needs REDIS_URL and a PostgreSQL DATABASE_URL (the worker shares the test database)")
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}{':' + db['PASSWORD'] if db['PASSWORD'] else ''}"
                        f"@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "FTPLATFORM_ARTIFACTS": str(artifacts_root),
        "FTPLATFORM_TORCH_THREADS": "1",
        # The entrypoint calls `python` from PATH, as in the image: this interpreter's.
        "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}",
        **env_overrides,
    }
    command = ["docker/entrypoint.sh", "worker"] if entrypoint else [sys.executable, "manage.py", "worker"]
    return subprocess.Popen([*command, *queues, "--name", name or f"test-{os.getpid()}"],
                            cwd=settings.BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def stop_worker(worker) -> str:
    """SIGTERM the worker, wait for it and return its output."""
    import signal

    worker.send_signal(signal.SIGTERM)
    return worker.communicate(timeout=60)[0].decode(errors="replace")
