#!/usr/bin/env bash
# Throughput of Levitate against a plain nginx reverse proxy, in one run on one machine (issue 13).
#
# Starts, all on 127.0.0.1 with free ports and in a temporary folder removed on exit:
#   - an nginx "stand-in upstream" answering Google's endpoints with canned bodies (loadtest/nginx/standin.conf.template:
#     streamGenerateContent as a three-event SSE stream, loadCodeAssist, the OAuth /token endpoint),
#   - nginx as a plain keep-alive reverse proxy to it (loadtest/nginx/proxy.conf.template),
#   - Levitate (release build) with its endpoints and oauth_token_url pointing at the stand-in and one account with a
#     project_id (no discovery calls),
# then runs wrk (1 thread, 32 connections, 10 s by default) against each target and prints req/s, p50, p99, the ratio
# to the nginx proxy, and Levitate's own `levitate_gateway_overhead_seconds` p50/p99 over each run (from /metrics).
#
# Usage: loadtest/compare-nginx.sh
# Environment: LEVITATE_BIN (default target/release/levitate under CARGO_TARGET_DIR or ./target), DURATION (10s),
#   CONNECTIONS (32), WRK_THREADS (1), SERVER_THREADS (Levitate's server.threads, 2), ROUNDS (1: repeat the list of
#   targets this many times, interleaved, on a loaded machine), LEVITATE_LOG (info; Levitate's log goes to a file),
#   PERF_OUT (a path: record `perf record -g` of Levitate during the first OpenAI chat run into it; then
#   `perf report -i PATH --stdio`),
#   CALLGRIND_REQUESTS (a count: instead of the wrk runs, start Levitate under valgrind's callgrind and print the
#   user-space instructions it executes per request for each Levitate route, over that many keep-alive requests
#   after 100 of warm-up; all of its threads, the background request-log writer included. Instruction counts
#   do not move with the machine's load, which wrk's numbers on a shared box do; the kernel's part (syscalls,
#   loopback TCP, wake-ups) is not in them),
#   PINGORA_FLOOR_BIN (default target/release/examples/pingora_floor when it was built: `cargo build --release
#   -p levitate-benches --example pingora_floor`; `none` to leave it out): also run Pingora on its own as a
#   plain proxy to the stand-in, with Levitate's server settings and no Levitate code (benches/examples/
#   pingora_floor.rs), the floor under Levitate's numbers; with CALLGRIND_REQUESTS it is counted too,
#   CALLGRIND_KEEP (a folder: keep each route's callgrind dump there, for callgrind_annotate).
# Needs: nginx (/usr/sbin/nginx), wrk (Debian package `wrk`), curl, python3; valgrind for CALLGRIND_REQUESTS.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
NGINX="${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}"
LEVITATE_BIN="${LEVITATE_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/levitate}"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-32}"
WRK_THREADS="${WRK_THREADS:-1}"
SERVER_THREADS="${SERVER_THREADS:-2}"
ROUNDS="${ROUNDS:-1}"
API_KEY="bench-key"

for tool in "$NGINX" wrk curl python3; do
    command -v "$tool" >/dev/null || { echo "missing: $tool (apt-get install nginx wrk curl python3)" >&2; exit 1; }
done
[ -x "$LEVITATE_BIN" ] || { echo "no Levitate binary at $LEVITATE_BIN (cargo build --release -p levitate)" >&2; exit 1; }
FLOOR_BIN="${PINGORA_FLOOR_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/examples/pingora_floor}"
if [ "$FLOOR_BIN" = none ]; then
    FLOOR_BIN=""
elif [ ! -x "$FLOOR_BIN" ]; then
    [ -n "${PINGORA_FLOOR_BIN:-}" ] && { echo "no Pingora floor binary at $FLOOR_BIN" >&2; exit 1; }
    FLOOR_BIN=""
fi

WORK="$(mktemp -d -t levitate-compare.XXXXXX)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Waits (bounded: 60 s, valgrind starts slowly) until something answers on the port.
wait_port() {
    for _ in $(seq 1 600); do
        if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/"; then return 0; fi
        sleep 0.1
    done
    echo "nothing answers on port $1 ($2); logs in $WORK/logs" >&2
    cat "$WORK"/logs/* >&2 || true
    exit 1
}

STANDIN_PORT="$(free_port)"
PROXY_PORT="$(free_port)"
LEVITATE_PORT="$(free_port)"
FLOOR_PORT="$(free_port)"
ADMIN_PORT="$(free_port)"
mkdir -p "$WORK"/logs "$WORK"/temp "$WORK"/levitate

render() {
    sed -e "s#@PREFIX@#$WORK#g" -e "s#@STANDIN_PORT@#$STANDIN_PORT#g" -e "s#@PROXY_PORT@#$PROXY_PORT#g" "$1" >"$2"
}
render "$HERE/nginx/standin.conf.template" "$WORK/standin.conf"
render "$HERE/nginx/proxy.conf.template" "$WORK/proxy.conf"
"$NGINX" -p "$WORK" -c "$WORK/standin.conf" -e "$WORK/logs/standin-error.log" &
PIDS+=($!)
"$NGINX" -p "$WORK" -c "$WORK/proxy.conf" -e "$WORK/logs/proxy-error.log" &
PIDS+=($!)

cat >"$WORK/levitate/levitate.yaml" <<EOF
listen: 127.0.0.1:$LEVITATE_PORT
admin:
  listen: 127.0.0.1:$ADMIN_PORT
auth:
  api_keys:
    - { name: bench, key: $API_KEY }
upstream:
  endpoints: [http://127.0.0.1:$STANDIN_PORT]
  oauth_token_url: http://127.0.0.1:$STANDIN_PORT/token
  oauth_client_id: bench
  oauth_client_secret: bench-secret
accounts_file: accounts.yaml
routes_file: routes.yaml
store: { path: $WORK/levitate/data }
pool: { quota_interval: 0s }
server:
  threads: $SERVER_THREADS
  grace_period: 1s
  pid_file: $WORK/levitate/levitate.pid
  upgrade_sock: $WORK/levitate/upgrade.sock
EOF
cat >"$WORK/levitate/accounts.yaml" <<EOF
accounts:
  - { email: bench@example.com, refresh_token: bench-refresh, project_id: bench-project, tier: g1-pro-tier, max_concurrent: 1024 }
EOF
cp "$REPO/conf/routes.yaml" "$WORK/levitate/routes.yaml"
WRAP=()
[ -n "${CALLGRIND_REQUESTS:-}" ] && WRAP=(valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out")
LEVITATE_LOG="${LEVITATE_LOG:-info}" "${WRAP[@]}" "$LEVITATE_BIN" serve -c "$WORK/levitate/levitate.yaml" \
    >"$WORK/logs/levitate.log" 2>&1 &
PIDS+=($!)
LEVITATE_PID=$!
FLOOR_PID=""
if [ -n "$FLOOR_BIN" ]; then
    FLOOR_WRAP=()
    [ -n "${CALLGRIND_REQUESTS:-}" ] && FLOOR_WRAP=(valgrind --tool=callgrind --callgrind-out-file="$WORK/floor-callgrind.out")
    "${FLOOR_WRAP[@]}" "$FLOOR_BIN" --listen "127.0.0.1:$FLOOR_PORT" --upstream "127.0.0.1:$STANDIN_PORT" \
        --threads "$SERVER_THREADS" >"$WORK/logs/floor.log" 2>&1 &
    PIDS+=($!)
    FLOOR_PID=$!
fi

wait_port "$STANDIN_PORT" "stand-in"
wait_port "$PROXY_PORT" "nginx proxy"
wait_port "$LEVITATE_PORT" "levitate"
wait_port "$ADMIN_PORT" "levitate admin"
[ -n "$FLOOR_BIN" ] && wait_port "$FLOOR_PORT" "pingora floor"

OPENAI='{"model":"gpt-4o","messages":[{"role":"user","content":"Say hello"}],"max_tokens":16}'
OPENAI_STREAM='{"model":"gpt-4o","messages":[{"role":"user","content":"Say hello"}],"max_tokens":16,"stream":true}'
ANTHROPIC='{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"Say hello"}]}'
ANTHROPIC_STREAM='{"model":"claude-sonnet-4-5","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"Say hello"}]}'
UPSTREAM_PATH='/v1internal:streamGenerateContent?alt=sse'
BEARER="Authorization: Bearer $API_KEY"
ANTHROPIC_HEADERS="x-api-key: $API_KEY|anthropic-version: 2023-06-01"

# name | url | body | headers
TARGETS=(
    "stand-in, direct|http://127.0.0.1:$STANDIN_PORT$UPSTREAM_PATH|$OPENAI|"
    "nginx proxy|http://127.0.0.1:$PROXY_PORT$UPSTREAM_PATH|$OPENAI|"
    ${FLOOR_BIN:+"Pingora plain proxy (floor)|http://127.0.0.1:$FLOOR_PORT$UPSTREAM_PATH|$OPENAI|"}
    "Levitate OpenAI chat|http://127.0.0.1:$LEVITATE_PORT/v1/chat/completions|$OPENAI|$BEARER"
    "Levitate Anthropic messages|http://127.0.0.1:$LEVITATE_PORT/v1/messages|$ANTHROPIC|$ANTHROPIC_HEADERS"
    "Levitate OpenAI chat, stream|http://127.0.0.1:$LEVITATE_PORT/v1/chat/completions|$OPENAI_STREAM|$BEARER"
    "Levitate Anthropic, stream|http://127.0.0.1:$LEVITATE_PORT/v1/messages|$ANTHROPIC_STREAM|$ANTHROPIC_HEADERS"
)

# One request each first: a setup error shows here, not as a table of zeros.
for target in "${TARGETS[@]}"; do
    IFS='|' read -r name url body h1 h2 <<<"$target"
    args=(-s -o "$WORK/probe" -w '%{http_code}' --max-time 5 -H 'Content-Type: application/json' -d "$body" "$url")
    [ -n "$h1" ] && args+=(-H "$h1")
    [ -n "${h2:-}" ] && args+=(-H "$h2")
    code="$(curl "${args[@]}" || true)"
    if [ "$code" != 200 ]; then
        echo "$name: HTTP $code from $url" >&2; cat "$WORK/probe" >&2; echo >&2
        tail -20 "$WORK/logs/levitate.log" >&2
        exit 1
    fi
done

# send COUNT URL BODY [HEADER...]: COUNT POSTs of BODY on one keep-alive connection, each answered 200.
send() {
    python3 - "$2" "$3" "$1" "${@:4}" <<'PY'
import http.client, sys, urllib.parse
url, body, count = urllib.parse.urlsplit(sys.argv[1]), sys.argv[2].encode(), int(sys.argv[3])
headers = {"Content-Type": "application/json"}
for pair in sys.argv[4:]:
    if ":" in pair:
        name, value = pair.split(":", 1)
        headers[name.strip()] = value.strip()
connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
for _ in range(count):
    connection.request("POST", url.path, body, headers)
    answer = connection.getresponse()
    answer.read()
    if answer.status != 200:
        sys.exit(f"HTTP {answer.status} from {url.geturl()}")
PY
}

# Instructions per request under callgrind: each Levitate route in turn, the counters zeroed after a warm-up and
# dumped after CALLGRIND_REQUESTS requests on one keep-alive connection.
if [ -n "${CALLGRIND_REQUESTS:-}" ]; then
    command -v callgrind_control >/dev/null || { echo "missing: valgrind (apt-get install valgrind)" >&2; exit 1; }
    echo "| route | instructions per request |"
    echo "|---|---|"
    for target in "${TARGETS[@]}"; do
        IFS='|' read -r name url body h1 h2 <<<"$target"
        case "$name" in
            Levitate*) pid="$LEVITATE_PID" out="$WORK/callgrind.out" ;;
            Pingora*) pid="$FLOOR_PID" out="$WORK/floor-callgrind.out" ;;
            *) continue ;;
        esac
        send 100 "$url" "$body" "$h1" "${h2:-}"
        callgrind_control -z "$pid" >/dev/null 2>&1
        send "$CALLGRIND_REQUESTS" "$url" "$body" "$h1" "${h2:-}"
        rm -f "$out".*
        callgrind_control -d "$pid" >/dev/null 2>&1
        for _ in $(seq 1 100); do ls "$out".* >/dev/null 2>&1 && break; sleep 0.1; done
        sleep 1
        total="$(sed -n 's/^summary: *//p; s/^totals: *//p' "$out".* | head -1)"
        if [ -n "${CALLGRIND_KEEP:-}" ]; then
            mkdir -p "$CALLGRIND_KEEP" && cp "$out".* "$CALLGRIND_KEEP/$(echo "$name" | tr -c 'A-Za-z0-9\n' '-').out"
        fi
        echo "| $name | $((total / CALLGRIND_REQUESTS)) |"
    done
    exit 0
fi

# Overhead histogram of one Levitate route (cumulative buckets), to diff before/after a run.
overhead_buckets() {
    curl -s --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" |
        grep "^levitate_gateway_overhead_seconds_bucket{.*route=\"$1\"" || true
}

# p50/p99 in µs of the observations between two bucket dumps (linear inside a bucket, like histogram_quantile).
overhead_quantiles() {
    python3 - "$1" "$2" <<'PY'
import re, sys
def parse(path):
    out = {}
    for line in open(path):
        m = re.search(r'le="([^"]+)"\}\s+(\S+)', line)
        if m:
            le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
            out[le] = out.get(le, 0) + float(m.group(2))
    return out
before, after = parse(sys.argv[1]), parse(sys.argv[2])
bounds = sorted(after)
counts = [after[b] - before.get(b, 0) for b in bounds]
total = counts[-1] if counts else 0
def q(p):
    if total <= 0:
        return "-"
    rank, prev_b, prev_c = p * total, 0.0, 0.0
    for b, c in zip(bounds, counts):
        if c >= rank:
            if b == float("inf"):
                return ">%d" % (prev_b * 1e6)
            return "%d" % ((prev_b + (b - prev_b) * (rank - prev_c) / max(c - prev_c, 1e-9)) * 1e6)
        prev_b, prev_c = b, c
    return "-"
print(q(0.5), q(0.99))
PY
}

RESULTS="$WORK/results"
: >"$RESULTS"
for round in $(seq 1 "$ROUNDS"); do
    for target in "${TARGETS[@]}"; do
        IFS='|' read -r name url body h1 h2 <<<"$target"
        headers="$h1${h2:+|$h2}"
        route=""
        case "$url" in
            *chat/completions) route=chat_completions ;;
            *v1/messages) route=messages ;;
        esac
        [ -n "$route" ] && overhead_buckets "$route" >"$WORK/before"
        perf_pid=""
        if [ -n "${PERF_OUT:-}" ] && [ "$name" = "Levitate OpenAI chat" ] && [ "$round" = 1 ]; then
            perf record -g -o "$PERF_OUT" -p "$LEVITATE_PID" >/dev/null 2>&1 &
            perf_pid=$!
        fi
        line="$(WRK_BODY="$body" WRK_HEADERS="$headers" \
            wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" -s "$HERE/nginx/post.lua" "$url" | grep '^RESULT' || true)"
        if [ -n "$perf_pid" ]; then kill -INT "$perf_pid" 2>/dev/null || true; wait "$perf_pid" 2>/dev/null || true; fi
        overhead="- -"
        if [ -n "$route" ]; then
            overhead_buckets "$route" >"$WORK/after"
            overhead="$(overhead_quantiles "$WORK/before" "$WORK/after")"
        fi
        echo "round $round: $name: $line overhead_us=$overhead" >&2
        echo "$name|$line|$overhead" >>"$RESULTS"
    done
done

# The table: one row per target (the median req/s over the rounds), ratio to the nginx proxy.
python3 - "$RESULTS" "$DURATION" "$CONNECTIONS" "$WRK_THREADS" "$SERVER_THREADS" "$ROUNDS" <<'PY'
import re, statistics, sys
path, duration, conns, threads, server_threads, rounds = sys.argv[1:]
rows = {}
for line in open(path):
    name, result, overhead = line.rstrip("\n").split("|")
    fields = dict(re.findall(r"(\w+)=(\S+)", result))
    if not fields:
        fields = {"rps": "0", "p50_us": "0", "p99_us": "0", "errors": "?", "non2xx": "?"}
    rows.setdefault(name, []).append((fields, overhead.split()))
def median_row(runs):
    runs = sorted(runs, key=lambda r: float(r[0]["rps"]))
    return runs[len(runs) // 2]
nginx = float(median_row(rows["nginx proxy"])[0]["rps"]) if "nginx proxy" in rows else 0
print(f"\nwrk -t{threads} -c{conns} -d{duration}, Levitate server.threads={server_threads}, rounds={rounds} (median)\n")
print("| target | req/s | p50 | p99 | × nginx proxy | overhead p50 | overhead p99 | errors |")
print("|---|---|---|---|---|---|---|---|")
for name, runs in rows.items():
    f, (o50, o99) = median_row(runs)
    rps = float(f["rps"])
    ratio = f"{rps / nginx:.2f}" if nginx else "-"
    fmt = lambda us: f"{int(us) / 1000:.2f} ms"
    ov = lambda v: "-" if v == "-" else f"{v} µs"
    errors = f"{f['errors']}/{f['non2xx']}"
    print(f"| {name} | {rps:,.0f} | {fmt(f['p50_us'])} | {fmt(f['p99_us'])} | {ratio} | {ov(o50)} | {ov(o99)} | {errors} |")
print("\nerrors = socket errors / non-2xx answers; overhead = levitate_gateway_overhead_seconds over that run")
PY
