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
    finally:
        hidden.close()
