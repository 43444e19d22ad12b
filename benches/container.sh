#!/usr/bin/env bash
# Container tasks: wasmgate running a busybox image's `true` through the ECS API, beside a bare
# `runc run` of the same root filesystem, in one run (root needed, as for runc itself):
#   - wasmgate: RunTask → RUNNING and RunTask → exited (server timestamps: startedAt − createdAt,
#     executionStoppedAt − createdAt), the image's root already unpacked;
#   - peer: `runc run` of `true` in a bundle with the same root (wall time of the process).
# p50 and p99 over TRIES each, and the ratio. Target: within 1.5x of bare runc.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --quiet
venv=target/test-venv
[ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import boto3' 2>/dev/null || {
  python3 -m venv "$venv" && "$venv/bin/pip" install --quiet boto3 awscli; }

data=$(mktemp -d)
server=""
cleanup() { [ -n "$server" ] && { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; }; rm -rf "$data"; }
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

target/release/wasmgate --data-dir "$data/wg" server --listen 127.0.0.1:0 --gateway off \
  >"$data/out" 2>"$data/err" &
server=$!
for _ in $(seq 100); do grep -q listening "$data/out" && break; sleep 0.1; done
endpoint=$(sed -n 's/^listening on //p' "$data/out")

echo "== wasmgate: RunTask of busybox true, ${TRIES:-50} times"
"$venv/bin/python" - "$endpoint" "oci:$data/image:latest" "${TRIES:-50}" <<'PY'
import sys, time, boto3
endpoint, image, tries = sys.argv[1], sys.argv[2], int(sys.argv[3])
ecs = boto3.client('ecs', endpoint_url=endpoint, region_name='us-east-1',
                   aws_access_key_id='x', aws_secret_access_key='y')
ecs.register_task_definition(family='box', memory='64',
                             containerDefinitions=[{'name': 'box', 'image': image}])
def run_once():
    arn = ecs.run_task(taskDefinition='box')['tasks'][0]['taskArn']
    while True:
        t = ecs.describe_tasks(tasks=[arn])['tasks'][0]
        if t['lastStatus'] == 'STOPPED':
            return t
        time.sleep(0.01)
first = run_once()  # unpacks the image's root
assert first['containers'][0].get('exitCode') == 0, first
running, exited = [], []
for i in range(tries):
    t = run_once()
    assert t['containers'][0].get('exitCode') == 0, t
    running.append((t['startedAt'] - t['createdAt']).total_seconds() * 1000)
    exited.append((t['executionStoppedAt'] - t['createdAt']).total_seconds() * 1000)
pick = lambda xs, q: sorted(xs)[min(len(xs) - 1, int(q * len(xs)))]
print(f'RunTask -> RUNNING: p50 {pick(running, .5):.1f} ms, p99 {pick(running, .99):.1f} ms')
print(f'RunTask -> exited:  p50 {pick(exited, .5):.1f} ms, p99 {pick(exited, .99):.1f} ms')
open('/tmp/wasmgate-container-bench', 'w').write(f'{pick(exited, .5)} {pick(exited, .99)}')
PY

echo "== bare runc run of the same root, ${TRIES:-50} times"
rootfs=$(ls -d "$data"/wg/containers/rootfs/*/tree | head -1)
bundle="$data/bundle"
mkdir -p "$bundle"
(cd "$bundle" && runc spec)
python3 - "$bundle/config.json" "$rootfs" <<'PY'
import json, sys
path, rootfs = sys.argv[1], sys.argv[2]
c = json.load(open(path))
c['process']['terminal'] = False
c['process']['args'] = ['true']
c['root'] = {'path': rootfs, 'readonly': True}
json.dump(c, open(path, 'w'))
PY
python3 - "$bundle" "${TRIES:-50}" <<'PY'
import subprocess, sys, time
bundle, tries = sys.argv[1], int(sys.argv[2])
times = []
for i in range(tries + 1):
    started = time.perf_counter()
    subprocess.run(['runc', '--root', bundle + '/state', 'run', '--bundle', bundle, f'bench-{i}'],
                   check=True, stdin=subprocess.DEVNULL)
    if i:
        times.append((time.perf_counter() - started) * 1000)
times.sort()
pick = lambda q: times[min(len(times) - 1, int(q * len(times)))]
p50, p99 = pick(.5), pick(.99)
print(f'runc run true:      p50 {p50:.1f} ms, p99 {p99:.1f} ms')
ours = [float(x) for x in open('/tmp/wasmgate-container-bench').read().split()]
print(f'wasmgate RunTask -> exited / bare runc run: p50 {ours[0]/p50:.2f}x, p99 {ours[1]/p99:.2f}x')
PY
