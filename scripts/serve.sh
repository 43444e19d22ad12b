#!/usr/bin/env bash
# The main job on the embedded default: builds wasmgate and the guests, then runs
# `wasmgate server` with the example task definitions registered, and prints what to try next.
# Stop it with Ctrl-C. Listens on 127.0.0.1:8080 unless WASMGATE_LISTEN says otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo guests --quiet
cargo build --release --quiet
exec target/release/wasmgate server --register-examples examples "$@"
