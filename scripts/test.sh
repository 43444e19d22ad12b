#!/usr/bin/env bash
# Runs the whole test suite: installs what it needs, builds the guests, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
echo "== building the guest programs (cargo guests)"
cargo guests
echo "== running the tests"
cargo test --all-targets --no-fail-fast
