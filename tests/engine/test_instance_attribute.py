"""DescribeInstanceAttribute (a mapping and a view only) on a live onesim: every attribute EC2
names, as EC2 answers for an instance without the feature, and the ones OpenNebula knows."""

from __future__ import annotations

import base64

import pytest

from econe.errors import Ec2Error
from tests.engine.conftest import Sim, run
from tests.engine.test_sim import launch

USER_DATA = base64.b64encode(b"#cloud-config\n").decode()


def attribute(engine, instance: str, name: str, user: str = "demo") -> dict:
    body = {"InstanceId": instance, "Attribute": name}
    answer = run(engine, "DescribeInstanceAttribute", body, user=user)
    assert answer.pop("InstanceId") == instance
    return answer


def test_every_attribute(sim: Sim, engine) -> None:
    (inst,) = launch(engine, UserData=USER_DATA)["Instances"]
    iid = inst["InstanceId"]
    vol = run(engine, "CreateVolume", {"Size": 1, "AvailabilityZone": "opennebula"}, user="demo")
    attach = {"VolumeId": vol["VolumeId"], "InstanceId": iid, "Device": "/dev/sdf"}
    run(engine, "AttachVolume", attach, user="demo")
    expected = {
        "instanceType": {"InstanceType": {"Value": "m1.small"}},
        "userData": {"UserData": {"Value": USER_DATA}},
        "rootDeviceName": {"RootDeviceName": {"Value": "/dev/sda"}},
        "kernel": {"KernelId": {}},
        "ramdisk": {"RamdiskId": {}},
        "disableApiTermination": {"DisableApiTermination": {"Value": False}},
        "instanceInitiatedShutdownBehavior": {
            "InstanceInitiatedShutdownBehavior": {"Value": "stop"}
        },
        "productCodes": {"ProductCodes": []},
        "sourceDestCheck": {"SourceDestCheck": {"Value": True}},
        "groupSet": {"Groups": [{"GroupId": "sg-00000000", "GroupName": "default"}]},
        "ebsOptimized": {"EbsOptimized": {"Value": False}},
        "sriovNetSupport": {"SriovNetSupport": {}},
        "enaSupport": {"EnaSupport": {"Value": False}},
        "enclaveOptions": {"EnclaveOptions": {"Enabled": False}},
        "disableApiStop": {"DisableApiStop": {"Value": False}},
    }
    for name, answer in expected.items():
        assert attribute(engine, iid, name) == answer, name
    (mapping,) = attribute(engine, iid, "blockDeviceMapping")["BlockDeviceMappings"]
    assert mapping["DeviceName"] == "/dev/sdf"
    assert mapping["Ebs"]["VolumeId"] == vol["VolumeId"]
    run(engine, "DetachVolume", {"VolumeId": vol["VolumeId"]}, user="demo")
    run(engine, "TerminateInstances", {"InstanceId": [iid]}, user="demo")
    # a terminated instance stays visible a while, as in DescribeInstances
    assert attribute(engine, iid, "instanceType") == {"InstanceType": {"Value": "m1.small"}}


def test_no_user_data_and_other_users(sim: Sim, engine) -> None:
    (inst,) = launch(engine)["Instances"]
    iid = inst["InstanceId"]
    assert attribute(engine, iid, "userData") == {"UserData": {}}
    sim.as_admin("one.user.allocate", "attrpeek", "pw", "core", [1])
    for body, code in (
        ({"InstanceId": iid, "Attribute": "userData"}, "InvalidInstanceID.NotFound"),
        ({"InstanceId": "i-99999999", "Attribute": "kernel"}, "InvalidInstanceID.NotFound"),
        ({"InstanceId": "vol-1", "Attribute": "kernel"}, "InvalidInstanceID.Malformed"),
    ):
        with pytest.raises(Ec2Error) as err:
            run(engine, "DescribeInstanceAttribute", body, user="attrpeek")
        assert err.value.code == code
    run(engine, "TerminateInstances", {"InstanceId": [iid]}, user="demo")
