#!/usr/bin/env bash
# The CI fuzz smoke: builds every fuzz target (fuzz/, cargo-fuzz + libFuzzer) and runs each one for a few
# seconds from its committed seed corpus, so a parser change that panics, hangs or blows up memory on a
# known-shaped input fails the test command. The long runs and their numbers are in docs/reliability.md.
#
#   bash scripts/fuzz-smoke.sh [seconds per target, default 5]
#
# Works on stable Rust: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags. Installs cargo-fuzz (crates.io)
# when missing. Builds unoptimised (--dev, with debug assertions: overflow checks count as findings) and
# without a sanitizer: a smoke is about compile time; the long runs use AddressSanitizer.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
SECONDS_EACH="${1:-5}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

cd fuzz
cargo fuzz build --dev -s none --features config
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
BIN="${CARGO_TARGET_DIR:-$ROOT/fuzz/target}/$TRIPLE/debug"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

failed=()
for target in $(cargo fuzz list); do
    mkdir -p "$WORK/$target/corpus" "$WORK/$target/artifacts"
    # New units go to the scratch corpus (first directory); the committed seeds are only read.
    if "$BIN/$target" -max_total_time="$SECONDS_EACH" -timeout=2 -rss_limit_mb=2048 -max_len=65536 \
        -artifact_prefix="$WORK/$target/artifacts/" "$WORK/$target/corpus" "corpus/$target" \
        >"$WORK/$target.log" 2>&1; then
        printf 'fuzz smoke %-18s ok   %s\n' "$target" "$(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$WORK/$target.log")"
    else
        printf 'fuzz smoke %-18s FAILED\n' "$target"
        grep -A30 -E '^==[0-9]+==|panicked|Test unit written' "$WORK/$target.log" | head -60 || tail -40 "$WORK/$target.log"
        cp -r "$WORK/$target/artifacts" "$ROOT/fuzz/artifacts-$target" 2>/dev/null || true
        failed+=("$target")
    fi
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz smoke: ${#failed[@]} target(s) failed: ${failed[*]} (crash inputs copied to fuzz/artifacts-<target>/)"
    exit 1
fi
echo "fuzz smoke: all targets ok"
