#!/usr/bin/env bash
# RunTask figures against a real `wasmgate server` (release build), driven by boto3:
#   - RunTask → RUNNING latency for hello with the image cached: startedAt - createdAt of each
#     task, as the server recorded them (p50, p99);
#   - throughput of N short tasks (default 1000): RunTask calls of 10 tasks each, as fast as
#     the API answers; tasks/s = N / (last stoppedAt - first createdAt).
# For scale it also prints a published figure, measured elsewhere and not by this script:
# runwasi's wasmtime shim ran 1,000 tasks at 329.85 tasks/s in its own stress test (runwasi's
# docs/src/benchmarks.md, "Runwasi vs. Native Execution"; its machine, not this one).
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
"$wasmgate" --data-dir "$data" server --listen 127.0.0.1:0 --stopped-task-retention 86400 > "$data/out" 2>"$data/err" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 100); do grep -q listening "$data/out" && break; sleep 0.1; done
endpoint=$(sed -n 's/^listening on //p' "$data/out")

"$venv/bin/python" - "$endpoint" "$PWD/guests/target/wasm32-wasip1/release/hello.wasm" "${TASKS:-1000}" <<'PY'
import sys, time, boto3
endpoint, image, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
ecs = boto3.client('ecs', endpoint_url=endpoint, region_name='us-east-1',
                   aws_access_key_id='x', aws_secret_access_key='y')
ecs.register_task_definition(family='hello', memory='16', cpu='1',
                             containerDefinitions=[{'name': 'hello', 'image': image}])
# Warm the image and the compiled artifact.
warm = ecs.run_task(taskDefinition='hello')['tasks'][0]['taskArn']
ecs.get_waiter('tasks_stopped').wait(tasks=[warm], WaiterConfig={'Delay': 1, 'MaxAttempts': 60})

arns, started = [], time.time()
while len(arns) < total:
    r = ecs.run_task(taskDefinition='hello', count=min(10, total - len(arns)))
    arns += [t['taskArn'] for t in r['tasks']]
    if r['failures']:
        print('failures:', r['failures'][:1]); time.sleep(0.05)
submitted = time.time() - started
print(f'submitted {len(arns)} tasks in {submitted:.2f} s ({len(arns)/submitted:.0f} RunTask tasks/s)', flush=True)

tasks = []
for i in range(0, len(arns), 100):
    while True:
        batch = ecs.describe_tasks(tasks=arns[i:i+100])['tasks']
        if all(t['lastStatus'] == 'STOPPED' for t in batch):
            break
        time.sleep(0.2)
    tasks += batch
lat = sorted((t['startedAt'] - t['createdAt']).total_seconds() * 1000 for t in tasks if 'startedAt' in t)
first = min(t['createdAt'] for t in tasks); last = max(t['stoppedAt'] for t in tasks)
span = (last - first).total_seconds()
ok = sum(1 for t in tasks if t['containers'][0].get('exitCode') == 0)
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print(f'{len(tasks)} tasks, {ok} exited 0')
print(f'RunTask -> RUNNING (createdAt -> startedAt): p50 {pick(0.5):.1f} ms, p99 {pick(0.99):.1f} ms')
print(f'throughput: {len(tasks)} tasks in {span:.2f} s = {len(tasks)/span:.0f} tasks/s')
print('published, not measured here: runwasi (wasmtime shim) 329.85 tasks/s for 1,000 tasks '
      "on its own machine (runwasi's docs/src/benchmarks.md, \"Runwasi vs. Native Execution\")")
PY
