"""Schemathesis hooks: EC2 XML responses are read with botocore's own EC2 parser.

The `text/xml` response schemas in spec/ec2-query.yaml describe what boto3 users get (member
names, typed values); this deserializer turns each response into exactly that, so schemathesis'
response_schema_conformance check means something. Importing this module registers it (also
usable as `SCHEMATHESIS_HOOKS=tests.contract.st_hooks st run ...`).
"""

from __future__ import annotations

from typing import Any

import botocore.session
import schemathesis
from botocore.parsers import EC2QueryParser

_MODEL = botocore.session.get_session().get_service_model("ec2")
# Operations that answer another action's document (non-AWS econe actions).
_ALIASES = {"UploadImage": "RegisterImage"}


def parse_ec2_xml(action: str, status: int, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """What boto3 makes of a response; raises if it is not EC2 XML botocore can read."""
    op = _MODEL.operation_model(_ALIASES.get(action, action))
    parser = EC2QueryParser(timestamp_parser=lambda value: value, blob_parser=lambda value: value)
    if b"<" not in body:
        raise ValueError(f"not XML: {body[:80]!r}")
    parsed = parser.parse(
        {"body": body, "headers": headers, "status_code": status}, op.output_shape
    )
    parsed.pop("ResponseMetadata", None)
    if status >= 300 and "Error" not in parsed:
        raise ValueError("error status without an EC2 error document")
    return parsed


@schemathesis.deserializer("text/xml")
def deserialize_ec2_xml(ctx: Any, response: Any) -> dict[str, Any]:
    action = ctx.operation.definition.raw.get("operationId") or ctx.operation.path.strip("/")
    return parse_ec2_xml(action, response.status_code, response.content, dict(response.headers))
