"""TerminateInstances right after RunInstances, on a onesim that takes time (speed 0.5 s/step):
oned refuses terminate in PROLOG/BOOT; econe marks the VM and finishes the job later."""

from __future__ import annotations

import importlib
import time

import pytest

from tests.engine.conftest import Sim, run

AMI = "ami-00000000"
STEP = 0.5


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Sim:
    server_mod = importlib.import_module("onesim.server")
    server = server_mod.SimServer(
        str(tmp_path_factory.mktemp("onesim-slow")),
        host="127.0.0.1",
        port=0,
        seed="demo",
        speed=STEP,
    )
    server.start()
    try:
        yield Sim(server)
    finally:
        server.stop()


def state(sim: Sim, iid: str) -> tuple[int, int]:
    vm = sim.vm(int(iid.split("-")[1]))
    return int(vm.findtext("STATE")), int(vm.findtext("LCM_STATE"))


def launch_in_prolog(sim: Sim, engine) -> str:
    iid = run(engine, "RunInstances", {"ImageId": AMI}, user="demo")["Instances"][0]["InstanceId"]
    deadline = time.monotonic() + 10 * STEP
    while state(sim, iid) not in ((3, 1), (3, 2)):  # PROLOG or BOOT: oned refuses terminate
        assert time.monotonic() < deadline, state(sim, iid)
        time.sleep(0.05)
    return iid


def wait_done(sim: Sim, iid: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while state(sim, iid)[0] != 6:
        assert time.monotonic() < deadline, f"{iid} still {state(sim, iid)}"
        time.sleep(0.1)


def test_terminate_during_prolog_finishes_in_the_background(slow: Sim) -> None:
    engine = slow.engine()
    try:
        run(engine, "RegisterImage", {"ImageLocation": AMI}, user="demo")
        iid = launch_in_prolog(slow, engine)
        out = run(engine, "TerminateInstances", {"InstanceId": [iid]}, user="demo")
        (change,) = out["TerminatingInstances"]
        assert change["CurrentState"] == {"Code": 32, "Name": "shutting-down"}
        assert change["PreviousState"]["Name"] == "pending"
        vm = slow.vm(int(iid.split("-")[1]))
        assert vm.findtext("USER_TEMPLATE/EC2_TERMINATE_REQUESTED").isdigit()
        shown = run(engine, "DescribeInstances", {"InstanceId": [iid]}, user="demo")
        assert shown["Reservations"][0]["Instances"][0]["State"]["Name"] in (
            "shutting-down",
            "terminated",
        )
        # terminating again while pending is accepted too
        again = run(engine, "TerminateInstances", {"InstanceId": [iid]}, user="demo")
        assert again["TerminatingInstances"][0]["CurrentState"]["Name"] in (
            "shutting-down",
            "terminated",
        )
        # nobody describes it: the engine's own retry terminates it
        wait_done(slow, iid)
        shown = run(engine, "DescribeInstances", {"InstanceId": [iid]}, user="demo")
        assert shown["Reservations"][0]["Instances"][0]["State"]["Name"] == "terminated"
    finally:
        engine.close()


def test_another_gateway_finishes_it(slow: Sim) -> None:
    first = slow.engine()
    run(first, "RegisterImage", {"ImageLocation": AMI}, user="demo")
    iid = launch_in_prolog(slow, first)
    run(first, "TerminateInstances", {"InstanceId": [iid]}, user="demo")
    first.close()  # the gateway that took the request goes away: its retry stops
    time.sleep(4 * STEP)
    assert state(slow, iid) == (3, 3)  # RUNNING, marked, nobody has finished it yet
    second = slow.engine()
    try:
        listed = run(second, "DescribeInstances", {}, user="demo")["Reservations"]
        states = {i["InstanceId"]: i["State"]["Name"] for r in listed for i in r["Instances"]}
        assert states[iid] == "shutting-down"
        wait_done(slow, iid)
    finally:
        second.close()
    assert state(slow, iid)[0] == 6


def test_no_vm_left_running(slow: Sim) -> None:
    engine = slow.engine()
    try:
        run(engine, "RegisterImage", {"ImageLocation": AMI}, user="demo")
        res = run(engine, "RunInstances", {"ImageId": AMI, "MaxCount": 3}, user="demo")
        ids = [i["InstanceId"] for i in res["Instances"]]
        time.sleep(STEP * 1.2)
        out = run(engine, "TerminateInstances", {"InstanceId": ids}, user="demo")
        assert {c["CurrentState"]["Name"] for c in out["TerminatingInstances"]} <= {
            "shutting-down",
            "terminated",
        }
        for iid in ids:
            wait_done(slow, iid)
    finally:
        engine.close()


def test_terminate_when_the_vm_moved_on_since_it_was_read(slow: Sim) -> None:
    """oned refuses the action because the VM changed state between econe's read and its
    call (PENDING → PROLOG under load): econe reads it again and acts on what it finds,
    never answering IncorrectInstanceState for an instance EC2 would terminate."""
    engine = slow.engine()
    try:
        run(engine, "RegisterImage", {"ImageLocation": AMI}, user="demo")
        iid = run(engine, "RunInstances", {"ImageId": AMI}, user="demo")["Instances"][0][
            "InstanceId"
        ]
        # the next one.vm.action is refused as oned refuses an action in the wrong state
        slow.as_admin("onesim.fault.set", "one.vm.action", 0x800, "Wrong state", 0, 1)
        try:
            out = run(engine, "TerminateInstances", {"InstanceId": [iid]}, user="demo")
        finally:
            slow.as_admin("onesim.fault.clear")
        (change,) = out["TerminatingInstances"]
        assert change["CurrentState"]["Name"] in ("shutting-down", "terminated")
        wait_done(slow, iid)
    finally:
        engine.close()
