#!/usr/bin/env python3
"""Writes fuzz/corpus/task_definition seeds: the task definitions the
end-to-end tests register (module-level ones), the README's example and
the source document's example, as RegisterTaskDefinition bodies."""
import glob
import hashlib
import importlib.util
import json
import os
import re
import sys

out = sys.argv[1] if len(sys.argv) > 1 else "fuzz/corpus/task_definition"
os.makedirs(out, exist_ok=True)
found = []


def walk(v):
    if isinstance(v, dict):
        if "containerDefinitions" in v:
            found.append(v)
        for x in v.values():
            walk(x)
    elif isinstance(v, (list, tuple)):
        for x in v:
            walk(x)


sys.path.insert(0, "tests/e2e")
for path in sorted(glob.glob("tests/e2e/test_*.py")):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except Exception as e:  # a module that needs a server at import: skip it
        print(f"skipping {path}: {e}", file=sys.stderr)
        continue
    for name, v in vars(mod).items():
        if not name.startswith("__"):
            walk(v)

found.append(json.load(open("examples/fargate-task-definition.json")))
doc = open("/work/shared/seed/fargate-ephemeral-storage-encryption.txt").read() \
    if os.path.exists("/work/shared/seed/fargate-ephemeral-storage-encryption.txt") else ""
for m in re.finditer(r"\{\s*\"family\".*?\n\}", doc, re.S):
    try:
        found.append(json.loads(m.group(0)))
    except ValueError:
        pass

for td in found:
    data = json.dumps(td, separators=(",", ":")).encode()
    with open(os.path.join(out, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)
print(f"{len(found)} task definitions", file=sys.stderr)
