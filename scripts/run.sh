#!/usr/bin/env bash
# Quickstart: install Cohorta into ./.venv and run it (SQLite in ./cohorta.db, demo data on first start).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .
exec .venv/bin/cohorta run "$@"
