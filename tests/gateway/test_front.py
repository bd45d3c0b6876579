"""The EC2 Query front: dispatch, authentication, body cap, rewriting, EC2 XML on every path."""

from __future__ import annotations

import logging
import re

import pytest

from econe.config import Config
from econe.errors import Ec2Error

from .conftest import ALICE, botocore_parse

DI = {
    "Reservations": [
        {"ReservationId": "r-1", "OwnerId": "alice", "Instances": [{"InstanceId": "i-00000001"}]}
    ]
}


def error_of(resp, action: str = "DescribeInstances") -> dict:
    assert resp.headers["content-type"].startswith("text/xml")
    return botocore_parse(action, resp.status_code, resp.content)["Error"]


def test_post_form_reaches_the_engine_with_a_typed_json_body(client, engine, auth):
    engine.results["DescribeInstances"] = DI
    resp = client.post(
        "/",
        data={
            "Action": "DescribeInstances",
            "Version": "2016-11-15",
            "InstanceId.1": "i-00000001",
            "InstanceId.2": "i-2",
            "Filter.1.Name": "instance-state-name",
            "Filter.1.Value.1": "running",
            "MaxResults": "10",
            "AWSAccessKeyId": "alice",
            "Signature": "c2ln",
            "SignatureVersion": "2",
            "X-Amz-Date": "20260101T000000Z",
        },
    )
    assert resp.status_code == 200, resp.text
    action, body, ctx = engine.calls[0]
    assert action == "DescribeInstances"
    assert body == {
        "InstanceId": ["i-00000001", "i-2"],
        "Filter": [{"Name": "instance-state-name", "Value": ["running"]}],
        "MaxResults": 10,
    }
    assert ctx.principal == ALICE and ctx.version == "2016-11-15"
    parsed = botocore_parse("DescribeInstances", 200, resp.content)
    assert parsed == DI
    # the authenticator saw the raw request: body bytes and merged params
    raw = auth.seen[0]
    assert raw.method == "POST" and raw.params["Action"] == "DescribeInstances"
    assert b"Signature=c2ln" in raw.body


def test_libcloud_forms_unnumbered_list_member_and_1_for_true(client, engine):
    engine.results["DescribeInstances"] = DI
    resp = client.get("/?Action=DescribeInstances&InstanceId=i-1&DryRun=1")
    assert resp.status_code == 200, resp.text
    assert engine.calls[0][1] == {"InstanceId": ["i-1"], "DryRun": True}


def test_get_query_string_is_equivalent(client, engine):
    engine.results["DescribeInstances"] = DI
    resp = client.get("/?Action=DescribeInstances&InstanceId.1=i-1&Version=2014-10-01")
    assert resp.status_code == 200
    assert engine.calls[0][1] == {"InstanceId": ["i-1"]}
    assert 'xmlns="http://ec2.amazonaws.com/doc/2014-10-01/"' in resp.text


def test_version_is_echoed_with_trailing_slash_and_defaults(client):
    resp = client.post("/", data={"Action": "DescribeRegions", "Version": "2014-05-01"})
    assert re.search(
        r'<DescribeRegionsResponse xmlns="http://ec2.amazonaws.com/doc/2014-05-01/">', resp.text
    )
    resp = client.post("/", data={"Action": "DescribeRegions"})
    assert 'xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"' in resp.text


def test_request_ids_are_fresh_uuids_also_on_errors(client):
    ids = set()
    for data in ({"Action": "DescribeRegions"}, {"Action": "Nope"}, {}):
        resp = client.post("/", data=data)
        m = re.search(r"<(?:requestId|RequestID)>([0-9a-f-]{36})<", resp.text)
        assert m, resp.text
        ids.add(m.group(1))
    assert len(ids) == 3


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        ({}, 400, "MissingAction"),
        ({"Version": "2016-11-15"}, 400, "MissingAction"),
        ({"Action": "RebootEverything"}, 400, "InvalidAction"),
        ({"Action": "describeinstances"}, 400, "InvalidAction"),
        ({"Action": "DescribeSubnets"}, 400, "InvalidAction"),  # not in the spec
        ({"Action": "DescribeInstances", "AWSAccessKeyId": "bad"}, 401, "AuthFailure"),
        ({"Action": "DescribeInstances", "AWSAccessKeyId": "forged"}, 403, "SignatureDoesNotMatch"),
        ({"Action": "DescribeInstances", "Foo": "1"}, 400, "UnknownParameter"),
        ({"Action": "DescribeInstances", "Filter.1.Bogus": "1"}, 400, "UnknownParameter"),
        ({"Action": "DescribeInstances", "Filter.1.Value.1": "x"}, 400, "MissingParameter"),
        ({"Action": "DescribeInstances", "MaxResults": "abc"}, 400, "InvalidParameterValue"),
        ({"Action": "DescribeInstances", "MaxResults": "4"}, 400, "InvalidParameterValue"),
        ({"Action": "DescribeInstances", "Filter": "x"}, 400, "InvalidParameterValue"),
        (
            {"Action": "DescribeInstances", "InstanceId.1": "a", "InstanceId.1.X": "b"},
            400,
            "InvalidParameterValue",
        ),
        ({"Action": "RunInstances", "MinCount": "1", "MaxCount": "1"}, 400, "MissingParameter"),
        (
            {"Action": "RunInstances", "ImageId": "ami-1", "MinCount": "0", "MaxCount": "1"},
            400,
            "InvalidParameterValue",
        ),
        (
            {
                "Action": "RunInstances",
                "ImageId": "ami-1",
                "MinCount": "1",
                "MaxCount": "1",
                "UserData": "!!!",
            },
            400,
            "InvalidParameterValue",
        ),
    ],
)
def test_error_paths_are_ec2_xml_botocore_parses(client, engine, data, status, code):
    resp = client.post("/", data=data)
    assert resp.status_code == status, resp.text
    assert error_of(resp)["Code"] == code
    if status != 200:
        assert not engine.calls  # nothing reached the engine


@pytest.mark.parametrize(
    ("data", "name"),
    [
        ({"Foo": "1"}, "Foo"),
        ({"Filter.1.Bogus": "1"}, "Filter.1.Bogus"),
        ({"Filter.1.Value.1": "x"}, "Filter.1.Name"),
        ({"Filter.1.Name": "a", "Filter.2.Value.1": "x"}, "Filter.2.Name"),
        ({"MaxResults": "abc"}, "MaxResults"),
        ({"Filter": "x"}, "Filter"),
    ],
)
def test_errors_name_the_wire_parameter(client, data, name):
    resp = client.post("/", data={"Action": "DescribeInstances", **data})
    message = error_of(resp)["Message"]
    assert re.search(rf"parameter {re.escape(name)}\b", message), message


def test_enum_error_names_list_member(client):
    run = {"Action": "RunInstances", "ImageId": "ami-1", "MinCount": "1", "MaxCount": "1"}
    resp = client.post("/", data={**run, "TagSpecification.1.ResourceType": "bogus"})
    err = error_of(resp, "RunInstances")
    assert err["Code"] == "InvalidParameterValue"
    assert "TagSpecification.1.ResourceType" in err["Message"]


def test_an_empty_instance_type_is_an_invalid_value(client):
    resp = client.post("/", data={"Action": "DescribeInstanceTypes", "InstanceType.1": ""})
    err = error_of(resp, "DescribeInstanceTypes")
    assert err["Code"] == "InvalidParameterValue" and "InstanceType.1" in err["Message"]


def test_dry_run_false_runs_the_action(client, engine):
    engine.results["RebootInstances"] = {}
    resp = client.post(
        "/", data={"Action": "RebootInstances", "InstanceId.1": "i-1", "DryRun": "false"}
    )
    assert resp.status_code == 200
    assert "<return>true</return>" in resp.text
    assert engine.calls[0][1] == {"InstanceId": ["i-1"], "DryRun": False}


def test_unsupported_parameters_are_refused_by_name_unless_empty(client, engine):
    run = {"Action": "RunInstances", "ImageId": "ami-1", "MinCount": "1", "MaxCount": "1"}
    # `LicenseSpecification=` with no index: an empty list, as some SDKs send it, asks for nothing
    resp = client.post("/", data={**run, "LicenseSpecification": ""})
    assert resp.status_code == 200, resp.text
    assert engine.calls[-1][1]["LicenseSpecification"] == []
    for extra, name in (
        ({"LicenseSpecification.1.LicenseConfigurationArn": "arn:x"}, "LicenseSpecification"),
        ({"SubnetId": "subnet-1"}, "SubnetId"),
        ({"LaunchTemplate.LaunchTemplateName": "web"}, "LaunchTemplate"),
        (
            {
                "CapacityReservationSpecification.CapacityReservationTarget.CapacityReservationId": "cr-1"
            },
            "CapacityReservationSpecification.CapacityReservationTarget",
        ),
        ({"BlockDeviceMapping.1.Ebs.Iops": "64000"}, "BlockDeviceMapping.1.Ebs.Iops"),
        ({"BlockDeviceMapping.1.Ebs.KmsKeyId": "k"}, "BlockDeviceMapping.1.Ebs.KmsKeyId"),
    ):
        resp = client.post("/", data={**run, **extra})
        assert resp.status_code == 400
        error = error_of(resp)
        assert error["Code"] == "UnsupportedOperation" and name in error["Message"], extra
    resp = client.post("/", data={**run, "BlockDeviceMapping.1.Ebs.Encrypted": "true"})
    assert error_of(resp)["Code"] == "InvalidParameterValue"
    register = {"Action": "RegisterImage", "ImageLocation": "ami-1", "Name": "web"}
    for extra, name in (
        ({"BlockDeviceMapping.1.DeviceName": "/dev/sda"}, "BlockDeviceMapping"),
        ({"RootDeviceName": "/dev/sda1"}, "RootDeviceName"),
        ({"KernelId": "aki-1"}, "KernelId"),
        ({"BootMode": "uefi"}, "BootMode"),
    ):
        resp = client.post("/", data={**register, **extra})
        error = error_of(resp)
        assert error["Code"] == "UnsupportedOperation" and name in error["Message"], extra
    for extra in ({"VirtualizationType": "paravirtual"}, {"Description": "d" * 256}):
        resp = client.post("/", data={**register, **extra})
        error = error_of(resp)
        assert error["Code"] == "InvalidParameterValue" and next(iter(extra)) in error["Message"]
    for action in ({"Action": "CreateImage", "InstanceId": "i-1", "Name": "web"},
                   {"Action": "CreateSnapshot", "VolumeId": "vol-1"}):  # fmt: skip
        error = error_of(client.post("/", data={**action, "Description": "d" * 256}))
        assert error["Code"] == "InvalidParameterValue" and "Description" in error["Message"]
    create = {"Action": "CreateImage", "InstanceId": "i-1", "Name": "web"}
    resp = client.post("/", data={**create, "BlockDeviceMapping.1.DeviceName": "/dev/sdb"})
    error = error_of(resp)
    assert error["Code"] == "UnsupportedOperation" and "BlockDeviceMapping" in error["Message"]


def test_engine_errors_keep_code_and_status(client, engine):
    engine.results["DescribeInstances"] = Ec2Error(
        "InvalidInstanceID.NotFound", "The instance ID 'i-9' does not exist"
    )
    resp = client.post("/", data={"Action": "DescribeInstances", "InstanceId.1": "i-9"})
    assert resp.status_code == 400
    assert error_of(resp) == {
        "Code": "InvalidInstanceID.NotFound",
        "Message": "The instance ID 'i-9' does not exist",
    }
    engine.results["DescribeInstances"] = Ec2Error("Unavailable", "oned is down")
    resp = client.post("/", data={"Action": "DescribeInstances"})
    assert resp.status_code == 503 and error_of(resp)["Code"] == "Unavailable"


def test_unexpected_engine_exception_is_internal_error_xml(client, engine):
    engine.results["DescribeInstances"] = RuntimeError("secret internals")
    resp = client.post("/", data={"Action": "DescribeInstances"})
    assert resp.status_code == 500
    err = error_of(resp)
    assert err["Code"] == "InternalError" and "secret" not in err["Message"]


def test_serializer_failure_is_internal_error_xml(client, engine):
    engine.results["DescribeInstances"] = {"Reservations": "not a list"}
    resp = client.post("/", data={"Action": "DescribeInstances"})
    assert resp.status_code == 500 and error_of(resp)["Code"] == "InternalError"


def test_body_cap_declared_and_streamed(make_client, engine):
    with make_client(config=Config(max_body_size=1000)) as c:
        resp = c.post(
            "/",
            content=b"Action=DescribeRegions&x=" + b"a" * 2000,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert resp.status_code == 413 and error_of(resp)["Code"] == "RequestEntityTooLarge"

        def chunks():
            yield b"Action=DescribeRegions&x="
            for _ in range(10):
                yield b"a" * 500

        resp = c.post(
            "/", content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"}
        )
        assert resp.status_code == 413 and error_of(resp)["Code"] == "RequestEntityTooLarge"
        resp = c.post("/", data={"Action": "DescribeRegions"})
        assert resp.status_code == 200
    assert [call[0] for call in engine.calls] == ["DescribeRegions"]


def test_malformed_encodings_are_400_xml(client):
    resp = client.post(
        "/",
        content=b"Action=DescribeRegions&x=%ff",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert resp.status_code == 400 and error_of(resp)["Code"] == "InvalidParameterValue"
    resp = client.post(
        "/",
        content=b"Action=DescribeRegions&x=\xff",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert resp.status_code == 400 and error_of(resp)["Code"] == "InvalidParameterValue"


def test_other_methods_are_405_with_allow(client):
    resp = client.put("/", content=b"Action=DescribeRegions")
    assert resp.status_code == 405
    assert resp.headers["allow"] == "GET, POST"
    assert error_of(resp)["Code"]


def test_virtual_routes_cannot_bypass_authentication(client, engine, auth):
    # a JSON call straight to a virtual route is just another EC2 request: no Action
    resp = client.post("/DescribeInstances", json={})
    assert resp.status_code == 400 and error_of(resp)["Code"] == "MissingAction"
    # the authenticator is asked first, so an unsigned request never gets further
    resp = client.post("/DescribeInstances?Action=DescribeInstances&AWSAccessKeyId=bad", json={})
    assert resp.status_code == 401
    assert not engine.calls


def test_handler_refuses_requests_the_front_did_not_rewrite(engine):
    import asyncio

    from econe.front import GatewayState
    from econe.resolver import Ec2Operation
    from econe.spec import load_spec

    state = GatewayState(config=Config(), spec=load_spec(), engine=engine)
    operation = Ec2Operation(state, "DescribeInstances")
    forged = {  # the record a front writes, but not with the front's private marker
        "type": "http",
        "extensions": {"ec2": {"action": "DescribeInstances", "front": object()}},
    }

    async def receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message):
        raise AssertionError(f"answered {message}")

    with pytest.raises(Ec2Error) as info:
        asyncio.run(operation(forged, receive, send))
    assert info.value.code == "InvalidAction"
    assert not engine.calls


def test_json_api_with_an_injected_principal(make_client, engine):
    engine.results["DescribeInstances"] = DI
    with make_client(json_principal=ALICE) as c:
        resp = c.post("/DescribeInstances", json={"InstanceId": ["i-00000001"]})
        assert resp.status_code == 200, resp.text
        assert botocore_parse("DescribeInstances", 200, resp.content) == DI
        assert engine.calls[0][2].principal == ALICE
        resp = c.post("/DescribeInstances", json={"Foo": 1})
        assert resp.status_code == 400 and error_of(resp)["Code"] == "UnknownParameter"
        resp = c.post(
            "/DescribeInstances", content=b"\xff\xfe", headers={"content-type": "application/json"}
        )
        assert resp.status_code == 400 and error_of(resp)["Code"]
        resp = c.post(
            "/DescribeInstances", content=b"[1]", headers={"content-type": "application/json"}
        )
        assert resp.status_code == 400 and error_of(resp)["Code"]
        resp = c.post(
            "/DescribeInstances", content=b"null", headers={"content-type": "application/json"}
        )
        assert resp.status_code == 400 and error_of(resp)["Code"]
        resp = c.get("/DescribeInstances", headers={"content-type": "application/json"})
        assert resp.status_code == 405 and resp.headers["allow"] == "POST"
        assert error_of(resp)["Code"] == "UnsupportedHttpVerb"
        resp = c.post(
            "/DescribeInstances", content=b"", headers={"content-type": "application/json"}
        )
        assert resp.status_code == 400 and error_of(resp)["Code"]


def test_dev_routes_are_off_by_default(client, make_client):
    resp = client.get("/openapi.json")
    assert resp.status_code == 400 and error_of(resp)["Code"] == "MissingAction"
    with make_client(swagger_ui=True) as c:
        resp = c.get("/openapi.json")
        assert resp.status_code == 200 and "/DescribeInstances" in resp.json()["paths"]


def test_access_log_line_without_secrets(client, caplog):
    with caplog.at_level(logging.INFO, logger="econe.access"):
        client.post(
            "/",
            data={
                "Action": "DescribeRegions",
                "Signature": "TOPSECRETSIG",
                "AWSAccessKeyId": "alice",
            },
        )
    lines = [r.getMessage() for r in caplog.records if r.name == "econe.access"]
    assert len(lines) == 1
    assert "alice" in lines[0] and "DescribeRegions" in lines[0] and " 200 " in lines[0]
    assert "TOPSECRETSIG" not in lines[0]


def test_a_refused_requests_access_line_names_the_action_asked(client, caplog):
    """Authentication refused: the line still says what was asked (the action as the spec
    has it, or quoted and cut), never the signature."""
    with caplog.at_level(logging.INFO, logger="econe.access"):
        for action in ("DescribeRegions", "Evil\n[I]: forged line"):
            data = {"Action": action, "AWSAccessKeyId": "forged", "Signature": "TOPSECRETSIG"}
            assert client.post("/", data=data).status_code == 403
    lines = [r.getMessage() for r in caplog.records if r.name == "econe.access"]
    assert " POST DescribeRegions 403 " in lines[0]
    assert " POST 'Evil\\n[I]: forged line' 403 " in lines[1]
    assert not any("TOPSECRETSIG" in line or "\n" in line for line in lines)


def test_two_host_headers_are_refused(engine, auth):
    """RFC 9112: no one host to check a signature against; nginx refuses it too."""
    import asyncio

    from econe.front import Ec2QueryFront, GatewayState
    from econe.spec import load_spec

    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b"Action=DescribeRegions", "more_body": False}

    front = Ec2QueryFront(None, GatewayState(config=Config(), spec=load_spec(), authenticator=auth))
    scope = {
        "type": "http", "method": "POST", "path": "/", "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:4567"), (b"host", b"evil.example.org"),
                    (b"content-type", b"application/x-www-form-urlencoded")],
    }  # fmt: skip
    asyncio.run(front(scope, receive, send))
    assert sent[0]["status"] == 400
    assert b"<Code>InvalidRequest</Code>" in sent[1]["body"]
    assert b"more than one Host header" in sent[1]["body"]


def test_repeated_headers_are_joined_once_and_their_number_capped():
    """Joining at each repeat took quadratic time on the event loop (800,000 copies of one
    header: 43 s, every client waiting); joined once, and more than MAX_HEADERS refused."""
    from econe.upload.wire import MAX_HEADERS, request_headers

    scope = {"headers": [(b"Host", b"h"), (b"X-A", b"1"), (b"x-a", b"2"), (b"x-a", b"3")]}
    assert request_headers(scope) == {"host": "h", "x-a": "1,2,3"}
    many = {"headers": [(b"x-a", b"x")] * MAX_HEADERS}
    assert request_headers(many)["x-a"] == ",".join(["x"] * MAX_HEADERS)
    with pytest.raises(Ec2Error, match=f"more than {MAX_HEADERS} headers") as err:
        request_headers({"headers": [(b"x-a", b"x")] * (MAX_HEADERS + 1)})
    assert (err.value.code, err.value.status) == ("InvalidRequest", 400)


def test_non_http_scopes_pass_through(engine, auth):
    import asyncio

    from econe.front import Ec2QueryFront, GatewayState
    from econe.spec import load_spec

    seen = []

    async def inner(scope, receive, send):
        seen.append(scope["type"])

    front = Ec2QueryFront(
        inner, GatewayState(config=Config(), spec=load_spec(), authenticator=auth)
    )
    asyncio.run(front({"type": "lifespan"}, None, None))
    asyncio.run(front({"type": "websocket", "path": "/"}, None, None))
    assert seen == ["lifespan", "websocket"]


def test_served_under_a_proxy_prefix(engine, auth):
    from starlette.testclient import TestClient

    from econe.app import create_app

    app = create_app(Config(), engine=engine, authenticator=auth)
    with TestClient(app, root_path="/ec2") as c:
        resp = c.post("/ec2/", data={"Action": "DescribeRegions"})
    assert resp.status_code == 200, resp.text
    assert engine.calls[0][0] == "DescribeRegions"


def test_one_request_id_per_request_across_layers(client, caplog):
    with caplog.at_level(logging.INFO, logger="econe.access"):
        resp = client.post("/", data={"Action": "DescribeInstances", "Foo": "1"})  # Connexion layer
    rid = re.search(r"<RequestID>([^<]+)</RequestID>", resp.text).group(1)
    lines = [r.getMessage() for r in caplog.records if r.name == "econe.access"]
    assert rid in lines[0]
