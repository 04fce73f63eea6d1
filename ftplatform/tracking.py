"""Optional experiment tracking in MLflow: off unless MLFLOW_TRACKING_URI is set.

Training and evaluation jobs mirror what they record in the database into an MLflow run
(docs/training/tracking.md). This module is the MLflow side only, generic over what is logged: it
imports no app, and imports mlflow only once tracking is on, so with MLFLOW_TRACKING_URI unset
nothing is imported or written.

It uses MlflowClient (explicit run ids) rather than the fluent ``mlflow.start_run``: the fluent API
keeps an active run per thread, while a resumed training run reopens an earlier run by id and an
evaluation logs into its training run's finished run without reopening it.

Tracking is best effort. Every MLflow call is guarded; the first error goes to ``on_warning`` (the
jobs write it as a warning event) and turns tracking off for the rest of that run, so a tracking
server that is down costs one request's retries, not one per logged step, and never fails a job.
"""
import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlparse

from .errors import without_server_paths

logger = logging.getLogger(__name__)

TRACKING_URI_VARIABLE = "MLFLOW_TRACKING_URI"  # the variables MLflow itself reads
EXPERIMENT_VARIABLE = "MLFLOW_EXPERIMENT_NAME"
DEFAULT_EXPERIMENT = "ftplatform"
# Set only where the environment leaves them unset. MLflow's own HTTP defaults retry a failing request
# 7 times with exponential backoff (measured: 247 s against a port that refuses connections) and wait
# up to 120 s for each answer: far too long to hold up a training run for best-effort tracking.
# With 2 retries a refused connection costs about 5 s.
MLFLOW_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
# MLflow 3.17 refuses a file store (its "maintenance mode") unless this is set; a database store needs
# the full mlflow package (SQLAlchemy, Alembic), which mlflow-skinny leaves out. A file: URI is asked
# for explicitly, so it is honoured.
FILE_STORE_OPT_IN = "MLFLOW_ALLOW_FILE_STORE"
# MLflow's limits on one log_batch call (mlflow.utils.validation).
MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
# What MLflow accepts in a metric or param name (mlflow.utils.validation.validate_param_and_metric_name,
# less the slash, whose '..' segments it refuses): anything else becomes '_' (e.g. a regex check "has £").
_NAME_UNSAFE = re.compile(r"[^\w.\- :]")
MESSAGE_CHARACTERS = 600  # of MLflow's error message in a warning; the log has all of it


def tracking_uri() -> str:
    """The MLflow tracking URI from the environment ('' when tracking is off)."""
    return os.environ.get(TRACKING_URI_VARIABLE, "").strip()


def is_enabled() -> bool:
    """Whether MLFLOW_TRACKING_URI is set (tracking is off by default)."""
    return bool(tracking_uri())


def metric_name(name: str) -> str:
    """``name`` with the characters MLflow refuses in metric and param names replaced by '_'."""
    return _NAME_UNSAFE.sub("_", name)


class TrackedRun:
    """One MLflow run written best effort (see the module docstring). ``run_id`` is the MLflow run's
    id ('' when none was created); ``active`` is False when tracking is off or after an error, and
    then every method does nothing."""

    def __init__(self, run_id: str = "", client=None, on_warning: Callable[[str], object] | None = None):
        self.run_id, self._client, self._on_warning = run_id, client, on_warning or (lambda message: None)

    @classmethod
    def off(cls) -> "TrackedRun":
        return cls()

    @property
    def active(self) -> bool:
        return self._client is not None

    def _call(self, action: str, operation: Callable[[], object]) -> bool:
        """Run ``operation`` (MLflow calls); on any error warn once and stop tracking. Returns success."""
        if self._client is None:
            return False
        try:
            operation()
            return True
        except Exception as exc:  # any MLflow or network error: the job goes on
            self._client = None
            _warn(self._on_warning, action, exc)
            return False

    def log_params(self, params: Mapping[str, object]) -> bool:
        """Log ``params`` (values as str; MLflow truncates values over 6,000 characters). Returns success."""
        if not self.active:
            return False
        from mlflow.entities import Param

        entries = [Param(metric_name(str(key)), str(value)) for key, value in params.items()]

        def log():
            for start in range(0, len(entries), MAX_PARAMS_PER_BATCH):
                self._client.log_batch(self.run_id, params=entries[start:start + MAX_PARAMS_PER_BATCH])

        return self._call("log parameters", log)

    def log_metrics(self, metrics: Mapping[str, object], step: int = 0) -> bool:
        """Log the finite numbers of ``metrics`` at ``step``; None, booleans, text and nested values are
        skipped (a job's metric dicts mix them). Returns success."""
        if not self.active:
            return False
        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        entries = [Metric(metric_name(str(key)), float(value), timestamp, step) for key, value in metrics.items()
                   if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)]

        def log():
            for start in range(0, len(entries), MAX_METRICS_PER_BATCH):
                self._client.log_batch(self.run_id, metrics=entries[start:start + MAX_METRICS_PER_BATCH])

        return self._call("log metrics", log) if entries else True

    def set_tags(self, tags: Mapping[str, object]) -> bool:
        if not self.active:
            return False
        from mlflow.entities import RunTag

        entries = [RunTag(str(key), str(value)) for key, value in tags.items()]
        return self._call("set tags", lambda: self._client.log_batch(self.run_id, tags=entries))

    def log_artifacts(self, folder: str | Path, artifact_path: str) -> bool:
        """Copy the files of ``folder`` into the run's artifacts under ``artifact_path``. Returns success."""
        return self._call(f"log the artifacts {artifact_path}",
                          lambda: self._client.log_artifacts(self.run_id, str(folder), artifact_path))

    def end(self, status: str = "FINISHED") -> bool:
        """End the run with an MLflow status: FINISHED, FAILED or KILLED."""
        return self._call(f"mark the run {status}", lambda: self._client.set_terminated(self.run_id, status))


def start_run(run_name: str, *, params: Mapping[str, object], tags: Mapping[str, object] | None = None,
              resume_run_id: str = "", on_warning: Callable[[str], object]) -> TrackedRun:
    """Start an MLflow run in the experiment MLFLOW_EXPERIMENT_NAME (default "ftplatform") and log
    ``params``; or, with ``resume_run_id``, mark that run running again (a resumed job) and log the
    params again (MLflow accepts a param logged twice with the same value).

    Returns an inactive TrackedRun when tracking is off, or when MLflow fails (``on_warning`` then
    has the reason; ``run_id`` is set if the run was created before the error). Never raises.
    """
    if not is_enabled():
        return TrackedRun.off()
    tracked = _client_run(on_warning)
    if tracked is None:
        return TrackedRun.off()
    client = tracked._client

    def open_run():
        if resume_run_id:
            client.update_run(resume_run_id, status="RUNNING")
            tracked.run_id = resume_run_id
        else:
            experiment_id = _experiment_id(client, os.environ.get(EXPERIMENT_VARIABLE) or DEFAULT_EXPERIMENT)
            tracked.run_id = client.create_run(experiment_id, run_name=run_name,
                                               tags={str(k): str(v) for k, v in (tags or {}).items()}).info.run_id

    if tracked._call("resume the run" if resume_run_id else "start a run", open_run):
        tracked.log_params(params)
    return tracked


def open_run(run_id: str, *, on_warning: Callable[[str], object]) -> TrackedRun:
    """An existing MLflow run to log more to (e.g. evaluation metrics into a training run), its
    status left as it is. Inactive when tracking is off or the client cannot be made. Never raises."""
    if not is_enabled() or not run_id:
        return TrackedRun.off()
    tracked = _client_run(on_warning)
    if tracked is None:
        return TrackedRun.off()
    tracked.run_id = run_id
    return tracked


def _client_run(on_warning) -> TrackedRun | None:
    uri = tracking_uri()
    try:
        for name, value in MLFLOW_DEFAULTS.items():
            os.environ.setdefault(name, value)
        if urlparse(uri).scheme in ("", "file"):
            os.environ.setdefault(FILE_STORE_OPT_IN, "true")
        from mlflow import MlflowClient

        return TrackedRun(client=MlflowClient(tracking_uri=uri), on_warning=on_warning)
    except Exception as exc:  # not installed, or a URI MLflow cannot use
        _warn(on_warning, f"connect to {TRACKING_URI_VARIABLE}", exc)
        return None


def _experiment_id(client, name: str) -> str:
    """The id of experiment ``name``, created if missing (another worker may create it meanwhile)."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return client.get_experiment_by_name(name).experiment_id


def _warn(on_warning, action: str, exc: Exception) -> None:
    message = str(exc).strip()
    logger.warning("MLflow tracking: could not %s (%s: %s)", action, type(exc).__name__, message)
    message = without_server_paths(message)
    if len(message) > MESSAGE_CHARACTERS:
        message = message[:MESSAGE_CHARACTERS] + "..."
    on_warning(f"MLflow tracking ({TRACKING_URI_VARIABLE}): could not {action}: {type(exc).__name__}: {message}; "
               "nothing more is logged to MLflow for this run")
