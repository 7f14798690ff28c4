#!/usr/bin/env bash
# Installs the test dependencies into ./.venv and runs the quality gates and the whole test suite.
# PostgreSQL tests use COHORTA_TEST_POSTGRES_URL (default: postgresql://postgres@127.0.0.1:5432/test); outside CI they
# are skipped when that server is unreachable, under CI=true they fail.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
echo "== ruff"; .venv/bin/ruff check src tests bench
echo "== mypy"; .venv/bin/mypy src
echo "== pytest"; .venv/bin/pytest "$@"
