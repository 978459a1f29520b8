#!/usr/bin/env bash
# make run: set everything up and start Omni on the embedded profile (SQLite and a file-system
# broker under var/): the web server plus one Celery worker with embedded beat. Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export DEBUG=${DEBUG:-true}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
PY=.venv/bin/python
mkdir -p var/broker/queue var/broker/control var/feeds

echo "==> migrating the database"
$PY manage.py migrate --noinput | grep -vE "^\s+Applying|^Operations|^Running" || true
$PY manage.py load_demo
credentials=$($PY manage.py ensure_admin)
store_credentials=$($PY manage.py ensure_store_staff)

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "==> stopping Omni"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  exit 0
}
trap cleanup INT TERM EXIT

$PY manage.py runserver "$HOST:$PORT" --noreload &
pids+=($!)
.venv/bin/celery -A omni worker --beat --loglevel=INFO --concurrency=2 \
  --scheduler django_celery_beat.schedulers:DatabaseScheduler \
  --schedule var/celerybeat-schedule --hostname "omni@%h" &
pids+=($!)

sleep 2
cat <<EOT

  Omni is running (Ctrl-C stops the web server, the worker and beat).
    Admin     http://$HOST:$PORT/admin/
    Store     http://$HOST:$PORT/store/
    API docs  http://$HOST:$PORT/api/docs/
    Health    http://$HOST:$PORT/healthz
  $credentials
  $store_credentials

EOT
wait -n "${pids[@]}"
