#!/usr/bin/env bash
# The main job: environment, install, migrate, then the end-to-end demo on the E2E NLG data.
# Extra arguments go to `manage.py demo` (e.g. --max-steps 200).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# A local quick start: debug on (and its development key) unless the caller set FTPLATFORM_DEBUG.
export FTPLATFORM_DEBUG=${FTPLATFORM_DEBUG:-1}
.venv/bin/python manage.py migrate --no-input -v 0
exec .venv/bin/python manage.py demo "$@"
