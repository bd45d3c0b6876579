"""DescribeInstanceStatus (a mapping and views only) on a live onesim: which instances it
lists, the checks per OpenNebula state, filters, ids and user isolation."""

from __future__ import annotations

import pytest

from econe.errors import Ec2Error
from tests.engine.conftest import Sim, run
from tests.engine.test_sim import launch, vm_number


def put_state(sim: Sim, instance_id: str, state: int, lcm: int) -> None:
    """Where no API call can take a VM (a host lost, a driver failure), as oned would."""
    core = sim.server.sim
    with core.lock:
        vm = core.store.get("vm", vm_number(instance_id))
        vm["state"], vm["lcm_state"] = state, lcm
        core.store.put("vm", vm)


def statuses(engine, user: str = "demo", **body) -> dict[str, dict]:
    found = run(engine, "DescribeInstanceStatus", body, user=user)["InstanceStatuses"]
    return {s["InstanceId"]: s for s in found}


def check(status: dict) -> tuple[str, str, str]:
    return (
        status["InstanceState"]["Name"],
        status["InstanceStatus"]["Status"],
        status["SystemStatus"]["Status"],
    )


@pytest.fixture
def four(sim: Sim, engine) -> list[str]:
    made = [i["InstanceId"] for i in launch(engine, MinCount=4, MaxCount=4)["Instances"]]
    put_state(sim, made[1], 3, 16)  # UNKNOWN: oned lost its host
    put_state(sim, made[2], 3, 36)  # BOOT_FAILURE
    put_state(sim, made[3], 8, 0)  # POWEROFF
    yield made
    run(engine, "TerminateInstances", {"InstanceId": made}, user="demo")


def test_running_instances_only_unless_all_are_asked_for(engine, four) -> None:
    running, unknown, failed, stopped = four
    default = statuses(engine, InstanceId=four)
    # a VM oned lost (UNKNOWN) is a running instance whose checks fail, as on EC2
    assert list(default) == [running, unknown]
    assert check(default[running]) == ("running", "ok", "ok")
    assert default[running]["InstanceStatus"]["Details"] == [
        {"Name": "reachability", "Status": "passed"}
    ]
    assert default[running]["AvailabilityZone"] == "opennebula"
    assert check(default[unknown]) == ("running", "impaired", "impaired")
    assert default[unknown]["InstanceStatus"]["Details"] == [
        {"Name": "reachability", "Status": "failed"}
    ]
    every = statuses(engine, InstanceId=four, IncludeAllInstances=True)
    assert check(every[failed]) == ("terminated", "not-applicable", "not-applicable")
    assert check(every[stopped]) == ("stopped", "not-applicable", "not-applicable")
    assert "Details" not in every[stopped]["InstanceStatus"]
    (described,) = run(engine, "DescribeInstances", {"InstanceId": [unknown]}, user="demo")[
        "Reservations"
    ][0]["Instances"]
    assert described["State"] == {"Code": 16, "Name": "running"}


def test_filters(engine, four) -> None:
    running, unknown, failed, stopped = four

    def by(name: str, *values: str, every: bool = True) -> list[str]:
        body = {"IncludeAllInstances": every, "Filter": [{"Name": name, "Value": list(values)}]}
        return [i for i in statuses(engine, **body) if i in four]

    # what monitoring scripts ask, without IncludeAllInstances
    assert by("instance-status.status", "impaired", every=False) == [unknown]
    assert by("system-status.reachability", "passed") == [running]
    assert by("instance-state-name", "stopped") == [stopped]
    assert by("instance-state-name", "terminated") == [failed]
    assert by("instance-state-code", "16") == [running, unknown]
    assert by("availability-zone", "elsewhere") == []
    with pytest.raises(Ec2Error) as err:
        by("instance-id", running)  # not a DescribeInstanceStatus filter on EC2 either
    assert err.value.code == "InvalidParameterValue" and "instance-id" in err.value.message


def test_ids_are_checked_and_other_users_instances_do_not_exist(sim: Sim, engine, four) -> None:
    for body, code in (
        ({"InstanceId": ["i-99999999"]}, "InvalidInstanceID.NotFound"),
        ({"InstanceId": ["vol-00000001"]}, "InvalidInstanceID.Malformed"),
    ):
        with pytest.raises(Ec2Error) as err:
            run(engine, "DescribeInstanceStatus", body, user="demo")
        assert err.value.code == code
    sim.as_admin("one.user.allocate", "mallory", "pw", "core", [1])
    with pytest.raises(Ec2Error) as err:
        run(engine, "DescribeInstanceStatus", {"InstanceId": four[:1]}, user="mallory")
    assert err.value.code == "InvalidInstanceID.NotFound"
    assert not set(statuses(engine, user="mallory", IncludeAllInstances=True)) & set(four)
