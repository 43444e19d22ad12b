#!/usr/bin/env bash
# The main job on the embedded default: builds wasmgate and the guests, then runs an example
# task definition (default: examples/hello.json) to completion.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo guests --quiet
cargo build --release --quiet
exec target/release/wasmgate run "${1:-examples/hello.json}" "${@:2}"
