#!/usr/bin/env bash
# The slowest units of a target's corpus in CPU time, not wall time: on a shared machine a fuzzer at
# nice 19 sees wall times many times its CPU time. Replays every unit once, takes the five slowest by wall
# time, and runs each of those 20 times under `time`, less the cost of 20 runs of an empty input.
#
#   bash fuzz/cpu-time.sh <target>...       (prints: target, unit, CPU ms per run)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
BIN="${CARGO_TARGET_DIR:-$PWD/target}/$TRIPLE/release"
TIMEFORMAT='%U %S'
empty="$(mktemp)"
trap 'rm -f "$empty"' EXIT
cpu_ms() {  # CPU milliseconds of 20 runs of $2 by target $1
    local t
    t=$( { time "$BIN/$1" -runs=20 "$2" >/dev/null 2>&1; } 2>&1 )
    awk -v u="${t% *}" -v s="${t#* }" 'BEGIN { printf "%d", (u + s) * 1000 }'
}
for t in "$@"; do
    base=$(cpu_ms "$t" "$empty")
    find ".work/$t" "corpus/$t" -type f -print0 | xargs -0 -n 500 "$BIN/$t" -runs=1 2>&1 \
        | sed -n 's/^Executed \(.*\) in \([0-9]*\) ms$/\2 \1/p' | sort -n | tail -5 \
        | while read -r _ unit; do
            total=$(cpu_ms "$t" "$unit")
            echo "$t $unit $(( (total - base) / 20 )) ms"
        done
done
