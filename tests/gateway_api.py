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


@functools.cache
def _validator():
    import jsonschema

    schema = json.loads(SCHEMA_FILE.read_text())["schema"]
    return jsonschema.Draft7Validator(schema)


def validate_httproute(route: dict) -> None:
    """Raise ``jsonschema.ValidationError`` naming the first problem of ``route`` (an HTTPRoute as sent to the API server)."""
    assert (route["apiVersion"], route["kind"]) == ("gateway.networking.k8s.io/v1", "HTTPRoute"), route
    assert route["metadata"]["name"], route["metadata"]
    assert route["metadata"]["namespace"], route["metadata"]
    body = {key: value for key, value in route.items() if key != "status"}
    _validator().validate(body)
