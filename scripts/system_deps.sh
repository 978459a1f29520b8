#!/usr/bin/env bash
# On a Debian-like machine as root, install the system packages Omni's tests and benchmarks
# need when they are missing. Elsewhere, say what is missing and carry on.
set -uo pipefail
need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || need+=(postgresql)
for arg in "$@"; do
  case "$arg" in
    wrk) command -v wrk >/dev/null || need+=(wrk) ;;
    chromium) command -v chromium >/dev/null || need+=(chromium) ;;
    redis) command -v redis-server >/dev/null || need+=(redis-server) ;;
  esac
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "==> installing system packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "warning: missing system packages: ${need[*]} (install them, e.g. with apt-get)" >&2
fi
