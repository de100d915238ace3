#!/usr/bin/env bash
# The long fuzz runs behind docs/reliability.md: each target in turn (one at a time, at the lowest CPU
# priority), then every unit of the corpus it grew replayed once to find the slowest input. Prints one
# summary line per target and keeps the full libFuzzer logs in fuzz/.work/<target>.log.
#
#   bash fuzz/run.sh [targets...]           (default: all; RUNS=10000000, MAX_TIME=0 = no time cap)
#
# Needs cargo-fuzz and RUSTC_BOOTSTRAP=1 on stable Rust (see docs/reliability.md). SANITIZER=none to trade
# the leak and memory-error checks for ~2x speed; SKIP_BUILD=1 to run what is built; TIMEOUT=<seconds> for
# libFuzzer's per-input wall-clock limit (default 2; raise it on a loaded box, where a nice-19 fuzzer's wall
# time is many times its CPU time: docs/reliability.md replays slow units for their CPU time).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
export RUSTC_BOOTSTRAP=1
RUNS="${RUNS:-10000000}"
MAX_TIME="${MAX_TIME:-0}"
SANITIZER="${SANITIZER:-address}"
TIMEOUT="${TIMEOUT:-2}"
ALL=(auth_header retry_hint schema_clean sse_openai sse_anthropic sse_gemini request_openai request_anthropic
     request_gemini config_load images_edit request_responses request_completions sse_responses)
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=("${ALL[@]}")
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
BIN="${CARGO_TARGET_DIR:-$PWD/target}/$TRIPLE/release"

for t in "${targets[@]}"; do
    features=()
    [ "$t" = config_load ] && features=(--features config)
    [ -n "${SKIP_BUILD:-}" ] || nice -n 19 cargo fuzz build -s "$SANITIZER" "${features[@]}" "$t" >/dev/null
    mkdir -p ".work/$t" "artifacts/$t"
    log=".work/$t.log"
    start=$(date +%s)
    status=0
    nice -n 19 "$BIN/$t" -runs="$RUNS" -max_total_time="$MAX_TIME" -timeout="$TIMEOUT" -rss_limit_mb=2048 \
        -max_len=65536 -report_slow_units=1 -print_final_stats=1 -detect_leaks=1 \
        -artifact_prefix="artifacts/$t/" ".work/$t" "corpus/$t" >"$log" 2>&1 || status=$?
    secs=$(( $(date +%s) - start ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    corpus=$(sed -n 's/.*#[0-9]*\s*\(DONE\|pulse\|NEW\|REDUCE\).*corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\2/p' "$log" | tail -1)
    slow=$(grep -c "Slowest unit" "$log" || true)
    # Replay every unit once (same sanitizer) and keep the slowest: libFuzzer times a unit only to 1 s.
    slowest=$(find ".work/$t" "corpus/$t" -type f -print0 | xargs -0 -n 500 nice -n 19 "$BIN/$t" -runs=1 2>&1 \
        | sed -n 's/^Executed \(.*\) in \([0-9]*\) ms$/\2 \1/p' | sort -n | tail -1)
    artifacts=$(find "artifacts/$t" -type f | wc -l)
    printf '%s: exit %s, %s execs in %s s (%s exec/s), corpus %s, artifacts %s, slow-unit reports %s, slowest replayed unit %s ms\n' \
        "$t" "$status" "${execs:-?}" "$secs" "${rate:-?}" "${corpus:-?}" "$artifacts" "$slow" "${slowest:-?}"
done
