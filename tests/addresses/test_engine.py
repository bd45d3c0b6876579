"""Elastic IPs through the engine against a live onesim (no mocks): state, scripts, errors."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest
from lxml import etree

from econe.config import Config
from econe.engine import Engine, Runtime
from econe.errors import Ec2Error
from econe.one.client import OneClient
from econe.one.session import ServerCipherSessions
from handlers.addresses import (
    add_public_ips,
    addresses_of_instances,
    disassociate_instances,
)
from tests.addresses.conftest import EIP_VNET, RECORDER, Sim, b64xml, calls, context, run, script

ACTIONS = (
    ("AllocateAddress", {}),
    ("DescribeAddresses", {}),
    ("AssociateAddress", {"PublicIp": "198.51.100.1", "InstanceId": "i-0"}),
    ("DisassociateAddress", {"PublicIp": "198.51.100.1"}),
    ("ReleaseAddress", {"PublicIp": "198.51.100.1"}),
)


def error(
    sim: Sim, engine: Engine, action: str, body: dict | None = None, user: str = "demo"
) -> Ec2Error:
    with pytest.raises(Ec2Error) as err:
        run(sim, engine, action, body, user)
    return err.value


def recording(sim: Sim, **overrides) -> Engine:
    return sim.engine(
        # fixed leading arguments: the interpreter (quicker than a pyenv shim) and the verb
        associate_script=f"{sys.executable} {RECORDER} associate",
        disassociate_script=f"{sys.executable} {RECORDER} disassociate",
        **overrides,
    )


def ec2_attrs(ar: etree._Element) -> dict[str, str]:
    """The AR's record (without EC2_NONCE, new with every write)."""
    return {
        c.tag: c.text or ""
        for c in ar
        if c.tag.startswith("EC2_") and c.tag != "EC2_NONCE" and c.text
    }


def held(ar: etree._Element) -> bool:
    return bool(ar.xpath("LEASES/LEASE[VM = '-1']"))


def runtime(sim: Sim, engine: Engine, user: str = "demo") -> Runtime:
    ctx = context(user, sim.uids[sim.user(user)], "TerminateInstances")
    return Runtime(engine, engine.mappings["DescribeAddresses"], {}, ctx)


@pytest.fixture(scope="module")
def eng(sim: Sim) -> Engine:
    return recording(sim)


def test_disabled_without_vnet_id(sim: Sim) -> None:
    off = sim.engine(elasticips_vnet_id=None)
    for action, body in ACTIONS:
        err = error(sim, off, action, body)
        assert (err.code, err.status) == ("UnsupportedOperation", 400), action
        assert ":elasticips_vnet_id:" in err.message
    rt = runtime(sim, off)
    assert addresses_of_instances(rt) == {} and disassociate_instances(rt, [1]) == []


def test_allocate_describe_release(sim: Sim, eng: Engine) -> None:
    out = run(sim, eng, "AllocateAddress", {"Domain": "vpc"})
    ip, alloc = out["PublicIp"], out["AllocationId"]
    assert out["Domain"] == "vpc" and alloc.startswith("eipalloc-")
    ar = sim.ar(ip)
    assert held(ar)
    assert ec2_attrs(ar) == {
        "EC2_OWNER": "2",
        "EC2_ALLOCATION_ID": alloc,
        "EC2_DOMAIN": "vpc",
    }
    other = run(sim, eng, "AllocateAddress")
    assert other["PublicIp"] != ip and other["Domain"] == "standard"

    listed = run(sim, eng, "DescribeAddresses")["Addresses"]
    assert {a["PublicIp"] for a in listed} == {ip, other["PublicIp"]}
    mine = next(a for a in listed if a["PublicIp"] == ip)
    assert mine == {
        "PublicIp": ip,
        "AllocationId": alloc,
        "Domain": "vpc",
        "PublicIpv4Pool": "ipv4pool-vnet-1",  # the network the address is from
        "NetworkBorderGroup": "opennebula",
        "Tags": [],
    }
    assert {k: out[k] for k in ("PublicIpv4Pool", "NetworkBorderGroup")} == {
        "PublicIpv4Pool": "ipv4pool-vnet-1",
        "NetworkBorderGroup": "opennebula",
    }
    # what it says it is from may be asked for again; another pool or group is refused
    named = {"PublicIpv4Pool": "ipv4pool-vnet-1", "NetworkBorderGroup": "opennebula"}
    again = run(sim, eng, "AllocateAddress", named)
    run(sim, eng, "ReleaseAddress", {"AllocationId": again["AllocationId"]})
    amazon = run(sim, eng, "AllocateAddress", {"PublicIpv4Pool": "amazon"})  # the default pool
    run(sim, eng, "ReleaseAddress", {"AllocationId": amazon["AllocationId"]})
    for body in ({"PublicIpv4Pool": "ipv4pool-ec2-1"}, {"NetworkBorderGroup": "us-east-1"}):
        err = error(sim, eng, "AllocateAddress", body)
        assert err.code == "InvalidParameterValue" and list(body)[0] in err.message
    by_ip = run(sim, eng, "DescribeAddresses", {"PublicIp": [ip]})["Addresses"]
    assert [a["PublicIp"] for a in by_ip] == [ip]
    by_alloc = run(sim, eng, "DescribeAddresses", {"AllocationId": [alloc]})["Addresses"]
    assert [a["PublicIp"] for a in by_alloc] == [ip]
    for name, value, expect in (
        ("public-ip", ip, [ip]),
        ("allocation-id", alloc, [ip]),
        ("domain", "vpc", [ip]),
        ("domain", "standard", [other["PublicIp"]]),
        (
            "public-ip",
            "198.51.100.*",
            sorted([ip, other["PublicIp"]], key=lambda s: int(s.split(".")[-1])),
        ),
        ("instance-id", "i-*", []),
    ):
        body = {"Filter": [{"Name": name, "Value": [value]}]}
        got = [a["PublicIp"] for a in run(sim, eng, "DescribeAddresses", body)["Addresses"]]
        assert got == expect, (name, value)

    for body, code in (
        ({"Filter": [{"Name": "colour", "Value": ["red"]}]}, "InvalidParameterValue"),
        ({"PublicIp": ["192.0.2.77"]}, "InvalidAddress.NotFound"),
        ({"PublicIp": ["not-an-ip"]}, "InvalidParameterValue"),
        ({"AllocationId": ["eipalloc-0123"]}, "InvalidAllocationID.NotFound"),
        ({"AllocationId": ["alloc-1"]}, "InvalidAllocationID.Malformed"),
    ):
        assert error(sim, eng, "DescribeAddresses", body).code == code, body

    assert run(sim, eng, "ReleaseAddress", {"AllocationId": alloc}) == {"Return": True}
    ar = sim.ar(ip)
    assert not held(ar) and ec2_attrs(ar) == {}
    assert run(sim, eng, "ReleaseAddress", {"PublicIp": other["PublicIp"]}) == {"Return": True}
    assert run(sim, eng, "DescribeAddresses") == {"Addresses": []}
    for body, code in (
        ({"PublicIp": ip}, "InvalidAddress.NotFound"),
        ({"AllocationId": alloc}, "InvalidAllocationID.NotFound"),
        ({}, "MissingParameter"),
        ({"PublicIp": ip, "AllocationId": alloc}, "InvalidParameterCombination"),
    ):
        assert error(sim, eng, "ReleaseAddress", body).code == code, body


def test_record_keeps_the_administrators_ar_attributes(sim: Sim, eng: Engine) -> None:
    """oned's update_ar replaces the AR's attribute set: econe sends the others back."""
    vnet = sim.new_pool("keep", 1, prefix="192.0.2")
    sim.as_admin(
        "one.vn.update_ar", vnet, 'AR=[AR_ID="0", DESCRIPTION="rack 7", GATEWAY="192.0.2.254"]'
    )
    own = recording(sim, elasticips_vnet_id=vnet)
    ip = run(sim, own, "AllocateAddress")["PublicIp"]
    vm = sim.vm()
    run(sim, own, "AssociateAddress", {"PublicIp": ip, "InstanceId": f"i-{vm}"})
    ar = sim.ar(ip, vnet)
    assert ar.findtext("DESCRIPTION") == "rack 7" and ar.findtext("GATEWAY") == "192.0.2.254"
    assert ec2_attrs(ar)["EC2_INSTANCE"] == str(vm)
    run(sim, own, "ReleaseAddress", {"PublicIp": ip})
    ar = sim.ar(ip, vnet)
    assert ar.findtext("DESCRIPTION") == "rack 7" and ec2_attrs(ar) == {}


def test_pool_limit_and_specific_address(sim: Sim) -> None:
    vnet = sim.new_pool("small", 3, prefix="203.0.113")
    small = recording(sim, elasticips_vnet_id=vnet)
    sim.as_admin("one.vn.hold", vnet, 'LEASES=[IP="203.0.113.3"]')  # the admin keeps one back
    assert (
        run(sim, small, "AllocateAddress", {"Address": "203.0.113.2"})["PublicIp"] == "203.0.113.2"
    )
    assert error(sim, small, "AllocateAddress", {"Address": "203.0.113.2"}).code == (
        "InvalidIPAddress.InUse"
    )
    assert error(sim, small, "AllocateAddress", {"Address": "203.0.113.9"}).code == (
        "InvalidAddress.NotFound"
    )
    assert run(sim, small, "AllocateAddress")["PublicIp"] == "203.0.113.1"
    err = error(sim, small, "AllocateAddress")
    assert err.code == "AddressLimitExceeded"
    # the administrator's own hold is nobody's address
    listed = run(sim, small, "DescribeAddresses")["Addresses"]
    assert sorted(a["PublicIp"] for a in listed) == ["203.0.113.1", "203.0.113.2"]


def allocations_at_once(sim: Sim, engine: Engine, n: int, user: str = "demo") -> list[object]:
    """`n` AllocateAddress at the same moment: each answer, or the error code."""
    start = threading.Barrier(n)
    results: list[object] = []

    def one() -> None:
        start.wait()
        try:
            results.append(run(sim, engine, "AllocateAddress", user=user))
        except Ec2Error as exc:
            results.append(exc.code)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_concurrent_allocations_in_one_gateway(sim: Sim) -> None:
    vnet = sim.new_pool("race", 10, prefix="203.0.114")
    race = recording(sim, elasticips_vnet_id=vnet)
    results = allocations_at_once(sim, race, 25)
    won = [r["PublicIp"] for r in results if isinstance(r, dict)]
    assert len(won) == 10 and len(set(won)) == 10
    assert sorted(r for r in results if not isinstance(r, dict)) == ["AddressLimitExceeded"] * 15
    listed = run(sim, race, "DescribeAddresses")["Addresses"]
    assert sorted(a["PublicIp"] for a in listed) == sorted(won)


def test_dry_runs_hold_nothing_and_run_no_script(sim: Sim, eng: Engine, eip_log: Path) -> None:
    def dry(action: str, body: dict) -> str:
        with pytest.raises(Ec2Error) as err:
            run(sim, eng, action, {**body, "DryRun": True})
        return err.value.code

    before = etree.tostring(sim.vnet())
    assert dry("AllocateAddress", {}) == "DryRunOperation"
    assert etree.tostring(sim.vnet()) == before  # no lease held
    a = run(sim, eng, "AllocateAddress")
    vm = sim.vm()
    body = {"PublicIp": a["PublicIp"], "InstanceId": f"i-{vm}"}
    assert dry("AssociateAddress", body) == "DryRunOperation"
    assert dry("AssociateAddress", {**body, "InstanceId": "i-99999999"}) == (
        "InvalidInstanceID.NotFound"
    )
    assert calls(eip_log) == []  # the associate script did not run
    run(sim, eng, "AssociateAddress", body)
    assert dry("DisassociateAddress", {"PublicIp": a["PublicIp"]}) == "DryRunOperation"
    assert dry("ReleaseAddress", {"AllocationId": a["AllocationId"]}) == "DryRunOperation"
    assert len(calls(eip_log)) == 1  # only the real association's script
    (listed,) = run(sim, eng, "DescribeAddresses", {"PublicIp": [a["PublicIp"]]})["Addresses"]
    assert listed["InstanceId"] == f"i-{vm:08d}"
    run(sim, eng, "DisassociateAddress", {"PublicIp": a["PublicIp"]})
    run(sim, eng, "ReleaseAddress", {"AllocationId": a["AllocationId"]})


def test_associate_move_disassociate_with_recorded_scripts(
    sim: Sim, eng: Engine, eip_log: Path
) -> None:
    a = run(sim, eng, "AllocateAddress")
    b = run(sim, eng, "AllocateAddress")
    vm1, vm2 = sim.vm(), sim.vm()
    ip1, ip2 = sim.vm_ip(vm1), sim.vm_ip(vm2)

    assoc = run(sim, eng, "AssociateAddress", {"PublicIp": a["PublicIp"], "InstanceId": f"i-{vm1}"})
    assert assoc["AssociationId"].startswith("eipassoc-")
    [call] = calls(eip_log)
    assert call[:3] == ["associate", a["PublicIp"], ip1]
    vnet = b64xml(call[3])
    assert vnet.tag == "VNET" and vnet.findtext("ID") == "1"
    assert "\n" not in call[3]
    listed = run(sim, eng, "DescribeAddresses", {"PublicIp": [a["PublicIp"]]})["Addresses"][0]
    assert listed["InstanceId"] == f"i-{vm1:08d}"
    assert listed["AssociationId"] == assoc["AssociationId"]
    assert listed["PrivateIpAddress"] == ip1
    body = {"Filter": [{"Name": "instance-id", "Value": [f"i-{vm1:08d}"]}]}
    assert [x["PublicIp"] for x in run(sim, eng, "DescribeAddresses", body)["Addresses"]] == [
        a["PublicIp"]
    ]
    # the same association again: the same id, the (idempotent) associate script again
    again = run(
        sim, eng, "AssociateAddress", {"AllocationId": a["AllocationId"], "InstanceId": f"i-{vm1}"}
    )
    assert again == assoc and [c[:3] for c in calls(eip_log)] == [call[:3]] * 2

    # AllowReassociation=false refuses to move it
    body = {"PublicIp": a["PublicIp"], "InstanceId": f"i-{vm2}", "AllowReassociation": False}
    assert error(sim, eng, "AssociateAddress", body).code == "Resource.AlreadyAssociated"
    # a move: disassociate script for the old association first, then associate
    moved = run(sim, eng, "AssociateAddress", {"PublicIp": a["PublicIp"], "InstanceId": f"i-{vm2}"})
    assert moved["AssociationId"] != assoc["AssociationId"]
    assert calls(eip_log)[2:] == [
        ["disassociate", a["PublicIp"]],
        ["associate", a["PublicIp"], ip2, calls(eip_log)[3][3]],
    ]
    assert sim.ar(a["PublicIp"]).findtext("EC2_INSTANCE") == str(vm2)

    # a second address for vm2 displaces the first (one public address per instance)
    run(sim, eng, "AssociateAddress", {"PublicIp": b["PublicIp"], "InstanceId": f"i-{vm2}"})
    assert calls(eip_log)[4:6] == [
        ["disassociate", a["PublicIp"]],
        ["associate", b["PublicIp"], ip2, calls(eip_log)[5][3]],
    ]
    state = {
        x["PublicIp"]: x.get("InstanceId") for x in run(sim, eng, "DescribeAddresses")["Addresses"]
    }
    assert state[a["PublicIp"]] is None and state[b["PublicIp"]] == f"i-{vm2:08d}"

    # disassociate by AssociationId; stale or malformed ids are refused
    current = run(sim, eng, "DescribeAddresses", {"PublicIp": [b["PublicIp"]]})["Addresses"][0]
    for body, code in (
        ({"AssociationId": assoc["AssociationId"]}, "InvalidAssociationID.NotFound"),
        ({"AssociationId": "assoc-1"}, "InvalidAssociationID.Malformed"),
        ({"PublicIp": "192.0.2.1"}, "InvalidAddress.NotFound"),
        ({}, "MissingParameter"),
    ):
        assert error(sim, eng, "DisassociateAddress", body).code == code, body
    n = len(calls(eip_log))
    assert run(sim, eng, "DisassociateAddress", {"AssociationId": current["AssociationId"]}) == {
        "Return": True
    }
    assert calls(eip_log)[n:] == [["disassociate", b["PublicIp"]]]
    assert ec2_attrs(sim.ar(b["PublicIp"])).keys() == {
        "EC2_OWNER",
        "EC2_ALLOCATION_ID",
        "EC2_DOMAIN",
    }
    # idempotent: an unassociated address disassociates, running the (idempotent) script
    # again (it repairs a network another gateway process failed to put back)
    assert run(sim, eng, "DisassociateAddress", {"PublicIp": b["PublicIp"]}) == {"Return": True}
    assert calls(eip_log)[n:] == [["disassociate", b["PublicIp"]]] * 2

    # releasing an associated address disassociates it first
    run(sim, eng, "AssociateAddress", {"PublicIp": b["PublicIp"], "InstanceId": f"i-{vm1}"})
    n = len(calls(eip_log))
    run(sim, eng, "ReleaseAddress", {"PublicIp": b["PublicIp"]})
    assert calls(eip_log)[n:] == [["disassociate", b["PublicIp"]]]
    run(sim, eng, "ReleaseAddress", {"PublicIp": a["PublicIp"]})


def test_instance_errors(sim: Sim, eng: Engine) -> None:
    ip = run(sim, eng, "AllocateAddress")["PublicIp"]
    vm = sim.vm()
    bare = sim.vm(nic=False)
    evevm = sim.vm("eve")
    for body, code in (
        ({"PublicIp": ip}, "MissingParameter"),
        ({"PublicIp": ip, "InstanceId": "i-x1"}, "InvalidInstanceID.Malformed"),
        ({"PublicIp": ip, "InstanceId": "i-99999"}, "InvalidInstanceID.NotFound"),
        ({"PublicIp": ip, "InstanceId": f"i-{evevm}"}, "InvalidInstanceID.NotFound"),
        ({"PublicIp": ip, "InstanceId": f"i-{bare}"}, "InvalidInstanceID"),
        ({"InstanceId": f"i-{vm}"}, "MissingParameter"),
        (
            {"PublicIp": ip, "InstanceId": f"i-{vm}", "PrivateIpAddress": "10.9.9.9"},
            "InvalidParameterValue",
        ),
        ({"PublicIp": ip, "NetworkInterfaceId": "eni-1"}, "InvalidParameterValue"),
        ({"PublicIp": "192.0.2.9", "InstanceId": f"i-{vm}"}, "InvalidAddress.NotFound"),
    ):
        assert error(sim, eng, "AssociateAddress", body).code == code, body
    assert (
        "no network interface"
        in error(sim, eng, "AssociateAddress", {"PublicIp": ip, "InstanceId": f"i-{bare}"}).message
    )
    # shutting down (TerminateInstances has taken its addresses already): none, as EC2
    core = sim.server.sim
    with core.lock:
        record = core.store.get("vm", vm)
        record["state"], record["lcm_state"] = 3, 12  # SHUTDOWN
        core.store.put("vm", record)
    refused = error(sim, eng, "AssociateAddress", {"PublicIp": ip, "InstanceId": f"i-{vm}"})
    assert (refused.code, refused.message) == (
        "IncorrectInstanceState",
        f"The instance 'i-{vm}' is shutting-down; it cannot get an Elastic IP address",
    )
    run(sim, eng, "ReleaseAddress", {"PublicIp": ip})


def test_users_never_see_each_others_addresses(sim: Sim, eng: Engine) -> None:
    mine = run(sim, eng, "AllocateAddress")
    theirs = run(sim, eng, "AllocateAddress", user="eve")
    assert theirs["PublicIp"] != mine["PublicIp"]
    assert [a["PublicIp"] for a in run(sim, eng, "DescribeAddresses", user="eve")["Addresses"]] == [
        theirs["PublicIp"]
    ]
    evevm = sim.vm("eve")
    for action, body, code in (
        ("DescribeAddresses", {"PublicIp": [mine["PublicIp"]]}, "InvalidAddress.NotFound"),
        (
            "DescribeAddresses",
            {"AllocationId": [mine["AllocationId"]]},
            "InvalidAllocationID.NotFound",
        ),
        (
            "AssociateAddress",
            {"PublicIp": mine["PublicIp"], "InstanceId": f"i-{evevm}"},
            "InvalidAddress.NotFound",
        ),
        ("DisassociateAddress", {"PublicIp": mine["PublicIp"]}, "InvalidAddress.NotFound"),
        ("ReleaseAddress", {"PublicIp": mine["PublicIp"]}, "InvalidAddress.NotFound"),
        ("ReleaseAddress", {"AllocationId": mine["AllocationId"]}, "InvalidAllocationID.NotFound"),
    ):
        assert error(sim, eng, action, body, user="eve").code == code, (action, body)
    assert held(sim.ar(mine["PublicIp"]))
    assert sim.ar(mine["PublicIp"]).findtext("EC2_OWNER") == "2"
    run(sim, eng, "ReleaseAddress", {"PublicIp": mine["PublicIp"]})
    run(sim, eng, "ReleaseAddress", {"PublicIp": theirs["PublicIp"]}, user="eve")


@pytest.fixture
def flaky(sim: Sim, tmp_path: Path) -> tuple[Engine, Path, Path]:
    """Scripts that record every call and fail (exit 1, message on stderr) for the private
    addresses listed in `fail_for` (disassociate: for the elastic IPs listed)."""
    log, fail_for = tmp_path / "calls.jsonl", tmp_path / "fail_for"
    fail_for.write_text("")
    path = script(
        tmp_path,
        "flaky",
        f"log, bad = {str(log)!r}, {str(fail_for)!r}\n"
        "open(log, 'a').write(json.dumps({'argv': sys.argv[1:]}) + '\\n')\n"
        "key = sys.argv[3] if sys.argv[1] == 'associate' else sys.argv[2]\n"
        "if key in open(bad).read().split():\n"
        "    print('some output')\n"
        "    print(f'cannot route {key}: <NAT table & full>', file=sys.stderr)\n"
        "    sys.exit(1)\n",
    )
    engine = sim.engine(
        associate_script=f"{path} associate", disassociate_script=f"{path} disassociate"
    )
    return engine, log, fail_for


def test_failing_scripts_leave_everything_as_it_was(sim: Sim, flaky) -> None:
    engine, log, fail_for = flaky
    ip = run(sim, engine, "AllocateAddress")["PublicIp"]
    vm1, vm2 = sim.vm(), sim.vm()
    priv1, priv2 = sim.vm_ip(vm1), sim.vm_ip(vm2)

    fail_for.write_text(priv1)
    err = error(sim, engine, "AssociateAddress", {"PublicIp": ip, "InstanceId": f"i-{vm1}"})
    assert err.code == "InternalError" and err.status == 500
    assert f"cannot route {priv1}: <NAT table & full>" in err.message
    assert "exit status 1" in err.message
    assert sim.ar(ip).findtext("EC2_INSTANCE") in (None, "")
    assert "InstanceId" not in run(sim, engine, "DescribeAddresses")["Addresses"][0]

    fail_for.write_text("")
    assoc = run(sim, engine, "AssociateAddress", {"PublicIp": ip, "InstanceId": f"i-{vm1}"})
    # moving fails at the associate step: the old association is put back
    fail_for.write_text(priv2)
    log.write_text("")
    err = error(sim, engine, "AssociateAddress", {"PublicIp": ip, "InstanceId": f"i-{vm2}"})
    assert f"cannot route {priv2}" in err.message
    argv = [c["argv"] if isinstance(c, dict) else c for c in calls(log)]
    assert [a[:3] for a in argv] == [
        ["disassociate", ip],
        ["associate", ip, priv2],
        ["associate", ip, priv1],  # undo
    ]
    now = run(sim, engine, "DescribeAddresses")["Addresses"][0]
    assert now["InstanceId"] == f"i-{vm1:08d}" and now["AssociationId"] == assoc["AssociationId"]

    # failing disassociate: nothing changes for DisassociateAddress and ReleaseAddress
    fail_for.write_text(ip)
    for action in ("DisassociateAddress", "ReleaseAddress"):
        err = error(sim, engine, action, {"PublicIp": ip})
        assert err.code == "InternalError" and f"cannot route {ip}" in err.message
        now = run(sim, engine, "DescribeAddresses")["Addresses"][0]
        assert now["InstanceId"] == f"i-{vm1:08d}"
        assert held(sim.ar(ip))
    # a failing undo is recorded truthfully: the address is then unassociated
    fail_for.write_text(f"{priv2} {priv1}")
    err = error(sim, engine, "AssociateAddress", {"PublicIp": ip, "InstanceId": f"i-{vm2}"})
    assert err.code == "InternalError"
    assert "InstanceId" not in run(sim, engine, "DescribeAddresses")["Addresses"][0]
    fail_for.write_text("")
    run(sim, engine, "ReleaseAddress", {"PublicIp": ip})


def test_script_timeout_missing_and_unconfigured(sim: Sim, tmp_path: Path) -> None:
    sleeper = script(tmp_path, "sleeper", "import time\ntime.sleep(30)\n")
    cases = (
        (f"{sleeper}", "InternalError", "did not finish within 0.5 seconds"),
        (str(tmp_path / "nope"), "InternalError", "could not be changed: the associate script"),
        (
            "false",
            "UnsupportedOperation",
            "not set up on this cloud (:associate_script: is 'false')",
        ),
        ("", "UnsupportedOperation", "not set up on this cloud (:associate_script: is '')"),
    )
    vm = sim.vm()
    for configured, code, text in cases:
        engine = sim.engine(associate_script=configured, script_timeout=0.5)
        ip = run(sim, engine, "AllocateAddress")["PublicIp"]
        err = error(sim, engine, "AssociateAddress", {"PublicIp": ip, "InstanceId": f"i-{vm}"})
        assert err.code == code and text in err.message, err.message
        assert "InstanceId" not in run(sim, engine, "DescribeAddresses")["Addresses"][0]
        run(sim, engine, "ReleaseAddress", {"PublicIp": ip})


def test_hooks_for_describe_and_terminate_instances(sim: Sim, eng: Engine, eip_log: Path) -> None:
    ip = run(sim, eng, "AllocateAddress")["PublicIp"]
    vm, other = sim.vm(), sim.vm()
    run(sim, eng, "AssociateAddress", {"PublicIp": ip, "InstanceId": f"i-{vm}"})
    rt = runtime(sim, eng)
    assert addresses_of_instances(rt, [vm, other]) == {vm: ip}
    instances = [{"_id": vm, "InstanceId": f"i-{vm:08d}"}, {"_id": other}]
    add_public_ips(rt, instances)
    assert instances[0]["PublicIpAddress"] == ip and "PublicIpAddress" not in instances[1]
    n = len(calls(eip_log))
    assert disassociate_instances(rt, [other]) == []
    assert disassociate_instances(rt, [vm, other]) == [ip]
    assert calls(eip_log)[n:] == [["disassociate", ip]]
    assert addresses_of_instances(rt) == {}
    assert (
        "InstanceId" not in run(sim, eng, "DescribeAddresses", {"PublicIp": [ip]})["Addresses"][0]
    )
    run(sim, eng, "ReleaseAddress", {"PublicIp": ip})


def test_terminate_never_writes_back_a_record_that_changed_meanwhile(
    sim: Sim, eng: Engine, monkeypatch
) -> None:
    """The owner releases the address (and it is reallocated) between the hook's first read
    and its lock: the hook must leave the new record alone."""
    import handlers.addresses as addresses

    ip = run(sim, eng, "AllocateAddress")["PublicIp"]
    vm = sim.vm()
    run(sim, eng, "AssociateAddress", {"PublicIp": ip, "InstanceId": f"i-{vm}"})
    real_held = addresses.held

    def lock_after_a_concurrent_release(*name):  # ("address", vnet, ip)
        if name[0] != "address":  # the instance's lock comes first
            return real_held(*name)
        monkeypatch.setattr(addresses, "held", real_held)  # the other request locks normally
        run(sim, eng, "ReleaseAddress", {"PublicIp": name[2]})
        return real_held(*name)

    monkeypatch.setattr(addresses, "held", lock_after_a_concurrent_release)
    assert disassociate_instances(runtime(sim, eng), [vm]) == []
    assert ip not in [a["PublicIp"] for a in run(sim, eng, "DescribeAddresses")["Addresses"]]


def test_an_instance_terminated_outside_econe_loses_its_address(
    sim: Sim, eip_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Terminated in Sunstone or with onevm (not TerminateInstances): the sweeper disassociates
    the address, so it cannot follow the private IP to the VM oned leases it to next."""
    import time

    import handlers.addresses as addresses

    monkeypatch.setattr(addresses, "SWEEP_SECONDS", 0.2)
    eng = recording(sim)
    try:
        ip = run(sim, eng, "AllocateAddress")["PublicIp"]
        vm, kept = sim.vm(), sim.vm()
        run(sim, eng, "AssociateAddress", {"PublicIp": ip, "InstanceId": f"i-{vm}"})
        other = run(sim, eng, "AllocateAddress")["PublicIp"]
        run(sim, eng, "AssociateAddress", {"PublicIp": other, "InstanceId": f"i-{kept}"})
        sim.client.call(sim.session("demo"), "one.vm.action", "terminate-hard", vm)
        deadline = time.monotonic() + 10
        while True:  # the script runs first, the record follows
            shown = run(sim, eng, "DescribeAddresses", {"PublicIp": [ip, other]})["Addresses"]
            on = {a["PublicIp"]: a.get("InstanceId") for a in shown}
            if ["disassociate", ip] in calls(eip_log) and on[ip] is None:
                break
            assert time.monotonic() < deadline, "the sweeper did not disassociate the address"
            time.sleep(0.1)
        assert on == {
            ip: None,
            other: f"i-{kept:08d}",  # a live instance keeps its address
        }
        for address in (ip, other):
            run(sim, eng, "ReleaseAddress", {"PublicIp": address})
    finally:
        eng.close()


def test_elastic_ips_per_user(sim: Sim) -> None:
    """:elastic_ips_per_user: caps what one user holds (EC2's AddressLimitExceeded); the
    refused allocation holds nothing, and a released address makes room again. Other users
    have their own count."""
    capped = sim.engine(elastic_ips_per_user=2)
    first = run(sim, capped, "AllocateAddress", user="capped")
    run(sim, capped, "AllocateAddress", user="capped")
    free = sum(1 for ar in sim.vnet().iterfind("AR_POOL/AR") if not held(ar))
    err = error(sim, capped, "AllocateAddress", user="capped")
    assert (err.code, err.status) == ("AddressLimitExceeded", 400)
    assert "2 per user" in err.message
    assert sum(1 for ar in sim.vnet().iterfind("AR_POOL/AR") if not held(ar)) == free
    other = run(sim, capped, "AllocateAddress", user="capped2")
    run(sim, capped, "ReleaseAddress", {"AllocationId": first["AllocationId"]}, user="capped")
    again = run(sim, capped, "AllocateAddress", user="capped")
    mine = run(sim, capped, "DescribeAddresses", user="capped")["Addresses"]
    assert len(mine) == 2 and again["PublicIp"] in {a["PublicIp"] for a in mine}
    for user, out in (("capped", again), ("capped2", other)):
        run(sim, capped, "ReleaseAddress", {"AllocationId": out["AllocationId"]}, user=user)
    rest = run(sim, capped, "DescribeAddresses", user="capped")["Addresses"][0]
    run(sim, capped, "ReleaseAddress", {"AllocationId": rest["AllocationId"]}, user="capped")


def test_elastic_ips_per_user_holds_under_concurrent_allocations(sim: Sim) -> None:
    capped = sim.engine(elastic_ips_per_user=2)
    sim.user("racer")
    results = allocations_at_once(sim, capped, 4, user="racer")
    won = [r["AllocationId"] for r in results if isinstance(r, dict)]
    refused = [r for r in results if not isinstance(r, dict)]
    mine = run(sim, capped, "DescribeAddresses", user="racer")["Addresses"]
    assert len(mine) <= 2 and sorted(a["AllocationId"] for a in mine) == sorted(won)
    assert refused == ["AddressLimitExceeded"] * (4 - len(won))
    for a in mine:
        run(sim, capped, "ReleaseAddress", {"AllocationId": a["AllocationId"]}, user="racer")


def test_a_refused_allocation_leaves_no_owner_behind(sim: Sim, monkeypatch) -> None:
    """Another allocation of the same user lands between the hold and the second limit check:
    the refused address goes back with its record cleared (a record left on a free address
    would name this user as the owner of whoever holds it next)."""
    import handlers.addresses as addresses

    capped, free = sim.engine(elastic_ips_per_user=1), sim.engine()
    sim.user("squeezed")
    real = addresses._within_limit
    once = []

    def meanwhile(rt, pool, uid, new):
        if new == 1 and not once:  # after the hold: the user's other request got there first
            once.append(True)
            run(sim, free, "AllocateAddress", user="squeezed")
            pool = addresses.read_pool(rt)
        return real(rt, pool, uid, new)

    monkeypatch.setattr(addresses, "_within_limit", meanwhile)
    err = error(sim, capped, "AllocateAddress", user="squeezed")
    assert err.code == "AddressLimitExceeded"
    uid = str(sim.uids["squeezed"])
    stale = [
        ar.findtext("IP")
        for ar in sim.vnet().iterfind("AR_POOL/AR")
        if not held(ar) and ec2_attrs(ar).get("EC2_OWNER") == uid
    ]
    assert stale == []
    (kept,) = run(sim, free, "DescribeAddresses", user="squeezed")["Addresses"]
    run(sim, free, "ReleaseAddress", {"AllocationId": kept["AllocationId"]}, user="squeezed")


class Tracking(OneClient):
    """The real client, noting how each call was sent."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.sent: list[tuple[str, str]] = []

    def _exchange(self, method, params):
        self.sent.append(("blocking", method))
        return super()._exchange(method, params)

    async def exchange_async(self, method, params):
        self.sent.append(("event loop", method))
        return await super().exchange_async(method, params)


def tracked(sim: Sim, timeout: float = 10) -> tuple[Engine, Tracking]:
    client = Tracking(sim.url, timeout=timeout)
    config = Config(one_xmlrpc=sim.url, ec2_auth=str(sim.ec2_auth), elasticips_vnet_id=EIP_VNET)
    return Engine(config, client, ServerCipherSessions(sim.ec2_auth)), client


def test_describe_instances_asks_for_the_addresses_with_the_pool(sim: Sim, eng: Engine) -> None:
    """The elastic-IP network add_public_ips reads is fetched on the event loop beside the VM
    pool (the mapping's `prefetch:`), so no blocking call and no second run in a worker."""
    ip = run(sim, eng, "AllocateAddress")["PublicIp"]
    vm = sim.vm()
    run(sim, eng, "AssociateAddress", {"PublicIp": ip, "InstanceId": f"i-{vm}"})
    engine, client = tracked(sim)
    try:
        out = run(sim, engine, "DescribeInstances")
        shown = {
            i["InstanceId"]: i.get("PublicIpAddress")
            for r in out["Reservations"]
            for i in r["Instances"]
        }
        assert shown[f"i-{vm:08d}"] == ip
        assert sorted(client.sent) == [
            ("event loop", "one.vmpool.infoextended"),
            ("event loop", "one.vn.info"),
        ]
    finally:
        engine.close()
        run(sim, eng, "ReleaseAddress", {"PublicIp": ip})


def test_allocation_reads_the_network_again_only_to_check_a_limit(sim: Sim) -> None:
    """The limit is checked again after the write (two allocations at once may both have
    passed the first check); without :elastic_ips_per_user: there is nothing to check."""
    reads = {}
    for limit in (None, 5):
        engine, client = tracked(sim)
        engine.config.elastic_ips_per_user = limit
        try:
            ip = run(sim, engine, "AllocateAddress")["PublicIp"]
            reads[limit] = [m for _, m in client.sent].count("one.vn.info")
            run(sim, engine, "ReleaseAddress", {"PublicIp": ip})
        finally:
            engine.close()
    assert reads[5] == reads[None] + 1, reads


def test_a_prefetch_oned_does_not_answer_is_waited_for_once(sim: Sim) -> None:
    """The address network times out: the instances are described without public addresses
    after one timeout, the network not asked for again."""
    engine, client = tracked(sim, timeout=1)
    sim.as_admin("onesim.fault.set", "one.vn.info", 0, "", 3, 1)
    try:
        started = time.monotonic()
        run(sim, engine, "DescribeInstances")
        assert time.monotonic() - started < 1.8
        assert [m for _, m in client.sent].count("one.vn.info") == 1
    finally:
        sim.as_admin("onesim.fault.clear")
        engine.close()


def test_a_failed_pool_call_does_not_wait_for_the_prefetch(sim: Sim) -> None:
    engine, _ = tracked(sim, timeout=5)
    sim.as_admin("onesim.fault.set", "one.vmpool.infoextended", 0, "hang", 0.1, 1)
    sim.as_admin("onesim.fault.set", "one.vn.info", 0, "", 3, 1)
    try:
        started = time.monotonic()
        assert error(sim, engine, "DescribeInstances").code == "Unavailable"
        assert time.monotonic() - started < 1.5
    finally:
        sim.as_admin("onesim.fault.clear")
        engine.close()


def test_an_instance_address_that_is_no_ip_never_reaches_the_script(
    sim: Sim, eng: Engine, eip_log: Path
) -> None:
    """A NIC IP the user wrote into the VM template ("-h" would be an option to the script):
    refused, the script not run; another of its addresses can be named instead."""
    ip = run(sim, eng, "AllocateAddress")["PublicIp"]
    tmpl = 'NAME="odd"\nCPU="1"\nMEMORY="64"\nNIC=[IP="-h"]\nNIC=[IP="10.0.9.9"]\n'
    vm = int(sim.client.call(sim.session("demo"), "one.vm.allocate", tmpl, False))
    n = len(calls(eip_log))
    err = error(sim, eng, "AssociateAddress", {"PublicIp": ip, "InstanceId": f"i-{vm}"})
    assert (err.code, err.status) == ("InvalidInstanceID", 400)
    assert err.message == (
        f"The first network interface of the instance 'i-{vm}' has the address '-h', which is"
        " not an IPv4 address; name another with PrivateIpAddress"
    )
    assert calls(eip_log)[n:] == []
    body = {"PublicIp": ip, "InstanceId": f"i-{vm}", "PrivateIpAddress": "-h"}
    assert error(sim, eng, "AssociateAddress", body).code == "InvalidParameterValue"
    body["PrivateIpAddress"] = "10.0.9.9"
    run(sim, eng, "AssociateAddress", body)
    assert calls(eip_log)[n:][0][:3] == ["associate", ip, "10.0.9.9"]
    run(sim, eng, "ReleaseAddress", {"PublicIp": ip})


def test_a_terminated_instance_shows_no_public_address(sim: Sim, flaky) -> None:
    """TerminateInstances could not run the disassociate script: the address stays recorded
    (DescribeAddresses, DisassociateAddress can retry), but the terminated instance shows no
    PublicIpAddress, as EC2 never does, and the ip-address filter does not find it."""
    engine, _, fail_for = flaky
    ip = run(sim, engine, "AllocateAddress")["PublicIp"]
    vm = sim.vm()
    run(sim, engine, "AssociateAddress", {"PublicIp": ip, "InstanceId": f"i-{vm}"})
    fail_for.write_text(ip)
    run(sim, engine, "TerminateInstances", {"InstanceId": [f"i-{vm}"]})
    (address,) = run(sim, engine, "DescribeAddresses", {"PublicIp": [ip]})["Addresses"]
    assert address["InstanceId"] == f"i-{vm:08d}"  # still recorded: the script failed
    (res,) = run(sim, engine, "DescribeInstances", {"InstanceId": [f"i-{vm}"]})["Reservations"]
    (instance,) = res["Instances"]
    assert instance["State"]["Name"] == "terminated"
    assert instance.get("PublicIpAddress") is None
    by_ip = {"Filter": [{"Name": "ip-address", "Value": [ip]}]}
    assert run(sim, engine, "DescribeInstances", by_ip)["Reservations"] == []
    fail_for.write_text("")
    run(sim, engine, "ReleaseAddress", {"PublicIp": ip})


def test_tags_never_reach_the_script_and_go_with_the_address(
    sim: Sim, eng: Engine, eip_log: Path
) -> None:
    """One user's 50 long tags on each of a few addresses make the network's XML several
    hundred KiB: another user's associate script still gets this address's range alone and no
    tags (the system refuses one argument over 128 KiB: every AssociateAddress failed). Tags
    are deleted with their address."""
    sim.user("tagger")
    big = [{"Key": f"{i:02d}" + "\U0001f600" * 126, "Value": "\U0001f600" * 256} for i in range(50)]
    spec = [{"ResourceType": "elastic-ip", "Tag": big}]
    tagged = [
        run(sim, eng, "AllocateAddress", {"TagSpecification": spec}, user="tagger")
        for _ in range(3)
    ]
    assert len(sim.as_admin("one.vn.info", EIP_VNET).encode()) > 200 * 1024
    ip = run(sim, eng, "AllocateAddress")["PublicIp"]
    vm = sim.vm()
    n = len(calls(eip_log))
    run(sim, eng, "AssociateAddress", {"PublicIp": ip, "InstanceId": f"i-{vm}"})
    (call,) = calls(eip_log)[n:]
    vnet = b64xml(call[3])
    assert [ar.findtext("IP") for ar in vnet.iterfind("AR_POOL/AR")] == [ip]
    assert [a.tag for a in vnet.iterfind("TEMPLATE/*") if a.tag.startswith("EC2_EIP_TAGS_")] == []
    assert len(call[3]) < 8 * 1024
    for address in tagged:
        run(sim, eng, "ReleaseAddress", {"AllocationId": address["AllocationId"]}, user="tagger")
    assert len(sim.as_admin("one.vn.info", EIP_VNET).encode()) < 64 * 1024
    run(sim, eng, "ReleaseAddress", {"PublicIp": ip})


def test_a_release_oned_does_not_record_leaves_the_address_associated(
    sim: Sim, eng: Engine, eip_log: Path
) -> None:
    """The disassociate script ran, then oned did not answer the record's write (Unavailable):
    the address is associated again on the network too, as OpenNebula still records it, so an
    AssociateAddress of the same pair (answered from the record, no script) tells the truth.
    Before, the network stayed disassociated under an "associated" record."""
    spec = [{"ResourceType": "elastic-ip", "Tag": [{"Key": "team", "Value": "a"}]}]
    ip = run(sim, eng, "AllocateAddress", {"TagSpecification": spec})["PublicIp"]
    vm = sim.vm()
    body = {"PublicIp": ip, "InstanceId": f"i-{vm}"}
    assoc = run(sim, eng, "AssociateAddress", body)["AssociationId"]
    n = len(calls(eip_log))
    sim.as_admin("onesim.fault.set", "one.vn.update_ar", 0, "hang", 0.3, 0)
    try:
        err = error(sim, eng, "ReleaseAddress", {"PublicIp": ip})
    finally:
        sim.as_admin("onesim.fault.clear")
    assert (err.code, err.status) == ("Unavailable", 503)
    assert [c[:3] for c in calls(eip_log)[n:]] == [
        ["disassociate", ip],
        ["associate", ip, sim.vm_ip(vm)],  # put back
    ]
    (address,) = run(sim, eng, "DescribeAddresses", {"PublicIp": [ip]})["Addresses"]
    assert (address["InstanceId"], address["AssociationId"]) == (f"i-{vm:08d}", assoc)
    assert run(sim, eng, "AssociateAddress", body)["AssociationId"] == assoc

    # oned refuses to give the lease back: still yours, tags and all (unassociated now)
    sim.as_admin("onesim.fault.set", "one.vn.release", 0x800, "simulated failure", 0, 1)
    try:
        err = error(sim, eng, "ReleaseAddress", {"PublicIp": ip})
    finally:
        sim.as_admin("onesim.fault.clear")
    assert (err.code, err.status) == ("InternalError", 500)
    (address,) = run(sim, eng, "DescribeAddresses", {"PublicIp": [ip]})["Addresses"]
    assert address["Tags"] == [{"Key": "team", "Value": "a"}] and "InstanceId" not in address
    run(sim, eng, "ReleaseAddress", {"PublicIp": ip})
    assert not held(sim.ar(ip))


def test_a_record_written_late_by_the_previous_owner_gives_the_address_to_nobody(
    sim: Sim, eng: Engine
) -> None:
    """What is left of the race between gateway processes: a request of demo's passed its check
    just before demo released the address on another gateway, and its write reaches oned only
    after another user allocated the address. The record names demo again, but the tags entry
    the allocation wrote first names the new allocation: the address is nobody's (never demo's
    again, with the new owner's traffic), and demo cannot touch it."""
    sim.user("later")
    mine = run(sim, eng, "AllocateAddress")
    ip = mine["PublicIp"]
    vm = sim.vm()
    run(sim, eng, "AssociateAddress", {"PublicIp": ip, "InstanceId": f"i-{vm}"})
    late = [("AR_ID", sim.ar(ip).findtext("AR_ID")), *ec2_attrs(sim.ar(ip)).items()]
    run(sim, eng, "ReleaseAddress", {"PublicIp": ip})
    theirs = run(sim, eng, "AllocateAddress", {"Address": ip}, user="later")
    assert [
        a["PublicIp"] for a in run(sim, eng, "DescribeAddresses", user="later")["Addresses"]
    ] == [ip]
    from handlers.escaping import template_xml

    sim.as_admin("one.vn.update_ar", EIP_VNET, template_xml([("AR", late)]))
    for user in ("demo", "later"):
        assert run(sim, eng, "DescribeAddresses", user=user) == {"Addresses": []}
    assert error(sim, eng, "ReleaseAddress", {"PublicIp": ip}).code == "InvalidAddress.NotFound"
    assert error(sim, eng, "DisassociateAddress", {"PublicIp": ip}).code == (
        "InvalidAddress.NotFound"
    )
    (res,) = run(sim, eng, "DescribeInstances", {"InstanceId": [f"i-{vm}"]})["Reservations"]
    assert res["Instances"][0].get("PublicIpAddress") is None
    # the administrator's way out (docs/elastic-ips.md): the lease released, the next
    # allocation writes its own record
    sim.as_admin("one.vn.release", EIP_VNET, f'LEASES=[IP="{ip}"]')
    again = run(sim, eng, "AllocateAddress", {"Address": ip}, user="later")
    assert again["AllocationId"] != theirs["AllocationId"]
    run(sim, eng, "ReleaseAddress", {"PublicIp": ip}, user="later")


def test_tags_entries_of_earlier_versions_vouch_for_nothing(sim: Sim, eng: Engine) -> None:
    """An entry written before econe kept the owner in it (no "owner"), here one of an earlier
    allocation that ReleaseAddress never removed: the address stays its owner's."""
    import json

    from handlers.escaping import template_xml

    out = run(sim, eng, "AllocateAddress")
    ip = out["PublicIp"]
    old = json.dumps({"alloc": "eipalloc-0123", "tags": [["k", "v"]]})
    attr = "EC2_EIP_TAGS_" + ip.replace(".", "_")
    sim.as_admin("one.vn.update", EIP_VNET, template_xml([(attr, old)]), 1)
    (shown,) = run(sim, eng, "DescribeAddresses", {"PublicIp": [ip]})["Addresses"]
    assert shown["AllocationId"] == out["AllocationId"] and shown["Tags"] == []
    run(sim, eng, "ReleaseAddress", {"PublicIp": ip})
    assert json.loads(sim.vnet().findtext(f"TEMPLATE/{attr}")) == {
        "alloc": "",
        "owner": None,
        "tags": [],
    }
