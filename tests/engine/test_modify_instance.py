"""ModifyInstanceAttribute on a live onesim: a stopped instance changes type (one.vm.resize),
what asks for nothing is accepted, the rest refused, and a failure leaves the instance as it was."""

from __future__ import annotations

import pytest

from econe.errors import Ec2Error
from tests.engine.conftest import Sim, run
from tests.engine.test_sim import launch, vm_number


def sizes(sim: Sim, instance: str) -> tuple[str, str, str, str]:
    vm = sim.vm(vm_number(instance))
    return (
        vm.findtext("TEMPLATE/CPU"),
        vm.findtext("TEMPLATE/VCPU"),
        vm.findtext("TEMPLATE/MEMORY"),
        vm.findtext("USER_TEMPLATE/EC2_INSTANCE_TYPE"),
    )


def modify(engine, instance: str, user: str = "demo", **body) -> dict:
    return run(engine, "ModifyInstanceAttribute", {"InstanceId": instance, **body}, user=user)


def code_of(engine, instance: str, **body) -> str:
    with pytest.raises(Ec2Error) as err:
        modify(engine, instance, **body)
    return err.value.code


@pytest.fixture(scope="module")
def big_type(sim: Sim) -> str:
    """m1.big: a VM template of the user's own, tagged EC2_INSTANCE_TYPE."""
    sim.client.call(
        "demo:demo",
        "one.template.allocate",
        'NAME="big"\nEC2_INSTANCE_TYPE="m1.big"\nCPU="2"\nVCPU="2"\nMEMORY="2048"',
    )
    return "m1.big"


@pytest.fixture
def stopped(sim: Sim, engine, big_type) -> str:
    (inst,) = launch(engine)["Instances"]
    run(engine, "StopInstances", {"InstanceId": [inst["InstanceId"]]}, user="demo")
    yield inst["InstanceId"]
    run(engine, "TerminateInstances", {"InstanceId": [inst["InstanceId"]]}, user="demo")


def test_a_stopped_instance_changes_type(sim: Sim, engine, stopped) -> None:
    assert sizes(sim, stopped)[2:] == ("256", "m1.small")
    assert modify(engine, stopped, InstanceType={"Value": "m1.big"}) == {}
    assert sizes(sim, stopped) == ("2", "2", "2048", "m1.big")
    (inst,) = run(engine, "DescribeInstances", {"InstanceId": [stopped]}, user="demo")[
        "Reservations"
    ][0]["Instances"]
    assert inst["InstanceType"] == "m1.big"
    # back, by the Attribute/Value form: all three sizes as a launch of m1.small gets them
    modify(engine, stopped, Attribute="instanceType", Value="m1.small")
    assert sizes(sim, stopped) == ("0.2", "1", "256", "m1.small")
    run(engine, "StartInstances", {"InstanceId": [stopped]}, user="demo")
    assert code_of(engine, stopped, InstanceType={"Value": "m1.big"}) == "IncorrectInstanceState"


def test_refusals_change_nothing(sim: Sim, engine, stopped) -> None:
    before = sizes(sim, stopped)
    for body, code in (
        ({"InstanceType": {"Value": "c9.none"}}, "InvalidInstanceAttributeValue"),
        ({"UserData": {"Value": "eA=="}}, "UnsupportedOperation"),
        ({"DisableApiTermination": {"Value": True}}, "UnsupportedOperation"),
        ({"Attribute": "kernel", "Value": "aki-1"}, "UnsupportedOperation"),
        ({"GroupId": ["sg-1"]}, "UnsupportedOperation"),  # boto3's Groups, on the wire
        ({"BlockDeviceMapping": [{"DeviceName": "/dev/sda"}]}, "UnsupportedOperation"),
        ({"Attribute": "instanceType"}, "MissingParameter"),
        (
            {"InstanceType": {"Value": "m1.big"}, "EbsOptimized": {"Value": False}},
            "InvalidParameterCombination",
        ),
        ({}, "InvalidParameterCombination"),
    ):
        assert code_of(engine, stopped, **body) == code, body
    assert sizes(sim, stopped) == before
    # what every instance here already is: accepted, and nothing changes
    for body in (
        {"DisableApiTermination": {"Value": False}},
        {"InstanceInitiatedShutdownBehavior": {"Value": "stop"}},
        {"Attribute": "ebsOptimized", "Value": "false"},
        {"EnclaveOptions": {"Enabled": False}},
    ):
        assert modify(engine, stopped, **body) == {}
    assert sizes(sim, stopped) == before
    sim.as_admin("one.user.allocate", "typechanger", "pw", "core", [1])
    with pytest.raises(Ec2Error) as err:
        modify(engine, stopped, user="typechanger", InstanceType={"Value": "m1.small"})
    assert err.value.code == "InvalidInstanceID.NotFound"


def test_a_refused_resize_leaves_the_instance_as_it_was(sim: Sim, engine, stopped) -> None:
    before = sizes(sim, stopped)
    quota = "User [2] : limit of 1 reached for CPU quota"  # oned's refusal of a larger VM
    sim.as_admin("onesim.fault.set", "one.vm.resize", 0x200, quota, 0, 1)
    assert code_of(engine, stopped, InstanceType={"Value": "m1.big"}) == "InstanceLimitExceeded"
    assert sizes(sim, stopped) == before  # the type's name written back
    assert code_of(engine, stopped, InstanceType={"Value": "m1.big"}, DryRun=True) == (
        "DryRunOperation"
    )
    assert sizes(sim, stopped) == before
    # the host lacks CPU or memory (oned's capacity check): EC2's capacity error
    sim.as_admin("onesim.fault.set", "one.vm.resize", 0x800, "Not enough CPU: 2/1", 0, 1)
    assert code_of(engine, stopped, InstanceType={"Value": "m1.big"}) == (
        "InsufficientInstanceCapacity"
    )
    assert sizes(sim, stopped) == before
