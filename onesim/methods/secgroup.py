"""one.secgroup.* and one.secgrouppool.info, and what a VM's NICs take from security groups
(``SecurityGroup.cc``, ``SecurityGroupPool.cc``, ``SecurityGroupAPI.cc``)."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from typing import TYPE_CHECKING

from .. import docs, errors
from .. import template as T
from ..core import method
from ..perms import allowed
from .common import name_error, name_taken, parse, pool

if TYPE_CHECKING:
    from ..core import Sim
    from ..perms import Caller

DEFAULT_SG = (
    'NAME=default\nDESCRIPTION="The default security group is added to every network. Use it '
    "to add default filter rules for your networks. You may remove this security group from any "
    'network by updating its properties."\n'
    "RULE=[RULE_TYPE=OUTBOUND,PROTOCOL=ALL]\nRULE=[RULE_TYPE=INBOUND,PROTOCOL=ALL]"
)
_PORTS = re.compile(r"^(([0-9]+|[0-9]+:[0-9]+),)*([0-9]+|[0-9]+:[0-9]+)$")
_UINT = re.compile(r"^\s*[0-9]+\s*$")
_INT = re.compile(r"\s*[-+]?[0-9]+")  # what `istringstream >> int` reads (split_unique)
# What an address range copies into a rule by NETWORK_ID (AddressRange::SG_RULE_ATTRIBUTES)
_AR_RULE_ATTRS = ("AR_ID", "TYPE", "SIZE", "MAC", "IP", "IP6")


def bootstrap(sim: Sim) -> None:
    """SecurityGroupPool's constructor: a new cloud has group 0 `default` (oneadmin's, USE for
    everyone), and user groups start at 100."""
    if "next_secgroup" in sim.store.meta:
        return
    tmpl = T.parse(DEFAULT_SG)
    sim.store.put(
        "secgroup",
        {
            "id": 0,
            "uid": 0,
            "gid": 0,
            "perms": [1, 1, 1, 1, 0, 0, 1, 0, 0],
            "name": "default",
            "vms": [],
            "template": [p for p in tmpl if p[0] != "NAME"],
        },
    )
    sim.store.set_meta("next_secgroup", 100)


def _uint(value: str | None) -> bool:
    # vector_value(name, unsigned int&): digits that fit an unsigned int
    return value is not None and bool(_UINT.match(value)) and int(value) <= 0xFFFFFFFF


def rule_error(rule: list) -> str | None:
    """``SecurityGroup::is_valid``: oned's message for a RULE it refuses, or None."""
    proto = (T.vget(rule, "PROTOCOL") or "").upper()
    if proto not in ("TCP", "UDP", "ICMP", "ICMPV6", "IPSEC", "ALL"):
        return "Wrong PROTOCOL in rule. Valid options: TCP, UDP, ICMP, ICMPV6, IPSEC, ALL."
    ports = T.vget(rule, "RANGE") or ""
    if ports and proto not in ("TCP", "UDP"):
        return "RANGE is supported only for TCP and UDP protocols."
    if ports:
        if not _PORTS.match(ports):
            return "Invalid RANGE specification."
        counted = 0
        for part in ports.split(","):
            if ":" in part:
                first, last = (int(p) for p in part.split(":"))
                if last > 65535:
                    return "RANGE out of bounds 0-65536."
                if last < first:
                    return "RANGE BEGIN value is greater than RANGE END value"
                counted += 2
            else:
                if int(part) > 65535:
                    return "RANGE out of bounds 0-65536."
                counted += 1
            if counted > 15:
                return "Not more than 15 ports can be specified in a RULE"
    for key, wanted in (("ICMP_TYPE", "ICMP"), ("ICMPV6_TYPE", "ICMPV6")):
        value = T.vget(rule, key) or ""
        if value:
            if proto != wanted:
                return f"{key} is supported only for {wanted} protocol."
            if not _uint(value):
                return f"Wrong {key}, it must be integer"
    if (T.vget(rule, "RULE_TYPE") or "").upper() not in ("INBOUND", "OUTBOUND"):
        return "Wrong RULE_TYPE in rule. Valid options: INBOUND, OUTBOUND."
    ip = T.vget(rule, "IP") or ""
    if ip:
        if not _uint(T.vget(rule, "SIZE")):
            return "Wrong or empty SIZE."
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            return "Wrong format for IP value."
    else:
        net = T.vget(rule, "NETWORK_ID")
        if net is not None and not re.match(r"^\s*-?[0-9]+\s*$", net):
            return "Wrong NETWORK_ID."
    return None


def _checked_rules(tmpl: list) -> list:
    """The template with its RULEs validated and duplicates dropped
    (``SecurityGroup::remove_duplicates``: same attributes, any order)."""
    for _name, rule in (p for p in tmpl if p[0] == "RULE" and isinstance(p[1], list)):
        bad = rule_error(rule)
        if bad:
            raise errors.internal(bad)
    seen: set[str] = set()
    out = []
    for name, value in tmpl:
        if name == "RULE" and isinstance(value, list):
            digest = hashlib.sha1(repr(sorted(map(tuple, value))).encode()).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
        out.append([name, value])
    return out


@method("one.secgroup.allocate", "s")
def allocate(sim: Sim, caller: Caller, tmpl: str) -> int:
    t = parse(tmpl)
    name = T.get(t, "NAME") or ""
    bad = name_error(name)
    if bad:
        raise errors.allocate_error("secgroup", bad)
    taken = name_taken(sim, "secgroup", caller.uid, name)
    if taken is not None:
        raise errors.allocate_error(
            "secgroup", f"NAME is already taken by SecurityGroup {taken['id']}."
        )
    try:
        body = _checked_rules([p for p in t if p[0] != "NAME"])
    except errors.OneError as e:
        raise errors.allocate_error("secgroup", e.message) from None
    sid = sim.store.new_id("secgroup", 100)
    sim.store.put(
        "secgroup",
        {
            "id": sid,
            "uid": caller.uid,
            "gid": caller.gid,
            "perms": [1, 1, 0, 0, 0, 0, 0, 0, 0],
            "name": name,
            "vms": [],
            "template": body,
        },
    )
    return sid


@method("one.secgroup.info", "ib", 1)
def info(sim: Sim, caller: Caller, sid: int, decrypt: bool = False) -> str:
    return docs.secgroup(sim, sim.get_auth(caller, "secgroup", sid, "USE"))


@method("one.secgroup.update", "isi", 2)
def update(sim: Sim, caller: Caller, sid: int, tmpl: str, append: int = 0) -> int:
    sg = sim.get_auth(caller, "secgroup", sid, "MANAGE")
    if append not in (0, 1):
        raise errors.api("Wrong update type")
    new = parse(tmpl, prefix="Cannot update template. ")
    body = [list(p) for p in sg["template"]]
    if append == 0:
        body = [list(p) for p in new]
    else:
        T.merge(body, new)
    try:
        sg["template"] = _checked_rules(body)
    except errors.OneError as e:
        raise errors.internal("Cannot update template. " + e.message) from None
    # LifeCycleManager::trigger_updatesg: the VMs get the new rules (at once here), but for an
    # ACTIVE one whose rules are being set up (_SG_BUSY), which goes to ERROR_VMS unchanged
    failed = set(sg.get("error_vms", []))
    for vid in sg["vms"]:
        vm = sim.store.get("vm", vid)
        if vm is not None and vm["state"] == 3 and vm["lcm_state"] in _SG_BUSY:
            failed.add(vid)
        elif vm is not None:
            failed.discard(vid)
            vm["template"] = [
                p
                for p in vm["template"]
                if not (
                    p[0] == "SECURITY_GROUP_RULE" and T.vget(p[1], "SECURITY_GROUP_ID") == str(sid)
                )
            ] + [["SECURITY_GROUP_RULE", r] for r in _vm_rules(sim, sg)]
            sim.store.put("vm", vm)
    sg["error_vms"] = sorted(failed)
    sim.store.put("secgroup", sg)
    return sid


@method("one.secgroup.delete", "i")
def delete(sim: Sim, caller: Caller, sid: int) -> int:
    sg = sim.get_auth(caller, "secgroup", sid, "MANAGE")
    why = None
    if sid == 0:
        why = "The default security group (ID 0) cannot be deleted."
    elif sg["vms"]:  # SecurityGroup::get_vms: its updated, outdated, updating and error VMs
        why = "The security group has VMs using it"
    if why:
        raise errors.OneError(errors.ACTION, "Cannot delete security group. " + why, sid)
    sim.store.delete("secgroup", sid)
    return sid


@method("one.secgrouppool.info", "iii")
def pool_info(sim: Sim, caller: Caller, flag: int, start: int, end: int) -> str:
    sgs = pool(sim, caller, "secgroup", flag, start, end)
    return (
        "<SECURITY_GROUP_POOL>"
        + "".join(docs.secgroup(sim, s) for s in sgs)
        + "</SECURITY_GROUP_POOL>"
    )


# ------------------------------------------------------------------------- what VMs take


def nic_groups(nic: dict, vn: dict | None, ars: list[dict] | None = None) -> list[int]:
    """``VirtualNetwork::nic_attribute``: the NIC's SECURITY_GROUPS, the network's and those of
    the address range `ars` (the one leased; for authorization, all of them), as a sorted set
    (anything that is not a number is dropped, as ``split_unique`` does)."""
    ids: set[int] = set()
    sources = [nic.get("SECURITY_GROUPS") or ""]
    if vn is not None:
        sources.append(T.get(vn["template"], "SECURITY_GROUPS") or "")
    for ar in ars or []:
        sources.append(T.vget(ar.get("attrs", []), "SECURITY_GROUPS") or "")
    for text in sources:
        for part in text.split(","):
            number = _INT.match(part)
            if number:
                ids.add(int(number.group()))
    return sorted(ids)


def authorize(sim: Sim, caller: Caller, ids: list[int]) -> None:
    """USE on every existing group a NIC names (one that does not exist is skipped, as oned)."""
    for sid in ids:
        sg = sim.store.get("secgroup", sid)
        if sg is not None and not allowed(caller, sg, "secgroup", "USE", sim.acls):
            raise errors.not_authorized(caller.uid, "USE", "secgroup", sid)


def _vm_rules(sim: Sim, sg: dict) -> list[list]:
    """``SecurityGroup::get_rules`` with NETWORK_ID rules expanded per address range."""
    out = []
    for rule in T.get_vec(sg["template"], "RULE"):
        rule = [list(p) for p in rule] + [
            ["SECURITY_GROUP_ID", str(sg["id"])],
            ["SECURITY_GROUP_NAME", sg["name"]],
        ]
        net = T.vget(rule, "NETWORK_ID")
        if net is None:
            out.append(rule)
            continue
        number = _INT.match(net)
        vn = sim.store.get("vnet", int(number.group())) if number else None
        for ar in (vn or {}).get("ars", []):
            expanded = [list(p) for p in rule]
            for key in _AR_RULE_ATTRS:
                value = str(ar.get(key.lower(), "") if key != "AR_ID" else ar["ar_id"])
                if value:
                    T.vset(expanded, key, value)
            out.append(expanded)
    return out


def take(sim: Sim, vid: int, ids: list[int]) -> list[list]:
    """``SecurityGroupPool::get_security_group_rules``: the VM joins each existing group and
    gets its rules (groups that do not exist give none)."""
    rules = []
    for sid in ids:
        sg = sim.store.get("secgroup", sid)
        if sg is None:
            continue
        if vid not in sg["vms"]:
            sg["vms"].append(vid)
            sim.store.put("secgroup", sg)
        rules += _vm_rules(sim, sg)
    return rules


def vm_groups(vm: dict) -> set[int]:
    """``VirtualMachine::get_security_groups``: the groups of all the VM's NICs."""
    return {
        sid
        for nic in T.get_vec(vm["template"], "NIC")
        for sid in nic_groups({"SECURITY_GROUPS": T.vget(nic, "SECURITY_GROUPS") or ""}, None)
    }


def _release(sim: Sim, vid: int, sid: int) -> None:
    sg = sim.store.get("secgroup", sid)
    if sg is not None and vid in sg["vms"]:
        sg["vms"].remove(vid)
        if vid in sg.get("error_vms", []):
            sg["error_vms"].remove(vid)
        sim.store.put("secgroup", sg)


def release(sim: Sim, vm: dict) -> None:
    """The VM leaves every group its NICs name (``release_security_group``; at DONE the
    rules stay in the VM's template, as oned keeps them)."""
    for sid in vm_groups(vm):
        _release(sim, vm["id"], sid)


def leave(sim: Sim, vm: dict, sid: int) -> None:
    """``VirtualMachine::remove_security_group``: the group's rules go, the VM leaves it."""
    _drop_rules(vm, sid)
    _release(sim, vm["id"], sid)


# ------------------------------------------------------------------------- one.vm.attachsg/detachsg

# LCM states in which DispatchManager::attach_sg/detach_sg refuse (rules being set up), and in
# which LifeCycleManager::trigger_updatesg leaves an ACTIVE VM in the group's ERROR_VMS
_SG_BUSY = {2, 4, 16, 19, 20, 21, 22, 25, 32, 35, 36, 37, 47, 48, 65}


def _vm_nic(vm: dict, nic_id: int) -> list | None:
    for nic in T.get_vec(vm["template"], "NIC"):
        if T.vget(nic, "NIC_ID") == str(nic_id):
            return nic
    return None


def _set_nic_groups(nic: list, ids: set[int]) -> None:
    T.vset(nic, "SECURITY_GROUPS", ",".join(map(str, sorted(ids))))


def _drop_rules(vm: dict, sid: int) -> None:
    """``VirtualMachine::remove_security_group``: the group's rules leave the template."""
    vm["template"] = [
        p
        for p in vm["template"]
        if not (p[0] == "SECURITY_GROUP_RULE" and T.vget(p[1], "SECURITY_GROUP_ID") == str(sid))
    ]


def _check_sg_state(vm: dict) -> None:
    from .. import lifecycle

    if vm["lcm_state"] in _SG_BUSY:
        raise errors.action(f"VM {vm['id']} is in wrong state {lifecycle.state_name(vm)}")


@method("one.vm.attachsg", "iii")
def attachsg(sim: Sim, caller: Caller, vid: int, nic_id: int, sid: int) -> int:
    """``VirtualMachineAPI::sg_attach`` + ``DispatchManager::attach_sg``."""
    vm = sim.get("vm", vid)
    nic = _vm_nic(vm, nic_id)
    if nic is None:
        raise errors.internal(f"VM {vid} doesn't have NIC id {nic_id}")
    sim.get_auth(caller, "vm", vid, "MANAGE")
    groups = set(nic_groups({"SECURITY_GROUPS": T.vget(nic, "SECURITY_GROUPS") or ""}, None))
    net = T.vget(nic, "NETWORK_ID")
    vn = sim.store.get("vnet", int(net)) if net and net.isdigit() else None
    if vn is not None and not allowed(caller, vn, "vnet", "USE", sim.acls):
        raise errors.not_authorized(caller.uid, "USE", "vnet", vn["id"])
    # VirtualNetworkPool::authorize_nic: the network's groups (its own and its ranges') too
    network = set(nic_groups({}, vn, vn["ars"])) if vn is not None else set()
    authorize(sim, caller, sorted(groups | {sid} | network))
    sg = sim.store.get("secgroup", sid)
    if sg is None:
        raise errors.action(f"Could not attach SG {sid} to VM, SG does not exist")
    _check_sg_state(vm)
    if sid in groups:
        raise errors.action(f"VM {vid} SG {sid} already in NIC {nic_id}")
    _set_nic_groups(nic, groups | {sid})
    _drop_rules(vm, sid)
    vm["template"] += [["SECURITY_GROUP_RULE", r] for r in _vm_rules(sim, sg)]
    if vid not in sg["vms"]:
        sg["vms"].append(vid)
        sim.store.put("secgroup", sg)
    sim.store.put("vm", vm)
    return vid


@method("one.vm.detachsg", "iii")
def detachsg(sim: Sim, caller: Caller, vid: int, nic_id: int, sid: int) -> int:
    """``VirtualMachineAPI::sg_detach`` + ``DispatchManager::detach_sg``."""
    vm = sim.get_auth(caller, "vm", vid, "MANAGE")
    _check_sg_state(vm)
    nic = _vm_nic(vm, nic_id)
    if nic is None:
        raise errors.action(f"VM {vid} doesn't have NIC id {nic_id}")
    groups = set(nic_groups({"SECURITY_GROUPS": T.vget(nic, "SECURITY_GROUPS") or ""}, None))
    if sid not in groups:
        raise errors.action(f"VM {vid} NIC {nic_id} doesn't contain SG {sid}")
    _set_nic_groups(nic, groups - {sid})
    _drop_rules(vm, sid)
    still = sid in vm_groups(vm)
    sg = sim.store.get("secgroup", sid)
    rules = _vm_rules(sim, sg) if still and sg is not None else []
    vm["template"] += [["SECURITY_GROUP_RULE", r] for r in rules]
    if not rules:  # DispatchManager::detach_sg keeps the VM only if it got rules back
        _release(sim, vid, sid)
    sim.store.put("vm", vm)
    return vid
