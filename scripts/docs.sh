#!/usr/bin/env bash
# The documentation site (MkDocs, mkdocs.yml): built into var/site/ with --strict, so a warning such
# as a link to a missing page or anchor fails the build. Needs no network.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/mkdocs build --strict --site-dir var/site "$@"
