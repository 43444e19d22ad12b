#!/usr/bin/env python3
"""Writes src/api/ecs_enums.json from botocore's ECS model: for every operation, each request
member whose type is an enum, by path (`status`, `include[]`, `settings[].name`), with its
values. The API checks every request against it (`api::enums`), so a value outside ECS's enum
is refused with the member named, as ECS does.

Run with a Python that has botocore (scripts/api-coverage.sh makes one in target/test-venv):
    target/test-venv/bin/python scripts/gen-ecs-enums.py
"""
import json, os, sys
import botocore, botocore.session

model = botocore.session.get_session().get_service_model('ecs')
out = {'botocore': botocore.__version__, 'operations': {}}


def walk(shape, path, found, depth):
    if depth > 8:
        return
    if shape.type_name == 'string' and shape.enum:
        found.append([path, list(shape.enum)])
    elif shape.type_name == 'structure':
        for name, member in shape.members.items():
            walk(member, f'{path}.{name}' if path else name, found, depth + 1)
    elif shape.type_name == 'list':
        walk(shape.member, f'{path}[]', found, depth + 1)
    elif shape.type_name == 'map':
        walk(shape.value, f'{path}{{}}', found, depth + 1)


for name in sorted(model.operation_names):
    op = model.operation_model(name)
    found = []
    if op.input_shape is not None:
        walk(op.input_shape, '', found, 0)
    if found:
        out['operations'][name] = found

target = os.path.join(os.path.dirname(__file__), '..', 'src', 'api', 'ecs_enums.json')
with open(target, 'w') as f:
    json.dump(out, f, indent=0, sort_keys=True)
    f.write('\n')
print(f"{target}: {sum(len(v) for v in out['operations'].values())} enum members in "
      f"{len(out['operations'])} operations (botocore {botocore.__version__})", file=sys.stderr)
