#!/usr/bin/env bash
# The demo: Levitate in front of its built-in upstream simulator, on loopback, no Google account needed.
#
#   bash scripts/demo.sh [--listen 127.0.0.1:8045] [--admin 127.0.0.1:8046]
#
# Builds a release binary on first run (a few minutes on 2 cores), then prints curl and OpenAI SDK examples.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

command -v cargo >/dev/null 2>&1 || { echo "demo: cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }
if ! command -v cmake >/dev/null 2>&1; then
    echo "demo: installing cmake (needed to build Pingora's dependencies)"
    if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake
fi

exec cargo run --release -p levitate -- demo "$@"
