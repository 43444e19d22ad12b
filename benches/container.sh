#!/usr/bin/env bash
# Container tasks: wasmgate running a busybox image's `true` through the ECS API, with awsvpc
# (the task's own network namespace wired by the CNI plugins) and with host networking, beside a
# bare `runc run` of the same root filesystem, in one run, tries alternating (root needed, as for
# runc itself). Both are measured the same way, by one Python client on one clock: from just
# before it asks (the RunTask call; spawning `runc run`) to the moment it knows the container
# exited (the first DescribeTasks, polled back to back over plain HTTP, that shows its exit
# code; `runc run` returning). wasmgate's figure thus also holds the API calls and the agent's
# bookkeeping; the image's root is unpacked once, before the tries.
# Also printed, for information only: RunTask -> RUNNING from the server's own timestamps
# (startedAt - createdAt), which has no runc counterpart.
# p50 and p99 over TRIES each (default 50), and the ratios. Target: within 1.5x of bare runc.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --quiet

data=$(mktemp -d)
server=""
cleanup() {
  [ -n "$server" ] && { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; }
  rm -rf "$data"
  ip link del wgbench0 2>/dev/null || true
  iptables -w -t nat -D POSTROUTING -s 10.183.255.0/24 ! -d 10.183.255.0/24 \
    -m comment --comment "wasmgate tasks 10.183.255.0/24" -j MASQUERADE 2>/dev/null || true
}
trap cleanup EXIT

# A busybox OCI image layout: one gzip layer, an OCI config, a manifest, index.json.
python3 - "$data/image" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile
out = sys.argv[1]
os.makedirs(f'{out}/blobs/sha256')
def blob(data):
    digest = hashlib.sha256(data).hexdigest()
    open(f'{out}/blobs/sha256/{digest}', 'wb').write(data)
    return f'sha256:{digest}', len(data)
raw = io.BytesIO()
with tarfile.open(fileobj=raw, mode='w') as tar:
    for d, mode in [('bin', 0o755), ('tmp', 0o1777), ('etc', 0o755)]:
        info = tarfile.TarInfo(d); info.type = tarfile.DIRTYPE; info.mode = mode; tar.addfile(info)
    tar.add('/bin/busybox', 'bin/busybox')
    for applet in ['sh', 'true', 'echo']:
        info = tarfile.TarInfo(f'bin/{applet}'); info.type = tarfile.SYMTYPE; info.linkname = 'busybox'; tar.addfile(info)
layer = gzip.compress(raw.getvalue())
layer_digest, layer_size = blob(layer)
config = json.dumps({'architecture': 'amd64', 'os': 'linux', 'config': {'Cmd': ['true'], 'Env': ['PATH=/bin']},
                     'rootfs': {'type': 'layers', 'diff_ids': ['sha256:' + hashlib.sha256(raw.getvalue()).hexdigest()]}}).encode()
config_digest, config_size = blob(config)
manifest = json.dumps({'schemaVersion': 2, 'mediaType': 'application/vnd.oci.image.manifest.v1+json',
    'config': {'mediaType': 'application/vnd.oci.image.config.v1+json', 'digest': config_digest, 'size': config_size},
    'layers': [{'mediaType': 'application/vnd.oci.image.layer.v1.tar+gzip', 'digest': layer_digest, 'size': layer_size}]}).encode()
manifest_digest, manifest_size = blob(manifest)
json.dump({'schemaVersion': 2, 'manifests': [{'mediaType': 'application/vnd.oci.image.manifest.v1+json',
    'digest': manifest_digest, 'size': manifest_size, 'annotations': {'org.opencontainers.image.ref.name': 'latest'}}]},
    open(f'{out}/index.json', 'w'))
open(f'{out}/oci-layout', 'w').write('{"imageLayoutVersion": "1.0.0"}')
PY

# A task subnet and bridge of the bench's own.
target/release/wasmgate --data-dir "$data/wg" server --listen 127.0.0.1:0 --gateway off \
  --task-subnet 10.183.255.0/24 --task-bridge wgbench0 >"$data/out" 2>"$data/err" &
server=$!
for _ in $(seq 100); do grep -q listening "$data/out" && break; sleep 0.1; done
endpoint=$(sed -n 's/^listening on //p' "$data/out")

bundle="$data/bundle"
mkdir -p "$bundle"
(cd "$bundle" && runc spec)

echo "== wasmgate RunTask (awsvpc, host) and bare runc run of busybox true, ${TRIES:-50} times each, alternating"
python3 - "$endpoint" "oci:$data/image:latest" "${TRIES:-50}" "$bundle" "$data/wg/containers/rootfs" <<'PY'
import glob, http.client, json, subprocess, sys, time, urllib.parse
endpoint, image, tries, bundle, rootfs_dir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
url = urllib.parse.urlparse(endpoint)
api = http.client.HTTPConnection(url.hostname, url.port)
def call(action, body):
    # The server checks no signatures without --credentials: plain JSON 1.1 calls, the least
    # client time per call.
    api.request('POST', '/', json.dumps(body), {
        'X-Amz-Target': 'AmazonEC2ContainerServiceV20141113.' + action,
        'Content-Type': 'application/x-amz-json-1.1'})
    answer = api.getresponse()
    data = json.loads(answer.read())
    assert answer.status == 200, data
    return data
for mode in ['awsvpc', 'host']:
    call('RegisterTaskDefinition', {'family': mode, 'memory': '64', 'networkMode': mode,
         'containerDefinitions': [{'name': 'box', 'image': image}]})
def wasmgate_once(mode):
    started = time.perf_counter()
    arn = call('RunTask', {'taskDefinition': mode})['tasks'][0]['taskArn']
    while True:
        t = call('DescribeTasks', {'tasks': [arn]})['tasks'][0]
        if 'exitCode' in t['containers'][0]:
            took = (time.perf_counter() - started) * 1000
            assert t['containers'][0]['exitCode'] == 0, t
            break
    while t['lastStatus'] != 'STOPPED':  # not timed: let it finish before the next try
        time.sleep(0.005)
        t = call('DescribeTasks', {'tasks': [arn]})['tasks'][0]
    return took, (t['startedAt'] - t['createdAt']) * 1000
wasmgate_once('host')  # unpacks the image's root
wasmgate_once('awsvpc')  # makes the task bridge
rootfs = glob.glob(rootfs_dir + '/*/tree')[0]
config = json.load(open(bundle + '/config.json'))
config['process']['terminal'] = False
config['process']['args'] = ['true']
config['root'] = {'path': rootfs, 'readonly': True}
json.dump(config, open(bundle + '/config.json', 'w'))
def runc_once(i):
    started = time.perf_counter()
    subprocess.run(['runc', '--root', bundle + '/state', 'run', '--bundle', bundle, f'bench-{i}'],
                   check=True, stdin=subprocess.DEVNULL)
    return (time.perf_counter() - started) * 1000
runc_once(0)
ours = {'awsvpc': [], 'host': []}
running = {'awsvpc': [], 'host': []}
bare = []
for i in range(1, tries + 1):
    for mode in ours:
        took, to_running = wasmgate_once(mode)
        ours[mode].append(took)
        running[mode].append(to_running)
    bare.append(runc_once(i))
pick = lambda xs, q: sorted(xs)[min(len(xs) - 1, int(q * len(xs)))]
for mode, times in ours.items():
    print(f'wasmgate {mode:6} RunTask -> client sees the exit: p50 {pick(times, .5):.1f} ms, p99 {pick(times, .99):.1f} ms'
          f'  ratio to bare runc: p50 {pick(times, .5)/pick(bare, .5):.2f}x, p99 {pick(times, .99)/pick(bare, .99):.2f}x')
print(f'bare runc run true (spawn -> exit):            p50 {pick(bare, .5):.1f} ms, p99 {pick(bare, .99):.1f} ms')
for mode, times in running.items():
    print(f'(information) {mode:6} RunTask -> RUNNING, server timestamps: p50 {pick(times, .5):.1f} ms, p99 {pick(times, .99):.1f} ms')
PY
