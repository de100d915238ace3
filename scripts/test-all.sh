#!/usr/bin/env bash
# The test command: every Rust test, then the end-to-end suite (tests/e2e) against the built binaries.
#
#   bash scripts/test-all.sh [extra pytest args]
#
# Needs Rust, Python 3 and pip; installs the rest (cmake and curl through apt-get, the Python clients into .venv).
# One debug workspace build is shared by cargo test and the e2e suite. Exits non-zero on the first failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"

step() { printf '\n==> %s\n' "$*"; }
die() { printf '\ntest-all: FAILED: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
        die "need root (or sudo) to run: $*"
    fi
}

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install these yourself: $*"
    if [ "$APT_UPDATED" -eq 0 ]; then
        as_root apt-get update -qq || die "apt-get update"
        APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || die "apt-get install $*"
}

step "system tools"
command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (https://rustup.rs)"
command -v python3 >/dev/null 2>&1 || die "python3 not found"
missing=()
command -v cc >/dev/null 2>&1 || missing+=(build-essential)   # linker, and C code in dependencies
command -v cmake >/dev/null 2>&1 || missing+=(cmake)           # libz-ng-sys (zlib-ng, under Pingora) builds with it
command -v curl >/dev/null 2>&1 || missing+=(curl)             # the demo test runs the curl line the demo prints
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)   # tests/e2e/test_nginx.py runs it
command -v openssl >/dev/null 2>&1 || missing+=(openssl)       # tests/e2e/test_tls.py makes its certificates with it
[ -x /usr/bin/chromium ] || missing+=(chromium)                # tests/e2e/test_console.py drives the console in it
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)   # tests/e2e/test_cluster.py shares state through it
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]}"
    apt_install "${missing[@]}"
fi

step "python environment (.venv)"
VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/python" ]; then
    if ! python3 -m venv "$VENV" 2>/dev/null; then
        rm -rf "$VENV"
        pyver="$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
        apt_install python3-venv
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python${pyver}-venv" >/dev/null 2>&1 || true
        python3 -m venv "$VENV" || die "python3 -m venv"
    fi
fi
REQS="$ROOT/tests/e2e/requirements.txt"
STAMP="$VENV/.requirements.sha256"
want="$(sha256sum "$REQS" | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQS" || die "pip install -r $REQS"
    echo "$want" > "$STAMP"
fi

step "real clients for the e2e suite: Claude Code, Gemini CLI, Codex CLI (npm, pinned in tests/e2e/clients/node)"
# Claude Code, Gemini CLI, Codex CLI and the reference tokenizers, from the npm registry into the repo-local prefix.
NODE_PREFIX="$ROOT/tests/e2e/clients/node"
command -v npm >/dev/null 2>&1 || apt_install nodejs npm
node_want="$(sha256sum "$NODE_PREFIX/package-lock.json" | cut -d' ' -f1)"
if [ "$(cat "$NODE_PREFIX/node_modules/.installed.sha256" 2>/dev/null)" != "$node_want" ]; then
    npm ci --prefix "$NODE_PREFIX" --no-audit --no-fund --loglevel=error || die "npm ci --prefix $NODE_PREFIX"
    echo "$node_want" > "$NODE_PREFIX/node_modules/.installed.sha256"
fi

step "house rules (scripts/check-layout.py: file sizes, no import circles)"
python3 scripts/check-layout.py || die "scripts/check-layout.py"

step "cargo build --workspace --bins"
cargo build --workspace --bins || die "cargo build"

step "cargo test --workspace"
cargo test --workspace || die "cargo test"

step "fuzz smoke (scripts/fuzz-smoke.sh: every fuzz target a few seconds from its seeds)"
bash scripts/fuzz-smoke.sh || die "scripts/fuzz-smoke.sh"

step "pytest tests/e2e"
export LEVITATE_BIN="${LEVITATE_BIN:-$ROOT/target/debug/levitate}"
export LEVITATE_SIM_BIN="${LEVITATE_SIM_BIN:-$ROOT/target/debug/levitate-sim}"
[ -x "$LEVITATE_BIN" ] || die "$LEVITATE_BIN was not built"
[ -x "$LEVITATE_SIM_BIN" ] || die "$LEVITATE_SIM_BIN was not built"
status=0
"$VENV/bin/python" -m pytest tests/e2e -q -p no:cacheprovider "$@" || status=$?
if [ "$status" -ne 0 ]; then
    die "pytest tests/e2e (exit $status)"
fi
printf '\ntest-all: all tests passed\n'
