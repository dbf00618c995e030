#!/usr/bin/env python3
"""Validates every line of an audit log against docs/audit.schema.json (JSON Schema 2020-12).
Prints `ok N` or the first errors and exits 1."""
import json
import sys

import jsonschema

schema_path, log_path = sys.argv[1], sys.argv[2]
schema = json.load(open(schema_path))
validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
errors = []
n = 0
for i, line in enumerate(open(log_path)):
    n += 1
    record = json.loads(line)
    # Each kind of record against its own definition: errors then name the member at fault
    # (the top-level `oneOf` would only say "not valid under any").
    kind = record.get("record") if isinstance(record, dict) else None
    if kind in schema.get("$defs", {}):
        one = dict(schema)
        one.pop("oneOf", None)
        one["$ref"] = f"#/$defs/{kind}"
        found = jsonschema.Draft202012Validator(one, format_checker=jsonschema.FormatChecker()).iter_errors(record)
    else:
        found = validator.iter_errors(record)
    for e in found:
        errors.append(f"line {i + 1}: {'/'.join(map(str, e.absolute_path))}: {e.message}")
if errors:
    print("\n".join(errors[:20]))
    sys.exit(1)
print(f"ok {n}")
