#!/usr/bin/env bash
# The control plane on etcd, measured against the embedded default (release build, boto3):
#   a) one `wasmgate server` (its own local agent), on SQLite and on a one-member etcd
#      (Debian's etcd 3.4, its data on disk like SQLite's), alternating ROUNDS times (default
#      2) in the same run: RunTask and DescribeTasks call latency as the client sees it (one
#      call at a time, CALLS of each, default 300; p50/p99), and tasks/s: BURST hello tasks
#      (default 1000) in RunTask calls of 10 as fast as the API answers, first createdAt to
#      last stoppedAt;
#   b) failover (FAILOVERS rounds, default 5): three `wasmgate server --store etcd://...`
#      replicas (--no-local-agent, the default --leader-ttl 5) over a three-member etcd, and
#      one `wasmgate agent` on loopback that knows all three. kill -9 the leader, and at once
#      raise a service's desiredCount through a survivor: the time from the kill until
#      another replica holds the leader key (GET /v1/leader), and until the new leader's
#      scheduler has placed the extra task (its first decision). The killed replica is started
#      again, on its port, before the next round;
#   c) 10,000 tasks over 3 agents: `STORE=etcd benches/hosts.sh` does it (TASKS=10000; its
#      part a), beside the same on SQLite: set HOSTS=1 to run both here after a and b (needs
#      root for the network namespaces; takes some minutes).
# Progress is printed as it goes; every figure is summed up at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo guests --quiet
cargo build --release --quiet
venv=target/test-venv
[ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import boto3' 2>/dev/null || {
  python3 -m venv "$venv" && "$venv/bin/pip" install --quiet boto3 awscli; }

export EXE=$PWD/target/release/wasmgate
export HELLO=$PWD/guests/target/wasm32-wasip1/release/hello.wasm
export SLEEP=$PWD/guests/target/wasm32-wasip1/release/sleep.wasm
export ROUNDS=${ROUNDS:-2} CALLS=${CALLS:-300} BURST=${BURST:-1000} FAILOVERS=${FAILOVERS:-5}
tmp=$(mktemp -d /tmp/wasmgate-etcd-bench.XXXXXX)
export BENCH_TMP=$tmp
cleanup() {
  local rc=$?
  set +e
  for f in "$tmp"/*.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
  wait 2>/dev/null
  if [ "$rc" -ne 0 ]; then
    echo "== FAILED (exit $rc); logs kept in $tmp" >&2
    for log in "$tmp"/*.err; do
      [ -s "$log" ] || continue
      echo "-- last lines of $log" >&2; tail -n 15 "$log" >&2
    done
  else
    rm -rf "$tmp"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$venv/bin/python" - <<'PY'
import json, os, signal, socket, subprocess, sys, time, urllib.request
import boto3

env = os.environ
tmp = env['BENCH_TMP']
exe = env['EXE']
results = {}


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def spawn(name, args):
    """Starts `args` with stdout and stderr in tmp/NAME.{out,err}, its pid in tmp/NAME.pid."""
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                            stdout=open(f'{tmp}/{name}.out', 'w'),
                            stderr=open(f'{tmp}/{name}.err', 'a'))
    open(f'{tmp}/{name}.pid', 'w').write(str(proc.pid))
    return proc


def wait(label, check, timeout=60, every=0.05):
    started = shown = time.time()
    while True:
        got = check()
        # (0 is an answer: the index of a replica.)
        if got is not None and got is not False:
            return got
        if time.time() - started > timeout:
            raise SystemExit(f'timed out after {timeout} s: {label}')
        if time.time() - shown >= 2:
            shown = time.time()
            print(f'  ({label}: {time.time() - started:.0f} s)', flush=True)
        time.sleep(every)


def line_of(name, prefix):
    for line in open(f'{tmp}/{name}.out'):
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    return None


def etcd_cluster(tag, size):
    """A `size`-member etcd on loopback, its data under tmp (on disk); returns the endpoints."""
    ports = [(free_port(), free_port()) for _ in range(size)]
    cluster = ','.join(f'{tag}{i}=http://127.0.0.1:{peer}' for i, (_, peer) in enumerate(ports))
    procs = []
    for i, (client, peer) in enumerate(ports):
        procs.append(spawn(f'etcd-{tag}{i}', [
            'etcd', '--name', f'{tag}{i}', '--data-dir', f'{tmp}/etcd-{tag}{i}',
            '--listen-client-urls', f'http://127.0.0.1:{client}',
            '--advertise-client-urls', f'http://127.0.0.1:{client}',
            '--listen-peer-urls', f'http://127.0.0.1:{peer}',
            '--initial-advertise-peer-urls', f'http://127.0.0.1:{peer}',
            '--initial-cluster', cluster, '--initial-cluster-state', 'new',
            '--initial-cluster-token', f'bench-{tag}-{os.getpid()}']))
    endpoints = [f'127.0.0.1:{client}' for client, _ in ports]

    def healthy():
        for endpoint in endpoints:
            try:
                body = urllib.request.urlopen(f'http://{endpoint}/health', timeout=2).read()
                if b'"health":"true"' not in body:
                    return False
            except OSError:
                return False
        return True
    wait(f'etcd {tag} healthy', healthy)
    return endpoints, procs


def server(name, store, extra=(), port=0):
    data = f'{tmp}/{name}-data'
    os.makedirs(data, exist_ok=True)
    proc = spawn(name, [exe, '--data-dir', data, 'server', '--listen', f'127.0.0.1:{port}',
                        '--gateway', 'off', '--store', store,
                        '--stopped-task-retention', '86400', *extra])
    endpoint = wait(f'{name} listening', lambda: line_of(name, 'listening on '), 30)
    return proc, endpoint


def ecs_of(endpoint):
    return boto3.client('ecs', endpoint_url=endpoint, region_name='us-east-1',
                        aws_access_key_id='x', aws_secret_access_key='y')


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def describe_all(ecs, arns):
    tasks = []
    for i in range(0, len(arns), 100):
        tasks += ecs.describe_tasks(tasks=arns[i:i + 100])['tasks']
    return tasks


def api_round(label, store):
    proc, endpoint = server(f'api-{label}', store)
    ecs = ecs_of(endpoint)
    ecs.register_task_definition(family='hello', memory='16', cpu='1',
                                 containerDefinitions=[{'name': 'hello', 'image': env['HELLO']}])
    ecs.register_task_definition(family='sleepy', memory='8', cpu='1',
                                 containerDefinitions=[{'name': 's', 'image': env['SLEEP']}])
    warm = ecs.run_task(taskDefinition='hello')['tasks'][0]['taskArn']
    ecs.get_waiter('tasks_stopped').wait(tasks=[warm], WaiterConfig={'Delay': 0.2, 'MaxAttempts': 300})
    calls = int(env['CALLS'])
    run, describe, arns = [], [], []
    for k in range(calls):
        t0 = time.perf_counter()
        r = ecs.run_task(taskDefinition='sleepy')
        run.append((time.perf_counter() - t0) * 1000)
        arns += [t['taskArn'] for t in r['tasks']]
        t0 = time.perf_counter()
        ecs.describe_tasks(tasks=[arns[-1]])
        describe.append((time.perf_counter() - t0) * 1000)
        if k % 100 == 99:
            print(f'  {label}: {k + 1}/{calls} RunTask + DescribeTasks', flush=True)
    for arn in arns:
        ecs.stop_task(task=arn)
    total, burst = int(env['BURST']), []
    while len(burst) < total:
        r = ecs.run_task(taskDefinition='hello', count=min(10, total - len(burst)))
        burst += [t['taskArn'] for t in r['tasks']]
        if r['failures']:
            time.sleep(0.05)
    def all_stopped():
        ts = describe_all(ecs, burst)
        return ts if all(t['lastStatus'] == 'STOPPED' for t in ts) else None
    tasks = wait(f'{label}: {total} tasks to run and stop', all_stopped, 300, every=0.5)
    span = (max(t['stoppedAt'] for t in tasks) - min(t['createdAt'] for t in tasks)).total_seconds()
    stop(proc)
    m = {'run_p50': pct(run, .5), 'run_p99': pct(run, .99), 'describe_p50': pct(describe, .5),
         'describe_p99': pct(describe, .99), 'tasks_s': len(tasks) / span}
    print(f'  {label}: RunTask p50 {m["run_p50"]:.1f} ms p99 {m["run_p99"]:.1f} ms; DescribeTasks p50 '
          f'{m["describe_p50"]:.1f} ms p99 {m["describe_p99"]:.1f} ms; {len(tasks)} tasks at '
          f'{m["tasks_s"]:.0f} tasks/s', flush=True)
    return m


print(f'== a) one server, SQLite vs etcd, {env["ROUNDS"]} alternating rounds', flush=True)
(single,), procs = etcd_cluster('single', 1)
results['api'] = {'sqlite': [], 'etcd': []}
for r in range(int(env['ROUNDS'])):
    results['api']['sqlite'].append(api_round(f'sqlite-{r + 1}', 'sqlite'))
    results['api']['etcd'].append(api_round(f'etcd-{r + 1}', f'etcd://{single}/bench-{r}'))
for p in procs:
    p.kill()

rounds = int(env['FAILOVERS'])
print(f'== b) failover: 3 replicas over a 3-member etcd, {rounds} rounds of kill -9 the leader', flush=True)
endpoints, _ = etcd_cluster('ha', 3)
store = 'etcd://' + ','.join(endpoints) + '/failover'
token = f'{tmp}/token'
open(token, 'w').write('bench-join-token-0123456789')
ports = [free_port() for _ in range(3)]
common = ['--no-local-agent', '--agent-token-file', token]
replicas = {}
for i, port in enumerate(ports):
    replicas[i] = server(f'replica-{i}', store, common, port)
urls = [f'http://127.0.0.1:{port}' for port in ports]
agent_data = f'{tmp}/agent-data'
os.makedirs(agent_data, exist_ok=True)
spawn('agent', [exe, '--data-dir', agent_data, 'agent', '--controller', ','.join(urls),
                '--token-file', token, '--listen', f'127.0.0.1:{free_port()}', '--name', 'bench-host'])
wait('the agent to join', lambda: line_of('agent', 'joined as '), 60)


def leader():
    for url in urls:
        try:
            answer = json.load(urllib.request.urlopen(url + '/v1/leader', timeout=1))
        except OSError:
            continue
        endpoint = (answer.get('leader') or {}).get('endpoint')
        if endpoint in urls:
            return urls.index(endpoint)
    return None


ecs = ecs_of(urls[0])
ecs.register_task_definition(family='sleepy', memory='8', cpu='1',
                             containerDefinitions=[{'name': 's', 'image': env['SLEEP']}])
ecs.create_service(serviceName='probe', taskDefinition='sleepy', desiredCount=1)
ecs.get_waiter('services_stable').wait(services=['probe'], WaiterConfig={'Delay': 0.2, 'MaxAttempts': 300})
failover = []
for r in range(rounds):
    first = wait('a leader', leader, 60)
    survivor = ecs_of(urls[(first + 1) % 3])
    desired = survivor.describe_services(services=['probe'])['services'][0]['desiredCount'] + 1
    os.kill(replicas[first][0].pid, signal.SIGKILL)
    killed = time.time()
    replicas[first][0].wait()
    survivor.update_service(service='probe', desiredCount=desired)
    took = {}
    def switched():
        now = leader()
        if now is not None and now != first and 'leader' not in took:
            took['leader'] = time.time() - killed
        if 'leader' in took and len(survivor.list_tasks(serviceName='probe')['taskArns']) >= desired:
            took['decision'] = time.time() - killed
            return True
        return False
    wait(f'round {r + 1}: a new leader and its first decision', switched, 60, every=0.02)
    failover.append(took)
    print(f'  round {r + 1}: replica {first} killed: another leads after {took["leader"]:.2f} s, '
          f'its scheduler placed task #{desired} after {took["decision"]:.2f} s', flush=True)
    replicas[first] = server(f'replica-{first}', store, common, ports[first])
results['failover'] = failover

print()
print(f'== summary (one machine, {os.cpu_count()} cores; etcd 3.4 from Debian, data on disk)')
api = results['api']
print(f'a) one server, {env["CALLS"]} calls one at a time, {env["BURST"]} tasks in calls of 10 '
      f'({env["ROUNDS"]} alternating rounds; each round\'s figure)')
for key, label in (('run', 'RunTask'), ('describe', 'DescribeTasks')):
    for store in ('sqlite', 'etcd'):
        cells = ', '.join(f'p50 {m[key + "_p50"]:.1f} ms p99 {m[key + "_p99"]:.1f} ms' for m in api[store])
        print(f'   {label:<14} {store:<7} {cells}')
for store in ('sqlite', 'etcd'):
    print(f'   {"tasks/s":<14} {store:<7} ' + ', '.join(f'{m["tasks_s"]:.0f}' for m in api[store]))
ratio = [e['run_p50'] / s['run_p50'] for s, e in zip(api['sqlite'], api['etcd'])]
print('   RunTask p50 etcd / SQLite: ' + ', '.join(f'{x:.2f}x' for x in ratio))
lead = [x['leader'] for x in failover]
decide = [x['decision'] for x in failover]
print(f'b) failover over {len(failover)} rounds (--leader-ttl 5): kill -9 -> new leader p50 '
      f'{pct(lead, .5):.2f} s, p99 {pct(lead, .99):.2f} s (max); -> its first decision p50 '
      f'{pct(decide, .5):.2f} s, p99 {pct(decide, .99):.2f} s')
PY

if [ -n "${HOSTS:-}" ]; then
  echo "== c) 10,000 tasks over 3 agents: SQLite, then etcd (benches/hosts.sh)"
  TASKS=${TASKS:-10000} ROUNDS=0 RUNS=20 benches/hosts.sh
  STORE=etcd TASKS=${TASKS:-10000} ROUNDS=0 RUNS=20 benches/hosts.sh
fi
