"""DryRun=true on a live onesim: every check of the real request runs (ids, visibility, states,
parameters), and the request answers DryRunOperation where it would have changed something,
having changed nothing."""

from __future__ import annotations

import pytest
from lxml import etree

from econe.errors import Ec2Error
from tests.engine.conftest import AMI, Sim, run
from tests.engine.test_sim import launch, vm_number


def dry(engine, action: str, body: dict, user: str = "demo") -> str:
    with pytest.raises(Ec2Error) as err:
        run(engine, action, {**body, "DryRun": True}, user=user)
    return err.value.code


def pool(sim: Sim, kind: str) -> list[str]:
    method = {"vm": "one.vmpool.info", "image": "one.imagepool.info"}[kind]
    args = (-2, -1, -1, -1) if kind == "vm" else (-2, -1, -1)
    xml = etree.fromstring(sim.as_admin(method, *args).encode())
    return [e.findtext("ID") for e in xml]


@pytest.fixture
def instance(engine) -> str:
    (inst,) = launch(engine)["Instances"]
    yield inst["InstanceId"]
    run(engine, "TerminateInstances", {"InstanceId": [inst["InstanceId"]]}, user="demo")


def test_instance_actions_check_everything_and_change_nothing(sim: Sim, engine, instance):
    for action in ("StopInstances", "RebootInstances", "TerminateInstances"):
        assert dry(engine, action, {"InstanceId": [instance]}) == "DryRunOperation", action
        assert dry(engine, action, {"InstanceId": ["i-99999999"]}) == ("InvalidInstanceID.NotFound")
        assert dry(engine, action, {"InstanceId": ["ami-1"]}) == "InvalidInstanceID.Malformed"
    vm = sim.vm(vm_number(instance))
    assert (vm.findtext("STATE"), vm.findtext("LCM_STATE")) == ("3", "3")
    assert vm.find("USER_TEMPLATE/EC2_TERMINATE_REQUESTED") is None
    # a state the real request refuses is refused by the dry run too
    run(engine, "StopInstances", {"InstanceId": [instance]}, user="demo")
    assert dry(engine, "RebootInstances", {"InstanceId": [instance]}) == ("IncorrectInstanceState")
    sim.as_admin("one.user.allocate", "dryeve", "pw", "core", [1])
    assert dry(engine, "TerminateInstances", {"InstanceId": [instance]}, user="dryeve") == (
        "InvalidInstanceID.NotFound"
    )


def test_creations_make_nothing(sim: Sim, engine, instance):
    vms, images = pool(sim, "vm"), pool(sim, "image")
    assert dry(engine, "RunInstances", {"ImageId": AMI, "MinCount": 2, "MaxCount": 2}) == (
        "DryRunOperation"
    )
    assert dry(
        engine, "RunInstances", {"ImageId": "ami-00009999", "MinCount": 1, "MaxCount": 1}
    ) == ("InvalidAMIID.NotFound")
    assert dry(engine, "CreateVolume", {"Size": 1, "AvailabilityZone": "opennebula"}) == (
        "DryRunOperation"
    )
    assert dry(engine, "CreateImage", {"InstanceId": instance, "Name": "dry-image"}) == (
        "DryRunOperation"
    )
    assert dry(engine, "CreateKeyPair", {"KeyName": "dry-key"}) == "DryRunOperation"
    assert dry(engine, "CreateTags", {"ResourceId": [instance], "Tag": [{"Key": "k"}]}) == (
        "DryRunOperation"
    )
    assert pool(sim, "vm") == vms and pool(sim, "image") == images
    assert sim.vm(vm_number(instance)).find("USER_TEMPLATE/EC2_TAGS") is None
    keys = run(engine, "DescribeKeyPairs", {}, user="demo")["KeyPairs"]
    assert "dry-key" not in [k["KeyName"] for k in keys]


def test_reads_answer_dry_run_operation(engine):
    for action in ("DescribeInstances", "DescribeImages", "DescribeRegions", "DescribeVolumes"):
        assert dry(engine, action, {}) == "DryRunOperation", action
    assert dry(engine, "DescribeInstances", {"InstanceId": ["i-99999999"]}) == (
        "InvalidInstanceID.NotFound"
    )


def test_volume_refusals_come_before_the_change(sim: Sim, engine, instance):
    """What oned would refuse at the change itself is checked first, dry run or not."""
    from tests.engine.test_instance_status import put_state

    vol = run(engine, "CreateVolume", {"Size": 1, "AvailabilityZone": "opennebula"}, user="demo")
    vid = vol["VolumeId"]
    attach = {"VolumeId": vid, "InstanceId": instance, "Device": "/dev/sdf"}
    put_state(sim, instance, 3, 16)  # UNKNOWN: oned attaches nothing to it
    assert dry(engine, "AttachVolume", attach) == "IncorrectState"
    put_state(sim, instance, 3, 3)
    assert dry(engine, "AttachVolume", attach) == "DryRunOperation"
    run(engine, "AttachVolume", attach, user="demo")
    assert dry(engine, "DeleteVolume", {"VolumeId": vid}) == "VolumeInUse"
    with pytest.raises(Ec2Error) as err:
        run(engine, "DeleteVolume", {"VolumeId": vid}, user="demo")
    assert err.value.code == "VolumeInUse" and "attached" in err.value.message
    run(engine, "DetachVolume", {"VolumeId": vid}, user="demo")
    run(engine, "DeleteVolume", {"VolumeId": vid}, user="demo")


def test_a_group_in_use_by_an_instance_in_any_state_is_in_use_for_a_dry_run(sim: Sim, engine):
    """oned refuses to delete a group with VMs in any of UPDATED, OUTDATED, UPDATING or
    ERROR_VMS; a dry run answers the same. An instance oned lost (UNKNOWN) when the group's
    rules change is left in ERROR_VMS."""
    from tests.engine.test_instance_status import put_state

    body = {"GroupName": "dry-in-use", "GroupDescription": "x"}
    gid = run(engine, "CreateSecurityGroup", body, user="demo")["GroupId"]
    (inst,) = launch(engine, SecurityGroupId=[gid])["Instances"]
    instance = inst["InstanceId"]
    put_state(sim, instance, 3, 16)  # UNKNOWN
    rule = {
        "IpProtocol": "tcp",
        "FromPort": 22,
        "ToPort": 22,
        "IpRanges": [{"CidrIp": "10.0.0.0/8"}],
    }
    run(engine, "AuthorizeSecurityGroupIngress", {"GroupId": gid, "IpPermissions": [rule]}, "demo")
    group = etree.fromstring(sim.as_admin("one.secgroup.info", int(gid[3:])).encode())
    assert group.find("UPDATED_VMS/ID") is None
    assert group.findtext("ERROR_VMS/ID") == str(vm_number(instance))
    assert dry(engine, "DeleteSecurityGroup", {"GroupId": gid}) == "DependencyViolation"
    with pytest.raises(Ec2Error) as err:
        run(engine, "DeleteSecurityGroup", {"GroupId": gid}, user="demo")
    assert err.value.code == "DependencyViolation"
    put_state(sim, instance, 3, 3)
    run(engine, "TerminateInstances", {"InstanceId": [instance]}, user="demo")
    assert dry(engine, "DeleteSecurityGroup", {"GroupId": gid}) == "DryRunOperation"
    run(engine, "DeleteSecurityGroup", {"GroupId": gid}, user="demo")
