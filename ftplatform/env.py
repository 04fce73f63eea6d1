"""Reading settings from the environment and a ``.env`` file, for ftplatform/settings.py.

django-environ reads the ``.env`` file and parses database URLs. The values themselves are parsed here,
strictly: its casts are lenient in ways that turn a typo into a different setting ("1e3" read as 13.0,
"treu" as false, "$..." as a reference to another variable), and a typo must never weaken a safety.

Every problem ends the process with one line naming the variable (SystemExit, not an exception: manage.py,
gunicorn and RQ print the line, not a traceback), and never echoes a URL or a secret.
"""
import math
import os
import re
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import environ

TRUE_WORDS = ("true", "on", "ok", "y", "yes", "1")
FALSE_WORDS = ("false", "off", "no", "n", "0")
# The line shape django-environ's read_env accepts; others it would echo in a warning, secrets included.
ENV_LINE = re.compile(r"\A(?:export )?[A-Za-z_0-9]+=")
DATABASE_ENGINES = {"django.db.backends.postgresql": "postgres", "django.db.backends.sqlite3": "sqlite"}
DATABASE_SCHEMES = ("postgres", "postgresql", "pgsql", "sqlite")


def stop(message: str):
    raise SystemExit(f"ftplatform: {message}")


def read_env_file(path: Path) -> None:
    """Load ``path`` (NAME=value lines) into the environment, never overwriting a variable already set.
    A file that is not UTF-8 text or has a line of another shape stops startup naming the line, not its text."""
    try:
        text = path.read_bytes().decode("utf-8-sig")  # -sig: a byte-order mark, as some Windows editors write
    except UnicodeDecodeError as exc:
        stop(f"{path}: not UTF-8 text (byte {exc.start + 1}); save the file as UTF-8")
    except OSError as exc:
        stop(f"{path}: cannot be read ({exc.strerror})")
    for number, line in enumerate(text.splitlines(), start=1):
        if "\x00" in line:
            stop(f"{path}:{number}: holds a NUL character")
        if line and not line.startswith("#") and not ENV_LINE.match(line):
            stop(f"{path}:{number}: not a NAME=value line (no spaces around '=', no 'NAME: value')")
    environ.Env.read_env(path, encoding="utf-8-sig")


def setting(kind: str, name: str, default, *, minimum: float | None = None):
    """The variable ``name`` as ``kind`` ("str", "bool", "int", "float", "list" of comma-separated words),
    ``default`` when unset or blank; numbers below ``minimum`` are refused."""
    raw = os.environ.get(name, "")
    value = raw.strip()
    if value == "":
        return default
    if kind == "str":
        return value
    if kind == "list":
        return [item.strip() for item in value.split(",") if item.strip()]
    if kind == "bool":
        if value.lower() in TRUE_WORDS:
            return True
        if value.lower() in FALSE_WORDS:
            return False
        stop(f"{name}={raw!r} is not a yes/no value; use true or false (also 1/0, on/off, yes/no)")
    try:
        number = int(value) if kind == "int" else float(value)
    except ValueError:
        stop(f"{name}={raw!r} is not a {'whole number' if kind == 'int' else 'number'}")
    if not math.isfinite(number):
        stop(f"{name}={raw!r} is not a finite number")
    if minimum is not None and number < minimum:
        stop(f"{name}={raw!r} must be at least {minimum:g}")
    return number


def folder(name: str, default: Path) -> Path:
    """The variable ``name`` as a folder (``~`` expanded, made absolute), created if missing."""
    path = Path(setting("str", name, str(default))).expanduser().absolute()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        stop(f"{name}: cannot create the folder ({exc.strerror})")
    return path


def database(name: str, default: str) -> dict:
    """Django's DATABASES entry for the URL in ``name``: PostgreSQL (postgres://user:password@host:port/name,
    special characters in the password percent-encoded) or SQLite (sqlite:////absolute/path.sqlite3)."""
    url = setting("str", name, default)
    hint = ("use postgres://user:password@host:port/name (percent-encode '/', '?', '@', '#' and '%' in the "
            "password, e.g. '/' as %2F) or sqlite:////absolute/path.sqlite3")
    scheme = url.split(":", 1)[0] if "://" in url else url
    if scheme not in DATABASE_SCHEMES:
        stop(f"{name}: unknown database scheme {scheme[:20]!r}; {hint}")
    try:
        with warnings.catch_warnings():  # its warnings print the parsed URL, password included
            warnings.simplefilter("ignore")
            config = environ.Env.db_url_config(url)
    except (ValueError, KeyError, TypeError):
        stop(f"{name} is not a database URL; {hint}")
    if config.get("ENGINE") not in DATABASE_ENGINES:
        stop(f"{name}: unknown database scheme {url.split(':', 1)[0][:20]!r}; {hint}")
    if config["ENGINE"] == "django.db.backends.sqlite3":
        if config["NAME"] in ("", ":memory:"):
            stop(f"{name}: a SQLite URL needs a file: sqlite:////absolute/path.sqlite3")
        sqlite_file = Path(config["NAME"]).expanduser().absolute()
        try:
            sqlite_file.parent.mkdir(parents=True, exist_ok=True)  # a fresh clone has no var/
        except OSError as exc:
            stop(f"{name}: cannot create the SQLite file's folder ({exc.strerror})")
        config["NAME"] = str(sqlite_file)
    return config


def redis_url(name: str) -> str | None:
    """The Redis URL in ``name`` (redis://[:password@]host:port/db, rediss://, unix://), or None when unset."""
    url = setting("str", name, None)
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (parsing the port is the check)
    except ValueError:
        stop(f"{name} is not a Redis URL; use redis://[:password@]host:port/db (percent-encode the password)")
    if parts.scheme not in ("redis", "rediss", "unix") or (parts.scheme != "unix" and not parts.hostname):
        stop(f"{name} is not a Redis URL; use redis://[:password@]host:port/db (percent-encode the password)")
    return url
