"""Validates powernode's OpenAPI document with openapi-spec-validator, then
validates real answers of the server against the document's own schemas.

Usage: openapi_check.py DOC.json CASES.json

CASES.json is a list of {"action", "status", "body"}: what the server really
answered. Each body is validated (JSON Schema 2020-12, python-jsonschema)
against the schema of that action's response for that status. The check is
strict: an object answered with a field the document does not describe is
refused (every object schema gets unevaluatedProperties: false), so the
document cannot drift from the answers. Exits non-zero on the first problem.
"""

import copy
import json
import sys

import jsonschema
from openapi_spec_validator import validate
from importlib.metadata import version


def strict(node):
    """Adds unevaluatedProperties: false to every object schema with
    properties and no say on extra ones."""
    if isinstance(node, dict):
        for value in node.values():
            strict(value)
        if (
            isinstance(node.get("properties"), dict)
            and "additionalProperties" not in node
            and "unevaluatedProperties" not in node
            and node.get("type") in ("object", ["object"], None)
            and "allOf" not in node
        ):
            node["unevaluatedProperties"] = False
    elif isinstance(node, list):
        for value in node:
            strict(value)


def main():
    doc = json.load(open(sys.argv[1]))
    cases = json.load(open(sys.argv[2]))
    validate(doc)
    print(
        f"openapi-spec-validator {version('openapi-spec-validator')}: "
        f"valid OpenAPI {doc['openapi']} document, {len(doc['paths'])} paths, "
        f"{len(doc['components']['schemas'])} component schemas"
    )
    components = copy.deepcopy(doc["components"])
    strict(components["schemas"])
    for case in cases:
        action, status, body = case["action"], str(case["status"]), case["body"]
        path = "/v1/actions/" + action
        responses = doc["paths"][path]["post"]["responses"]
        if status not in responses:
            sys.exit(f"{action}: the document has no {status} response (it has {sorted(responses)})")
        schema = copy.deepcopy(responses[status]["content"]["application/json"]["schema"])
        if status == "200":
            # The error bodies narrow ErrorBody's code with an allOf
            # overlay: only ErrorBody itself (strict above) says no to more.
            strict(schema)
        root = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "allOf": [schema],
            "components": components,
        }
        validator = jsonschema.Draft202012Validator(root)
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
        if errors:
            for e in errors[:5]:
                print(f"{action} {status}: at {'/'.join(map(str, e.absolute_path)) or '.'}: {e.message}")
            sys.exit(f"{action} {status}: the answer does not match the document's schema")
        print(f"{action} {status}: the answer matches the document")


if __name__ == "__main__":
    main()
