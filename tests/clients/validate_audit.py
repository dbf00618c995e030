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
    for e in validator.iter_errors(json.loads(line)):
        errors.append(f"line {i + 1}: {'/'.join(map(str, e.absolute_path))}: {e.message}")
if errors:
    print("\n".join(errors[:20]))
    sys.exit(1)
print(f"ok {n}")
