"""Settings read from the environment, checked in a fresh `manage.py` process: debug is off unless
turned on, a production start without a secret key says so, and `check --deploy` behind HTTPS."""
import re
import secrets

import pytest


def _manage(*args, **env):
    """Run manage.py in a fresh process with the given FTPLATFORM_* variables only."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    base = {k: v for k, v in os.environ.items() if not k.startswith("FTPLATFORM_")}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=Path(__file__).resolve().parents[2],
                          env={**base, **env}, capture_output=True, text=True, timeout=120)


@pytest.mark.django_db
def test_debug_is_off_unless_turned_on():
    code = "from django.conf import settings; print(settings.DEBUG)"
    assert _manage("shell", "-v", "0", "-c", code, FTPLATFORM_SECRET_KEY="k" * 50).stdout.strip() == "False"
    assert _manage("shell", "-v", "0", "-c", code, FTPLATFORM_DEBUG="1").stdout.strip() == "True"


@pytest.mark.django_db
def test_a_production_start_without_a_secret_key_says_so_without_a_traceback():
    done = _manage("check")
    assert done.returncode == 1
    assert "set FTPLATFORM_SECRET_KEY" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.django_db
def test_check_deploy_behind_https_leaves_only_the_hsts_advice():
    done = _manage("check", "--deploy", FTPLATFORM_SECRET_KEY=secrets.token_urlsafe(50), FTPLATFORM_HTTPS="1")
    warnings = sorted(set(re.findall(r"security\.W\d+", done.stdout + done.stderr)))
    assert warnings == ["security.W004"]  # HSTS stays the operator's choice (FTPLATFORM_HSTS_SECONDS)
