#!/usr/bin/env bash
# Create .venv and install Omni with its test extras; skipped when pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.omni-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "==> installing dependencies"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[test]"
  echo "$want" > "$stamp"
fi
mkdir -p var
if [ ! -f .env ]; then
  # A development checkout: bare `manage.py` commands run in debug mode. Variables set in the
  # environment win over this file (make test and production set their own).
  printf '# Local development settings (not committed); see .env.example.\nDEBUG=true\n' > .env
  echo "==> wrote .env (DEBUG=true for local development)"
fi
