#!/usr/bin/env bash
# RunTask figures against a real `wasmgate server` (release build), driven by boto3:
#   - cold start, one task at a time (ONE_AT_A_TIME tasks, default 200, of the `clock` guest,
#     image cached), in µs: RunTask accepted (the record's createdAt) → startedAt (the agent
#     started its container), and → the guest's first instruction: `clock` prints the realtime
#     clock (WASI's, the host's) first thing in `main`, which the script reads from its log;
#     also RunTask sent (the client's clock) → that first instruction. µs come from the
#     record's `wasmgateMicros`; a build without them has ECS's millisecond `createdAt` only
#     (then the figures carry up to 1 ms of truncation, and the script says so);
#   - RunTask → RUNNING latency for hello with the image cached, during the burst below:
#     startedAt - createdAt of each task, as the server recorded them (p50, p99);
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

guests=$PWD/guests/target/wasm32-wasip1/release
"$venv/bin/python" - "$endpoint" "$guests/hello.wasm" "${TASKS:-1000}" "$guests/clock.wasm" "${ONE_AT_A_TIME:-200}" <<'PY'
import sys, time, json, boto3, urllib.request
endpoint, image, total, clock, one_by_one = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
ecs = boto3.client('ecs', endpoint_url=endpoint, region_name='us-east-1',
                   aws_access_key_id='x', aws_secret_access_key='y')
# The answers as sent (boto3 drops members its model does not know, such as wasmgateMicros).
raw = {}
ecs.meta.events.register('after-call.ecs.DescribeTasks',
                         lambda http_response, **_: raw.__setitem__('tasks', json.loads(http_response.content)['tasks']))
def described(arns):
    ecs.describe_tasks(tasks=arns)
    return raw['tasks']
def call(action, body):
    request = urllib.request.Request(endpoint, data=json.dumps(body).encode(), headers={
        'Content-Type': 'application/x-amz-json-1.1', 'X-Amz-Target': action})
    return json.load(urllib.request.urlopen(request))
def micros(task, name):
    # wasmgate's µs; else ECS's epoch seconds at millisecond resolution.
    return task.get('wasmgateMicros', {}).get(name) or round(task[name] * 1e6)
pick = lambda xs, q: xs[min(len(xs) - 1, int(q * len(xs)))]
# hello with cpu 1 (a 1/1024 core's budget), as the burst always ran; clock without a CPU
# budget, which would pause it for its instantiation's CPU time (1,024 times over).
for family, path, cpu in (('hello', image, {'cpu': '1'}), ('clock', clock, {})):
    ecs.register_task_definition(family=family, memory='16', **cpu,
                                 containerDefinitions=[{'name': family, 'image': path}])
    # Warm the image and the compiled artifact.
    warm = ecs.run_task(taskDefinition=family)['tasks'][0]['taskArn']
    ecs.get_waiter('tasks_stopped').wait(tasks=[warm], WaiterConfig={'Delay': 1, 'MaxAttempts': 60})

sent = {}
for _ in range(one_by_one):
    at = time.time_ns() // 1000
    arn = ecs.run_task(taskDefinition='clock')['tasks'][0]['taskArn']
    sent[arn] = at
    time.sleep(0.005)
done = []
for i in range(0, len(sent), 100):
    arns = list(sent)[i:i+100]
    while True:
        batch = described(arns)
        if all(t['lastStatus'] == 'STOPPED' for t in batch):
            break
        time.sleep(0.2)
    done += batch
coarse = not all('wasmgateMicros' in t for t in done)
started, entered, client, pulling, pulled = [], [], [], [], []
for t in done:
    created = micros(t, 'createdAt')
    started.append(micros(t, 'startedAt') - created)
    pulling.append(micros(t, 'pullStartedAt') - created)
    pulled.append(micros(t, 'pullStoppedAt') - created)
    out = call('WasmgateV1.GetTaskLogs', {'task': t['taskArn']})['events']
    first = int(out[0]['message'].strip())
    entered.append(first - created)
    client.append(first - sent[t['taskArn']])
for xs in (started, entered, client, pulling, pulled):
    xs.sort()
print(f'cold start, {len(done)} clock tasks one at a time'
      + (' (this build records milliseconds: createdAt truncated, up to +1 ms)' if coarse else '') + ':')
print(f'  RunTask accepted -> pullStartedAt (agent):   p50 {pick(pulling, .5):6d} us, p99 {pick(pulling, .99):6d} us')
print(f'  RunTask accepted -> pullStoppedAt:           p50 {pick(pulled, .5):6d} us, p99 {pick(pulled, .99):6d} us')
print(f'  RunTask accepted -> startedAt:               p50 {pick(started, .5):6d} us, p99 {pick(started, .99):6d} us')
print(f'  RunTask accepted -> first guest instruction: p50 {pick(entered, .5):6d} us, p99 {pick(entered, .99):6d} us')
print(f'  RunTask sent (client) -> first instruction:  p50 {pick(client, .5):6d} us, p99 {pick(client, .99):6d} us', flush=True)

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
        batch = described(arns[i:i+100])
        if all(t['lastStatus'] == 'STOPPED' for t in batch):
            break
        time.sleep(0.2)
    tasks += batch
lat = sorted(micros(t, 'startedAt') - micros(t, 'createdAt') for t in tasks if 'startedAt' in t)
first = min(t['createdAt'] for t in tasks); last = max(t['stoppedAt'] for t in tasks)
span = last - first
ok = sum(1 for t in tasks if t['containers'][0].get('exitCode') == 0)
print(f'{len(tasks)} tasks, {ok} exited 0')
print(f'RunTask -> RUNNING during the burst (createdAt -> startedAt): p50 {pick(lat, .5)} us, p99 {pick(lat, .99)} us')
print(f'throughput: {len(tasks)} tasks in {span:.2f} s = {len(tasks)/span:.0f} tasks/s')
print('published, not measured here: runwasi (wasmtime shim) 329.85 tasks/s for 1,000 tasks '
      "on its own machine (runwasi's docs/src/benchmarks.md, \"Runwasi vs. Native Execution\")")
PY
