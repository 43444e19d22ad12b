#!/usr/bin/env bash
# Builds wasmgate and the guests, then runs an example task definition (default:
# examples/hello.json) to completion in the foreground. Installs only what that needs.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh serve
cargo guests --quiet
cargo build --release --quiet
exec target/release/wasmgate run "${1:-examples/hello.json}" "${@:2}"
