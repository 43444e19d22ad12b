#!/usr/bin/env bash
# A service of N tiny long-running Wasm tasks (default 1000) against a real `wasmgate server`
# (release build), driven by boto3 on the same machine:
#   - CreateService → steady state (runningCount == N, one deployment): how long;
#   - the server's memory (RSS) while it holds them, and per task: at steady state, and settled
#     (SETTLE seconds later, default 2, once the scheduler has gone quiet and returned what the
#     ramp freed; the RSS is printed each second meanwhile);
#   - UpdateService desiredCount 0 → every task stopped: how long.
# Progress is printed every second.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo guests --quiet
# WASMGATE=PATH measures another build of the server (an older one, say) with the same load.
[ -n "${WASMGATE:-}" ] || cargo build --release --quiet
wasmgate=${WASMGATE:-target/release/wasmgate}
venv=target/test-venv
[ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import boto3' 2>/dev/null || {
  python3 -m venv "$venv" && "$venv/bin/pip" install --quiet boto3 awscli; }

data=$(mktemp -d)
"$wasmgate" --data-dir "$data" server --listen 127.0.0.1:0 > "$data/out" 2>"$data/err" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 100); do grep -q listening "$data/out" && break; sleep 0.1; done
endpoint=$(sed -n 's/^listening on //p' "$data/out")

"$venv/bin/python" - "$endpoint" "$PWD/guests/target/wasm32-wasip1/release/graceful.wasm" "${TASKS:-1000}" "$server" "${SETTLE:-2}" <<'PY'
import sys, time, boto3
endpoint, image, total, pid = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
ecs = boto3.client('ecs', endpoint_url=endpoint, region_name='us-east-1',
                   aws_access_key_id='x', aws_secret_access_key='y')
def rss_mib():
    fields = dict(line.split(':', 1) for line in open(f'/proc/{pid}/status'))
    return int(fields['VmRSS'].split()[0]) / 1024, int(fields['VmHWM'].split()[0]) / 1024
ecs.register_task_definition(family='idle', memory='8',
                             containerDefinitions=[{'name': 'idle', 'image': image}])
# Warm the compiled artifact with one task, then measure from an idle server.
warm = ecs.run_task(taskDefinition='idle')['tasks'][0]['taskArn']
ecs.get_waiter('tasks_running').wait(tasks=[warm], WaiterConfig={'Delay': 1, 'MaxAttempts': 60})
ecs.stop_task(task=warm)
ecs.get_waiter('tasks_stopped').wait(tasks=[warm], WaiterConfig={'Delay': 1, 'MaxAttempts': 60})
idle_rss, _ = rss_mib()

def wait_until(done, label):
    started, shown = time.time(), 0
    while True:
        s = ecs.describe_services(services=['idle'])['services'][0]
        if done(s):
            return time.time() - started
        if time.time() - shown >= 1:
            shown = time.time()
            print(f'  {label}: running {s["runningCount"]}, pending {s["pendingCount"]} '
                  f'({time.time() - started:.1f} s)', flush=True)
        time.sleep(0.1)

started = time.time()
ecs.create_service(serviceName='idle', taskDefinition='idle', desiredCount=total)
up = wait_until(lambda s: s['runningCount'] == total and len(s['deployments']) == 1, 'scaling up')
rss, peak = rss_mib()
settle = float(sys.argv[5])
for second in range(1, int(settle) + 1):
    time.sleep(1)
    print(f'  settling: RSS {rss_mib()[0]:.0f} MiB ({second} s)', flush=True)
time.sleep(settle - int(settle))
settled, _ = rss_mib()
print(f'{total} tasks: CreateService -> steady state in {up:.2f} s ({total/up:.0f} tasks/s)')
print(f'server RSS holding them: {rss:.0f} MiB (idle {idle_rss:.0f} MiB, peak {peak:.0f} MiB): '
      f'{(rss - idle_rss) * 1024 / total:.0f} KiB per task; settled ({settle:g} s later) {settled:.0f} MiB: '
      f'{(settled - idle_rss) * 1024 / total:.0f} KiB per task')
ecs.update_service(service='idle', desiredCount=0)
down = wait_until(lambda s: s['runningCount'] == 0 and s['pendingCount'] == 0, 'scaling down')
print(f'desiredCount 0 -> no task running in {down:.2f} s')
PY
