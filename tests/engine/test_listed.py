"""Which instances exist: one rule (views/instance.yaml `where:`) for every instance action."""

from __future__ import annotations

import pytest

from econe.errors import Ec2Error
from tests.engine.conftest import Sim, run
from tests.engine.test_sim import ids, launch, vm_number

ACTIONS = [
    ("DescribeInstances", {}),
    ("DescribeInstanceStatus", {}),
    ("DescribeInstanceAttribute", {"Attribute": "instanceType"}),
    ("StartInstances", {}),
    ("StopInstances", {}),
    ("RebootInstances", {}),
    ("TerminateInstances", {}),
    ("ModifyInstanceAttribute", {"InstanceType": {"Value": "m1.small"}}),
]


def error(engine, action: str, body: dict) -> Ec2Error:
    with pytest.raises(Ec2Error) as err:
        run(engine, action, body, user="demo")
    return err.value


def ask(action: str, body: dict, instance: str) -> dict:
    many = action not in ("DescribeInstanceAttribute", "ModifyInstanceAttribute")
    return {**body, "InstanceId": [instance] if many else instance}


def test_a_rolled_back_instance_exists_for_no_action(sim: Sim, engine) -> None:
    (iid,) = ids(launch(engine))
    sim.as_admin("one.vm.update", vm_number(iid), 'EC2_ROLLED_BACK="1"', 1)
    try:
        for action, body in ACTIONS:
            assert error(engine, action, ask(action, body, iid)).code == (
                "InvalidInstanceID.NotFound"
            ), action
        image = {"InstanceId": iid, "Name": "from-a-rolled-back-one"}  # nor for the others
        assert error(engine, "CreateImage", image).code == "InvalidInstanceID.NotFound"
    finally:
        sim.as_admin("one.vm.action", "terminate-hard", vm_number(iid))


def test_a_terminated_instance_is_listed_and_cannot_be_modified(sim: Sim, engine) -> None:
    (iid,) = ids(launch(engine))
    run(engine, "TerminateInstances", {"InstanceId": [iid]}, user="demo")
    assert ids(run(engine, "DescribeInstances", {"InstanceId": [iid]}, user="demo")) == [iid]
    for body in ({"InstanceType": {"Value": "m1.small"}}, {"GroupId": ["sg-0"]}):
        err = error(engine, "ModifyInstanceAttribute", {"InstanceId": iid, **body})
        assert err.code == "IncorrectInstanceState" and "terminated" in err.message
    # not listed at all without describe_with_terminated_instances: no action finds it
    hidden = sim.engine(describe_with_terminated_instances=False)
    try:
        for action, body in ACTIONS:
            assert error(hidden, action, ask(action, body, iid)).code == (
                "InvalidInstanceID.NotFound"
            ), action
        # nor the handlers' instance actions
        vid = run(hidden, "CreateVolume", {"Size": 1}, user="demo")["VolumeId"]
        for action, body in (
            ("CreateImage", {"InstanceId": iid, "Name": "from-a-gone-one"}),
            ("AttachVolume", {"InstanceId": iid, "VolumeId": vid, "Device": "/dev/sdf"}),
        ):
            assert error(hidden, action, body).code == "InvalidInstanceID.NotFound", action
    finally:
        hidden.close()


def describe(engine, iid: str) -> dict:
    (inst,) = run(engine, "DescribeInstances", {"InstanceId": [iid]}, user="demo")["Reservations"][
        0
    ]["Instances"]
    return inst


def test_a_failed_vm_is_terminated_everywhere(sim: Sim, engine) -> None:
    from tests.engine.test_instance_status import put_state

    (iid,) = ids(launch(engine))
    ip = describe(engine, iid)["PrivateIpAddress"]
    assert ip and "StateReason" not in describe(engine, iid)  # running: no reason
    put_state(sim, iid, 3, 36)  # BOOT_FAILURE: shown terminated
    inst = describe(engine, iid)
    assert inst["State"]["Name"] == "terminated"
    assert "PrivateIpAddress" not in inst or inst["PrivateIpAddress"] is None
    assert inst["StateReason"]["Code"] == "Server.InternalError"
    by_ip = {"Filter": [{"Name": "private-ip-address", "Values": [ip]}]}
    assert iid not in ids(run(engine, "DescribeInstances", by_ip, user="demo"))
    (term,) = run(engine, "TerminateInstances", {"InstanceId": [iid]}, user="demo")[
        "TerminatingInstances"
    ]
    assert term["PreviousState"]["Name"] == term["CurrentState"]["Name"] == "terminated"
    image = {"InstanceId": iid, "Name": "from-a-failed-one"}  # terminated for the handlers too
    assert error(engine, "CreateImage", image).code == "IncorrectInstanceState"
    assert sim.vm(vm_number(iid)).findtext("STATE") == "6"  # cleaned up in OpenNebula


def test_stopped_instances_say_why(sim: Sim, engine) -> None:
    plain, hibernating = ids(
        launch(engine, MinCount=2, MaxCount=2, HibernationOptions={"Configured": True})
    )
    try:
        run(engine, "StopInstances", {"InstanceId": [plain]}, user="demo")
        run(engine, "StopInstances", {"InstanceId": [hibernating], "Hibernate": True}, user="demo")
        assert describe(engine, plain)["StateReason"] == {
            "Code": "Client.UserInitiatedShutdown",
            "Message": "Client.UserInitiatedShutdown: User initiated shutdown",
        }
        assert describe(engine, hibernating)["StateReason"]["Code"] == (
            "Client.UserInitiatedHibernate"
        )
    finally:
        run(engine, "TerminateInstances", {"InstanceId": [plain, hibernating]}, user="demo")
    assert describe(engine, plain)["StateReason"]["Code"] == "Client.UserInitiatedShutdown"
