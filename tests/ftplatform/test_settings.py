"""Settings from the environment (django-environ): typed values, .env files, errors that name the variable,
production-safe defaults. Each case starts manage.py in a fresh process: settings are read once per process."""
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHOW = "from django.conf import settings as s; print({names})"


def manage(*args, env_file: Path | None = None, **env):
    """manage.py in a fresh process with only the given FTPLATFORM_* variables (and DATABASE_URL / REDIS_URL
    when given), reading ``env_file`` as its .env (a missing file by default: the checkout's own is not read)."""
    base = {k: v for k, v in os.environ.items()  # the browser tests' DJANGO_ALLOW_ASYNC_UNSAFE fails check --deploy
            if not k.startswith("FTPLATFORM_") and k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_ALLOW_ASYNC_UNSAFE")}
    base["FTPLATFORM_ENV_FILE"] = str(env_file or "")  # empty: no .env file (the checkout's own is not read)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env={**base, **env},
                          capture_output=True, text=True, timeout=120)


def show(*names: str, env_file: Path | None = None, **env) -> str:
    done = manage("shell", "-v", "0", "-c", SHOW.format(names=", ".join(f"s.{n}" for n in names)),
                  env_file=env_file, **env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


KEY = {"FTPLATFORM_SECRET_KEY": "k" * 50}


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("FTPLATFORM_HEARTBEAT_SECONDS", "ten", "FTPLATFORM_HEARTBEAT_SECONDS='ten' is not a number"),
    # django-environ's cast kept only digits and dots: "0.5h" became 0.5, "2 dollars" 2.0
    ("FTPLATFORM_GPU_HOUR_PRICE", "2 dollars", "FTPLATFORM_GPU_HOUR_PRICE='2 dollars' is not a number"),
    ("FTPLATFORM_GPU_HOUR_PRICE", "1e400", "FTPLATFORM_GPU_HOUR_PRICE='1e400' is not a finite number"),
    ("FTPLATFORM_TORCH_THREADS", "2.5", "FTPLATFORM_TORCH_THREADS='2.5' is not a whole number"),
    ("FTPLATFORM_TORCH_THREADS", "-4", "FTPLATFORM_TORCH_THREADS='-4' must be at least 0"),
    ("FTPLATFORM_HEARTBEAT_MARGIN_SECONDS", "-100", "FTPLATFORM_HEARTBEAT_MARGIN_SECONDS='-100' must be at least 0"),
    ("FTPLATFORM_HSTS_SECONDS", "-5", "FTPLATFORM_HSTS_SECONDS='-5' must be at least 0"),
    ("FTPLATFORM_TRAINING_TIMEOUT_SECONDS", "0", "FTPLATFORM_TRAINING_TIMEOUT_SECONDS='0' must be at least 60"),
    ("FTPLATFORM_TRAINING_PROCESSES", "0", "FTPLATFORM_TRAINING_PROCESSES='0' must be at least 1"),
    ("FTPLATFORM_DEBUG", "treu", "FTPLATFORM_DEBUG='treu' is not a yes/no value"),
    ("FTPLATFORM_HTTPS", "enabled", "FTPLATFORM_HTTPS='enabled' is not a yes/no value"),
    ("DATABASE_URL", "mysqll://db/ftplatform", "DATABASE_URL: unknown database scheme 'mysqll'"),
    ("DATABASE_URL", "mysql://db/ftplatform", "DATABASE_URL: unknown database scheme 'mysql'"),
    ("DATABASE_URL", "garbage", "DATABASE_URL: unknown database scheme 'garbage'"),
    ("FTPLATFORM_LOG_LEVEL", "loud", "FTPLATFORM_LOG_LEVEL='LOUD' is not a level"),
])
def test_a_malformed_value_stops_startup_with_one_line_naming_the_variable(variable, value, message):
    done = manage("check", **KEY, **{variable: value})
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr and str(ROOT) not in done.stderr


@pytest.mark.parametrize(("variable", "value", "message"), [
    # a '/' in the password (base64) ended the host part: a traceback that printed the password
    ("DATABASE_URL", "postgres://admin:hunter2/secret@db.internal:5432/prod",
     "DATABASE_URL is not a database URL; use postgres://user:password@host:port/name (percent-encode"),
    ("REDIS_URL", "redis://:hunter2/x@cache:6379/9", "REDIS_URL is not a Redis URL"),
    ("REDIS_URL", "garbage-hunter2", "REDIS_URL is not a Redis URL"),
    # a leading '$' was a reference to another variable, and the error printed the key
    ("FTPLATFORM_SECRET_KEY", "$hunter2-" + "x" * 50, None),
])
def test_a_url_or_key_is_never_echoed(variable, value, message):
    done = manage("check", **{**KEY, variable: value})
    if message is None:  # taken literally: a valid key
        assert done.returncode == 0, done.stderr
    else:
        assert (done.returncode, message in done.stderr) == (1, True), done.stderr
    assert "hunter2" not in done.stdout + done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("line", ["FTPLATFORM_SECRET_KEY = hunter2", "FTPLATFORM_SECRET_KEY: hunter2",
                                  "DATABASE_URL postgres://u:hunter2@db/x"])
def test_a_bad_dot_env_line_is_named_by_its_number_not_its_text(tmp_path, line):
    env_file = tmp_path / ".env"
    env_file.write_text("# team settings\nFTPLATFORM_TORCH_THREADS=2\n" + line + "\n")
    done = manage("check", env_file=env_file, **KEY)
    assert done.returncode == 1
    assert f"{env_file}:3: not a NAME=value line" in done.stderr
    assert "hunter2" not in done.stderr and "Traceback" not in done.stderr


def test_a_dot_env_written_with_a_byte_order_mark_is_read(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_bytes("FTPLATFORM_TORCH_THREADS=3\n".encode("utf-8-sig"))
    assert show("TORCH_THREADS", env_file=env_file, **KEY) == "3"


def test_list_items_are_trimmed():
    assert show("ALLOWED_HOSTS", **KEY, FTPLATFORM_ALLOWED_HOSTS="ft.example.com, www.example.com ,") == (
        "['ft.example.com', 'www.example.com']")


def test_yes_no_values_are_read_as_words_not_as_any_non_empty_string():
    """FTPLATFORM_DEBUG=true used to mean debug off (only "1" counted)."""
    assert show("DEBUG", FTPLATFORM_DEBUG="true") == "True"
    assert show("DEBUG", FTPLATFORM_DEBUG="off", **KEY) == "False"
    assert show("DEBUG", **KEY) == "False"


def test_a_production_start_without_a_secret_key_says_so_without_a_traceback():
    done = manage("check")
    assert done.returncode == 1
    assert "set FTPLATFORM_SECRET_KEY" in done.stderr and "Traceback" not in done.stderr


def test_production_defaults_are_safe_and_a_local_try_out_turns_on_what_it_needs():
    production = show("DEBUG", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_SSL_REDIRECT", **KEY)
    assert production == "False True True True"
    assert show("DEBUG", "SESSION_COOKIE_SECURE", "SECURE_SSL_REDIRECT", FTPLATFORM_DEBUG="1") == "True False False"
    assert show("SESSION_COOKIE_SECURE", **KEY, FTPLATFORM_HTTPS="0") == "False"


def test_hosts_and_trusted_origins_are_comma_separated_lists():
    assert show("ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", **KEY, FTPLATFORM_ALLOWED_HOSTS="ft.example.com,10.0.0.5",
                FTPLATFORM_CSRF_TRUSTED_ORIGINS="https://ft.example.com") == (
        "['ft.example.com', '10.0.0.5'] ['https://ft.example.com']")


def test_a_dot_env_file_is_read_and_the_environment_wins_over_it(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("FTPLATFORM_SECRET_KEY=from-the-file-" + "x" * 40 + "\n"
                        "FTPLATFORM_TORCH_THREADS=3\nFTPLATFORM_HEARTBEAT_SECONDS=4\n")
    done = manage("shell", "-v", "0", "-c", SHOW.format(names="s.SECRET_KEY[:14], s.TORCH_THREADS, "
                                                               "s.TRAINING_HEARTBEAT_SECONDS"),
                  env_file=env_file, FTPLATFORM_HEARTBEAT_SECONDS="7")
    assert done.stdout.strip() == "from-the-file- 3 7.0", done.stderr


def test_database_url_reads_postgresql_and_sqlite_urls():
    assert show("DATABASES['default']['ENGINE']", "DATABASES['default']['NAME']", "DATABASES['default']['PORT']",
                **KEY, DATABASE_URL="postgres://ft:pw@db:5433/ftplatform") == (
        "django.db.backends.postgresql ftplatform 5433")


def test_check_deploy_with_the_default_https_leaves_only_the_hsts_advice():
    done = manage("check", "--deploy", FTPLATFORM_SECRET_KEY=secrets.token_urlsafe(50))
    warnings = sorted(set(re.findall(r"security\.W\d+", done.stdout + done.stderr)))
    assert warnings == ["security.W004"]  # HSTS stays the operator's choice (FTPLATFORM_HSTS_SECONDS)


def test_check_deploy_is_clean_with_production_settings():
    """The production settings: a real key, HTTPS (the default), HSTS chosen by the operator, real hosts."""
    done = manage("check", "--deploy", "--fail-level", "WARNING", FTPLATFORM_SECRET_KEY=secrets.token_urlsafe(50),
                  FTPLATFORM_HSTS_SECONDS="31536000", FTPLATFORM_ALLOWED_HOSTS="ftplatform.example.com")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout
    assert not re.findall(r"security\.W\d+", done.stdout + done.stderr)
