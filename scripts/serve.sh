#!/usr/bin/env bash
# The main job on the embedded default: builds wasmgate and the guests, runs `wasmgate server`
# with the example task definitions (examples/*.json) registered, starts the HTTP example
# (examples/http/hello.json, routed at /hello) as a service, and once `curl GATEWAY/hello`
# answers, prints what to try next. Installs only what serving needs (scripts/setup.sh serve).
# Stop it with Ctrl-C. Arguments go to `wasmgate server` (e.g. --listen, --gateway, --data-dir);
# it listens on 127.0.0.1:8080 and serves HTTP on 127.0.0.1:8081 unless told otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh serve
cargo guests --quiet
cargo build --release --quiet
wasmgate=$PWD/target/release/wasmgate

run=$(mktemp -d)
server=""
# Ctrl-C reaches the server too, which is to stop its tasks (each within its stopTimeout, at most
# 120 s for Fargate-compatible definitions) and exit. A second Ctrl-C, or a server still there
# after 130 s, is killed.
stop() {
  if [ -n "$server" ]; then
    trap 'kill -KILL "$server" 2>/dev/null' INT TERM
    kill -INT "$server" 2>/dev/null || true
    for _ in $(seq 1300); do
      kill -0 "$server" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$server" 2>/dev/null; then
      echo "serve.sh: the server did not stop in 130 s; killing it" >&2
      kill -KILL "$server" 2>/dev/null || true
    fi
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$run"
}
trap stop EXIT
trap 'exit 130' INT TERM

# The server's own lines go to the terminal and to a file, where its addresses are read.
"$wasmgate" server --register-examples examples "$@" > >(tee "$run/out") &
server=$!
for _ in $(seq 600); do
  grep -q '^try:$' "$run/out" 2>/dev/null && break
  kill -0 "$server" 2>/dev/null || { wait "$server"; exit $?; }
  sleep 0.1
done
endpoint=$(sed -n 's/^listening on //p' "$run/out")
gateway=$(sed -n 's|^gateway on http://||p' "$run/out")
[ -n "$endpoint" ] || { echo "serve.sh: the server did not say where it listens" >&2; exit 1; }
export WASMGATE_ENDPOINT=$endpoint

if [ -z "$gateway" ]; then
  echo "(no gateway: the HTTP example is not started)"
  wait "$server"
  exit $?
fi

# The HTTP example, as a service: created, or on a later start (the state is kept) updated to
# the revision registered now.
"$wasmgate" register examples/http/hello.json >/dev/null
if "$wasmgate" services | awk '$1 == "http-hello" && $2 == "ACTIVE" { found = 1 } END { exit !found }'; then
  "$wasmgate" update-service http-hello --task-definition http-hello --desired-count 1 --wait >/dev/null
else
  "$wasmgate" create-service http-hello --wait >/dev/null
fi
# Stable means its task runs; the gateway learns the route from the store a moment later.
for _ in $(seq 300); do
  curl -fsS -o /dev/null "http://$gateway/hello" 2>/dev/null && break
  sleep 0.1
done
curl -fsS -o /dev/null "http://$gateway/hello" || {
  echo "serve.sh: the HTTP example does not answer at http://$gateway/hello" >&2; exit 1; }

# As the server's own lines do: the binary as one shell word, and the endpoint with it unless it
# is the default.
printf -v cli '%q' "$wasmgate"
[ "$endpoint" = http://127.0.0.1:8080 ] || cli="WASMGATE_ENDPOINT=$endpoint $cli"
console=$(sed -n 's/^console on //p' "$run/out")
cat <<LINES
open the web console: $console
the HTTP example (examples/http/hello.json) serves as service http-hello:
  curl http://$gateway/hello
  $cli services
  $cli scale http-hello 3 --wait
LINES
command -v aws >/dev/null ||
  echo "(the aws lines need the AWS CLI: pip install awscli, or target/test-venv/bin/aws after the tests)"
wait "$server"
