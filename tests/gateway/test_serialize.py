"""The serializer: botocore parses what it renders back into the same dict."""

from __future__ import annotations

import datetime as dt
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from econe import serialize
from econe.serialize import Serializer, format_timestamp, namespace, render
from econe.spec import load_spec

from .conftest import botocore_parse

T0 = dt.datetime(2024, 5, 1, 10, 0, 0, 123000, tzinfo=dt.UTC)


def instance(n: int, **extra) -> dict:
    return {
        "InstanceId": f"i-{n:08d}",
        "ImageId": "ami-00000002",
        "State": {"Code": 16, "Name": "running"},
        "PrivateDnsName": "10-0-0-1.local",
        "PublicDnsName": "",
        "KeyName": "default",
        "AmiLaunchIndex": 0,
        "InstanceType": "m1.small",
        "LaunchTime": T0,
        "Placement": {"AvailabilityZone": "default", "Tenancy": "default"},
        "Monitoring": {"State": "disabled"},
        "PrivateIpAddress": "10.0.0.1",
        "PublicIpAddress": "192.0.2.10",
        "Architecture": "x86_64",
        "RootDeviceType": "ebs",
        "EbsOptimized": False,
        "Tags": [{"Key": "Name", "Value": "web"}],
        "BlockDeviceMappings": [
            {
                "DeviceName": "/dev/sda",
                "Ebs": {
                    "VolumeId": "vol-00000001",
                    "Status": "attached",
                    "AttachTime": T0,
                    "DeleteOnTermination": True,
                },
            }
        ],
        **extra,
    }


CASES = {
    "DescribeInstances": {
        "Reservations": [
            {
                "ReservationId": "r-1",
                "OwnerId": "alice",
                "Groups": [],
                "Instances": [instance(1), instance(2, Tags=[])],
            },
            {"ReservationId": "r-2", "OwnerId": "bob", "Instances": [instance(3)]},
        ],
        "NextToken": "abc",
    },
    "RunInstances": {
        "ReservationId": "r-3",
        "OwnerId": "alice",
        "Groups": [{"GroupName": "default", "GroupId": "sg-1"}],
        "Instances": [instance(4, State={"Code": 0, "Name": "pending"})],
    },
    "TerminateInstances": {
        "TerminatingInstances": [
            {
                "InstanceId": "i-00000001",
                "CurrentState": {"Code": 32, "Name": "shutting-down"},
                "PreviousState": {"Code": 16, "Name": "running"},
            }
        ]
    },
    "DescribeImages": {
        "Images": [
            {
                "ImageId": "ami-00000002",
                "ImageLocation": "ttylinux",
                "State": "available",
                "OwnerId": "oneadmin",
                "Public": True,
                "Architecture": "x86_64",
                "ImageType": "machine",
                "Name": 'ttylinux <&> "q"',
                "Description": "a test image",
                "RootDeviceType": "ebs",
                "BlockDeviceMappings": [],
                "Tags": [{"Key": "k", "Value": "v"}],
                "CreationDate": "2024-05-01T10:00:00.000Z",
            }
        ]
    },
    "DescribeAddresses": {
        "Addresses": [
            {"PublicIp": "192.0.2.10", "InstanceId": "i-00000001", "Domain": "standard"},
            {"PublicIp": "192.0.2.11", "Domain": "standard"},
        ]
    },
    "DescribeVolumes": {
        "Volumes": [
            {
                "VolumeId": "vol-00000001",
                "Size": 10,
                "AvailabilityZone": "default",
                "State": "in-use",
                "CreateTime": T0,
                "Encrypted": False,
                "Attachments": [
                    {
                        "VolumeId": "vol-00000001",
                        "InstanceId": "i-00000001",
                        "Device": "/dev/sdb",
                        "State": "attached",
                        "AttachTime": T0,
                        "DeleteOnTermination": False,
                    }
                ],
            }
        ]
    },
    "CreateKeyPair": {
        "KeyName": "k",
        "KeyFingerprint": "aa:bb",
        "KeyMaterial": "-----BEGIN\nX\n-----END",
        "KeyPairId": "key-1",
    },
    "DeleteKeyPair": {"Return": True},
    "AllocateAddress": {"PublicIp": "192.0.2.12", "Domain": "standard"},
}


@pytest.mark.parametrize("action", sorted(CASES))
def test_botocore_round_trip(action):
    result = CASES[action]
    xml = render(action, "2016-11-15", "req-1", result)
    assert botocore_parse(action, 200, xml.encode()) == result


def test_root_namespace_request_id_first():
    xml = render("DescribeInstances", "2014-10-01", "abc-123", {"Reservations": []})
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?>\n')
    assert (
        '<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2014-10-01/">'
        "<requestId>abc-123</requestId><reservationSet></reservationSet></DescribeInstancesResponse>"
        in xml
    )
    assert namespace("2016-11-15") == "http://ec2.amazonaws.com/doc/2016-11-15/"


def test_members_in_schema_order_whatever_the_dict_order():
    xml = render(
        "DescribeInstances",
        "v",
        "r",
        {
            "Reservations": [
                {
                    "Instances": [{"State": {"Name": "running", "Code": 16}, "InstanceId": "i-1"}],
                    "ReservationId": "r",
                }
            ]
        },
    )
    assert xml.index("<reservationId>") < xml.index("<instancesSet>")
    assert xml.index("<instanceId>") < xml.index("<instanceState>")
    assert "<instanceState><code>16</code><name>running</name></instanceState>" in xml


def test_control_characters_dropped_and_text_escaped():
    result = {
        "Reservations": [
            {
                "ReservationId": "r",
                "Instances": [
                    {
                        "InstanceId": "i-1",
                        "Tags": [{"Key": "Name", "Value": 'a\x00b\x1bc <d> & "e" \ufffe'}],
                    }
                ],
            }
        ]
    }
    xml = render("DescribeInstances", "2016-11-15", "r\x01", result)
    assert "\x00" not in xml and "\x1b" not in xml and "\x01" not in xml
    parsed = botocore_parse("DescribeInstances", 200, xml.encode())
    assert parsed["Reservations"][0]["Instances"][0]["Tags"][0]["Value"] == 'abc <d> & "e" '


def test_version_cannot_break_the_root_element():
    xml = render("DescribeRegions", '"><x a="', "r", {})
    assert botocore_parse("DescribeRegions", 200, xml.encode()) == {}


def test_scalars():
    assert format_timestamp(T0) == "2024-05-01T10:00:00.123Z"
    assert (
        format_timestamp(dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))))
        == "2024-05-01T10:00:00.000Z"
    )
    assert format_timestamp(0) == "1970-01-01T00:00:00.000Z"
    assert format_timestamp("2024-05-01T10:00:00Z") == "2024-05-01T10:00:00Z"
    xml = render("DescribeImages", "v", "r", {"Images": [{"ImageId": "ami-1", "Public": False}]})
    assert "<isPublic>false</isPublic>" in xml


def test_actions_without_output_answer_return_true():
    for action in ("RebootInstances", "CreateTags", "DeleteVolume", "ReleaseAddress"):
        xml = render(action, "2016-11-15", "r", {})
        assert "<return>true</return>" in xml, action


def test_none_list_items_are_skipped():
    xml = render("DescribeAddresses", "v", "r", {"Addresses": [None, {"PublicIp": "1.2.3.4"}]})
    assert botocore_parse("DescribeAddresses", 200, xml.encode()) == {
        "Addresses": [{"PublicIp": "1.2.3.4"}]
    }


def test_unknown_members_are_ignored_none_left_out():
    xml = render(
        "AllocateAddress", "v", "r", {"PublicIp": "1.2.3.4", "_internal": 1, "Domain": None}
    )
    assert "_internal" not in xml and "domain" not in xml


def test_wrong_shapes_raise():
    ser = Serializer(load_spec())
    with pytest.raises(TypeError):
        ser.render("DescribeInstances", "v", "r", {"Reservations": {"a": 1}})
    with pytest.raises(KeyError):
        ser.render("NoSuchAction", "v", "r", {})


def test_ten_thousand_instances_render_and_parse():
    many = {
        "Reservations": [
            {"ReservationId": "r-1", "Instances": [instance(i) for i in range(10_000)]}
        ]
    }
    xml = Serializer(load_spec()).render("DescribeInstances", "2016-11-15", "r", many)
    assert xml.count("<instanceId>") == 10_000


def one_instance(inst: dict) -> dict:
    return {"Reservations": [{"ReservationId": "r-1", "Instances": [inst]}]}


def render_one(inst: dict) -> str:
    return Serializer(load_spec()).render(
        "DescribeInstances", "2016-11-15", "r", one_instance(inst)
    )


def test_schema_order_kept_and_helpers_and_none_skipped():
    # Keys in reverse, most members absent, some None, view helpers starting with `_`.
    inst = instance(1, _id=1, _owner="x", KeyName=None, Platform=None)
    xml = render_one(dict(reversed(inst.items())))
    assert "_id" not in xml and "_owner" not in xml
    assert "<keyName>" not in xml and "<platform>" not in xml
    tags = ["<instanceId>", "<imageId>", "<instanceState>", "<privateDnsName>", "<launchTime>"]
    assert sorted(tags, key=xml.index) == tags
    parsed = botocore_parse("DescribeInstances", 200, xml.encode())
    expected = {k: v for k, v in inst.items() if v is not None and not k.startswith("_")}
    assert parsed["Reservations"][0]["Instances"][0] == expected


def test_every_kind_of_member_escapes_and_drops_bad_characters():
    tricky = 'a\x00b\x1bc <d> & "e" \ufffe \ud800'
    xml = render_one(
        {
            "InstanceId": "i-1",
            "ImageId": tricky,
            "KeyName": "&",
            "Tags": [{"Key": "<k>", "Value": tricky}],
            "LaunchTime": "<not a time>",
            "AmiLaunchIndex": "1 < 2",
            "EbsOptimized": "TRUE&",
        }
    )
    assert "<imageId>abc &lt;d&gt; &amp; &quot;e&quot;  </imageId>" in xml
    assert "<keyName>&amp;</keyName>" in xml
    assert "<launchTime>&lt;not a time&gt;</launchTime>" in xml
    assert "<amiLaunchIndex>1 &lt; 2</amiLaunchIndex>" in xml
    assert "<ebsOptimized>true&amp;</ebsOptimized>" in xml
    assert "<key>&lt;k&gt;</key>" in xml
    for bad in ("\x00", "\x1b", "\ufffe", "\ud800"):
        assert bad not in xml


def test_wrong_shapes_are_refused():
    ser = Serializer(load_spec())
    for inst in ({"InstanceId": "i-1", "State": "running"}, {"Tags": {"Key": "k"}}):
        with pytest.raises(TypeError):
            ser.render("DescribeInstances", "v", "r", one_instance(inst))
    with pytest.raises(TypeError):
        ser.render("DescribeInstances", "v", "r", one_instance(["InstanceId"]))


def test_timestamps_fast_and_slow_paths_agree():
    naive = dt.datetime(2024, 5, 1, 10, 0, 0, 999999)
    for value in (
        naive,
        naive.replace(tzinfo=dt.UTC),
        dt.datetime(999, 1, 2, 3, 4, 5, 6000, tzinfo=dt.UTC),
        dt.datetime(2024, 5, 1, 12, 0, 0, 999999, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    ):
        offset = value.utcoffset()
        slow = (value - offset).replace(tzinfo=None) if offset is not None else value
        assert format_timestamp(value) == slow.isoformat(timespec="milliseconds") + "Z"
    assert format_timestamp(naive) == "2024-05-01T10:00:00.999Z"
    assert format_timestamp(dt.datetime(999, 1, 2, 3, 4, 5, tzinfo=dt.UTC)) == (
        "0999-01-02T03:04:05.000Z"
    )
    assert format_timestamp(1.5) == "1970-01-01T00:00:01.500Z"


def test_defaults_and_nested_lists():
    props = {f"P{i}": {"type": "string", "xml": {"name": f"p{i}"}} for i in range(20)}
    props["Flag"] = {"type": "boolean", "default": True, "xml": {"name": "flag"}}
    props["Grid"] = {
        "type": "array",
        "xml": {"name": "gridSet"},
        "items": {"type": "array", "items": {"type": "integer", "xml": {"name": "n"}}},
    }
    schema = {"type": "object", "properties": props}

    def write(value: dict) -> str:
        out: list[str] = []
        serialize._Compiler().writer(schema)(value, out)
        return "".join(out)

    value = {"Grid": [[1, None, 2], None, []], "P3": "x", "_h": 1, "P1": None}
    expected = (
        "<p3>x</p3><flag>true</flag><gridSet><item><n>1</n><n>2</n></item><item></item></gridSet>"
    )
    assert write(value) == expected
    assert write({"Flag": False}) == "<flag>false</flag>"
    assert write({}) == "<flag>true</flag>"


def test_first_renders_in_parallel_threads_all_succeed():
    """Renders run in the engine's worker threads: several first uses of an action at once
    (right after a start) must each get the complete writer."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        result = one_instance(instance(1))
        expected = Serializer(load_spec()).render("DescribeInstances", "v", "r", result)
        for _ in range(5):
            ser = Serializer(load_spec())
            with ThreadPoolExecutor(8) as pool:
                jobs = [
                    pool.submit(ser.render, "DescribeInstances", "v", "r", result) for _ in range(8)
                ]
                assert [job.result() for job in jobs] == [expected] * 8
    finally:
        sys.setswitchinterval(interval)
