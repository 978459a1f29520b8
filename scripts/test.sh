#!/usr/bin/env bash
# make test: set everything up, start a throwaway PostgreSQL, run lint, the migrations check and
# the whole test suite against it. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/system_deps.sh redis chromium
scripts/setup.sh
export DEBUG=false SECRET_KEY=test-only-secret-key-not-for-production-use-0123456789abcdef
export SECURE_SSL_REDIRECT=false CELERY_BROKER_URL=${TEST_CELERY_BROKER_URL:-memory://}
echo "==> ruff check"
.venv/bin/ruff check .
.venv/bin/ruff format --check . >/dev/null || { echo "ruff format: files need formatting (run make format)"; exit 1; }
exec .venv/bin/python scripts/with_postgres.py -- bash -c '
  set -e
  echo "==> makemigrations --check"
  .venv/bin/python manage.py makemigrations --check --dry-run
  echo "==> pytest"
  .venv/bin/python -m pytest -n ${PYTEST_WORKERS:-2} "$@"
' bash "$@"
