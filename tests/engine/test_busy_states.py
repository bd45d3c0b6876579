"""Instance actions on VMs oned is busy with (a migration, a hotplug, a disk save) or has lost
(UNKNOWN): refused before any instance is touched, as oned would refuse them one by one; an
UNKNOWN VM is stopped or rebooted (started again) as oned allows."""

from __future__ import annotations

import pytest

from econe.errors import Ec2Error
from tests.engine.conftest import Sim, run
from tests.engine.test_instance_status import put_state
from tests.engine.test_sim import launch, vm_number


def state(sim: Sim, instance_id: str) -> tuple[str, str]:
    vm = sim.vm(vm_number(instance_id))
    return vm.findtext("STATE"), vm.findtext("LCM_STATE")


@pytest.fixture
def pair(engine) -> list[str]:
    made = [i["InstanceId"] for i in launch(engine, MinCount=2, MaxCount=2)["Instances"]]
    yield made
    run(engine, "TerminateInstances", {"InstanceId": made}, user="demo")


@pytest.mark.parametrize(
    ("action", "busy", "other"),
    [
        ("RebootInstances", (3, 4), None),  # MIGRATE: "running" for EC2
        ("StopInstances", (3, 17), None),  # HOTPLUG
        ("StartInstances", (3, 27), (8, 0)),  # HOTPLUG_SAVEAS_POWEROFF: "stopped"
    ],
)
def test_a_busy_instance_fails_the_request_before_any_is_touched(
    sim: Sim, engine, pair, action, busy, other
) -> None:
    idle, working = pair
    if other is not None:
        put_state(sim, idle, *other)
    before = state(sim, idle)
    put_state(sim, working, *busy)
    with pytest.raises(Ec2Error) as err:
        run(engine, action, {"InstanceId": pair}, user="demo")
    assert err.value.code == "IncorrectInstanceState" and working in err.value.message
    assert "busy" in err.value.message
    assert state(sim, idle) == before  # untouched
    put_state(sim, working, 3, 3)


def test_a_lost_instance_can_be_rebooted_and_stopped(sim: Sim, engine, pair) -> None:
    lost, other = pair
    put_state(sim, lost, 3, 16)  # UNKNOWN
    run(engine, "RebootInstances", {"InstanceId": [lost]}, user="demo")
    assert state(sim, lost) == ("3", "3")  # oned booted it again (resume), speed 0
    put_state(sim, lost, 3, 16)
    stopped = run(engine, "StopInstances", {"InstanceId": [lost]}, user="demo")
    assert stopped["StoppingInstances"][0]["PreviousState"]["Name"] == "running"
    assert state(sim, lost) == ("8", "0")


def test_force_makes_a_stuck_stop_hard_and_a_terminated_reboot_is_ignored(
    sim: Sim, engine, pair
) -> None:
    stuck, gone = pair
    put_state(sim, stuck, 3, 18)  # SHUTDOWN_POWEROFF: the guest ignores the ACPI signal
    soft = run(engine, "StopInstances", {"InstanceId": [stuck]}, user="demo")
    assert soft["StoppingInstances"][0]["CurrentState"]["Name"] == "stopping"
    assert state(sim, stuck) == ("3", "18")  # asked again: nothing changes
    run(engine, "StopInstances", {"InstanceId": [stuck], "Force": True}, user="demo")
    assert state(sim, stuck) == ("8", "0")  # poweroff-hard cut it short
    put_state(sim, gone, 3, 36)  # BOOT_FAILURE: shown as terminated, so ignored too
    assert run(engine, "RebootInstances", {"InstanceId": [gone]}, user="demo") == {}
    assert state(sim, gone) == ("3", "36")
    run(engine, "TerminateInstances", {"InstanceId": [gone]}, user="demo")
    assert run(engine, "RebootInstances", {"InstanceId": [gone]}, user="demo") == {}


def test_hibernate_suspends_a_running_instance_and_stops_a_lost_one(sim: Sim, engine) -> None:
    """oned suspends RUNNING VMs only; one that cannot hibernate stops, as on EC2, and the
    request does not fail halfway."""
    made = launch(engine, MinCount=2, MaxCount=2, HibernationOptions={"Configured": True})
    running, lost = pair = [i["InstanceId"] for i in made["Instances"]]
    try:
        put_state(sim, lost, 3, 16)  # UNKNOWN
        run(engine, "StopInstances", {"InstanceId": pair, "Hibernate": True}, user="demo")
        assert state(sim, running) == ("5", "0")  # SUSPENDED
        assert state(sim, lost) == ("8", "0")  # POWEROFF
    finally:
        run(engine, "TerminateInstances", {"InstanceId": pair}, user="demo")


def test_hibernate_needs_an_instance_launched_for_it(sim: Sim, engine, pair) -> None:
    """As EC2: Hibernate on an instance launched without HibernationOptions.Configured is
    refused, and no instance of the request is touched (not even one that could be)."""
    made = launch(engine, HibernationOptions={"Configured": True})
    configured = made["Instances"][0]["InstanceId"]
    try:
        body = {"InstanceId": [configured, pair[1]], "Hibernate": True}
        with pytest.raises(Ec2Error) as exc:
            run(engine, "StopInstances", body, user="demo")
        assert exc.value.code == "UnsupportedHibernationConfiguration"
        assert exc.value.status == 400
        assert exc.value.message == (
            "The instance can't be hibernated because it was not configured at launch for "
            f"hibernation: {pair[1]}"
        )
        assert state(sim, configured) == state(sim, pair[1]) == ("3", "3")  # both still run
        run(engine, "StopInstances", {"InstanceId": [pair[1]]}, user="demo")  # a plain stop
        assert state(sim, pair[1]) == ("8", "0")
    finally:
        run(engine, "TerminateInstances", {"InstanceId": [configured]}, user="demo")


def test_skip_os_shutdown_cuts_a_stuck_stop_short_as_force(sim: Sim, engine, pair) -> None:
    stuck = pair[0]
    put_state(sim, stuck, 3, 18)  # SHUTDOWN_POWEROFF
    run(engine, "StopInstances", {"InstanceId": [stuck], "SkipOsShutdown": True}, user="demo")
    assert state(sim, stuck) == ("8", "0")
