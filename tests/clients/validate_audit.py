#!/usr/bin/env python3
"""Validates every line of an audit log against docs/audit.schema.json (JSON Schema 2020-12).
Prints `ok N` or the first errors and exits 1."""
import json
import sys

import jsonschema

schema_path, log_path = sys.argv[1], sys.argv[2]
schema = json.load(open(schema_path))
validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
# One validator per kind of line (`record`: request, checkpoint, ...), so that an error names
# the member at fault rather than "not valid under any of the given schemas".
by_record = {}
for kind, d in schema.get("$defs", {}).items():
    if "record" not in d.get("properties", {}):
        continue
    one = {k: v for k, v in schema.items() if k != "oneOf"}
    one["$ref"] = f"#/$defs/{kind}"
    by_record[kind] = jsonschema.Draft202012Validator(one, format_checker=jsonschema.FormatChecker())
errors = []
n = 0
for i, line in enumerate(open(log_path)):
    n += 1
    obj = json.loads(line)
    kind = obj.get("record") if isinstance(obj, dict) else None
    v = by_record.get(kind, validator) if isinstance(kind, str) else validator
    for e in v.iter_errors(obj):
        errors.append(f"line {i + 1}: {'/'.join(map(str, e.absolute_path))}: {e.message}")
if errors:
    print("\n".join(errors[:20]))
    sys.exit(1)
print(f"ok {n}")
