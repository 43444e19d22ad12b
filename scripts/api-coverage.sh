#!/usr/bin/env bash
# How much of the ECS API wasmgate answers, from botocore's ECS model: starts a real
# `wasmgate server` (debug build) on loopback, calls every operation of the model through boto3
# with an empty request, and sorts the answers:
#   implemented     - the operation ran (or refused the empty request as ECS would: a
#                     validation or not-found error)
#   not applicable  - UnsupportedFeatureException, with the reason wasmgate gives
#   missing         - UnknownOperationException
# Prints one line per operation with `-v`, and the three counts.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet
venv=target/test-venv
[ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import boto3' 2>/dev/null || {
  python3 -m venv "$venv" && "$venv/bin/pip" install --quiet boto3 awscli; }

data=$(mktemp -d)
target/debug/wasmgate --data-dir "$data" server --listen 127.0.0.1:0 --gateway off --no-local-agent \
  > "$data/out" 2> "$data/err" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 100); do grep -q listening "$data/out" && break; sleep 0.1; done
endpoint=$(sed -n 's/^listening on //p' "$data/out")

"$venv/bin/python" - "$endpoint" "${1:-}" <<'PY'
import sys, boto3, botocore
from botocore.config import Config
endpoint, verbose = sys.argv[1], sys.argv[2] == '-v'
session = boto3.session.Session()
ecs = session.client('ecs', endpoint_url=endpoint, region_name='us-east-1',
                     aws_access_key_id='x', aws_secret_access_key='y',
                     config=Config(parameter_validation=False, retries={'max_attempts': 1}))
model = ecs.meta.service_model
counts = {'implemented': 0, 'not applicable': 0, 'missing': 0}
for name in sorted(model.operation_names):
    method = getattr(ecs, botocore.xform_name(name))
    try:
        method()
        verdict, why = 'implemented', ''
    except botocore.exceptions.ClientError as error:
        code = error.response['Error'].get('Code', '')
        message = error.response['Error'].get('Message', '')
        if code == 'UnknownOperationException':
            verdict, why = 'missing', ''
        elif code == 'UnsupportedFeatureException':
            verdict, why = 'not applicable', message
        else:
            verdict, why = 'implemented', f'{code}: {message}'
    counts[verdict] += 1
    if verbose:
        print(f'{name:40} {verdict:15} {why[:100]}')
total = sum(counts.values())
print(f"botocore {botocore.__version__}: {total} ECS operations: "
      f"{counts['implemented']} implemented, {counts['not applicable']} not applicable, "
      f"{counts['missing']} missing")
PY
