#!/usr/bin/env bash
# Multi-host figures: a `wasmgate server --no-local-agent` (release build) on a Linux bridge and
# three `wasmgate agent`s, each in a network namespace of its own (a veth to the bridge), driven
# by boto3 on the same machine (needs root and iproute2). The whole run uses --agent-timeout 2
# --agent-lost-after 5 on the controller.
#   a) a service of TASKS tiny idle Wasm tasks (default 3000) spread over the 3 hosts:
#      CreateService → steady state (runningCount == N, one deployment): how long, tasks/s;
#      the controller's and every agent's memory (RSS) while they hold them, and per task;
#      desiredCount 0 → every task stopped: how long;
#   b) lost-host recovery (ROUNDS, default 5): a service of LOST_TASKS (30) tasks; kill -9 the
#      agent that runs the most of them; time from the kill until the service again has all its
#      tasks RUNNING and none on the dead host (p50, p99 = max for few rounds). It includes the
#      5 s --agent-lost-after. The agent is restarted (same data dir) before the next round;
#   c) RunTask → RUNNING latency of hello for RUNS tasks (default 200) on the remote agents, and
#      the same against a second controller run the default way (its own local agent, no remote
#      agent, on 127.0.0.1): startedAt - createdAt as the server recorded them (startedAt comes
#      from the agent's clock), submitted as runtask.sh does (RunTask calls of 10, as fast as the
#      API answers) and one at a time; one at a time also as the client sees it (RunTask call →
#      DescribeTasks shows startedAt).
# Measured in the order c, b, a: c on a fresh controller, like the local one; b before the
# TASKS stopped tasks of a are kept (--stopped-task-retention 86400) and slow every pass.
# Progress is printed every second; every figure is summed up at the end. On failure the logs
# (the controllers' and agents' stderr) are kept in the temp dir, whose path is printed.
# Settings: TASKS, ROUNDS, LOST_TASKS, RUNS as above; STORE=etcd keeps the controller's state
# in a one-member etcd (Debian's etcd 3.4, started here on loopback, its data on disk) instead
# of SQLite; AGENT_POOLING=auto|on|off passes
# --pooling to the agents (default: none, the agent's default, auto); KEEP=1 keeps the temp dir
# after a run that succeeded too.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "benches/hosts.sh needs root (network namespaces, a bridge)" >&2; exit 1; }
scripts/setup.sh
cargo guests --quiet
cargo build --release --quiet
venv=target/test-venv
[ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import boto3' 2>/dev/null || {
  python3 -m venv "$venv" && "$venv/bin/pip" install --quiet boto3 awscli; }

exe=$PWD/target/release/wasmgate
tmp=$(mktemp -d /tmp/wasmgate-hosts-bench.XXXXXX)
export TASKS=${TASKS:-3000} ROUNDS=${ROUNDS:-5} LOST_TASKS=${LOST_TASKS:-30} RUNS=${RUNS:-200}
export BENCH_TMP=$tmp
tag=$(printf '%x' $$)
bridge=wgb$tag
nss=() veths=() hostips=() made_etc_netns="" made_bridge=""

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  # The controllers first (TERM, then KILL), then the agents, by the pids recorded.
  for f in "$tmp"/controller*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
  for _ in $(seq 50); do
    alive=0
    for f in "$tmp"/controller*.pid; do [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break; sleep 0.1
  done
  for f in "$tmp"/*.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
  # Whatever else runs in our namespaces (only what this script started runs there).
  for ns in "${nss[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
  done
  wait 2>/dev/null
  for veth in "${veths[@]}"; do ip link del "$veth" 2>/dev/null; done
  [ -n "$made_bridge" ] && ip link del "$bridge" 2>/dev/null
  for ns in "${nss[@]}"; do ip netns del "$ns" 2>/dev/null; rm -rf "/etc/netns/$ns"; done
  [ -n "$made_etc_netns" ] && rmdir /etc/netns 2>/dev/null
  if [ "$rc" -ne 0 ]; then
    echo >&2
    echo "== FAILED (exit $rc); logs kept in $tmp" >&2
    for log in "$tmp"/*.err; do
      [ -s "$log" ] || continue
      echo "-- last lines of $log" >&2; tail -n 15 "$log" >&2
    done
  elif [ -n "${KEEP:-}" ]; then
    echo "== logs kept in $tmp (KEEP is set)"
  else
    rm -rf "$tmp"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# The net: a bridge with the controller's address, three namespaces with a veth each.
# A free 10.2xx.y.0/24: one that overlaps no address or route here. (tests/common/hosts.rs's
# nets choose theirs under /run/wasmgate-testnet/.lock: held too, if it is there, until the
# bridge has its address.)
if [ -d /run/wasmgate-testnet ]; then exec 9>>/run/wasmgate-testnet/.lock; flock -w 60 9; fi
subnet=$(python3 - "$$" <<'PY'
import ipaddress, subprocess, sys
types = {'unicast', 'local', 'broadcast', 'multicast', 'anycast', 'unreachable', 'blackhole',
         'prohibit', 'throw', 'nat'}
nets = []
for line in subprocess.run(['ip', '-4', '-o', 'addr', 'show'], capture_output=True, text=True).stdout.splitlines():
    words = line.split()
    if 'inet' in words:
        nets.append(ipaddress.ip_network(words[words.index('inet') + 1], strict=False))
for line in subprocess.run(['ip', '-4', 'route', 'show', 'table', 'all'], capture_output=True, text=True).stdout.splitlines():
    words = line.split()
    if words and words[0] in types:
        words = words[1:]
    try:
        nets.append(ipaddress.ip_network(words[0], strict=False))
    except (ValueError, IndexError):
        pass
count = 55 * 256  # 10.200.0.0/24 .. 10.254.255.0/24
start = int(sys.argv[1]) * 7919 % count
for k in range(count):
    i = (start + k) % count
    ours = ipaddress.ip_network(f'10.{200 + i // 256}.{i % 256}.0/24')
    if not any(ours.overlaps(n) for n in nets):
        print(f'10.{200 + i // 256}.{i % 256}')
        break
else:
    sys.exit('no free /24 in 10.200.0.0-10.254.255.255')
PY
)
controller_ip=$subnet.1
ip link add "$bridge" type bridge forward_delay 0
made_bridge=1
ip addr add "$controller_ip/24" dev "$bridge"
ip link set "$bridge" up
if [ -d /run/wasmgate-testnet ]; then flock -u 9; exec 9>&-; fi
[ -d /etc/netns ] || { mkdir -p /etc/netns; made_etc_netns=1; }
for i in 0 1 2; do
  ns=wgbench-$tag-$i veth=wgv$tag-$i
  hostips+=("$subnet.$((10 + i))")
  ip netns add "$ns"
  nss+=("$ns")
  # No DNS server is reachable from a host: lookups are refused at once instead of waiting
  # (`ip netns exec` mounts this over /etc/resolv.conf).
  mkdir -p "/etc/netns/$ns"
  printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' > "/etc/netns/$ns/resolv.conf"
  ip link add "$veth" type veth peer name eth0 netns "$ns"
  veths+=("$veth")
  ip link set "$veth" master "$bridge" up
  ip -n "$ns" addr add "${hostips[$i]}/24" dev eth0
  ip -n "$ns" link set lo up
  ip -n "$ns" link set eth0 up
  ip -n "$ns" route add default via "$controller_ip"
done
started=$SECONDS
echo "== net: bridge $bridge ($controller_ip/24), hosts ${nss[*]} (${hostips[*]}); logs in $tmp"

# ---------------------------------------------------------------------------------------------
# The controller (no agent of its own) and three agents.
token=$tmp/token
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$token"
wait_for() { # FILE PATTERN SECONDS WHAT
  for _ in $(seq $(($3 * 10))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "timed out after $3 s waiting for $4" >&2; return 1
}
store=sqlite
if [ "${STORE:-sqlite}" = etcd ]; then
  etcd_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  etcd --data-dir "$tmp/etcd" --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$((etcd_port + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((etcd_port + 1))" \
    --initial-cluster "default=http://127.0.0.1:$((etcd_port + 1))" \
    > "$tmp/etcd.out" 2> "$tmp/etcd.err" < /dev/null &
  echo $! > "$tmp/etcd.pid"
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$etcd_port/health" | grep -q '"health":"true"' && break; sleep 0.1; done
  store=etcd://127.0.0.1:$etcd_port/hosts-bench
  echo "== state in $store"
fi
mkdir -p "$tmp/controller"
"$exe" --data-dir "$tmp/controller" server --listen "$controller_ip:0" --gateway off --store "$store" \
  --no-local-agent --agent-token-file "$token" --agent-timeout 2 --agent-lost-after 5 \
  --stopped-task-retention 86400 > "$tmp/controller.out" 2> "$tmp/controller.err" &
echo $! > "$tmp/controller.pid"
wait_for "$tmp/controller.out" '^listening on ' 10 "the controller to listen"
endpoint=$(sed -n 's/^listening on //p' "$tmp/controller.out" | head -n 1)
for i in 0 1 2; do
  mkdir -p "$tmp/agent-$i"
  ip netns exec "${nss[$i]}" "$exe" --data-dir "$tmp/agent-$i" ${AGENT_POOLING:+--pooling "$AGENT_POOLING"} \
    agent --controller "$endpoint" \
    --token-file "$token" --listen "${hostips[$i]}:8082" --name "host-$i" \
    > "$tmp/agent-$i.out" 2>> "$tmp/agent-$i.err" < /dev/null &
  # `ip netns exec` execs the program: this is the agent's own pid. (Disowned: bash says
  # nothing when one is killed.)
  echo $! > "$tmp/agent-$i.pid"; disown $!
done
for i in 0 1 2; do wait_for "$tmp/agent-$i.out" '^joined as ' 30 "agent host-$i to join"; done
echo "== controller $endpoint (pid $(cat "$tmp/controller.pid")), agents joined:" \
  "$(for i in 0 1 2; do printf 'host-%s %s (pid %s)  ' $i "$(sed -n 's/^joined as //p' "$tmp/agent-$i.out")" "$(cat "$tmp/agent-$i.pid")"; done)"

export ENDPOINT=$endpoint EXE=$exe TOKEN_FILE=$token NSS="${nss[*]}" HOST_IPS="${hostips[*]}"
export GRACEFUL=$PWD/guests/target/wasm32-wasip1/release/graceful.wasm
export HELLO=$PWD/guests/target/wasm32-wasip1/release/hello.wasm

cat > "$tmp/bench.py" <<'PY'
import json, os, signal, statistics, subprocess, sys, time, urllib.request
import boto3

env = os.environ
tmp = env['BENCH_TMP']
RESULTS = os.path.join(tmp, 'results.json')


def load():
    try:
        return json.load(open(RESULTS))
    except FileNotFoundError:
        return {}


def save(key, value):
    results = load()
    results[key] = value
    json.dump(results, open(RESULTS, 'w'), indent=1)


def client(endpoint):
    return boto3.client('ecs', endpoint_url=endpoint, region_name='us-east-1',
                        aws_access_key_id='x', aws_secret_access_key='y')


def get_json(endpoint, path):
    with urllib.request.urlopen(endpoint + path, timeout=10) as reply:
        return json.load(reply)


def rss_kib(pid):
    fields = dict(line.split(':', 1) for line in open(f'/proc/{pid}/status'))
    return int(fields['VmRSS'].split()[0]), int(fields['VmHWM'].split()[0])


def host_of(task):
    for attachment in task.get('attachments', []):
        for detail in attachment.get('details', []):
            if detail['name'] == 'wasmgateHostId':
                return detail['value']
    return None


def wait(label, check, timeout, every=0.1):
    """Polls check() -> (done, progress text) every `every` s; prints progress every second."""
    started = shown = time.time()
    while True:
        done, text = check()
        now = time.time()
        if done:
            return now - started
        if now - started > timeout:
            raise SystemExit(f'timed out after {timeout:.0f} s: {label}: {text}')
        if now - shown >= 1:
            shown = now
            print(f'  {label}: {text} ({now - started:.1f} s)', flush=True)
        time.sleep(every)


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def describe_all(ecs, arns):
    tasks = []
    for i in range(0, len(arns), 100):
        tasks += ecs.describe_tasks(tasks=arns[i:i + 100])['tasks']
    return tasks


def service_tasks(ecs, service):
    arns = []
    for page in ecs.get_paginator('list_tasks').paginate(serviceName=service):
        arns += page['taskArns']
    return describe_all(ecs, arns)


def steady(ecs, service, count):
    def check():
        s = ecs.describe_services(services=[service])['services'][0]
        done = (s['runningCount'] == count and s['pendingCount'] == 0
                and len(s['deployments']) == 1)
        return done, f'running {s["runningCount"]}, pending {s["pendingCount"]}, deployments {len(s["deployments"])}'
    return check


def scale_to_zero_and_delete(ecs, service, timeout):
    ecs.update_service(service=service, desiredCount=0)
    def check():
        s = ecs.describe_services(services=[service])['services'][0]
        return (s['runningCount'] == 0 and s['pendingCount'] == 0,
                f'running {s["runningCount"]}, pending {s["pendingCount"]}')
    took = wait(f'{service}: scaling down', check, timeout)
    ecs.delete_service(service=service)
    return took


def warm(ecs, family, want_hosts, until):
    """Runs `family` until every host in want_hosts (or, if None, one task) has run it, so
    that each has the image and the compiled artifact; leaves nothing running."""
    seen, arns = set(), []
    for _ in range(5):
        r = ecs.run_task(taskDefinition=family, count=max(1, len(want_hosts or [0])))
        arns += [t['taskArn'] for t in r['tasks']]
        def check():
            ts = describe_all(ecs, arns)
            return all(t['lastStatus'] in until for t in ts), str(sorted(t['lastStatus'] for t in ts))
        wait(f'warming {family}', check, 60)
        seen |= {host_of(t) for t in describe_all(ecs, arns)}
        if want_hosts is None or seen >= set(want_hosts):
            break
    else:
        print(f'  (warming {family}: only hosts {sorted(seen)} got a task)', flush=True)
    for arn in arns:
        ecs.stop_task(task=arn)
    wait(f'warming {family}: stopping', lambda: (
        all(t['lastStatus'] == 'STOPPED' for t in describe_all(ecs, arns)), ''), 60)


def runtask_latency(ecs, runs, label):
    """RunTask -> RUNNING of `runs` hello tasks: startedAt - createdAt as the server recorded
    them (startedAt is the agent's clock), submitted in calls of 10 as fast as the API answers
    (as runtask.sh does), then one at a time; one at a time, also as a client sees it: from the
    RunTask call until DescribeTasks shows a startedAt."""
    out = {}
    for mode in ('burst', 'serial'):
        arns, failures, seen = [], 0, []
        started = shown = time.time()
        while len(arns) < runs:
            called = time.time()
            r = ecs.run_task(taskDefinition='hello',
                             count=min(10, runs - len(arns)) if mode == 'burst' else 1)
            new = [t['taskArn'] for t in r['tasks']]
            arns += new
            if r['failures']:
                failures += len(r['failures'])
                print('  failures:', r['failures'][:1], flush=True)
                time.sleep(0.05)
            if mode == 'serial' and new:
                while 'startedAt' not in (t := ecs.describe_tasks(tasks=new)['tasks'][0]) \
                        and t['lastStatus'] != 'STOPPED':
                    time.sleep(0.005)
                seen.append((time.time() - called) * 1000)
                while t['lastStatus'] != 'STOPPED':
                    time.sleep(0.02)
                    t = ecs.describe_tasks(tasks=new)['tasks'][0]
            if time.time() - shown >= 1:
                shown = time.time()
                print(f'  {label}, {mode}: submitted {len(arns)}/{runs} ({shown - started:.1f} s)', flush=True)
        def check():
            ts = describe_all(ecs, arns)
            n = sum(t['lastStatus'] == 'STOPPED' for t in ts)
            return n == len(arns), f'{n}/{len(arns)} stopped'
        wait(f'{label}, {mode}: waiting for the tasks to stop', check, 120, every=0.5)
        tasks = describe_all(ecs, arns)
        lat = [(t['startedAt'] - t['createdAt']).total_seconds() * 1000 for t in tasks if 'startedAt' in t]
        ok = sum(1 for t in tasks if t['containers'][0].get('exitCode') == 0)
        hosts = {}
        for t in tasks:
            hosts[host_of(t)] = hosts.get(host_of(t), 0) + 1
        m = out[mode] = {'n': len(tasks), 'ok': ok, 'failures': failures, 'p50': pct(lat, 0.5),
                         'p99': pct(lat, 0.99), 'max': max(lat), 'hosts': len(hosts)}
        text = f'RunTask -> RUNNING p50 {m["p50"]:.1f} ms, p99 {m["p99"]:.1f} ms'
        if seen:
            m['seen_p50'], m['seen_p99'] = pct(seen, 0.5), pct(seen, 0.99)
            text += f'; seen by the client p50 {m["seen_p50"]:.1f} ms, p99 {m["seen_p99"]:.1f} ms'
        print(f'  {label}, {mode}: {len(tasks)} tasks ({ok} exited 0, on {len(hosts)} hosts): {text}', flush=True)
    return out


def agent_pid(i):
    return int(open(os.path.join(tmp, f'agent-{i}.pid')).read())


def start_agent(i):
    """Starts host-i's agent again (same data dir, name and address); returns its id."""
    ns, ip = env['NSS'].split()[i], env['HOST_IPS'].split()[i]
    out = os.path.join(tmp, f'agent-{i}.out')
    proc = subprocess.Popen(
        ['ip', 'netns', 'exec', ns, env['EXE'], '--data-dir', os.path.join(tmp, f'agent-{i}')]
        + (['--pooling', env['AGENT_POOLING']] if env.get('AGENT_POOLING') else [])
        + ['agent', '--controller', env['ENDPOINT'], '--token-file', env['TOKEN_FILE'],
         '--listen', f'{ip}:8082', '--name', f'host-{i}'],
        stdin=subprocess.DEVNULL, stdout=open(out, 'w'),
        stderr=open(os.path.join(tmp, f'agent-{i}.err'), 'a'), start_new_session=True)
    open(os.path.join(tmp, f'agent-{i}.pid'), 'w').write(str(proc.pid))
    def joined():
        text = open(out).read()
        if proc.poll() is not None:
            raise SystemExit(f'agent host-{i} exited ({proc.returncode}) before joining')
        return 'joined as ' in text, 'not yet joined'
    wait(f'host-{i} rejoining', joined, 30)
    return open(out).read().split('joined as ', 1)[1].split()[0]


def remote():
    ecs = client(env['ENDPOINT'])
    controller = int(open(os.path.join(tmp, 'controller.pid')).read())
    hosts = get_json(env['ENDPOINT'], '/v1/hosts')['Hosts']
    ids = {}  # agent index -> host id
    for i in range(3):
        ids[i] = open(os.path.join(tmp, f'agent-{i}.out')).read().split('joined as ', 1)[1].split()[0]
    assert {h['Id'] for h in hosts} == set(ids.values()), hosts
    index_of = {v: k for k, v in ids.items()}
    for i in range(3):
        comm = open(f'/proc/{agent_pid(i)}/comm').read().strip()
        assert comm == 'wasmgate', f'pid {agent_pid(i)} is {comm}, not the agent'

    # c) RunTask latency on the remote agents, first, on a fresh controller (the local one
    # is fresh too).
    print(f'== c) RunTask -> RUNNING, {env["RUNS"]} hello tasks, remote agents', flush=True)
    ecs.register_task_definition(family='hello', memory='16', cpu='1',
                                 containerDefinitions=[{'name': 'hello', 'image': env['HELLO']}])
    warm(ecs, 'hello', list(ids.values()), ('STOPPED',))
    save('runtask_remote', runtask_latency(ecs, int(env['RUNS']), 'remote'))

    # b) Lost hosts, before a): stopped tasks are kept (--stopped-task-retention), and every
    # scheduler pass reads them all; after a) there would be TASKS more of them.
    count, rounds = int(env['LOST_TASKS']), int(env['ROUNDS'])
    print(f'== b) lost host: a service of {count} tasks, kill -9 an agent, {rounds} rounds', flush=True)
    ecs.register_task_definition(family='idle', memory='8',
                                 containerDefinitions=[{'name': 'idle', 'image': env['GRACEFUL']}])
    warm(ecs, 'idle', list(ids.values()), ('RUNNING', 'STOPPED'))
    ecs.create_service(serviceName='lost', taskDefinition='idle', desiredCount=count)
    first_up = wait('lost: scaling up', steady(ecs, 'lost', count), 120)
    b, last_killed = [], {}
    for r in range(rounds):
        tasks = service_tasks(ecs, 'lost')
        on = {i: sum(host_of(t) == ids[i] for t in tasks) for i in range(3)}
        # The host with the most of the tasks; of those, the one killed longest ago.
        victim = max(on, key=lambda i: (on[i], -last_killed.get(i, -1)))
        last_killed[victim] = r
        dead = ids[victim]
        os.kill(agent_pid(victim), signal.SIGKILL)
        killed = time.time()
        marks = {}
        def recovered():
            ts = service_tasks(ecs, 'lost')
            on_dead = sum(host_of(t) == dead for t in ts)
            running = sum(t['lastStatus'] == 'RUNNING' and host_of(t) != dead for t in ts)
            if on_dead == 0 and 'lost' not in marks:
                marks['lost'] = time.time() - killed
            return (len(ts) == count and running == count,
                    f'{running}/{count} running elsewhere, {on_dead} still on host-{victim}')
        took = wait(f'round {r + 1}: host-{victim} killed ({on[victim]} tasks)', recovered, 120)
        b.append({'victim': victim, 'moved': on[victim], 'recovery_s': took,
                  'lost_s': marks.get('lost', took)})
        print(f'round {r + 1}: host-{victim} killed with {on[victim]} of the tasks: all {count} RUNNING '
              f'elsewhere {took:.2f} s after the kill (its tasks gone after {b[-1]["lost_s"]:.2f} s)',
              flush=True)
        # Back (same data dir) before the next round, connected, and the service steady.
        again = start_agent(victim)
        if again != dead:
            print(f'  host-{victim} rejoined as {again}, not {dead}', flush=True)
            ids[victim] = again
            index_of[again] = victim
        wait(f'host-{victim} connected', lambda: (any(
            h['Id'] == ids[victim] and h['AgentConnected']
            for h in get_json(env['ENDPOINT'], '/v1/hosts')['Hosts']), ''), 30)
        wait('lost: steady', steady(ecs, 'lost', count), 60)
    save('lost', {'rounds': b, 'first_up_s': first_up})
    scale_to_zero_and_delete(ecs, 'lost', 60)

    # a) A big service of idle tasks.
    total = int(env['TASKS'])
    print(f'== a) a service of {total} idle tasks on 3 remote hosts', flush=True)
    time.sleep(1)
    idle = {'controller': rss_kib(controller)[0]}
    for i in range(3):
        idle[f'host-{i}'] = rss_kib(agent_pid(i))[0]
    ecs.create_service(serviceName='idle', taskDefinition='idle', desiredCount=total)
    created = time.time()
    launched = {}
    check_steady = steady(ecs, 'idle', total)
    def up_check():
        done, text = check_steady()
        # The service's counts are written at the end of the scheduler pass that launched them.
        if 'launched' not in launched and not text.startswith('running 0, pending 0,'):
            launched['launched'] = time.time() - created
        return done, text
    up = wait('scaling up', up_check, max(120, total / 10))
    rss = {'controller': rss_kib(controller)}
    for i in range(3):
        rss[f'host-{i}'] = rss_kib(agent_pid(i))
    per_host = {index_of[h['Id']]: h['RunningTasks'] for h in get_json(env['ENDPOINT'], '/v1/hosts')['Hosts']}
    a = {'tasks': total, 'up_s': up, 'launched_s': launched.get('launched', up),
         'per_host': [per_host.get(i, 0) for i in range(3)], 'rss': {}}
    print(f'{total} tasks: CreateService -> steady state in {up:.2f} s ({total / up:.0f} tasks/s); '
          f'per host {a["per_host"]}; the service first showed them after {a["launched_s"]:.2f} s')
    for who, (now, peak) in rss.items():
        n = total if who == 'controller' else per_host.get(int(who[-1]), 0)
        per_task = (now - idle[who]) / n if n else 0
        a['rss'][who] = {'mib': now / 1024, 'idle_mib': idle[who] / 1024, 'peak_mib': peak / 1024,
                         'tasks': n, 'kib_per_task': per_task}
        print(f'  {who} RSS: {now / 1024:.0f} MiB (idle {idle[who] / 1024:.0f} MiB, peak '
              f'{peak / 1024:.0f} MiB) holding {n} tasks: {per_task:.0f} KiB per task', flush=True)
    a['down_s'] = scale_to_zero_and_delete(ecs, 'idle', max(120, total / 10))
    print(f'desiredCount 0 -> no task running in {a["down_s"]:.2f} s', flush=True)
    save('service', a)


def local():
    ecs = client(env['LOCAL_ENDPOINT'])
    print(f'== c) RunTask -> RUNNING, {env["RUNS"]} hello tasks, local agent', flush=True)
    ecs.register_task_definition(family='hello', memory='16', cpu='1',
                                 containerDefinitions=[{'name': 'hello', 'image': env['HELLO']}])
    warm(ecs, 'hello', None, ('STOPPED',))
    save('runtask_local', runtask_latency(ecs, int(env['RUNS']), 'local'))


def summary():
    r = load()
    a, lost = r.get('service'), r.get('lost')
    b = lost and lost['rounds']
    print()
    print('== summary: wasmgate on 3 hosts (network namespaces on a bridge, one machine, '
          f'{os.cpu_count()} cores); controller --no-local-agent --agent-timeout 2 --agent-lost-after 5, '
          f'state in {env.get("STORE") or "sqlite"}')
    if a:
        print(f'a) service of {a["tasks"]} idle tasks (graceful.wasm, memory 8): CreateService -> steady '
              f'{a["up_s"]:.2f} s ({a["tasks"] / a["up_s"]:.0f} tasks/s), per host {a["per_host"]}; '
              f'desiredCount 0 -> stopped {a["down_s"]:.2f} s')
        print(f'   (DescribeServices showed no task, running or pending, for the first {a["launched_s"]:.2f} s: '
              f'the scheduler pass that launches them all)')
        for who, m in a['rss'].items():
            print(f'   {who + " RSS":<16} {m["mib"]:6.0f} MiB (idle {m["idle_mib"]:.0f}, peak {m["peak_mib"]:.0f}) '
                  f'for {m["tasks"]} tasks: {m["kib_per_task"]:.0f} KiB per task')
    if b:
        rec = [x['recovery_s'] for x in b]
        gone = [x['lost_s'] for x in b]
        after = [x['recovery_s'] - x['lost_s'] for x in b]
        print(f'b) lost host ({len(b)} rounds, kill -9 the agent with the most of a {env["LOST_TASKS"]}-task service):'
              f' recovery p50 {pct(rec, 0.5):.2f} s, p99 {pct(rec, 0.99):.2f} s (max; includes the 5 s '
              f'--agent-lost-after)')
        print(f'   kill -> its tasks recorded STOPPED: p50 {pct(gone, 0.5):.2f} s, max {max(gone):.2f} s; '
              f'then -> replacements RUNNING: p50 {pct(after, 0.5):.2f} s, max {max(after):.2f} s')
        print('   rounds: ' + ', '.join(f'host-{x["victim"]} {x["moved"]} tasks {x["recovery_s"]:.2f} s' for x in b))
        print(f'   (the {env["LOST_TASKS"]}-task service reached its first steady state in {lost["first_up_s"]:.2f} s)')
    rem, loc = r.get('runtask_remote'), r.get('runtask_local')
    if rem or loc:
        print(f'c) RunTask -> RUNNING, {env["RUNS"]} hello tasks each (startedAt - createdAt as recorded, '
              'but for the last row):')
        print(f'   {"":34} {"remote agents (3 hosts)":>26}   {"local agent (127.0.0.1)":>26}')
        for mode, label in (('burst', 'in RunTask calls of 10, no wait'), ('serial', 'one at a time')):
            cells = []
            for side in (rem, loc):
                m = (side or {}).get(mode)
                cells.append(f'p50 {m["p50"]:6.1f} ms, p99 {m["p99"]:6.1f} ms' if m else 'n/a')
            print(f'   {label:<34} {cells[0]:>26}   {cells[1]:>26}')
        cells = []
        for side in (rem, loc):
            m = (side or {}).get('serial')
            cells.append(f'p50 {m["seen_p50"]:6.1f} ms, p99 {m["seen_p99"]:6.1f} ms' if m and 'seen_p50' in m else 'n/a')
        print(f'   {"one at a time, seen by the client":<34} {cells[0]:>26}   {cells[1]:>26}')
        print(f'   (agents: --pooling {env.get("AGENT_POOLING") or "auto, the agent default"}; '
              'the local agent: the server default, auto)')
        for name, side in (('remote', rem), ('local', loc)):
            for mode, m in (side or {}).items():
                if m['ok'] != m['n'] or m['failures']:
                    print(f'   note: {name} {mode}: {m["ok"]}/{m["n"]} exited 0, {m["failures"]} RunTask failures')


{'remote': remote, 'local': local, 'summary': summary}[sys.argv[1]]()
PY

py=$venv/bin/python
"$py" "$tmp/bench.py" remote

# The remote setup goes (so that it does not share the CPUs), then the local controller.
for f in "$tmp"/agent-*.pid; do kill -9 "$(cat "$f")" 2>/dev/null || true; done
kill "$(cat "$tmp/controller.pid")" 2>/dev/null || true
for _ in $(seq 50); do kill -0 "$(cat "$tmp/controller.pid")" 2>/dev/null || break; sleep 0.1; done
mkdir -p "$tmp/local"
"$exe" --data-dir "$tmp/local" server --listen 127.0.0.1:0 --gateway off \
  --stopped-task-retention 86400 > "$tmp/controller-local.out" 2> "$tmp/controller-local.err" &
echo $! > "$tmp/controller-local.pid"
wait_for "$tmp/controller-local.out" '^listening on ' 10 "the local controller to listen"
LOCAL_ENDPOINT=$(sed -n 's/^listening on //p' "$tmp/controller-local.out" | head -n 1) \
  "$py" "$tmp/bench.py" local

"$py" "$tmp/bench.py" summary
echo "   (measurements took $((SECONDS - started)) s; TASKS=$TASKS ROUNDS=$ROUNDS LOST_TASKS=$LOST_TASKS RUNS=$RUNS)"
for log in "$tmp"/*.err; do
  n=$(grep -c -E ' (WARN|ERROR) ' "$log" || true)
  [ "$n" -eq 0 ] || echo "   $(basename "$log"): $n WARN/ERROR lines, e.g.: $(grep -m1 -E ' (WARN|ERROR) ' "$log" | cut -c1-200)"
done
