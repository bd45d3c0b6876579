"""The EC2 wire format end to end: schemathesis' positive bodies, flattened the way botocore
flattens them, signed with SigV4 as the demo user, POSTed to `/` of the full app (real
authenticator, real engine, onesim). Checks the codec round trip and that every answer is EC2
XML botocore parses. Skipped until the authenticator lands (econe.auth.authenticator).
"""

from __future__ import annotations

import hashlib
import re
import warnings
from typing import Any
from urllib.parse import urlencode

import pytest
import schemathesis  # noqa: E402
from botocore.auth import SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402

from econe.query import coerce, flatten, unflatten  # noqa: E402
from econe.spec import load_spec  # noqa: E402

from .conftest import contract_spec  # noqa: E402
from .st_hooks import parse_ec2_xml  # noqa: E402

SCHEMA = schemathesis.openapi.from_dict(contract_spec())
ACTIONS = sorted(a for a in load_spec().actions if a != "UploadImage")
CREDS = Credentials("demo", hashlib.sha256(b"demo").hexdigest())
HOST = "127.0.0.1:4567"  # the endpoint the config below declares (signatures name it)


def strip_empty(value: Any) -> Any:
    """What survives botocore's EC2 serializer: no empty lists or structures."""
    if isinstance(value, dict):
        out = {k: strip_empty(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in ({}, [], None)}
    if isinstance(value, list):
        items = [strip_empty(v) for v in value]
        return [v for v in items if v not in ({}, [], None)]
    return value


@pytest.fixture(scope="module")
def wire_client(sim: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from pathlib import Path

    from econe.config import Config

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from econe.app import create_app

    config = Config(
        host="127.0.0.1",
        port=4567,
        one_xmlrpc=sim.url,
        ec2_auth=str(Path(sim.state_dir) / ".one" / "ec2_auth"),
        elasticips_vnet_id=1,
        tmpdir=str(tmp_path_factory.mktemp("upload")),
    )
    app = create_app(config)  # the real runtime, built by the lifespan
    with app.test_client(base_url=f"http://{HOST}") as client:
        yield client


def signed_form_headers(body: str) -> dict[str, str]:
    """The headers botocore's SigV4 signer gives a form POST of `body`."""
    request = AWSRequest(
        method="POST",
        url=f"http://{HOST}/",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    SigV4Auth(CREDS, "ec2", "opennebula").add_auth(request)
    return dict(request.headers.items())


def signed_post(client: Any, params: dict[str, str]) -> Any:
    body = urlencode(params)
    return client.post("/", content=body.encode(), headers=signed_form_headers(body))


@pytest.mark.parametrize("action", ACTIONS)
def test_wire_round_trip(wire_client: Any, action: str) -> None:
    act = load_spec().action(action)
    strategy = SCHEMA[f"/{action}"]["POST"].as_strategy(generation_mode=GenerationMode.POSITIVE)

    @given(case=strategy)
    @settings(
        max_examples=4,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        body = case.body if isinstance(case.body, dict) else {}
        params = flatten(body)
        assert coerce(unflatten(params), act.request_schema) == strip_empty(body)
        resp = signed_post(wire_client, {"Action": action, "Version": "2016-11-15", **params})
        assert resp.headers["content-type"].startswith("text/xml"), resp.text
        assert resp.status_code < 500, resp.text
        parsed = parse_ec2_xml(action, resp.status_code, resp.content, dict(resp.headers))
        if resp.status_code >= 300:
            assert parsed["Error"]["Code"] not in ("AuthFailure", "SignatureDoesNotMatch"), parsed
        elif action == "RunInstances":  # give the demo cloud its capacity back
            ids = [i["InstanceId"] for i in parsed.get("Instances", [])]
            flat = {f"InstanceId.{n}": v for n, v in enumerate(ids, 1)}
            signed_post(
                wire_client, {"Action": "TerminateInstances", "Version": "2016-11-15", **flat}
            )

    check()


# ---------------------------------------------------------------- malformed wire, named as sent


def signed_raw(client: Any, query: str = "", body: str = "", method: str = "POST") -> Any:
    """A request exactly as written (no urlencode: a name may repeat), signed by botocore."""
    url = f"http://{HOST}/" + (f"?{query}" if query else "")
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"} if body else {}
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    SigV4Auth(CREDS, "ec2", "opennebula").add_auth(request)
    return client.request(method, url, content=body.encode(), headers=dict(request.headers.items()))


NEGATIVE_CASES = [
    # list items with gaps: named by the index sent, not by their position
    (
        "Action=DescribeImages&Filter.1.Name=name&Filter.1.Value.1=x&Filter.3.Value.1=y",
        "MissingParameter",
        "Filter.3.Name",
    ),
    (
        "Action=CreateVolume&AvailabilityZone=opennebula&Size=1"
        "&TagSpecification.5.ResourceType=bogus",
        "InvalidParameterValue",
        "TagSpecification.5.ResourceType",
    ),
    (
        "Action=DescribeImages&Filter.1.Name=name&Filter.1.Value.2.X=y",
        "InvalidParameterValue",
        "Filter.1.Value.2",
    ),
    # index 0 is taken (libcloud tags with ResourceId.0) and named as sent
    ("Action=DescribeImages&Filter.0.Value.1=x", "MissingParameter", "Filter.0.Name"),
    # one name twice: refused, not the last value kept
    (
        "Action=TerminateInstances&InstanceId.1=i-1&InstanceId.1=i-2",
        "InvalidParameterValue",
        "InstanceId.1",
    ),
    # an index that aliases another (01 is 1) or is no ASCII number
    (
        "Action=DescribeInstances&InstanceId.01=bad&InstanceId.1=i-0",
        "InvalidParameterValue",
        "InstanceId.01",
    ),
    (
        "Action=DescribeInstances&InstanceId.%D9%A1=i-1",
        "InvalidParameterValue",
        "InstanceId.\u0661",
    ),
    # one name both as a value and as a list
    (
        "Action=DescribeInstances&InstanceId=i-1&InstanceId.1=i-2",
        "InvalidParameterValue",
        "InstanceId",
    ),
]


@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize(
    "form,code,name",
    NEGATIVE_CASES,
    ids=[
        "gap",
        "gap-first",
        "gap-in-values",
        "index-0",
        "twice",
        "padded-index",
        "non-ascii-index",
        "value-and-list",
    ],
)
def test_malformed_wire_is_refused_naming_the_parameter_as_sent(
    wire_client: Any, method: str, form: str, code: str, name: str
) -> None:
    form += "&Version=2016-11-15"
    if method == "POST":
        resp = signed_raw(wire_client, body=form)
    else:  # SigV2-era clients put everything in the query string
        resp = signed_raw(wire_client, query=form, method="GET")
    action = form.split("&", 1)[0].split("=", 1)[1]
    error = parse_ec2_xml(action, resp.status_code, resp.content, dict(resp.headers))["Error"]
    assert (resp.status_code, error["Code"]) == (400, code), error
    assert re.search(rf"(^|\s){re.escape(name)}(\s|$)", error["Message"]), error


@pytest.mark.parametrize(
    "query,body",
    [
        ("Action=DeleteTags&ResourceId.1=i-1", "Version=2016-11-15&ResourceId.1=i-2"),
        ("", "Action=DeleteTags&Version=2016-11-15&ResourceId.1=i-1&ResourceId%2E1=i-2"),
    ],
    ids=["query-and-body", "once-percent-encoded"],
)
def test_a_name_given_twice_in_a_post_is_refused(wire_client: Any, query: str, body: str) -> None:
    """Before, the body's (the last) value won silently."""
    resp = signed_raw(wire_client, query=query, body=body)
    error = parse_ec2_xml("DeleteTags", resp.status_code, resp.content, dict(resp.headers))
    assert resp.status_code == 400 and error["Error"]["Code"] == "InvalidParameterValue"
    assert error["Error"]["Message"] == "The parameter ResourceId.1 is given more than once."


def test_a_request_changed_by_adding_a_parameter_again_is_not_authenticated(
    wire_client: Any,
) -> None:
    """Names are checked once the request is authenticated: what was added to a signed request
    is a signature mismatch, not a hint."""
    form = "Action=TerminateInstances&Version=2016-11-15&InstanceId.1=i-1"
    resp = wire_client.post(
        "/", content=f"{form}&InstanceId.1=i-2".encode(), headers=signed_form_headers(form)
    )
    error = parse_ec2_xml("TerminateInstances", resp.status_code, resp.content, {})["Error"]
    assert (resp.status_code, error["Code"]) == (403, "SignatureDoesNotMatch")
