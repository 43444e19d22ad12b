#!/usr/bin/env bash
# HTTP-triggered Wasm: wasmgate's gateway beside `wasmtime serve` (wasmtime-cli 48) on the same
# wasi:http component (guests/http-hello, a fresh instance per request in all), loaded with the
# same tool and settings (wrk -t2, DURATION seconds, several connection counts), one after the
# other in one run. The peer runs twice: as shipped, and with the pooling settings wasmgate uses
# (memory and tables reset with memset, batched decommits, pagemap scan), so the ratio says what
# the settings buy and what the rest of the path costs. Prints requests/s and p50/p99 latency
# side by side with the ratios. Then the first request to a service scaled to zero (compiled
# artifact cached): p50/p99 over TRIES.
#
# Also measured in the same run: the same service on a server that routes SERVICES (default
# 100) services (one task each, paths /svc-N/), to show what a large route table costs; and,
# with BEFORE=PATH, another build of wasmgate (an older commit's target/release/wasmgate) on
# the same load, so a change's effect is read from one run.
#
# Installs wrk (Debian) and wasmtime-cli 48 (crates.io, a long build) when missing.
#   CONNECTIONS="10 50 100" DURATION=10 TRIES=50 benches/http.sh
set -euo pipefail
cd "$(dirname "$0")/.."

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
WASMTIME=${WASMTIME:-$(command -v wasmtime || true)}
if [ -z "$WASMTIME" ] && [ -x target/peer/bin/wasmtime ]; then WASMTIME=target/peer/bin/wasmtime; fi
if [ -z "$WASMTIME" ]; then
  echo "== installing wasmtime-cli 48 from crates.io (this takes a while)"
  cargo install wasmtime-cli@48.0.8 --locked --root target/peer
  WASMTIME=target/peer/bin/wasmtime
fi
scripts/setup.sh
cargo guests --quiet
# WASMGATE=PATH measures another build of the server (an older one, say) with the same load.
[ -n "${WASMGATE:-}" ] || cargo build --release --quiet
wasmgate=${WASMGATE:-target/release/wasmgate}
venv=target/test-venv
[ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import boto3' 2>/dev/null || {
  python3 -m venv "$venv" && "$venv/bin/pip" install --quiet boto3 awscli; }

component=$PWD/guests/target/wasm32-wasip2/release/http_hello.wasm
data=$(mktemp -d)
pids=()
# The servers start_wasmgate starts are recorded in $data/pids: it runs in a subshell (`< <(...)`),
# where `pids+=` would be lost and the servers left running after the script.
cleanup() {
  [ -f "$data/pids" ] && while read -r pid; do pids+=("$pid"); done < "$data/pids"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  # Not our children when started in a subshell: wait for them to be gone before removing their data.
  for pid in "${pids[@]}"; do for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done; done
  rm -rf "$data"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 300); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "nothing answers at $1" >&2; return 1; }

# The peer: wasmtime serve with the whole of WASI p2 (-Scli), as the component needs; as shipped,
# and tuned as wasmgate's engine is.
peer_port=$(free_port)
"$WASMTIME" serve -Scli --addr "127.0.0.1:$peer_port" "$component" >"$data/peer.out" 2>&1 &
pids+=($!)
tuned_port=$(free_port)
"$WASMTIME" serve -Scli --addr "127.0.0.1:$tuned_port" -O pooling-memory-keep-resident=2097152 \
  -O pooling-table-keep-resident=65536 -O pooling-decommit-batch-size=16 \
  -O pooling-pagemap-scan=auto "$component" >"$data/tuned.out" 2>&1 &
pids+=($!)

# wasmgate: a server with its gateway; one service on /, one task, room for every connection.
# SERVICES=N more on /svc-1/ ... when asked ("many": the route table of a busy host).
start_wasmgate() { # BINARY NAME EXTRA_SERVICES -> api and gateway ports
  local api gw
  api=$(free_port); gw=$(free_port)
  "$1" --data-dir "$data/$2" server --listen "127.0.0.1:$api" --gateway "127.0.0.1:$gw" \
    >"$data/$2.out" 2>"$data/$2.err" &
  echo $! >> "$data/pids"
  sleep 0.5
  "$venv/bin/python" - "http://127.0.0.1:$api" "$component" "$3" <<'PY'
import sys, boto3
endpoint, image, extra = sys.argv[1], sys.argv[2], int(sys.argv[3])
ecs = boto3.client('ecs', endpoint_url=endpoint, region_name='us-east-1',
                   aws_access_key_id='x', aws_secret_access_key='y')
def service(name, labels, desired):
    ecs.register_task_definition(family=name, memory='64', containerDefinitions=[
        {'name': 'web', 'image': image, 'dockerLabels': labels}])
    ecs.create_service(serviceName=name, taskDefinition=name, desiredCount=desired)
service('hello', {'wasmgate.http.path': '/', 'wasmgate.http.concurrency': '1000'}, 1)
service('cold', {'wasmgate.http.path': '/cold', 'wasmgate.http.idle-timeout': '3600'}, 0)
names = ['hello', 'cold']
for i in range(1, extra + 1):
    service(f'svc-{i}', {'wasmgate.http.path': f'/svc-{i}'}, 1)
    names.append(f'svc-{i}')
for at in range(0, len(names), 10):
    ecs.get_waiter('services_stable').wait(services=names[at:at + 10],
                                           WaiterConfig={'Delay': 0.2, 'MaxAttempts': 300})
PY
  echo "$api $gw"
}
read -r api_port gw_port < <(start_wasmgate "$wasmgate" wg 0)
read -r _ many_port < <(start_wasmgate "$wasmgate" many "${SERVICES:-100}")
before_port=
if [ -n "${BEFORE:-}" ]; then read -r _ before_port < <(start_wasmgate "$BEFORE" before 0); fi
wait_for "http://127.0.0.1:$peer_port/"
wait_for "http://127.0.0.1:$tuned_port/"
wait_for "http://127.0.0.1:$gw_port/"
wait_for "http://127.0.0.1:$many_port/"
[ -z "$before_port" ] || wait_for "http://127.0.0.1:$before_port/"

# wrk's "Requests/sec" and the 50% / 99% lines of --latency, in ms.
measure() {
  local out
  out=$(wrk -t2 -c"$1" -d"${DURATION:-10}"s --latency "$2")
  python3 - "$out" <<'PY'
import re, sys
out = sys.argv[1]
rps = float(re.search(r'Requests/sec:\s+([\d.]+)', out).group(1))
def pct(p):
    m = re.search(rf'^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$', out, re.M)
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == 'us' else v * 1000 if unit == 's' else v
errors = re.search(r'Non-2xx or 3xx responses: (\d+)', out)
print(f'{rps:.0f} {pct(50):.2f} {pct(99):.2f} {errors.group(1) if errors else 0}')
PY
}

row() { printf '%-12s %-24s %12s %10s %10s %8s\n' "$@"; }
printf '\n'; row connections server 'requests/s' 'p50 ms' 'p99 ms' non-2xx
for c in ${CONNECTIONS:-10 50 100}; do
  read -r peer_rps peer_p50 peer_p99 peer_err < <(measure "$c" "http://127.0.0.1:$peer_port/")
  read -r tuned_rps tuned_p50 tuned_p99 tuned_err < <(measure "$c" "http://127.0.0.1:$tuned_port/")
  read -r wg_rps wg_p50 wg_p99 wg_err < <(measure "$c" "http://127.0.0.1:$gw_port/")
  read -r many_rps many_p50 many_p99 many_err < <(measure "$c" "http://127.0.0.1:$many_port/")
  row "$c" "wasmtime serve" "$peer_rps" "$peer_p50" "$peer_p99" "$peer_err"
  row "$c" "wasmtime serve (tuned)" "$tuned_rps" "$tuned_p50" "$tuned_p99" "$tuned_err"
  row "$c" "wasmgate gateway" "$wg_rps" "$wg_p50" "$wg_p99" "$wg_err"
  row "$c" "wasmgate, $((${SERVICES:-100} + 2)) services" "$many_rps" "$many_p50" "$many_p99" "$many_err"
  if [ -n "$before_port" ]; then
    read -r b_rps b_p50 b_p99 b_err < <(measure "$c" "http://127.0.0.1:$before_port/")
    row "$c" "wasmgate (BEFORE)" "$b_rps" "$b_p50" "$b_p99" "$b_err"
    python3 -c "print(f'{\"\":12} wasmgate / BEFORE: {$wg_rps/$b_rps:.2f}x requests/s, p99 {$wg_p99/$b_p99:.2f}x')"
  fi
  python3 -c "print(f'{\"\":12} wasmgate / wasmtime serve: {$wg_rps/$peer_rps:.2f}x requests/s, p99 {$wg_p99/$peer_p99:.2f}x; / tuned: {$wg_rps/$tuned_rps:.2f}x requests/s, p99 {$wg_p99/$tuned_p99:.2f}x')"
  python3 -c "print(f'{\"\":12} many services / one: {$many_rps/$wg_rps:.2f}x requests/s')"
done
echo
echo "== first request to a service scaled to zero (${TRIES:-50} tries)"
"$venv/bin/python" - "http://127.0.0.1:$api_port" "127.0.0.1:$gw_port" "${TRIES:-50}" <<'PY'
import sys, time, http.client, boto3
endpoint, gateway, tries = sys.argv[1], sys.argv[2], int(sys.argv[3])
ecs = boto3.client('ecs', endpoint_url=endpoint, region_name='us-east-1',
                   aws_access_key_id='x', aws_secret_access_key='y')
host, port = gateway.split(':')
times = []
for i in range(tries):
    s = ecs.update_service(service='cold', desiredCount=0)['service']
    while True:
        s = ecs.describe_services(services=['cold'])['services'][0]
        if s['runningCount'] == 0 and s['pendingCount'] == 0:
            break
        time.sleep(0.05)
    time.sleep(0.2)  # let the gateway see the service at zero
    conn = http.client.HTTPConnection(host, int(port))
    started = time.perf_counter()
    conn.request('GET', '/cold/')
    reply = conn.getresponse(); reply.read()
    took = (time.perf_counter() - started) * 1000
    assert reply.status == 200, reply.status
    times.append(took)
    if (i + 1) % 10 == 0:
        print(f'  {i + 1}/{tries}', flush=True)
times.sort()
pick = lambda q: times[min(len(times) - 1, int(q * len(times)))]
print(f'scaled to zero -> first response: p50 {pick(0.5):.1f} ms, p99 {pick(0.99):.1f} ms (min {times[0]:.1f}, max {times[-1]:.1f})')
PY
