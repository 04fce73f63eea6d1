#!/usr/bin/env bash
# The image's entrypoint: one command per kind of process in compose.yaml. It also runs outside Docker
# from a checkout (tests/ftplatform/test_deployment.py does), with the checkout's .venv on PATH.
#
#   web                 migrate, then serve the app with gunicorn on $PORT (default 8000): WEB_CONCURRENCY
#                       processes (default 2) of GUNICORN_THREADS threads (default 4)
#   worker QUEUE...     an RQ worker on the queues (training; evaluation default); needs REDIS_URL
#   migrate             apply database migrations and exit
#   manage ARGS...      any manage.py command (createsuperuser, demo, reap_jobs, ...)
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1

command=${1:-web}
shift || true
case "$command" in
  web)
    python manage.py migrate --no-input -v 1
    # Threads per worker: requests mostly wait on the database; jobs never run here (REDIS_URL is set).
    exec gunicorn config.wsgi --bind "0.0.0.0:${PORT:-8000}" --workers "${WEB_CONCURRENCY:-2}" \
      --threads "${GUNICORN_THREADS:-4}" --timeout 120 --access-logfile - --forwarded-allow-ips '*'
    ;;
  worker)
    [ "$#" -gt 0 ] || { echo "entrypoint: worker needs queue names: training, evaluation, default" >&2; exit 2; }
    exec python manage.py worker "$@"
    ;;
  migrate)
    exec python manage.py migrate --no-input
    ;;
  manage)
    exec python manage.py "$@"
    ;;
  *)
    echo "entrypoint: unknown command '$command'; use web, worker QUEUE..., migrate or manage ARGS..." >&2
    exit 2
    ;;
esac
