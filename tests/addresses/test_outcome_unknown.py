"""oned takes a record's write, then the address cannot be read after it: the outcome is not
known. Nothing is undone over a record nobody could read, the user gets Unavailable, and the
same request again converges (docs/elastic-ips.md, "Across gateway processes")."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import handlers.addresses as addresses
from econe.engine import Engine
from econe.one.client import OneUnavailable
from handlers.locks import held as lock
from tests.addresses.conftest import EIP_VNET, Sim, calls, run
from tests.addresses.test_engine import error, held, recording


@pytest.fixture(scope="module")
def eng(sim: Sim) -> Engine:
    return recording(sim)


@pytest.fixture
def reads_fail_after_a_write(sim: Sim, monkeypatch: pytest.MonkeyPatch):
    """`arm(n)`: after the next one.vn.update_ar oned took, the next n one.vn.info calls find
    oned unreachable (3: every read after it, AFTER_READS having three here)."""
    real = sim.client.call
    left = {"armed": 0, "failing": 0}

    def call(session, method, *args):
        if method == "one.vn.info" and left["failing"] > 0:
            left["failing"] -= 1
            raise OneUnavailable("injected: no answer")
        out = real(session, method, *args)
        if method == "one.vn.update_ar" and left["armed"]:
            left["failing"], left["armed"] = left["armed"], 0
        return out

    monkeypatch.setattr(sim.client, "call", call)
    monkeypatch.setattr(addresses, "AFTER_READS", (0.0, 0.01, 0.01))

    def arm(n: int) -> None:
        left["armed"] = n

    return arm


def shown(sim: Sim, eng: Engine, ip: str) -> list[dict]:
    return [a for a in run(sim, eng, "DescribeAddresses")["Addresses"] if a["PublicIp"] == ip]


def test_a_release_not_read_after_is_finished_by_its_retry(
    sim: Sim, eng: Engine, eip_log: Path, reads_fail_after_a_write
) -> None:
    """Before: the address was associated again and its record left cleared over a held lease:
    nobody's, for good, with the network sending it to the instance."""
    out = run(sim, eng, "AllocateAddress")
    ip = out["PublicIp"]
    vm = sim.vm()
    run(sim, eng, "AssociateAddress", {"PublicIp": ip, "InstanceId": f"i-{vm}"})
    n = len(calls(eip_log))
    reads_fail_after_a_write(3)
    err = error(sim, eng, "ReleaseAddress", {"AllocationId": out["AllocationId"]})
    assert (err.code, err.status) == ("Unavailable", 503)
    assert [c[:2] for c in calls(eip_log)[n:]] == [["disassociate", ip]]  # nothing undone
    assert shown(sim, eng, ip) == [] and held(sim.ar(ip))
    # the retry finishes it: the lease is free for anyone
    assert run(sim, eng, "ReleaseAddress", {"AllocationId": out["AllocationId"]}) == {
        "Return": True
    }
    assert not held(sim.ar(ip)) and len(calls(eip_log)) == n + 1
    assert run(sim, eng, "AllocateAddress", {"Address": ip})["PublicIp"] == ip
    # by PublicIp too
    reads_fail_after_a_write(3)
    assert error(sim, eng, "ReleaseAddress", {"PublicIp": ip}).code == "Unavailable"
    sim.user("other")
    assert error(sim, eng, "ReleaseAddress", {"PublicIp": ip}, user="other").code == (
        "InvalidAddress.NotFound"
    )
    run(sim, eng, "ReleaseAddress", {"PublicIp": ip})
    assert not held(sim.ar(ip))
    assert error(sim, eng, "ReleaseAddress", {"PublicIp": ip}).code == "InvalidAddress.NotFound"


def test_a_read_after_that_fails_once_is_tried_again(
    sim: Sim, eng: Engine, reads_fail_after_a_write
) -> None:
    ip = run(sim, eng, "AllocateAddress")["PublicIp"]
    reads_fail_after_a_write(2)
    assert run(sim, eng, "ReleaseAddress", {"PublicIp": ip}) == {"Return": True}
    assert not held(sim.ar(ip))


def test_a_disassociation_not_read_after_stays_and_its_retry_succeeds(
    sim: Sim, eng: Engine, eip_log: Path, reads_fail_after_a_write
) -> None:
    """Before: the address was associated again on the network under a cleared record."""
    ip = run(sim, eng, "AllocateAddress")["PublicIp"]
    vm = sim.vm()
    run(sim, eng, "AssociateAddress", {"PublicIp": ip, "InstanceId": f"i-{vm}"})
    n = len(calls(eip_log))
    reads_fail_after_a_write(3)
    err = error(sim, eng, "DisassociateAddress", {"PublicIp": ip})
    assert (err.code, err.status) == ("Unavailable", 503)
    assert [c[:2] for c in calls(eip_log)[n:]] == [["disassociate", ip]]
    assert "InstanceId" not in shown(sim, eng, ip)[0]
    assert run(sim, eng, "DisassociateAddress", {"PublicIp": ip}) == {"Return": True}
    run(sim, eng, "ReleaseAddress", {"PublicIp": ip})


def test_an_association_not_read_after_stays_and_its_retry_runs_the_script(
    sim: Sim, eng: Engine, eip_log: Path, reads_fail_after_a_write
) -> None:
    """Before: the script was taken back under a record saying associated, and a retry
    answered the association without running it: no NAT, for good."""
    ip = run(sim, eng, "AllocateAddress")["PublicIp"]
    vm = sim.vm()
    body = {"PublicIp": ip, "InstanceId": f"i-{vm}"}
    n = len(calls(eip_log))
    reads_fail_after_a_write(3)
    err = error(sim, eng, "AssociateAddress", body)
    assert (err.code, err.status) == ("Unavailable", 503)
    associate = ["associate", ip, sim.vm_ip(vm)]
    assert [c[:3] for c in calls(eip_log)[n:]] == [associate]  # not taken back
    (address,) = shown(sim, eng, ip)
    assert address["InstanceId"] == f"i-{vm:08d}"
    assert run(sim, eng, "AssociateAddress", body)["AssociationId"] == address["AssociationId"]
    assert [c[:3] for c in calls(eip_log)[n:]] == [associate, associate]
    (res,) = run(sim, eng, "DescribeInstances", {"InstanceId": [f"i-{vm}"]})["Reservations"]
    assert res["Instances"][0]["PublicIpAddress"] == ip
    run(sim, eng, "ReleaseAddress", {"PublicIp": ip})


def test_another_users_association_with_my_instance_never_waits_for_its_lock(
    sim: Sim, eng: Engine
) -> None:
    """Another user naming my instance is refused before taking its lock: a flood of them
    cannot make my AssociateAddress wait or be refused (RequestLimitExceeded)."""
    sim.user("mallory")
    theirs = run(sim, eng, "AllocateAddress", user="mallory")["PublicIp"]
    vm = sim.vm()
    out: dict = {}

    def theirs_on_mine() -> None:
        body = {"PublicIp": theirs, "InstanceId": f"i-{vm}"}
        out["code"] = error(sim, eng, "AssociateAddress", body, user="mallory").code

    with lock("instance", EIP_VNET, vm):  # my own request holds it
        t = threading.Thread(target=theirs_on_mine)
        t.start()
        t.join(timeout=10)
        assert not t.is_alive()
    assert out["code"] == "InvalidInstanceID.NotFound"
    run(sim, eng, "ReleaseAddress", {"PublicIp": theirs}, user="mallory")


@pytest.mark.parametrize(
    ("action", "by", "code"),
    [
        ("DisassociateAddress", "AssociationId", "InvalidAssociationID.NotFound"),
        ("AssociateAddress", "AllocationId", "InvalidAllocationID.NotFound"),
        ("DisassociateAddress", "PublicIp", "InvalidAddress.NotFound"),
    ],
)
def test_a_request_losing_to_a_release_says_not_found_by_its_own_identifier(
    sim: Sim, eng: Engine, monkeypatch: pytest.MonkeyPatch, action: str, by: str, code: str
) -> None:
    """Another gateway process releases the address while this request's script runs."""
    out = run(sim, eng, "AllocateAddress")
    ip = out["PublicIp"]
    vm, vm2 = sim.vm(), sim.vm()
    assoc = run(sim, eng, "AssociateAddress", {"PublicIp": ip, "InstanceId": f"i-{vm}"})
    ids = {"PublicIp": ip, **out, **assoc}
    body = {by: ids[by]} | ({"InstanceId": f"i-{vm2}"} if action == "AssociateAddress" else {})
    ar_id = sim.ar(ip).findtext("AR_ID")

    def released_elsewhere(script):
        def run_script(*args):
            script(*args)
            from handlers.escaping import template_xml

            vector = [("AR_ID", ar_id), *((k, "") for k in addresses.EC2_KEYS)]
            sim.as_admin("one.vn.update_ar", EIP_VNET, template_xml([("AR", vector)]))
            sim.as_admin("one.vn.release", EIP_VNET, f'LEASES=[IP="{ip}"]')
            monkeypatch.undo()

        return run_script

    for name in ("_associate", "_disassociate"):
        monkeypatch.setattr(addresses, name, released_elsewhere(getattr(addresses, name)))
    assert error(sim, eng, action, body).code == code
    assert not held(sim.ar(ip))


def test_a_lost_request_puts_the_network_back_as_recorded_after_its_scripts(
    sim: Sim, eng: Engine, eip_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DisassociateAddress loses to another gateway process moving the address to vm2, and
    while it puts the network back that one moves it again, to vm3: the network ends at vm3,
    as recorded (before, the repair acted on the record it read first: vm2)."""
    from handlers.escaping import template_xml
    from tests.addresses.test_engine import ec2_attrs

    ip = run(sim, eng, "AllocateAddress")["PublicIp"]
    vm1, vm2, vm3 = sim.vm(), sim.vm(), sim.vm()
    run(sim, eng, "AssociateAddress", {"PublicIp": ip, "InstanceId": f"i-{vm1}"})
    n = len(calls(eip_log))
    real = addresses._disassociate
    moves = [vm2, vm3]

    def moved_elsewhere(rt, address) -> None:
        real(rt, address)
        if moves:  # the other gateway's association lands
            vm = moves.pop(0)
            ar = sim.ar(ip)
            record = {
                **ec2_attrs(ar),
                "EC2_INSTANCE": str(vm),
                "EC2_ASSOCIATION_ID": f"eipassoc-{vm:x}",
                "EC2_PRIVATE_IP": sim.vm_ip(vm),
                "EC2_NONCE": f"{vm:x}",
            }
            vector = [("AR_ID", ar.findtext("AR_ID")), *record.items()]
            sim.as_admin("one.vn.update_ar", EIP_VNET, template_xml([("AR", vector)]))

    monkeypatch.setattr(addresses, "_disassociate", moved_elsewhere)
    assert error(sim, eng, "DisassociateAddress", {"PublicIp": ip}).code == "Unavailable"
    assert [c[:3] for c in calls(eip_log)[n:]] == [
        ["disassociate", ip],
        ["disassociate", ip],
        ["associate", ip, sim.vm_ip(vm2)],
        ["disassociate", ip],
        ["associate", ip, sim.vm_ip(vm3)],
    ]
    assert shown(sim, eng, ip)[0]["InstanceId"] == f"i-{vm3:08d}"
    monkeypatch.undo()
    run(sim, eng, "ReleaseAddress", {"PublicIp": ip})
