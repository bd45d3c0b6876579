"""The engine behind the real gateway (front, validation, serializer), EC2 Query on the wire,
answers parsed by botocore. Authentication is faked (the user is `demo`); onesim is real."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from econe.context import Principal
from tests.engine.conftest import Sim, run

DEMO = Principal(name="demo", uid=2, gid=1, auth_driver="core", via="sigv4")


class DemoAuthenticator:
    def authenticate(self, raw: Any) -> Principal:
        return DEMO


@pytest.fixture(scope="module")
def client(sim: Sim):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from econe.app import create_app
    engine = sim.engine()
    run(engine, "RegisterImage", {"ImageLocation": "ami-0"}, user="demo")
    app = create_app(engine.config, engine=engine, authenticator=DemoAuthenticator())
    with app.test_client() as c:
        yield c
    engine.close()


def call(client, action: str, **params: Any) -> tuple[int, dict]:
    from tests.gateway.conftest import botocore_parse

    form = {"Action": action, "Version": "2016-11-15", **{k: str(v) for k, v in params.items()}}
    resp = client.post("/", data=form)
    body = resp.content
    if resp.status_code != 200:
        from lxml import etree

        root = etree.fromstring(body)
        return resp.status_code, {
            "Code": root.findtext(".//Code"),
            "Message": root.findtext(".//Message"),
        }
    return resp.status_code, botocore_parse(action, resp.status_code, body)


def test_run_and_describe_over_the_wire(client) -> None:
    status, res = call(
        client, "RunInstances", ImageId="ami-00000000", MinCount=2, MaxCount=2, InstanceType="m1.small",
        UserData="aGVsbG8=", ClientToken="wire-1",
        **{"TagSpecification.1.ResourceType": "instance", "TagSpecification.1.Tag.1.Key": "team",
           "TagSpecification.1.Tag.1.Value": 'a"b]'},
    )  # fmt: skip
    assert status == 200, res
    ids = [i["InstanceId"] for i in res["Instances"]]
    assert len(ids) == 2 and res["Instances"][0]["Tags"] == [{"Key": "team", "Value": 'a"b]'}]
    status, res = call(
        client, "DescribeInstances",
        **{"Filter.1.Name": "tag:team", "Filter.1.Value.1": 'a"b]', "InstanceId.1": ids[0], "InstanceId.2": ids[1]},
    )  # fmt: skip
    assert status == 200 and {
        i["InstanceId"] for r in res["Reservations"] for i in r["Instances"]
    } == set(ids)
    status, res = call(client, "StopInstances", **{"InstanceId.1": ids[0], "Force": "true"})
    assert status == 200 and res["StoppingInstances"][0]["InstanceId"] == ids[0]
    status, res = call(
        client, "TerminateInstances", **{"InstanceId.1": ids[0], "InstanceId.2": ids[1]}
    )
    assert status == 200 and len(res["TerminatingInstances"]) == 2


@pytest.mark.parametrize(
    ("action", "params", "code"),
    [
        ("DescribeInstances", {"InstanceId.1": "i-nope"}, "InvalidInstanceID.Malformed"),
        ("DescribeInstances", {"InstanceId.1": "i-4444"}, "InvalidInstanceID.NotFound"),
        (
            "DescribeInstances",
            {"Filter.1.Name": "bogus", "Filter.1.Value.1": "x"},
            "InvalidParameterValue",
        ),
        (
            "RunInstances",
            {"ImageId": "ami-00000000", "MinCount": 1, "MaxCount": 1, "UserData": "%%%"},
            "InvalidParameterValue",
        ),
        (
            "RunInstances",
            {"ImageId": "ami-00000042", "MinCount": 1, "MaxCount": 1},
            "InvalidAMIID.NotFound",
        ),
        ("DescribeImages", {"ImageId.1": "ami-zz"}, "InvalidAMIID.Malformed"),
        ("RebootInstances", {"InstanceId.1": "i-4444"}, "InvalidInstanceID.NotFound"),
    ],
)
def test_errors_over_the_wire(client, action: str, params: dict, code: str) -> None:
    status, err = call(client, action, **params)
    assert status == 400 and err["Code"] == code, err


def test_static_actions_over_the_wire(client) -> None:
    assert call(client, "DescribeRegions")[1]["Regions"][0]["RegionName"] == "opennebula"
    assert (
        call(client, "DescribeAvailabilityZones")[1]["AvailabilityZones"][0]["State"] == "available"
    )
    names = {
        a["AttributeName"]
        for a in call(client, "DescribeAccountAttributes")[1]["AccountAttributes"]
    }
    assert {"supported-platforms", "default-vpc", "max-instances", "max-elastic-ips"} <= names
    assert (
        call(client, "DescribeImages", **{"Owner.1": "self"})[1]["Images"][0]["ImageId"]
        == "ami-00000000"
    )
