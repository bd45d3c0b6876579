"""ModifyInstanceAttribute on a live onesim: a stopped instance changes type (one.vm.resize) or
user data (one.vm.updateconf), what asks for nothing is accepted, the rest refused, and a failure
leaves the instance as it was."""

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


def context(sim: Sim, instance: str) -> dict[str, str]:
    return {c.tag: c.text or "" for c in sim.vm(vm_number(instance)).find("TEMPLATE/CONTEXT")}


def user_data(engine, instance: str) -> dict:
    answer = run(
        engine,
        "DescribeInstanceAttribute",
        {"InstanceId": instance, "Attribute": "userData"},
        user="demo",
    )
    return answer["UserData"]


def test_a_stopped_instance_changes_user_data(sim: Sim, engine, stopped) -> None:
    """Terraform's user_data change: stop, ModifyInstanceAttribute UserData, start. The new
    data is where RunInstances puts it (cloud-init's USERDATA and EC2_USER_DATA); the rest of
    the context stays."""
    before = context(sim, stopped)
    assert "USERDATA" not in before and user_data(engine, stopped) == {}
    script = "I2Nsb3VkLWNvbmZpZwpydW5jbWQ6IFtlY2hvLCAiaGkiXQo="  # #cloud-config, runcmd
    assert modify(engine, stopped, UserData={"Value": script}) == {}
    after = context(sim, stopped)
    assert after == {
        **before,
        "USERDATA": script,
        "USERDATA_ENCODING": "base64",
        "EC2_USER_DATA": script,
    }
    assert user_data(engine, stopped) == {"Value": script}
    # the Attribute/Value form; an empty value takes the user data away
    modify(engine, stopped, Attribute="userData", Value="eA==")
    assert user_data(engine, stopped) == {"Value": "eA=="}
    modify(engine, stopped, UserData={"Value": ""})
    assert user_data(engine, stopped) == {} and context(sim, stopped)["USERDATA"] == ""
    assert context(sim, stopped)["ETH0_IP"] == before["ETH0_IP"]
    big = "QUFB" * 5462  # 16,386 bytes decoded: over EC2's 16 KB
    assert code_of(engine, stopped, UserData={"Value": big}) == "InvalidParameterValue"
    assert code_of(engine, stopped, UserData={"Value": "eA=="}, DryRun=True) == "DryRunOperation"
    assert user_data(engine, stopped) == {}
    run(engine, "StartInstances", {"InstanceId": [stopped]}, user="demo")
    assert code_of(engine, stopped, UserData={"Value": "eA=="}) == "IncorrectInstanceState"
    assert user_data(engine, stopped) == {}


def test_refusals_change_nothing(sim: Sim, engine, stopped) -> None:
    before = sizes(sim, stopped)
    for body, code in (
        ({"InstanceType": {"Value": "c9.none"}}, "InvalidInstanceAttributeValue"),
        ({"UserData": {"Value": "not base64!"}}, "InvalidParameterValue"),
        ({"DisableApiTermination": {"Value": True}}, "UnsupportedOperation"),
        ({"Attribute": "kernel", "Value": "aki-1"}, "UnsupportedOperation"),
        ({"InstanceInitiatedShutdownBehavior": {"Value": "bogus"}}, "InvalidParameterValue"),
        ({"Attribute": "instanceInitiatedShutdownBehavior", "Value": "x"}, "InvalidParameterValue"),
        ({"InstanceInitiatedShutdownBehavior": {"Value": "terminate"}}, "UnsupportedOperation"),
        ({"Attribute": "productCodes", "Value": "x"}, "InvalidParameterValue"),  # not modifiable
        ({"SriovNetSupport": {"Value": "simple"}}, "UnsupportedOperation"),
        ({"GroupId": ["sg-1"]}, "InvalidGroup.NotFound"),  # boto3's Groups, on the wire
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
        {"Attribute": "disableApiTermination", "Value": "False"},  # text, in any case
        {"EnclaveOptions": {"Enabled": False}},
        {"SriovNetSupport": {"Value": ""}},  # no kernel, ramdisk, SR-IOV: empty asks nothing
        {"Kernel": {"Value": ""}},
        {"Attribute": "ramdisk", "Value": ""},
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
    with pytest.raises(Ec2Error) as err:
        modify(engine, stopped, InstanceType={"Value": "m1.big"})
    # a server error for EC2, as RunInstances answers it when the cloud is out of addresses
    assert (err.value.code, err.value.status) == ("InsufficientInstanceCapacity", 500)
    assert sizes(sim, stopped) == before


def test_user_data_needs_a_context(sim: Sim, engine, big_type) -> None:
    """An instance of a VM template without CONTEXT has nowhere to carry user data: oned
    cannot add a context afterwards, and the answer says so."""
    (inst,) = launch(engine, InstanceType="m1.big")["Instances"]
    instance = inst["InstanceId"]
    try:
        run(engine, "StopInstances", {"InstanceId": [instance]}, user="demo")
        assert sim.vm(vm_number(instance)).find("TEMPLATE/CONTEXT") is None
        assert code_of(engine, instance, UserData={"Value": "eA=="}) == "UnsupportedOperation"
    finally:
        run(engine, "TerminateInstances", {"InstanceId": [instance]}, user="demo")


def test_user_data_keeps_a_context_with_files(sim: Sim, engine, stopped) -> None:
    """oned refuses a user's CONTEXT whose restricted FILES differs from the VM's: the change
    carries the VM's FILES along, and the files stay."""
    store = sim.server.sim.store
    vm = store.get("vm", vm_number(stopped))
    next(v for k, v in vm["template"] if k == "CONTEXT").append(["FILES", "/var/tmp/init.sh"])
    store.put("vm", vm)
    assert modify(engine, stopped, UserData={"Value": "eA=="}) == {}
    after = context(sim, stopped)
    assert after["FILES"] == "/var/tmp/init.sh" and after["USERDATA"] == "eA=="


def test_a_hibernated_or_busy_instance_says_why_it_cannot_change(
    sim: Sim, engine, big_type
) -> None:
    from tests.engine.test_instance_status import put_state

    (inst,) = launch(engine, HibernationOptions={"Configured": True})["Instances"]
    iid = inst["InstanceId"]
    try:
        run(engine, "StopInstances", {"InstanceId": [iid], "Hibernate": True}, user="demo")
        assert sim.vm(vm_number(iid)).findtext("STATE") == "5"  # SUSPENDED: shown stopped
        for body in ({"InstanceType": {"Value": "m1.big"}}, {"UserData": {"Value": ""}}):
            with pytest.raises(Ec2Error) as err:
                modify(engine, iid, **body)
            assert err.value.code == "IncorrectInstanceState"
            assert "hibernated" in err.value.message and iid in err.value.message
        put_state(sim, iid, 3, 51)  # DISK_SNAPSHOT_POWEROFF: stopped, oned busy with a disk
        with pytest.raises(Ec2Error) as err:
            modify(engine, iid, InstanceType={"Value": "m1.big"})
        assert err.value.code == "IncorrectInstanceState" and "busy" in err.value.message
        put_state(sim, iid, 3, 3)
        with pytest.raises(Ec2Error) as err:
            modify(engine, iid, InstanceType={"Value": "m1.big"})
        assert "not in the 'stopped' state" in err.value.message
    finally:
        run(engine, "TerminateInstances", {"InstanceId": [iid]}, user="demo")
