"""The Gateway API's HTTPRoute schema (v1.6.1, standard channel; vendored in tests/schemas), to validate the routes we write.

The CRD's OpenAPI v3 schema checks types, required fields, enums, patterns and bounds (a weight
within 0..1,000,000, at most 16 backends); its CEL rules (``x-kubernetes-validations``) are
left to a real API server.
"""

from __future__ import annotations

import functools
import json

from helpers import REPO_ROOT

SCHEMA_FILE = REPO_ROOT / "tests" / "schemas" / "gateway-api-v1.6.1-httproute.json"


def _closed(schema):
    """The schema with unknown fields refused, as the API server prunes or refuses them (a misspelled field would pass otherwise)."""
    if isinstance(schema, dict):
        schema = {key: _closed(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [_closed(item) for item in schema]
    return schema


@functools.cache
def _validator():
    import jsonschema

    schema = _closed(json.loads(SCHEMA_FILE.read_text())["schema"])
    return jsonschema.Draft7Validator(schema)


def validate_httproute(route: dict) -> None:
    """Raise ``jsonschema.ValidationError`` naming the first problem of ``route`` (an HTTPRoute as sent to the API server)."""
    assert (route["apiVersion"], route["kind"]) == ("gateway.networking.k8s.io/v1", "HTTPRoute"), route
    assert route["metadata"]["name"], route["metadata"]
    assert route["metadata"]["namespace"], route["metadata"]
    body = {key: value for key, value in route.items() if key != "status"}
    _validator().validate(body)
