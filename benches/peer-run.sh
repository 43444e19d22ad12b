#!/usr/bin/env bash
# Whole-process cold start of the hello guest, wasmgate beside its peer, in one run:
#   wasmtime run hello.wasm                      (wasmtime-cli 48, compiles every time unless cached)
#   wasmtime run --allow-precompiled hello.cwasm (precompiled ahead of time)
#   wasmgate run hello.wasm                      (compiled artifact cached in its data dir)
#   wasmgate --pooling on run hello.wasm         (the same, with the instance pool reserved:
#                                                 what pooling costs a one-shot run)
# for the WASI p1 module and the p2 component. Installs hyperfine (Debian) and wasmtime-cli
# (crates.io, a long build) when missing. Prints hyperfine's table and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine; }
WASMTIME=${WASMTIME:-$(command -v wasmtime || true)}
# An earlier run's install is reused.
[ -z "$WASMTIME" ] && [ -x target/peer/bin/wasmtime ] && WASMTIME=target/peer/bin/wasmtime
if [ -z "$WASMTIME" ]; then
  echo "== installing wasmtime-cli 48 from crates.io (this takes a while)"
  cargo install wasmtime-cli@48.0.8 --locked --root target/peer
  WASMTIME=target/peer/bin/wasmtime
fi
scripts/setup.sh
cargo guests --quiet
cargo build --release --quiet

data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
export WASMGATE_DATA_DIR=$data
for target in wasm32-wasip1 wasm32-wasip2; do
  wasm=guests/target/$target/release/hello.wasm
  "$WASMTIME" compile "$wasm" -o "$data/hello-$target.cwasm"
  target/release/wasmgate run "$wasm" >/dev/null   # warms wasmgate's artifact cache
  echo "== $target"
  hyperfine -N --warmup 5 --runs "${RUNS:-200}" --export-json "$data/$target.json" \
    -n "wasmtime run" "$WASMTIME run $wasm" \
    -n "wasmtime run (precompiled)" "$WASMTIME run --allow-precompiled $data/hello-$target.cwasm" \
    -n "wasmgate run" "target/release/wasmgate run $wasm" \
    -n "wasmgate run --pooling on" "target/release/wasmgate --pooling on run $wasm"
  python3 - "$data/$target.json" <<'PY'
import json, sys
results = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
gate = results["wasmgate run"]
for name in ("wasmtime run", "wasmtime run (precompiled)"):
    peer = results[name]
    print(f"  wasmgate run / {name}: median {gate['median']*1e3:.2f} ms vs {peer['median']*1e3:.2f} ms"
          f" = {gate['median']/peer['median']:.2f}x")
pooled = results["wasmgate run --pooling on"]
print(f"  wasmgate run --pooling on: median {pooled['median']*1e3:.2f} ms"
      f" (system {pooled['system']*1e3:.2f} ms) vs off: {gate['median']*1e3:.2f} ms"
      f" (system {gate['system']*1e3:.2f} ms)")
PY
done
