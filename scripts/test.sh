#!/usr/bin/env bash
# The test suite. Uses DATABASE_URL / REDIS_URL when set, else SQLite and in-process jobs.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# Settings refuse to load without a key unless FTPLATFORM_DEBUG=1; tests run with debug off.
export FTPLATFORM_SECRET_KEY=${FTPLATFORM_SECRET_KEY:-test-only-key-never-used-in-production}
# The live-server tests (browser, API conformance) speak plain HTTP; production defaults to HTTPS-only.
export FTPLATFORM_HTTPS=${FTPLATFORM_HTTPS:-0}
exec .venv/bin/python -m pytest "$@"
