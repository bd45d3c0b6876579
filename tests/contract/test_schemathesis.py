"""Schemathesis over every operation of spec/ec2-query.yaml, in-process, fixed seed.

Positive and negative cases against the virtual JSON routes of the full app (real engine and
mappings over onesim); the members naming objects (ImageId, InstanceId, VolumeId…) are pinned
to demo objects made before the run (conftest.contract_objects), so success paths run too. Every response must be EC2 XML that botocore parses into something the
operation's response schema accepts; no 5xx, and no ChangeMadeAnswerFailed. Actions without a mapping yet answer
InvalidAction (400) and still pass.
"""

from __future__ import annotations

import re

import pytest
import schemathesis  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from . import st_hooks  # noqa: E402,F401  (registers the text/xml deserializer)
from .conftest import OBJECTS, contract_spec  # noqa: E402

# ids pinned to the demo objects conftest.contract_objects makes before the run
schema = schemathesis.openapi.from_dict(contract_spec(OBJECTS))


@schemathesis.check
def not_a_failed_answer(ctx, response, case):
    """A write's answer that failed after the change (a mapping's output or after-hook bug) is
    a 4xx for the SDKs' sake (no retry of a done write), but a bug all the same."""
    assert b"<Code>ChangeMadeAnswerFailed</Code>" not in response.content, response.text


CHECKS = [
    not_a_server_error,
    not_a_failed_answer,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture
def app(contract_app, contract_objects):
    assert contract_objects == OBJECTS  # the ids the cases name exist
    return contract_app


@schema.parametrize()
@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation(app, case):
    response = case.call_and_validate(base_url="http://econe.test", app=app, checks=CHECKS)
    if case.operation.path == "/RunInstances" and response.status_code == 200:
        terminate(app, response.content)


def terminate(app, xml: bytes) -> None:
    """Give the demo cloud its capacity back (the run exercises shapes, not quotas)."""
    ids = sorted(set(re.findall(rb"<instanceId>(i-[0-9a-f]+)</instanceId>", xml)))
    if ids:
        with app.test_client() as client:
            client.post("/TerminateInstances", json={"InstanceId": [i.decode() for i in ids]})
