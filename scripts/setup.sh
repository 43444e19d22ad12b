#!/usr/bin/env bash
# Installs what wasmgate's build, tests and examples need on a fresh machine, and nothing else:
# the two WASI targets for the guest programs. Safe to run again.
set -euo pipefail

if ! rustup target list --installed | grep -qx wasm32-wasip1 ||
   ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "== installing the wasm32-wasip1 and wasm32-wasip2 targets"
  rustup target add wasm32-wasip1 wasm32-wasip2
fi
