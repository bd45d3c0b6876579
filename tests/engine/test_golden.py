"""The engine against recorded oned 7.4 responses: views, filters, ids, errors, paging."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import yaml

from econe.errors import Ec2Error
from econe.mapping.filters import decode_token, encode_token, wildcard
from econe.paths import data_dir
from tests.engine.conftest import golden, run


def instances(result: dict) -> list[dict]:
    return [i for r in result["Reservations"] for i in r["Instances"]]


def test_describe_instances_pool(golden_engine, one) -> None:
    result = run(golden_engine, "DescribeInstances")
    assert one.calls[0][1:] == ("one.vmpool.infoextended", (-2, -1, -1, -2))
    assert one.calls[0][0] == "serveradmin:alice:token"  # acts as the user
    by_id = {i["InstanceId"]: i for i in instances(result)}
    assert set(by_id) == {"i-00000000", "i-00000001", "i-00000002"}
    vm1 = by_id["i-00000001"]
    assert vm1["State"] == {"Code": 16, "Name": "running"}
    assert vm1["PrivateIpAddress"] == "192.0.2.11"
    assert vm1["ImageId"] == "ami-00000000"  # from the first disk: not launched through EC2
    assert vm1["LaunchTime"] == datetime.fromtimestamp(1795462149, UTC)
    assert vm1["Placement"]["AvailabilityZone"] == "opennebula"
    assert by_id["i-00000002"]["State"]["Name"] == "pending"  # HOLD
    assert "ImageId" not in by_id["i-00000000"]  # no disk → member absent, not None
    assert all(not k.startswith("_") for i in by_id.values() for k in i)
    assert all(r["OwnerId"] == "alice" for r in result["Reservations"])


def test_describe_instances_by_id_and_errors(golden_engine) -> None:
    result = run(golden_engine, "DescribeInstances", {"InstanceId": ["i-1"]})
    assert [i["InstanceId"] for i in instances(result)] == ["i-00000001"]
    with pytest.raises(Ec2Error) as err:
        run(golden_engine, "DescribeInstances", {"InstanceId": ["i-1", "i-0x1", "ami-1"]})
    assert err.value.code == "InvalidInstanceID.Malformed" and "i-0x1" in err.value.message
    with pytest.raises(Ec2Error) as err:
        run(golden_engine, "DescribeInstances", {"InstanceId": ["i-00000009", "i-99999999999"]})
    assert err.value.code == "InvalidInstanceID.Malformed"  # 11 digits
    with pytest.raises(Ec2Error) as err:
        run(golden_engine, "DescribeInstances", {"InstanceId": ["i-00000009", "i-9999999999"]})
    assert err.value.code == "InvalidInstanceID.NotFound"
    assert "i-00000009" in err.value.message and "i-9999999999" in err.value.message


def test_terminated_window(golden_engine, one) -> None:
    # VM 0 is DONE since 2026-11-23 19:29:55 (ETIME 1795462195)
    golden_engine.config.terminated_instances_expiration_time = 10**10
    result = run(golden_engine, "DescribeInstances", {"InstanceId": ["i-0"]})
    assert instances(result)[0]["State"] == {"Code": 48, "Name": "terminated"}
    golden_engine.config.terminated_instances_expiration_time = 0
    with pytest.raises(Ec2Error, match="NotFound"):
        run(golden_engine, "DescribeInstances", {"InstanceId": ["i-0"]})


def test_filters(golden_engine) -> None:
    def ids(*filters: tuple[str, list[str]]) -> set[str]:
        body = {"Filter": [{"Name": n, "Value": v} for n, v in filters]}
        return {i["InstanceId"] for i in instances(run(golden_engine, "DescribeInstances", body))}

    assert ids(("instance-state-name", ["running"])) == {"i-00000000", "i-00000001"}
    assert ids(("instance-state-code", ["0"])) == {"i-00000002"}
    assert ids(("private-ip-address", ["192.0.2.1?"])) == {"i-00000000", "i-00000001", "i-00000002"}
    assert ids(("private-ip-address", ["*.11", "*.12"])) == {"i-00000001", "i-00000002"}
    assert ids(("instance-state-name", ["running"]), ("image-id", ["ami-00000000"])) == {
        "i-00000001"
    }
    assert ids(("tag:Name", ["x"])) == set()
    with pytest.raises(Ec2Error) as err:
        ids(("flavour", ["x"]))
    assert err.value.code == "InvalidParameterValue" and "flavour" in err.value.message


def test_pagination(golden_engine) -> None:
    first = run(golden_engine, "DescribeInstances", {"MaxResults": 5})
    assert "NextToken" not in first
    with pytest.raises(Ec2Error, match="MaxResults"):
        run(golden_engine, "DescribeInstances", {"MaxResults": 2})
    with pytest.raises(Ec2Error) as err:
        run(golden_engine, "DescribeInstances", {"MaxResults": 5, "InstanceId": ["i-1"]})
    assert err.value.code == "InvalidParameterCombination"
    after = run(golden_engine, "DescribeInstances", {"NextToken": encode_token(0)})
    assert {i["InstanceId"] for i in instances(after)} == {"i-00000001", "i-00000002"}
    with pytest.raises(Ec2Error, match="NextToken"):
        run(golden_engine, "DescribeInstances", {"NextToken": "garbage"})
    assert decode_token(encode_token(42)) == 42


def test_wildcards() -> None:
    assert wildcard("a*c").fullmatch("abbbc")
    assert wildcard("a?c").fullmatch("abc") and not wildcard("a?c").fullmatch("abbc")
    assert wildcard(r"a\*").fullmatch("a*") and not wildcard(r"a\*").fullmatch("ab")
    assert wildcard("1.2").fullmatch("1.2") and not wildcard("1.2").fullmatch("1x2")


def test_images_only_amis(golden_engine, one) -> None:
    assert run(golden_engine, "DescribeImages") == {"Images": []}  # alice-os has no EC2_AMI
    with pytest.raises(Ec2Error) as err:
        run(golden_engine, "DescribeImages", {"ImageId": ["ami-00000000"]})
    assert err.value.code == "InvalidAMIID.NotFound"
    with pytest.raises(Ec2Error) as err:
        run(golden_engine, "DescribeImages", {"ImageId": ["ami-0a1b2c3d"]})  # EC2's form
    assert err.value.code == "InvalidAMIID.NotFound"
    with pytest.raises(Ec2Error) as err:
        run(golden_engine, "DescribeImages", {"ImageId": ["ami-0a1b2c3g"]})
    assert err.value.code == "InvalidAMIID.Malformed"
    ami = golden("one.image.info.ok.xml").replace(
        "<DESCRIPTION>", "<EC2_AMI>YES</EC2_AMI><DESCRIPTION>"
    )
    one.overrides["one.image.info"] = ami
    one.overrides["one.imagepool.info"] = f"<IMAGE_POOL>{ami}</IMAGE_POOL>"
    assert run(golden_engine, "DescribeImages", {"Owner": ["self"]}, user="bob")["Images"] == []
    assert (
        len(run(golden_engine, "DescribeImages", {"Owner": ["alice"]}, user="bob")["Images"]) == 1
    )
    image = run(golden_engine, "DescribeImages", {"Owner": ["self"]}, user="alice")["Images"][0]
    assert image["ImageId"] == "ami-00000000" and image["State"] == "available"
    assert image["Name"] == "alice-os" and image["OwnerId"] == "alice" and image["Public"] is False
    assert image["Description"] == "small test OS image" and image["ImageType"] == "machine"
    assert image["CreationDate"].endswith("Z")
    body = {
        "Filter": [
            {"Name": "is-public", "Value": ["false"]},
            {"Name": "name", "Value": ["alice-*"]},
        ]
    }
    assert len(run(golden_engine, "DescribeImages", body)["Images"]) == 1
    locked = ami.replace("<STATE>1</STATE>", "<STATE>3</STATE>")  # DISABLED: hidden
    one.overrides["one.image.info"] = locked
    with pytest.raises(Ec2Error, match="NotFound"):
        run(golden_engine, "DescribeImages", {"ImageId": ["ami-0"]})


def test_static_mappings(golden_engine, one) -> None:
    regions = run(golden_engine, "DescribeRegions")["Regions"]
    assert regions == [
        {
            "RegionName": "opennebula",
            "Endpoint": "http://localhost:4567",
            "OptInStatus": "opt-in-not-required",
        }
    ]
    zones = run(golden_engine, "DescribeAvailabilityZones", {"ZoneName": ["opennebula"]})
    assert zones["AvailabilityZones"][0]["State"] == "available"
    with pytest.raises(Ec2Error, match="InvalidParameterValue"):
        run(golden_engine, "DescribeAvailabilityZones", {"ZoneName": ["us-east-1a"]})
    by_id = {"ZoneId": ["opennebula-az1"]}
    assert (
        run(golden_engine, "DescribeAvailabilityZones", by_id)["AvailabilityZones"]
        == (zones["AvailabilityZones"])
    )
    with pytest.raises(Ec2Error) as err:  # an unknown zone id is an error too, each named
        run(
            golden_engine,
            "DescribeAvailabilityZones",
            {"ZoneId": ["use1-az1", "opennebula-az1", "x"]},
        )
    assert err.value.code == "InvalidParameterValue"
    assert err.value.message == "The zone IDs 'use1-az1, x' do not exist"
    attrs = run(golden_engine, "DescribeAccountAttributes")["AccountAttributes"]
    assert {a["AttributeName"]: a["AttributeValues"] for a in attrs} == {
        "supported-platforms": [{"AttributeValue": "EC2"}],
        "default-vpc": [{"AttributeValue": "none"}],
        "max-instances": [{"AttributeValue": "20"}],
        "vpc-max-security-groups-per-interface": [{"AttributeValue": "5"}],
        "max-elastic-ips": [{"AttributeValue": "0"}],  # no elastic-IP network configured
        "vpc-max-elastic-ips": [{"AttributeValue": "0"}],
    }
    golden_engine.config.elasticips_vnet_id, golden_engine.config.elastic_ips_per_user = 3, 2
    asked = {"AttributeName": ["vpc-max-elastic-ips", "max-elastic-ips", "max-instances"]}
    attrs = run(golden_engine, "DescribeAccountAttributes", asked)["AccountAttributes"]
    assert {a["AttributeName"]: a["AttributeValues"][0]["AttributeValue"] for a in attrs} == {
        "max-elastic-ips": "2",  # :elastic_ips_per_user:
        "vpc-max-elastic-ips": "2",
        "max-instances": "20",
    }
    golden_engine.config.elastic_ips_per_user = None  # no limit set: EC2's default
    (eips,) = run(
        golden_engine, "DescribeAccountAttributes", {"AttributeName": ["max-elastic-ips"]}
    )["AccountAttributes"]
    assert eips["AttributeValues"] == [{"AttributeValue": "5"}]
    with pytest.raises(Ec2Error, match="InvalidParameterValue"):
        run(golden_engine, "DescribeAccountAttributes", {"AttributeName": ["max-volumes"]})
    filtered = run(
        golden_engine, "DescribeRegions", {"Filter": [{"Name": "region-name", "Value": ["x"]}]}
    )
    assert filtered == {"Regions": []}
    assert one.calls == []  # no OpenNebula call


def test_instance_actions(golden_engine, one) -> None:
    golden_engine.config.terminated_instances_expiration_time = 10**10
    result = run(golden_engine, "TerminateInstances", {"InstanceId": ["i-1", "i-2", "i-0"]})
    actions = [c[2] for c in one.calls if c[1] == "one.vm.action"]
    assert actions == [("terminate", 1), ("terminate-hard", 2)]  # DONE VM 0 untouched
    assert [c["InstanceId"] for c in result["TerminatingInstances"]] == [
        "i-00000001",
        "i-00000002",
        "i-00000000",
    ]
    assert result["TerminatingInstances"][2]["CurrentState"]["Name"] == "terminated"
    one.calls.clear()
    with pytest.raises(Ec2Error, match="NotFound"):
        run(golden_engine, "StopInstances", {"InstanceId": ["i-1", "i-5"]})
    assert not [c for c in one.calls if c[1] == "one.vm.action"]  # validated before acting
    run(golden_engine, "StopInstances", {"InstanceId": ["i-1"], "Force": True})
    assert one.calls[-2][2] == ("poweroff-hard", 1)

    def wrong_state(action: str, vm: int) -> None:
        from econe.mapping.onecall import OneError

        raise OneError(
            0x800,
            f'[one.vm.action] Error performing action "{action}": This action is not available for state RUNNING',
            "one.vm.action",
        )

    one.overrides["one.vm.action"] = wrong_state
    assert run(golden_engine, "StartInstances", {"InstanceId": ["i-1"]})["StartingInstances"][0][
        "CurrentState"
    ] == {"Code": 16, "Name": "running"}  # already running: no call, no error (EC2)
    with pytest.raises(Ec2Error) as err:
        run(golden_engine, "StopInstances", {"InstanceId": ["i-1"]})
    assert err.value.code == "IncorrectInstanceState" and "i-00000001" in err.value.message
    one.overrides.pop("one.vm.action")
    assert run(golden_engine, "RebootInstances", {"InstanceId": ["i-1"]}) == {}


def test_unknown_action(golden_engine) -> None:
    with pytest.raises(Ec2Error) as err:
        run(golden_engine, "CreateFleet")
    assert err.value.code == "InvalidAction"
    assert (
        "DescribeInstances" in golden_engine.actions() and "RunInstances" in golden_engine.actions()
    )


def test_state_table_covers_every_lcm_state() -> None:
    table = yaml.safe_load((data_dir("mappings") / "views" / "instance_states.yaml").read_text())
    lcm = {int(k.split(".")[1]) for k in table["entries"] if k.startswith("3.")}
    assert lcm >= set(range(72)) - {55, 58}
    assert {table["entries"][str(s)] for s in (4, 5, 8, 9)} == {"stopped"}
