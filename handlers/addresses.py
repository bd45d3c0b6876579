"""Elastic IPs: AllocateAddress, DescribeAddresses, AssociateAddress, DisassociateAddress,
ReleaseAddress, plus what DescribeInstances (`add_public_ips`) and TerminateInstances
(`disassociate_instances`) use.

State lives in OpenNebula only, in the `:elasticips_vnet_id:` network (read and written with
the server admin session), so any number of gateway processes agree:

* one elastic IP = one address range (AR) of SIZE 1; ARs of another size are ignored;
* allocated = the AR's lease is on hold (`one.vn.hold`, `LEASE/VM=-1`) **and** the AR records
  the owner (`EC2_OWNER`) of the allocation its tags entry names (TAGS_PREFIX). `one.vn.hold`
  is atomic in oned: of concurrent holds of one IP exactly one succeeds, the others get
  INTERNAL "… or in use" and try the next free address;
* owner and association are attributes of that AR only, written with `one.vn.update_ar`
  (never a read-modify-write of the network template, so concurrent requests on different
  addresses cannot lose each other's updates — the Ruby econe's bug):
  EC2_OWNER, EC2_ALLOCATION_ID, EC2_DOMAIN, EC2_INSTANCE, EC2_ASSOCIATION_ID, EC2_PRIVATE_IP,
  EC2_NONCE (see mappings/views/address.yaml); tags are apart, in the network's template;
* every write is checked against a read just before and just after it (`_write`), since
  nothing serialises two gateway processes (see the note above the locks below).

oned's update_ar *replaces* the AR's attribute set (`AddressRange::update_attributes` ends
with `attr->replace(vup->value())`, keeping only TYPE, SHARED, MAC, IP, IP6, AR_ID, ALLOCATED,
SIZE, NEXT_INDEX, IPAM_MAD …), and onesim does the same. Every write therefore sends the complete
record — all EC2_* attributes (empty when cleared) plus the AR's other attributes
(DESCRIPTION, GATEWAY, SECURITY_GROUPS, GLOBAL_PREFIX, …) as read just before — so the result
is the same under either semantics and the administrator's attributes survive.

Scripts (`handlers/scripts.py`) run without a shell: `:associate_script: <elastic_ip>
<private_ip> <base64(VNET XML)>` and `:disassociate_script: <elastic_ip>`. A failing script
answers `InternalError` (500) with the script's message and leaves the recorded state as it
was: the steps already taken in that request are undone (a moved address is associated with
its old instance again) before the error is returned.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import random
import re
import secrets
import threading
import time
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from econe.config import script_is_set
from econe.context import Principal, RequestContext
from econe.errors import Ec2Error, dry_run_succeeded, missing_parameter
from econe.mapping.filters import paginate
from econe.mapping.ids import required_id
from econe.mapping.loader import adds
from econe.one.client import INTERNAL, NO_EXISTS, OneError, OneUnavailable
from econe.query import as_list
from handlers.escaping import template_xml
from handlers.locks import held
from handlers.scripts import ScriptError, run_script, script_env
from handlers.tags import pair_tags, tag_specs

log = logging.getLogger("econe.handlers.addresses")

EC2_KEYS = (
    "EC2_OWNER",
    "EC2_ALLOCATION_ID",
    "EC2_DOMAIN",
    "EC2_INSTANCE",
    "EC2_ASSOCIATION_ID",
    "EC2_PRIVATE_IP",
)
# Written with every record (one.vn.update_ar), a new random value each time: a request that
# reads it again sees whether another gateway process wrote the address meanwhile.
NONCE = "EC2_NONCE"
# An address's tags live in the network's template, one attribute per address (by IP), as
# JSON {"alloc": allocation id, "owner": uid, "tags": [[key, value], …]}: merged alone
# (`one.vn.update`, type 1), they never touch the AR records, and tags of an earlier allocation
# of the IP are not shown (another allocation id). This entry is also the address's second
# witness of its allocation: written before the record at allocation, emptied at release
# ({"alloc": "", "owner": null, "tags": []}), so a record that disagrees with it (another
# allocation id: one an earlier owner's request wrote late) makes the address nobody's, never
# that earlier owner's again. Entries without "owner" (written before econe kept one) vouch
# for nothing.
TAGS_PREFIX = "EC2_EIP_TAGS_"
# AR attributes oned keeps or regenerates itself on update_ar: never sent back.
SYSTEM_KEYS = {
    "AR_ID",
    "IP",
    "MAC",
    "TYPE",
    "SIZE",
    "SHARED",
    "NEXT_INDEX",
    "ALLOCATED",
    "USED_LEASES",
    "LEASES",
    "MAC_END",
    "IP_END",
    "IP6",
    "IP6_END",
    "IP6_ULA",
    "IP6_ULA_END",
    "IP6_GLOBAL",
    "IP6_GLOBAL_END",
    "PARENT_NETWORK_AR_ID",
    "IPAM_MAD",
}
ALLOCATION_RE = re.compile(r"eipalloc-[0-9a-f]{1,17}")
ASSOCIATION_RE = re.compile(r"eipassoc-[0-9a-f]{1,17}")
DOMAINS = ("standard", "vpc")
ALLOCATE_ROUNDS = 5
VM_DONE = 6

# Changes to one address are serialised in a process (held("address", vnet, ip): two requests
# of the same gateway never interleave their scripts for one IP), and associations with one
# instance too (held("instance", vnet, vm), taken first: an instance gets one address). A
# request holding several address locks takes them in IP order. A user's request finding
# locks.WAITERS others already waiting for one of them is refused (RequestLimitExceeded);
# TerminateInstances' hook and the sweeper wait.
#
# Across gateway processes nothing serialises them, and oned has no compare-and-swap: every
# write reads the AR again just before (and is not made if another process changed it since
# the request read it) and just after (its EC2_NONCE must be the last one, the owner still the
# owner; a read after that fails leaves the outcome unknown: `_Unknown`, nothing undone). A
# request that finds it lost puts the network back as OpenNebula records it (`_resync`) and
# answers an error. What is left (docs/elastic-ips.md, "Across gateway processes"): the
# loser's scripts ran before its check, so the network says what it did until the put-back
# (for good if that fails); and the one round trip between the check and the write.


def _busy(what: str) -> str:
    """The message for a request refused because others already wait to change `what`
    (handlers/locks.py: they would hold the worker threads every other request needs)."""
    return f"Too many requests are waiting to change {what}; try again later"


# -- reading the pool ---------------------------------------------------------------------------


@dataclass
class Address:
    """One AR of the elastic-IP network: its view (EC2 members) and what a rewrite needs."""

    view: dict[str, Any]
    extra: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ar_id(self) -> int:
        return self.view["_ar_id"]

    @property
    def ip(self) -> str:
        return self.view.get("PublicIp") or ""

    @property
    def eligible(self) -> bool:
        return self.view.get("_size") == 1 and bool(self.ip)

    @property
    def free(self) -> bool:
        return self.eligible and not self.view.get("_used")

    @property
    def held(self) -> bool:
        return self.eligible and self.view.get("_held") is not None

    @property
    def valid(self) -> bool:
        """Held, and its record is of the allocation its tags entry names (see TAGS_PREFIX)."""
        return self.held and not self.view.get("_void")

    @property
    def half_released(self) -> bool:
        """Held with its record cleared, while its tags entry still names an allocation and its
        owner: a ReleaseAddress cleared the record and then could not give the lease back, or
        could not read the record after clearing it (`_Unknown`). That owner's ReleaseAddress
        finishes the release."""
        entry = self.view.get("_entry") or {}
        return (
            self.held
            and not any(self.record()[k] for k in ("EC2_OWNER", "EC2_ALLOCATION_ID"))
            and isinstance(entry.get("owner"), int)
            and bool(entry.get("alloc"))
        )

    @property
    def owner(self) -> int | None:
        return self.view.get("_owner") if self.valid else None

    @property
    def vm(self) -> int | None:
        return self.view.get("_vm") if self.valid and self.view.get("AssociationId") else None

    def mark(self) -> tuple:
        """What changes with every write of the address, or with its lease or allocation."""
        return (self.view.get("_nonce"), self.record(), self.held, self.owner)

    def record(self) -> dict[str, str]:
        """The EC2_* record as it is now (for writing it back changed)."""
        v = self.view
        return {
            "EC2_OWNER": "" if v.get("_owner") is None else str(v["_owner"]),
            "EC2_ALLOCATION_ID": v.get("AllocationId") or "",
            "EC2_DOMAIN": v.get("Domain") or "standard",
            "EC2_INSTANCE": "" if v.get("_vm") is None else str(v["_vm"]),
            "EC2_ASSOCIATION_ID": v.get("AssociationId") or "",
            "EC2_PRIVATE_IP": v.get("PrivateIpAddress") or "",
        }


@dataclass
class Pool:
    vnet: int
    xml: str
    addresses: list[Address]

    def mine(self, uid: int) -> list[Address]:
        return [a for a in self.addresses if a.held and a.owner == uid]


def vnet_id(rt: Any) -> int:
    vid = rt.config.elasticips_vnet_id
    if vid is None:
        raise Ec2Error(
            "UnsupportedOperation",
            "Elastic IPs are not enabled on this cloud (:elasticips_vnet_id: is not set)",
        )
    return int(vid)


def _admin(rt: Any, method: str, *args: Any) -> Any:
    """One oned call as the server admin; OneError propagates for the caller to judge."""
    try:
        return rt.one.call(rt.admin_session(), method, *args)
    except OneUnavailable as exc:
        raise Ec2Error("Unavailable", "OpenNebula is not reachable; try again later") from exc


def _server_error(what: str, exc: OneError) -> Ec2Error:
    log.error("%s: %s", what, exc)
    return Ec2Error("InternalError", f"{what}: {exc.message}")


def read_pool(rt: Any, vnet: int | None = None) -> Pool:
    vnet = vnet_id(rt) if vnet is None else vnet
    _start_sweeper(rt)
    try:
        xml = _admin(rt, "one.vn.info", vnet)
    except OneError as exc:
        if exc.code == NO_EXISTS:
            log.error("the elastic IP network %s does not exist: %s", vnet, exc)
            raise Ec2Error(
                "InternalError",
                f"The elastic IP network (:elasticips_vnet_id: {vnet}) does not exist",
            ) from exc
        raise _server_error(f"Cannot read the elastic IP network {vnet}", exc) from exc
    root = rt.xml(xml)
    tagged = {
        c.tag: c.text or ""
        for c in root.iterfind("TEMPLATE/*")
        if isinstance(c.tag, str) and c.tag.startswith(TAGS_PREFIX)
    }
    ars = root.findall("AR_POOL/AR")
    views = rt.engine.views["address"].apply_all(ars, rt.scope())
    addresses = []
    for ar, view in zip(ars, views, strict=True):
        extra = [
            (c.tag, c.text or "")
            for c in ar
            if isinstance(c.tag, str)
            and len(c) == 0
            and c.tag not in SYSTEM_KEYS
            and c.tag not in EC2_KEYS
            and c.tag != NONCE
        ]
        entry = _entry(tagged.get(_tags_attr(view.get("PublicIp") or "")))
        same = entry.get("alloc") == view.get("AllocationId")
        view["Tags"] = pair_tags(entry.get("tags")) if same else []
        view["_void"] = "owner" in entry and not same
        view["_entry"] = entry
        addresses.append(Address(view, extra))
    return Pool(vnet, xml, addresses)


class _Lost(Exception):
    """Another gateway process changed the address between this request's read and its write;
    `now`: the address as it is then (None: gone, or unreadable)."""

    def __init__(self, now: Address | None) -> None:
        super().__init__("the address was changed by another request")
        self.now = now


class _Unknown(Exception):
    """oned answered the write, but the address could not be read after it (AFTER_READS
    tries): whether this write is the one that stands is not known. Nothing may be undone or
    written over a record nobody could read; the request answers Unavailable (`_unsure`) and
    leaves the record as written, and a retry of the same request converges from it."""

    def __init__(self, ip: str, cause: Ec2Error) -> None:
        super().__init__(f"{ip}: written, but not readable after: {cause.message}")
        self.ip = ip


# Pauses before the reads after a write that are tried again when one fails (_write).
AFTER_READS = (0.0, 0.2, 0.5, 1.0)


def _now(rt: Any, vnet: int, addr: Address) -> Address | None:
    return next((a for a in read_pool(rt, vnet).addresses if a.ar_id == addr.ar_id), None)


def _read_after(rt: Any, vnet: int, addr: Address) -> Address | None:
    """The address read after a write oned answered; _Unknown when no read succeeds."""
    failure = None
    for pause in AFTER_READS:
        time.sleep(pause)
        try:
            return _now(rt, vnet, addr)
        except Ec2Error as exc:  # unreachable (Unavailable) or refused (InternalError)
            log.warning("cannot read %s after writing it: %s", addr.ip, exc.message)
            failure = exc
    assert failure is not None
    raise _Unknown(addr.ip, failure)


def _unsure(ip: str) -> Ec2Error:
    """The answer of a request whose write oned took but whose outcome could not be read."""
    return Ec2Error(
        "Unavailable",
        f"OpenNebula took the change of the address '{ip}' but could not be read after it; "
        "the change stands as written: try the same request again",
    )


def _write(
    rt: Any, vnet: int, addr: Address, record: dict[str, str], check: bool = True
) -> Address:
    """one.vn.update_ar of this AR only, with the complete record (see the module doc) and a new
    EC2_NONCE; → the address as read after. Raises _Lost when the AR is no longer as `addr`
    was read (`check`; an allocation, which has just held the lease, writes over whatever is
    there), or when the read after shows another write or another owner; OneError/Ec2Error
    when oned fails (nothing written); _Unknown when oned took the write but the address could
    not be read after it (then the caller undoes nothing)."""
    now = _now(rt, vnet, addr)
    if now is None or (check and now.mark() != addr.mark()):
        raise _Lost(now)
    nonce = secrets.token_hex(8)
    vector = [("AR_ID", str(now.ar_id)), *now.extra]
    vector += [(k, record.get(k) or "") for k in EC2_KEYS] + [(NONCE, nonce)]
    _admin(rt, "one.vn.update_ar", vnet, template_xml([("AR", vector)]))
    after = _read_after(rt, vnet, addr)
    owner = record.get("EC2_OWNER") or ""
    if after is None or after.view.get("_nonce") != nonce or (owner and str(after.owner) != owner):
        raise _Lost(after)
    return after


def _try_write(
    rt: Any,
    vnet: int,
    addr: Address,
    record: dict[str, str],
    check: bool = True,
    resync: bool = False,
) -> Address | None:
    """_write, logging failures. `resync`: this request's scripts changed the address, so a
    write lost to another gateway process puts the network back as that one recorded it."""
    try:
        return _write(rt, vnet, addr, record, check)
    except _Lost as exc:
        log.error("cannot record the state of %s: %s", addr.ip, exc)
        if resync:
            _resync(rt, exc.now)
        return None
    except (_Unknown, OneError, Ec2Error) as exc:
        log.error("cannot record the state of %s: %s", addr.ip, exc)
        return None


# How many times _resync reads the address and runs its scripts while the record changes.
RESYNC_ROUNDS = 3


def _resync(rt: Any, now: Address | None) -> None:
    """This request's scripts ran, then it lost the address to another gateway process: make
    the network say what OpenNebula records for it (its association, or none). `now` (as the
    lost write read it) only names the AR: the record is read again just before the scripts
    and after them, and the scripts run again while it changed meanwhile. If a script fails
    the network may send the address to this request's instance until its owner's next change
    of it (DisassociateAddress of an unassociated address runs the disassociate script too)."""
    if now is None:
        return
    try:
        pool = read_pool(rt)
        for _ in range(RESYNC_ROUNDS):
            fresh = next((a for a in pool.addresses if a.ar_id == now.ar_id), None)
            if fresh is None:
                return
            _disassociate(rt, fresh.ip)
            if fresh.vm is not None:
                _associate(rt, fresh.ip, fresh.view.get("PrivateIpAddress") or "", pool.xml)
            pool = read_pool(rt)
            after = next((a for a in pool.addresses if a.ar_id == now.ar_id), None)
            if after is None or after.mark() == fresh.mark():
                return
        log.error("%s kept changing while its network was put back as recorded", now.ip)
    except Ec2Error as exc:
        log.error("cannot put the network of %s back as recorded: %s", now.ip, exc.message)


def _changed(rt: Any, addr: Address, now: Address | None) -> Ec2Error:
    """The answer of a request that lost the address to another gateway process: the
    NotFound of the identifier the request named it by, when it is gone meanwhile."""
    body = rt.body
    if (
        now is None
        or now.owner != rt.principal.uid
        or now.view.get("AllocationId") != addr.view.get("AllocationId")
    ):  # released meanwhile
        if body.get("AllocationId"):
            return _allocation_not_found(str(body["AllocationId"]))
        if body.get("AssociationId"):
            return _association_not_found(str(body["AssociationId"]))
        return _address_not_found(addr.ip)
    if body.get("AssociationId") and now.view.get("AssociationId") != body["AssociationId"]:
        return _association_not_found(str(body["AssociationId"]))  # disassociated meanwhile
    return Ec2Error(
        "Unavailable",
        f"The address '{addr.ip}' was changed by another request at the same time; "
        "this request was taken back: try again",
    )


def _lease(addr: Address) -> str:
    return template_xml([("LEASES", [("IP", addr.ip), ("AR_ID", str(addr.ar_id))])])


def _cleared(record: dict[str, str]) -> dict[str, str]:
    """The record without its association."""
    return {**record, "EC2_INSTANCE": "", "EC2_ASSOCIATION_ID": "", "EC2_PRIVATE_IP": ""}


def _new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(9)[:17]}"


# -- request parameters -------------------------------------------------------------------------


def _check_ip(value: str, name: str = "PublicIp") -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise Ec2Error(
            "InvalidParameterValue", f"Invalid value '{value}' for {name}: not an IPv4 address"
        ) from None


def _check_allocation_id(value: str) -> str:
    if not ALLOCATION_RE.fullmatch(value):
        raise Ec2Error(
            "InvalidAllocationID.Malformed",
            f"Invalid id: '{value}' (expecting 'eipalloc-' and hex digits)",
        )
    return value


def _address_not_found(ip: str) -> Ec2Error:
    return Ec2Error("InvalidAddress.NotFound", f"Address '{ip}' not found.")


def _allocation_not_found(alloc: str) -> Ec2Error:
    return Ec2Error("InvalidAllocationID.NotFound", f"The allocation ID '{alloc}' does not exist")


def _one_of(body: dict, first: str, second: str) -> tuple[str, str]:
    """Exactly one of two identifying parameters → (name, value)."""
    a, b = body.get(first), body.get(second)
    if a and b:
        raise Ec2Error(
            "InvalidParameterCombination",
            f"The parameters {first} and {second} cannot be used together",
        )
    if not a and not b:
        raise missing_parameter(f"{first} or {second}")
    return (first, str(a)) if a else (second, str(b))


def _my_address(rt: Any, pool: Pool, body: dict, other: str = "AllocationId") -> Address:
    """The caller's address named by PublicIp or AllocationId/AssociationId."""
    name, value = _one_of(body, "PublicIp", other)
    mine = pool.mine(rt.principal.uid)
    if name == "PublicIp":
        ip = _check_ip(value)
        hit = next((a for a in mine if a.ip == ip), None)
        if hit is None:
            raise _address_not_found(value)
        return hit
    if name == "AllocationId":
        _check_allocation_id(value)
        hit = next((a for a in mine if a.view.get("AllocationId") == value), None)
        if hit is None:
            raise _allocation_not_found(value)
        return hit
    if not ASSOCIATION_RE.fullmatch(value):
        raise Ec2Error(
            "InvalidAssociationID.Malformed",
            f"Invalid id: '{value}' (expecting 'eipassoc-' and hex digits)",
        )
    hit = next((a for a in mine if a.view.get("AssociationId") == value), None)
    if hit is None:
        raise _association_not_found(value)
    return hit


def _association_not_found(assoc: str) -> Ec2Error:
    return Ec2Error("InvalidAssociationID.NotFound", f"The association ID '{assoc}' does not exist")


# -- scripts ------------------------------------------------------------------------------------


def _script_error(exc: ScriptError) -> Ec2Error:
    return Ec2Error("InternalError", f"The elastic IP could not be changed: {exc.message}")


def _require_configured(configured: str, key: str) -> None:
    """The seed's default `false` means "no networking for elastic IPs here": say so (400)
    instead of running it and answering a 500."""
    if not script_is_set(configured):
        raise Ec2Error(
            "UnsupportedOperation",
            f"Elastic IP association is not set up on this cloud ({key}: is {configured!r}); "
            "ask the cloud administrator",
        )


def _network_for(vnet_xml: str, ip: str) -> bytes:
    """The network's XML with only the address range holding `ip` and without the addresses'
    tags (EC2_EIP_TAGS_*): the argument holds the administrator's network and this address's
    record, nothing any user can make longer. With one range per address, a pool of a few
    hundred made it longer than the system allows one argument (128 KiB), and so did one
    user's 50 long tags on each of a few addresses, for every user's AssociateAddress."""
    root = etree.fromstring(vnet_xml.encode("utf-8"))
    for attr in root.findall("TEMPLATE/*"):
        if isinstance(attr.tag, str) and attr.tag.startswith(TAGS_PREFIX):
            attr.getparent().remove(attr)
    wanted = ipaddress.ip_address(ip)
    for ar in root.findall("AR_POOL/AR"):
        try:
            first = ipaddress.ip_address((ar.findtext("IP") or "").strip())
            size = int(ar.findtext("SIZE") or 0)
            holds = first.version == wanted.version and 0 <= int(wanted) - int(first) < size
        except ValueError:
            holds = False
        if not holds:
            ar.getparent().remove(ar)
    return etree.tostring(root)


def _associate(rt: Any, ip: str, private_ip: str, vnet_xml: str) -> None:
    configured = rt.config.associate_script
    _require_configured(configured, ":associate_script")
    if rt.dry_run:
        raise dry_run_succeeded()
    blob = base64.b64encode(_network_for(vnet_xml, ip)).decode("ascii")
    try:
        run_script(
            configured,
            [ip, private_ip, blob],
            rt.config.script_timeout,
            name="associate script",
            env=script_env(rt.config.tmpdir),
        )
    except ScriptError as exc:
        raise _script_error(exc) from exc


def _disassociate(rt: Any, ip: str) -> None:
    configured = rt.config.disassociate_script
    _require_configured(configured, ":disassociate_script")
    if rt.dry_run:
        raise dry_run_succeeded()
    try:
        run_script(
            configured,
            [ip],
            rt.config.script_timeout,
            name="disassociate script",
            env=script_env(rt.config.tmpdir),
        )
    except ScriptError as exc:
        raise _script_error(exc) from exc


# -- actions ------------------------------------------------------------------------------------


def allocate_address(rt: Any) -> dict:
    vnet = vnet_id(rt)
    body = rt.body
    domain = str(body.get("Domain") or "standard")
    if domain not in DOMAINS:
        raise Ec2Error("InvalidParameterValue", f"Invalid value '{domain}' for Domain")
    # the one pool and the region, which DescribeAddresses shows, may be named; nothing else
    pool_id = f"ipv4pool-vnet-{vnet}"
    if body.get("PublicIpv4Pool") not in (None, "", pool_id, "amazon"):  # amazon: the default
        raise Ec2Error("InvalidParameterValue", f"PublicIpv4Pool: the only pool here is {pool_id}")
    if body.get("NetworkBorderGroup") not in (None, "", rt.config.region):
        raise Ec2Error(
            "InvalidParameterValue", f"NetworkBorderGroup: the only one is {rt.config.region}"
        )
    for name in ("CustomerOwnedIpv4Pool", "IpamPoolId"):
        if body.get(name):
            raise Ec2Error("InvalidParameterValue", f"{name} is not supported: there is one pool")
    wanted = _check_ip(str(body["Address"]), "Address") if body.get("Address") else None
    tags = tag_specs(body, "elastic-ip")
    uid = rt.principal.uid
    for _ in range(ALLOCATE_ROUNDS):
        pool = read_pool(rt, vnet)
        _within_limit(rt, pool, uid, 0)
        if wanted is not None:
            named = [a for a in pool.addresses if a.eligible and a.ip == wanted]
            if not named:
                raise _address_not_found(wanted)
            if not named[0].free:
                raise Ec2Error("InvalidIPAddress.InUse", f"Address '{wanted}' is in use.")
            free = named
        else:
            free = [a for a in pool.addresses if a.free]
            if not free:
                raise Ec2Error(
                    "AddressLimitExceeded",
                    "The maximum number of addresses has been reached: no free elastic IP is left",
                )
            random.shuffle(free)  # concurrent allocators spread over the pool
        for addr in free:
            try:
                _admin(rt, "one.vn.hold", vnet, _lease(addr))
            except OneError as exc:
                if exc.code == INTERNAL:  # held meanwhile by someone else: next one
                    continue
                raise _server_error("Cannot hold an elastic IP", exc) from exc
            record = {
                "EC2_OWNER": str(uid),
                "EC2_ALLOCATION_ID": _new_id("eipalloc"),
                "EC2_DOMAIN": domain,
            }
            try:
                # the tags entry first (see TAGS_PREFIX): from then on, a record the previous
                # owner's request writes late names nobody, instead of giving it the address
                _write_entry(rt, vnet, addr.ip, record["EC2_ALLOCATION_ID"], uid, tags)
                _write(rt, vnet, addr, record, check=False)  # over whatever is there
            except (OneError, Ec2Error) as exc:  # not recorded
                _give_back(rt, vnet, addr, recorded=False)
                raise _failed("Cannot record the elastic IP's owner", exc) from exc
            except (_Lost, _Unknown):  # another write came after this one, or maybe did
                _give_back(rt, vnet, addr, recorded=True)
                raise Ec2Error(
                    "Unavailable",
                    f"The address '{addr.ip}' was changed by another request at the same "
                    "time; nothing was allocated: try again",
                ) from None
            if rt.config.elastic_ips_per_user is not None:  # no limit: nothing to read again
                try:  # two allocations at once may both have passed the check above
                    _within_limit(rt, read_pool(rt, vnet), uid, 1)
                except Ec2Error:
                    _give_back(rt, vnet, addr, recorded=True)
                    raise
            log.info("allocated %s (%s) to uid %s", addr.ip, record["EC2_ALLOCATION_ID"], uid)
            return {
                "PublicIp": addr.ip,
                "AllocationId": record["EC2_ALLOCATION_ID"],
                "Domain": domain,
                "PublicIpv4Pool": pool_id,
                "NetworkBorderGroup": rt.config.region,
            }
        if wanted is not None:
            raise Ec2Error("InvalidIPAddress.InUse", f"Address '{wanted}' is in use.")
    raise Ec2Error(
        "AddressLimitExceeded",
        "The maximum number of addresses has been reached: no free elastic IP is left",
    )


def _within_limit(rt: Any, pool: Pool, uid: int, new: int) -> None:
    """AddressLimitExceeded when the user holds more than :elastic_ips_per_user: addresses
    (`new` of them just allocated) or could not take one more (`new` = 0)."""
    limit = rt.config.elastic_ips_per_user
    if limit is None:
        return
    held = sum(1 for a in pool.addresses if a.owner == uid)
    if held - new >= limit:
        raise Ec2Error(
            "AddressLimitExceeded",
            f"The maximum number of addresses has been reached: {limit} per user",
        )


def _give_back(rt: Any, vnet: int, addr: Address, recorded: bool) -> None:
    """Undo an allocation as ReleaseAddress does: the record cleared first (when one may have
    been written), then the tags entry, then the lease. If the record cannot be cleared the
    lease stays held (nobody's): on a free address it would name this user as the owner of
    whoever holds it next."""
    if recorded and _try_write(rt, vnet, addr, dict.fromkeys(EC2_KEYS, ""), check=False) is None:
        return
    try:
        _write_entry(rt, vnet, addr.ip, "", None, [])
    except Ec2Error as exc:  # the next allocation writes its own before its record
        log.error("cannot empty the tags entry of %s: %s", addr.ip, exc.message)
    try:
        _admin(rt, "one.vn.release", vnet, _lease(addr))
    except (OneError, Ec2Error) as exc:
        log.error("cannot give %s back after a failure: %s", addr.ip, exc)


def _sort_key(item: dict) -> tuple:
    try:
        return (0, int(ipaddress.IPv4Address(item.get("PublicIp") or "")))
    except ValueError:
        return (1, 0)


def describe_addresses(rt: Any) -> dict:
    vnet = vnet_id(rt)
    body = rt.body
    ips = [_check_ip(str(v)) for v in as_list(body.get("PublicIp"))]
    allocs = [_check_allocation_id(str(v)) for v in as_list(body.get("AllocationId"))]
    predicates = rt.filters()
    pool = read_pool(rt, vnet)
    items = [a.view for a in pool.mine(rt.principal.uid)]
    if ips or allocs:
        have_ips = {i.get("PublicIp") for i in items}
        have_allocs = {i.get("AllocationId") for i in items}
        missing_ips = [ip for ip in ips if ip not in have_ips]
        if missing_ips:
            raise Ec2Error(
                "InvalidAddress.NotFound", f"Address '{', '.join(missing_ips)}' not found."
            )
        missing_allocs = [a for a in allocs if a not in have_allocs]
        if missing_allocs:
            raise _allocation_not_found(", ".join(missing_allocs))
        items = [i for i in items if i.get("PublicIp") in ips or i.get("AllocationId") in allocs]
    for predicate in predicates:
        items = [i for i in items if predicate(i)]
    page = rt.mapping.paginate  # DescribeAddressesAttribute pages; DescribeAddresses does not
    if page is None:
        return {"Addresses": sorted(items, key=_sort_key)}
    items, token = paginate(
        items, body.get(page.max_results), body.get(page.token), page.key, page.lo, page.hi
    )
    return {"Addresses": items, "NextToken": token}


def _instance(rt: Any, instance_id: Any, number: int) -> etree._Element:
    """The VM as the user sees it; a terminated one, or one shutting down (TerminateInstances
    has taken its addresses already), cannot get an address."""
    from handlers.instances import user_vm  # handlers.instances imports this module

    refused = "The instance '{}' is {}; it cannot get an Elastic IP address"
    done = Ec2Error("IncorrectInstanceState", refused.format(instance_id, "terminated"))
    vm = user_vm(rt, number, str(instance_id), terminated=done)
    if rt.view("instance", vm)["State"]["Name"] == "shutting-down":
        raise Ec2Error("IncorrectInstanceState", refused.format(instance_id, "shutting-down"))
    return vm


def _private_ip(vm: etree._Element, instance_id: str, requested: Any) -> str:
    ips = [ip for ip in (n.findtext("IP") for n in vm.iterfind("TEMPLATE/NIC")) if ip]
    if requested:
        requested = _check_ip(str(requested), "PrivateIpAddress")
        if requested not in ips:
            raise Ec2Error(
                "InvalidParameterValue",
                f"The instance '{instance_id}' has no private address {requested}",
            )
        return requested
    if not ips:
        raise Ec2Error(
            "InvalidInstanceID",
            f"The instance '{instance_id}' has no network interface with an IPv4 address",
        )
    try:  # it goes to the script as an argument: an address, nothing else (not "-h")
        return str(ipaddress.IPv4Address(ips[0]))
    except ValueError:
        raise Ec2Error(
            "InvalidInstanceID",
            f"The first network interface of the instance '{instance_id}' has the address "
            f"'{ips[0]}', which is not an IPv4 address; name another with PrivateIpAddress",
        ) from None


def _bool(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "1", "yes")


@dataclass
class _Step:
    """One script already run in this request, and how to take it back."""

    addr: Address
    undo: tuple  # ("associate", ip, private_ip) or ("disassociate", ip)


def _undo(rt: Any, steps: list[_Step], vnet_xml: str) -> list[Address]:
    """Undo `steps` in reverse order; return the addresses whose undo failed."""
    failed = []
    for step in reversed(steps):
        try:
            if step.undo[0] == "associate":
                _associate(rt, step.undo[1], step.undo[2], vnet_xml)
            else:
                _disassociate(rt, step.undo[1])
        except Ec2Error as exc:
            log.error("undoing the change of %s failed: %s", step.addr.ip, exc.message)
            failed.append(step.addr)
    return failed


def associate_address(rt: Any) -> dict:
    vnet = vnet_id(rt)
    body = rt.body
    if body.get("NetworkInterfaceId"):
        raise Ec2Error(
            "InvalidParameterValue", "NetworkInterfaceId is not supported; use InstanceId"
        )
    instance_id = body.get("InstanceId")
    if not instance_id:
        raise missing_parameter("InstanceId")
    addr = _my_address(rt, read_pool(rt, vnet), body)
    vm_id = required_id(instance_id, "i", "InvalidInstanceID.Malformed", "InstanceId")
    uid = rt.principal.uid
    # the caller's instance before its lock: another user naming it waits for nothing, so
    # cannot make the owner's requests wait (or be refused as too many)
    _instance(rt, instance_id, vm_id)
    with (
        held("instance", vnet, vm_id, busy=_busy(f"the instance {instance_id}")),
        ExitStack() as locks,
    ):
        # its state read under the lock TerminateInstances' disassociation takes too: either
        # the terminate came first and is seen here, or it disassociates what this writes
        vm = _instance(rt, instance_id, vm_id)
        private_ip = _private_ip(vm, str(instance_id), body.get("PrivateIpAddress"))
        # the addresses this changes: the one asked for and those the instance has now (no
        # other request of this process gives it one meanwhile: the instance is held)
        pool = read_pool(rt, vnet)
        ips = {addr.ip, *(a.ip for a in pool.addresses if a.vm == vm_id)}
        for ip in sorted(ips, key=ipaddress.ip_address):
            locks.enter_context(held("address", vnet, ip, busy=_busy(f"the address {ip}")))
        pool = read_pool(rt, vnet)  # again, now that no request of this process changes them
        addr = _my_address(rt, pool, body)
        if addr.vm is not None:
            if addr.vm == vm_id and addr.view.get("PrivateIpAddress") == private_ip:
                # already so: the associate script again (scripts are idempotent), since the
                # network may not say so after a request that answered Unavailable
                _associate(rt, addr.ip, private_ip, pool.xml)
                return {"AssociationId": addr.view["AssociationId"]}
            if _bool(body.get("AllowReassociation")) is False:
                raise Ec2Error(
                    "Resource.AlreadyAssociated",
                    f"The address '{addr.ip}' is already associated with "
                    f"{addr.view.get('InstanceId')}; pass AllowReassociation=true to move it",
                )
        others = [a for a in pool.addresses if a is not addr and a.vm == vm_id]
        if any(a.owner != uid for a in others):
            raise Ec2Error(
                "Resource.AlreadyAssociated",
                f"The instance '{instance_id}' already has an Elastic IP address of another account",
            )
        steps: list[_Step] = []
        try:
            if addr.vm is not None:
                _disassociate(rt, addr.ip)
                steps.append(
                    _Step(addr, ("associate", addr.ip, addr.view.get("PrivateIpAddress") or ""))
                )
            for other in others:
                _disassociate(rt, other.ip)
                steps.append(
                    _Step(other, ("associate", other.ip, other.view.get("PrivateIpAddress") or ""))
                )
            _associate(rt, addr.ip, private_ip, pool.xml)
        except Ec2Error:
            # Put back what this request changed; record the truth for what cannot be put back.
            _record_lost(rt, vnet, _undo(rt, steps, pool.xml))
            raise
        association = _new_id("eipassoc")
        record = {
            **addr.record(),
            "EC2_INSTANCE": str(vm_id),
            "EC2_ASSOCIATION_ID": association,
            "EC2_PRIVATE_IP": private_ip,
        }
        # the address first; the instance's other addresses keep their records until it is
        # recorded, so a failure here has only scripts to take back
        unsure = False
        try:
            _write(rt, vnet, addr, record)
        except _Unknown:
            # oned took the record; as far as anyone can tell it stands, and the network says
            # so: nothing is taken back, the rest is recorded, and the answer is Unavailable
            # (a retry finds the association and runs the associate script again)
            unsure = True
        except _Lost as exc:
            # another gateway process changed the address meanwhile (moved, released…): what
            # it recorded stands, on the network too; the instance's other addresses go back
            _record_lost(rt, vnet, _undo(rt, [s for s in steps if s.addr is not addr], pool.xml))
            _resync(rt, exc.now)
            raise _changed(rt, addr, exc.now) from None
        except (OneError, Ec2Error) as exc:
            # not recorded: take every script of this request back (the new association, and
            # the old ones it replaced), and record the truth for what cannot be put back
            back = [*steps, _Step(addr, ("disassociate", addr.ip))]
            _record_lost(rt, vnet, _undo(rt, back, pool.xml))
            raise _failed("Cannot record the association", exc) from exc
        for other in others:
            try:
                _write(rt, vnet, other, _cleared(other.record()))
            except _Lost as exc:  # changed by another gateway process: as it recorded
                _resync(rt, exc.now)
            except (_Unknown, OneError, Ec2Error) as exc:
                log.error("cannot record the disassociation of %s: %s", other.ip, exc)
        if unsure:
            raise _unsure(addr.ip)
        # An instance has one address: a request of another gateway process may have given it
        # another one meanwhile. Then both take theirs back, or the later one does.
        again = read_pool(rt, vnet)
        changed = {addr.ar_id, *(o.ar_id for o in others)}
        if any(a.vm == vm_id and a.ar_id not in changed for a in again.addresses):
            # the address as it was (with its old association, if it was a move); the
            # instance's other addresses stay off it
            back = [s for s in steps if s.addr is addr] + [_Step(addr, ("disassociate", addr.ip))]
            lost = _undo(rt, back, pool.xml)
            mine = next((a for a in again.addresses if a.ar_id == addr.ar_id), None)
            if mine is not None:
                _try_write(
                    rt,
                    vnet,
                    mine,
                    _cleared(addr.record()) if lost else addr.record(),
                    resync=True,
                )
            raise Ec2Error(
                "Unavailable",
                f"The instance '{instance_id}' got another Elastic IP address at the same time "
                f"(another request); '{addr.ip}' was not associated with it: try again",
            )
    log.info("associated %s with VM %s (%s) for uid %s", addr.ip, vm_id, private_ip, uid)
    return {"AssociationId": association}


def _failed(what: str, exc: OneError | Ec2Error) -> Ec2Error:
    """The EC2 error for a failed oned call: Ec2Error as it is (Unavailable), OneError as an
    InternalError saying `what`."""
    return exc if isinstance(exc, Ec2Error) else _server_error(what, exc)


def _record_lost(rt: Any, vnet: int, lost: list[Address]) -> None:
    """Addresses whose association an undo could not put back: recorded as they are now,
    unassociated."""
    for addr in lost:
        _try_write(rt, vnet, addr, _cleared(addr.record()), resync=True)


def _associate_again(rt: Any, vnet: int, pool: Pool, addr: Address) -> None:
    """The disassociate script ran, but its record could not be written: associate the address
    again, so that the network says what OpenNebula says; if that fails too, record the truth
    (unassociated), so that AssociateAddress never takes it for still associated."""
    back = _Step(addr, ("associate", addr.ip, addr.view.get("PrivateIpAddress") or ""))
    _record_lost(rt, vnet, _undo(rt, [back], pool.xml))


def disassociate_address(rt: Any) -> dict:
    vnet = vnet_id(rt)
    addr = _my_address(rt, read_pool(rt, vnet), rt.body, other="AssociationId")
    with held("address", vnet, addr.ip, busy=_busy(f"the address {addr.ip}")):
        pool = read_pool(rt, vnet)  # again, now that no request of this process changes it
        addr = _my_address(rt, pool, rt.body, other="AssociationId")
        if addr.vm is None:  # idempotent, as EC2
            if script_is_set(rt.config.disassociate_script):
                # the (idempotent) script all the same: a request of another gateway process
                # that lost this address to it may have failed to take its association back
                _disassociate(rt, addr.ip)
                after = _now(rt, vnet, addr)
                if after is None or after.mark() != addr.mark():  # changed meanwhile
                    _resync(rt, after)
            return {"Return": True}
        _disassociate(rt, addr.ip)
        try:
            _write(rt, vnet, addr, _cleared(addr.record()))
        except _Unknown:  # written: the record and the network say unassociated
            raise _unsure(addr.ip) from None
        except _Lost as exc:
            _resync(rt, exc.now)
            raise _changed(rt, addr, exc.now) from None
        except (OneError, Ec2Error) as exc:
            _associate_again(rt, vnet, pool, addr)
            raise _failed("Cannot record the disassociation", exc) from exc
    log.info("disassociated %s from VM %s", addr.ip, addr.vm)
    return {"Return": True}


def _to_release(rt: Any, pool: Pool, body: dict) -> Address:
    """The caller's address to release, or the caller's address a ReleaseAddress left half
    released (see Address.half_released), named by PublicIp or by its AllocationId."""
    try:
        return _my_address(rt, pool, body)
    except Ec2Error as exc:
        if not exc.code.endswith(".NotFound"):
            raise
        name, value = _one_of(body, "PublicIp", "AllocationId")
        for a in pool.addresses:
            entry = a.view.get("_entry") or {}
            if (
                a.half_released
                and entry.get("owner") == rt.principal.uid
                and (a.ip if name == "PublicIp" else entry.get("alloc")) == value
            ):
                return a
        raise


def _finish_release(rt: Any, vnet: int, addr: Address) -> None:
    """The rest of a release whose record is cleared already: tags entry, then lease."""
    try:
        _write_entry(rt, vnet, addr.ip, "", None, [])
        _admin(rt, "one.vn.release", vnet, _lease(addr))
    except OneError as exc:
        raise _server_error("Cannot release the address", exc) from exc


def release_address(rt: Any) -> dict:
    vnet = vnet_id(rt)
    addr = _to_release(rt, read_pool(rt, vnet), rt.body)
    if rt.body.get("NetworkBorderGroup") not in (None, "", rt.config.region):
        raise _address_not_found(addr.ip)  # as EC2 answers a wrong network border group
    with held("address", vnet, addr.ip, busy=_busy(f"the address {addr.ip}")):
        pool = read_pool(rt, vnet)  # again, now that no request of this process changes it
        addr = _to_release(rt, pool, rt.body)
        if addr.half_released:  # its record was cleared by an earlier ReleaseAddress
            _finish_release(rt, vnet, addr)
            log.info("finished releasing %s (uid %s)", addr.ip, rt.principal.uid)
            return {"Return": True}
        record = addr.record()
        if addr.vm is not None:
            _disassociate(rt, addr.ip)
            record = _cleared(record)
        # The record first, then the tags entry, then the lease: the other order could wipe
        # the record of whoever holds the address next.
        try:
            cleared = _write(rt, vnet, addr, dict.fromkeys(EC2_KEYS, ""))
        except _Unknown:
            # the record is cleared (no longer listed to anyone), lease and tags entry not yet
            # given back: a retry finishes the release (_finish_release)
            raise _unsure(addr.ip) from None
        except _Lost as exc:
            if addr.vm is not None:
                _resync(rt, exc.now)
            raise _changed(rt, addr, exc.now) from None
        except (OneError, Ec2Error) as exc:  # oned refused, or did not answer (Unavailable)
            if addr.vm is not None:
                _associate_again(rt, vnet, pool, addr)
            raise _failed("Cannot release the address", exc) from exc
        try:
            _write_entry(rt, vnet, addr.ip, "", None, [])  # its tags go with it
            _admin(rt, "one.vn.release", vnet, _lease(addr))
        except (OneError, Ec2Error) as exc:
            _try_entry(rt, vnet, addr)  # still yours (no longer associated), with its tags
            _try_write(rt, vnet, cleared, record, resync=True)
            raise _failed("Cannot release the address", exc) from exc
    log.info("released %s (uid %s)", addr.ip, rt.principal.uid)
    return {"Return": True}


def _tags_attr(ip: str) -> str:
    return TAGS_PREFIX + re.sub(r"[^0-9A-Za-z]", "_", ip)


def _entry(text: str | None) -> dict:
    """An address's tags entry (see TAGS_PREFIX); {} when there is none or it is no JSON object."""
    try:
        entry = json.loads(text) if text else None
    except ValueError:
        return {}
    return entry if isinstance(entry, dict) else {}


def _write_entry(
    rt: Any, vnet: int, ip: str, alloc: str, owner: int | None, tags: list[tuple[str, str]]
) -> None:
    entry = {"alloc": alloc, "owner": owner, "tags": [[k, v] for k, v in tags]}
    value = json.dumps(entry, ensure_ascii=False)
    try:
        _admin(rt, "one.vn.update", vnet, template_xml([(_tags_attr(ip), value)]), 1)
    except OneError as exc:
        raise _server_error("Cannot record the address's tags", exc) from exc


def _try_entry(rt: Any, vnet: int, addr: Address) -> None:
    """Write the address's tags entry back as read (after a release that failed)."""
    tags = [(t["Key"], t["Value"]) for t in addr.view["Tags"]]
    try:
        _write_entry(rt, vnet, addr.ip, addr.view.get("AllocationId") or "", addr.owner, tags)
    except Ec2Error as exc:
        log.error("cannot put back the tags of %s: %s", addr.ip, exc.message)


def set_tags(rt: Any, allocation_id: str, change: Any) -> None:
    """CreateTags/DeleteTags: `change(tags now) -> tags`, applied to the tags read afresh under
    the address's lock (so changes of one process follow each other)."""
    vnet = vnet_id(rt)
    addr = _my_address(rt, read_pool(rt, vnet), {"AllocationId": allocation_id})
    with held("address", vnet, addr.ip, busy=_busy(f"the address {addr.ip}")):
        addr = _my_address(rt, read_pool(rt, vnet), {"AllocationId": allocation_id})
        now = [(t["Key"], t["Value"]) for t in addr.view["Tags"]]
        _write_entry(rt, vnet, addr.ip, allocation_id, rt.principal.uid, change(now))


def my_addresses(rt: Any) -> list[dict]:
    """The user's addresses (views), for tagging; none when elastic IPs are not configured."""
    if rt.config.elasticips_vnet_id is None:
        return []
    return [a.view for a in read_pool(rt).mine(rt.principal.uid)]


# -- hooks for other actions ----------------------------------------------------------------------


def addresses_of_instances(rt: Any, vm_ids: Iterable[int] | None = None) -> dict[int, str]:
    """VM id → associated elastic IP, for DescribeInstances' PublicIpAddress.

    Any owner's address counts (it is the instance's public address, and the caller can see the
    instance). Elastic IPs disabled, or the network unreadable → {} (logged), never an error."""
    if rt.config.elasticips_vnet_id is None:
        return {}
    try:
        pool = read_pool(rt)
    except Ec2Error as exc:
        log.error("elastic IPs of instances: %s", exc.message)
        return {}
    wanted = None if vm_ids is None else {int(v) for v in vm_ids}
    return {
        a.vm: a.ip
        for a in pool.addresses
        if a.vm is not None and (wanted is None or a.vm in wanted)
    }


@adds("PublicIpAddress")
def add_public_ips(rt: Any, instances: Iterable[dict]) -> None:
    """Set `PublicIpAddress` (and `ipAddress` on the wire) on instance views that have `_id`."""
    instances = list(instances)
    if not instances or rt.config.elasticips_vnet_id is None:
        return
    ips = addresses_of_instances(rt, [i["_id"] for i in instances if i.get("_id") is not None])
    for inst in instances:
        ip = ips.get(inst.get("_id"))
        if ip:
            inst["PublicIpAddress"] = ip


def disassociate_instances(rt: Any, vm_ids: Iterable[int]) -> list[str]:
    """For TerminateInstances: disassociate every address associated with these VMs (running
    :disassociate_script: for each). Never raises: a failing script is logged and the
    association stays recorded, so DescribeAddresses shows it and DisassociateAddress can be
    retried. Returns the IPs that were disassociated."""
    ids = {int(v) for v in vm_ids}
    if not ids or rt.config.elasticips_vnet_id is None:
        return []
    try:
        pool = read_pool(rt)
    except Ec2Error as exc:
        log.error("cannot disassociate the addresses of VMs %s: %s", sorted(ids), exc.message)
        return []
    done = []
    vnet = pool.vnet
    for addr in pool.addresses:
        if addr.vm is None or addr.vm not in ids:
            continue
        # the instance first, as associate_address takes them (no association of it meanwhile)
        with held("instance", vnet, addr.vm), held("address", vnet, addr.ip):
            # read again under the lock: the address may have been released (and taken by
            # someone else) since the first read, and that record must not be overwritten
            fresh_pool = read_pool(rt, vnet)
            fresh = next((a for a in fresh_pool.addresses if a.ip == addr.ip), None)
            if fresh is None or fresh.vm != addr.vm or fresh.record() != addr.record():
                continue
            try:
                _disassociate(rt, fresh.ip)
            except Ec2Error as exc:
                log.error("VM %s terminated but %s stays associated: %s", fresh.vm, fresh.ip, exc)
                continue
            try:
                _write(rt, vnet, fresh, _cleared(fresh.record()))
            except _Lost as exc:  # changed by another gateway process: as it recorded
                _resync(rt, exc.now)
                continue
            except (_Unknown, OneError, Ec2Error) as exc:
                log.error("cannot record the disassociation of %s: %s", fresh.ip, exc)
                continue
            done.append(fresh.ip)
            log.info("disassociated %s from terminated VM %s", fresh.ip, fresh.vm)
    return done


# -- associations of instances that ended outside econe -------------------------------------
#
# A VM terminated in Sunstone or with onevm keeps its elastic IP associated: its private IP is
# free again, and once oned leases it to another VM (another user's, maybe) the address's
# traffic would go there. A thread per gateway process (started by the first elastic-IP read)
# looks every SWEEP_SECONDS for associations whose VM is DONE or gone, and disassociates them
# as TerminateInstances would (the disassociate script, then the record).

SWEEP_SECONDS = 30.0


def _start_sweeper(rt: Any) -> None:
    engine = rt.engine
    key = ("eip-sweeper",)
    if key in engine.cache or engine.closing.is_set():
        return
    with held("eip-sweeper", id(engine)):
        if key in engine.cache:
            return
        # its own runtime, acting for no user (every call it makes is the server admin's)
        server = str(getattr(engine.sessions, "srv_user", "serveradmin"))
        ctx = RequestContext(
            "eip-sweeper", "DescribeAddresses", "", Principal(server, -1, -1, "server", "sweeper")
        )
        own = type(rt)(engine, engine.mappings["DescribeAddresses"], {}, ctx)
        thread = threading.Thread(target=_sweep, args=(own,), name="econe-eip-sweeper", daemon=True)
        engine.cache[key] = thread
    thread.start()


def _ended(rt: Any, vm_id: int) -> bool:
    """Whether VM `vm_id` is DONE or no longer exists (read as the server admin); any doubt
    (oned unreachable) is no."""
    try:
        vm = etree.fromstring(_admin(rt, "one.vm.info", vm_id).encode())
    except OneError as exc:
        return exc.code == NO_EXISTS
    except (Ec2Error, etree.XMLSyntaxError, AttributeError):
        return False
    return vm.findtext("STATE") == "6"


def _sweep(rt: Any) -> None:
    while not rt.engine.closing.wait(SWEEP_SECONDS):
        try:
            pool = read_pool(rt)
            ended = [a.vm for a in pool.addresses if a.vm is not None and _ended(rt, a.vm)]
            if ended:
                disassociate_instances(rt, ended)
        except Ec2Error as exc:
            log.warning("elastic IP sweep: %s", exc.message)
        except Exception:  # noqa: BLE001 - the sweeper must keep going
            log.exception("elastic IP sweep failed")
