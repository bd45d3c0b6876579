"""Security groups: EC2 groups are OpenNebula security groups (`one.secgroup.*`), `sg-%08d`.

An EC2 permission (protocol, ports, address ranges) becomes one OpenNebula RULE per address
range: `PROTOCOL` TCP/UDP/ICMP/ICMPV6/IPSEC/ALL, `RULE_TYPE` INBOUND (ingress) or OUTBOUND
(egress), `RANGE` `from:to` for TCP/UDP (none: every port), `ICMP_TYPE`/`ICMPV6_TYPE` (none:
every type), `IP` + `SIZE` for a CIDR block (none: any address, what 0.0.0.0/0 asks), and the
range's `DESCRIPTION`. Reading goes the other way for any rule, also those made in OpenNebula:
a `RANGE` of several ports gives a permission each, `IP` + `SIZE` the CIDR blocks covering it,
a rule by `NETWORK_ID` a prefix list `pl-<network id>`.

A rule changes by read-modify-write of the group's RULE vectors (`one.secgroup.update`, merge):
two changes of one group at the same instant can lose one, as for tags. oned hands the new
rules to the group's VMs itself.

A new group has the egress rule every EC2 (VPC) group starts with: all traffic out to
0.0.0.0/0.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import Any

from lxml import etree

from econe.errors import Ec2Error, invalid_value, missing_parameter
from econe.mapping.ids import format_id, parse_id, required_id
from econe.mapping.loader import adds
from econe.query import as_list
from handlers.escaping import Attr, as_given, element_attrs, template_xml
from handlers.locks import held
from handlers.tags import tag_attrs, tag_specs

log = logging.getLogger("econe.handlers.security_groups")

DEFAULT_GROUP = 0  # oned's `default` group: every network's, so every instance's
_ONE_PROTOCOL = {
    "tcp": "TCP",
    "6": "TCP",
    "udp": "UDP",
    "17": "UDP",
    "icmp": "ICMP",
    "1": "ICMP",
    "icmpv6": "ICMPV6",
    "58": "ICMPV6",
    "50": "IPSEC",
    "-1": "ALL",
    "all": "ALL",
}
_EC2_PROTOCOL = {"TCP": "tcp", "UDP": "udp", "ICMP": "icmp", "ICMPV6": "icmpv6", "IPSEC": "50"}
_ICMP_TYPE = {"ICMP": "ICMP_TYPE", "ICMPV6": "ICMPV6_TYPE"}
# OpenNebula's "any address" (a rule without IP or NETWORK_ID) matches IPv4 and IPv6; EC2 asks
# for 0.0.0.0/0 and ::/0 apart. A rule made for one of them says which in EC2_CIDR, so that it
# reads back as it was asked (Terraform's usual `cidr_blocks = ["0.0.0.0/0"]` egress rule).
_ANY4 = ("cidr", "0.0.0.0/0")
_ANY6 = ("cidr", "::/0")
_EVERY = (_ANY4, _ANY6)
_DIRECTION = {"ingress": "INBOUND", "egress": "OUTBOUND"}
_CIDR4 = re.compile(r"[0-9]{1,3}(\.[0-9]{1,3}){3}/(0|[1-9][0-9]?)", re.ASCII)
_CIDR6 = re.compile(r"[0-9a-fA-F:.]+/(0|[1-9][0-9]{0,2})", re.ASCII)
# oned's name rules (PoolObjectSQL::name_is_valid)
_BAD_NAME_CHARS = set("&|:\\\";/'#{}$<>\t\n\v\f\r")

# A permission in one piece: (protocol, from, to, target); target = ("cidr", text) or
# ("net", id). from/to: ports (TCP/UDP), type and -1 (ICMP), None (other protocols).
Atom = tuple[str, int | None, int | None, tuple]


def group_numbers(text: str | None) -> set[int]:
    """A NIC's SECURITY_GROUPS ("0,100") → {0, 100}."""
    return {int(g) for g in (text or "").split(",") if g.strip().isdigit()}


def _not_found(raw: Any) -> Ec2Error:
    return Ec2Error("InvalidGroup.NotFound", f"The security group '{raw}' does not exist")


# ------------------------------------------------------------------------- reading rules


def _rule_atoms(rule: dict) -> list[tuple[Atom, str]]:
    """An OpenNebula rule (the view's `_rules` entry) → (atom, description) pieces; none for
    what is no rule (a RULE without a valid PROTOCOL, which oned would not have taken)."""
    proto = (rule.get("protocol") or "").upper()
    if proto not in ("TCP", "UDP", "ICMP", "ICMPV6", "IPSEC", "ALL"):
        return []
    if proto in ("TCP", "UDP"):
        ports = []
        for part in (rule.get("range") or "").split(","):
            first, _, last = part.partition(":")
            if first.strip().isdigit():
                ports.append((int(first), int(last) if last.strip().isdigit() else int(first)))
        ports = ports or [(0, 65535)]
    elif proto in _ICMP_TYPE:
        kind = rule.get("icmp_type" if proto == "ICMP" else "icmpv6_type") or ""
        ports = [(int(kind) if kind.strip().isdigit() else -1, -1)]
    else:
        ports = [(None, None)]
    if rule.get("ip"):
        targets = _cidrs(rule["ip"], rule.get("size"))
    elif rule.get("network_id"):
        targets = [("net", rule["network_id"].strip())]
    else:
        asked = (rule.get("ec2_cidr") or "").strip()
        targets = [t for t in _EVERY if t[1] == asked] or list(_EVERY)
    description = rule.get("description") or ""
    return [((proto, a, b, t), description) for a, b in ports for t in targets]


def _cidrs(ip: str, size: str | None) -> list[tuple]:
    """The CIDR blocks of IP + SIZE. oned takes any SIZE: one past the end of the address
    space stops there, SIZE 0 holds no address (nothing to show)."""
    try:
        first = ipaddress.ip_address(ip.strip())
        count = int(size or "0")
        if count <= 0:
            return []
        last = type(first)(min(int(first) + count - 1, (1 << first.max_prefixlen) - 1))
        return [("cidr", str(n)) for n in ipaddress.summarize_address_range(first, last)]
    except (ValueError, TypeError):
        log.warning("a security group rule with IP %r SIZE %r cannot be shown", ip, size)
        return []


def _permissions(atoms: list[tuple[Atom, str]]) -> list[dict]:
    """EC2 IpPermissions: one per (protocol, ports), its address ranges together."""
    out: dict[tuple, dict] = {}
    for (proto, first, last, target), description in atoms:
        perm = out.get((proto, first, last))
        if perm is None:
            perm = out[(proto, first, last)] = {"IpProtocol": _EC2_PROTOCOL.get(proto, "-1")}
            if first is not None:
                perm["FromPort"], perm["ToPort"] = first, last
            perm.update(IpRanges=[], Ipv6Ranges=[], PrefixListIds=[], UserIdGroupPairs=[])
        extra = {"Description": description} if description else {}
        if target[0] == "net":
            perm["PrefixListIds"].append({"PrefixListId": f"pl-{target[1]}", **extra})
        elif ":" in target[1]:
            perm["Ipv6Ranges"].append({"CidrIpv6": target[1], **extra})
        else:
            perm["IpRanges"].append({"CidrIp": target[1], **extra})
    return list(out.values())


@adds("IpPermissions", "IpPermissionsEgress")
def add_permissions(rt: Any, items: list[dict]) -> None:
    """DescribeSecurityGroups' enrich hook: IpPermissions(Egress) from the rules; a GroupName
    asked for that no group has is InvalidGroup.NotFound, as EC2 answers."""
    for item in items:
        for key, direction in (("IpPermissions", "INBOUND"), ("IpPermissionsEgress", "OUTBOUND")):
            atoms = [
                a
                for rule in item.get("_rules") or []
                if (rule.get("rule_type") or "").upper() == direction
                for a in _rule_atoms(rule)
            ]
            item[key] = _permissions(atoms)
    names = {i.get("GroupName") for i in items}
    for name in as_list(rt.body.get("GroupName")):
        if name not in names:
            raise _not_found(name)


# ------------------------------------------------------------------------- finding groups


def _visible(rt: Any) -> list[etree._Element]:
    return list(rt.xml(rt.call("one.secgrouppool.info", -2, -1, -1)).iterfind("SECURITY_GROUP"))


def _by_name(groups: list[etree._Element], name: str, user: str) -> etree._Element | None:
    """The user's own group of that name, else the default group, else another the user may
    use (the lowest id)."""
    named = [g for g in groups if g.findtext("NAME") == name]
    for pick in (
        lambda g: g.findtext("UNAME") == user,
        lambda g: g.findtext("ID") == str(DEFAULT_GROUP),
        lambda g: True,
    ):
        found = [g for g in named if pick(g)]
        if found:
            return min(found, key=lambda g: int(g.findtext("ID")))
    return None


def group_ids(rt: Any, names: list, ids: list) -> list[int]:
    """RunInstances' SecurityGroup.N (names) and SecurityGroupId.N → OpenNebula ids, each
    checked visible (InvalidGroup.NotFound / InvalidGroupId.Malformed otherwise)."""
    wanted = [required_id(raw, "sg", "InvalidGroupId.Malformed", "SecurityGroupId") for raw in ids]
    if not names and not wanted:
        return []
    groups = _visible(rt)
    known = {int(g.findtext("ID")) for g in groups}
    for raw, number in zip(ids, wanted, strict=True):
        if number not in known:
            raise _not_found(raw)
    for name in names:
        group = _by_name(groups, str(name), rt.principal.name)
        if group is None:
            raise _not_found(name)
        wanted.append(int(group.findtext("ID")))
    return sorted(set(wanted))


def _group(rt: Any) -> etree._Element:
    """The group a change names by GroupId (or GroupName, ingress and delete only)."""
    body = rt.body
    raw_id, name = body.get("GroupId"), body.get("GroupName")
    if raw_id:
        number = required_id(raw_id, "sg", "InvalidGroupId.Malformed", "GroupId")
        return rt.fetch("one.secgroup.info", number, _not_found(raw_id))
    if not name:
        raise missing_parameter("GroupId")
    group = _by_name(_visible(rt), str(name), rt.principal.name)
    if group is None:
        raise _not_found(name)
    return group


def dry_run_manage(rt: Any, group: etree._Element) -> None:
    """In a DryRun, what oned would answer the change: MANAGE from the group's permissions (the
    owner's, the primary group's, anyone's; the oneadmin group may). A secondary group or an
    ACL rule may allow more, which this cannot see (the README says so of ACLs)."""
    if not rt.dry_run:
        return
    me, perms = rt.principal, group.find("PERMISSIONS")

    def bit(name: str) -> bool:
        return perms is not None and perms.findtext(name) == "1"

    if (
        me.gid == 0
        or (group.findtext("UID") == str(me.uid) and bit("OWNER_M"))
        or (group.findtext("GID") == str(me.gid) and bit("GROUP_M"))
        or bit("OTHER_M")
    ):
        return
    raise Ec2Error("UnauthorizedOperation", f"You may not change {_label(group)}")


def _label(group: etree._Element) -> str:
    return format_id("sg", group.findtext("ID"))


def _refuse_default(group: etree._Element) -> None:
    if group.findtext("ID") == str(DEFAULT_GROUP):
        raise Ec2Error(
            "CannotDelete",
            f'the specified group: "{_label(group)}" name: "default" cannot be deleted by a user',
        )


# ------------------------------------------------------------------------- create / delete


def _group_name(raw: Any) -> str:
    name = str(raw or "")
    if not name:
        raise missing_parameter("GroupName")
    if name.lower() == "default" or name.startswith("sg-"):
        raise invalid_value("GroupName", name, "'default' and names starting 'sg-' are reserved.")
    if len(name.encode()) > 128 or set(name) & _BAD_NAME_CHARS:  # oned counts bytes
        raise invalid_value(
            "GroupName",
            name,
            "OpenNebula names have at most 128 bytes (in UTF-8), none of & | : \\ \" ; / ' # { } "
            "$ < > or control characters.",
        )
    return as_given(name, "GroupName")


def create_security_group(rt: Any) -> dict:
    body = rt.body
    name = _group_name(body.get("GroupName"))
    description = body.get("GroupDescription")
    if not description:
        raise missing_parameter("GroupDescription")
    tags = tag_specs(body, "security-group")
    description = as_given(description, "GroupDescription")
    if rt.dry_run and any(  # oned's check at the change, which a dry run does not make
        g.findtext("NAME") == name and g.findtext("UID") == str(rt.principal.uid)
        for g in _visible(rt)
    ):
        raise Ec2Error("InvalidGroup.Duplicate", f"The security group '{name}' already exists")
    attrs: list[Attr] = [
        ("NAME", name),
        ("DESCRIPTION", str(description)),
        ("RULE", _rule_attrs("OUTBOUND", ("ALL", None, None, _ANY4), "")),
        *tag_attrs(tags),
    ]
    try:
        number = rt.call(
            "one.secgroup.allocate",
            template_xml(attrs),
            errors={"ALLOCATE": "InvalidGroup.Duplicate"},
        )
    except Ec2Error as exc:
        if exc.code == "InvalidGroup.Duplicate" and "already taken" not in exc.message:
            raise Ec2Error("InvalidParameterValue", exc.message) from None  # oned refused the name
        if exc.code == "InvalidGroup.Duplicate":
            raise Ec2Error(exc.code, f"The security group '{name}' already exists") from None
        raise
    return {"GroupId": format_id("sg", number), "Tags": [{"Key": k, "Value": v} for k, v in tags]}


def delete_security_group(rt: Any) -> dict:
    group = _group(rt)
    _refuse_default(group)
    dry_run_manage(rt, group)
    label = _label(group)
    if rt.dry_run and _has_vms(group):  # oned's check at the change
        raise Ec2Error("DependencyViolation", _in_use(label))
    try:
        rt.call(
            "one.secgroup.delete",
            int(group.findtext("ID")),
            errors={
                "ACTION": "DependencyViolation",
                "AUTHORIZATION": "UnauthorizedOperation",
                "NO_EXISTS": "InvalidGroup.NotFound",
            },
        )
    except Ec2Error as exc:
        if exc.code == "DependencyViolation":
            raise Ec2Error(exc.code, _in_use(label)) from None
        raise
    return {"Return": True, "GroupId": label}


def _has_vms(group: etree._Element) -> bool:
    """What oned refuses to delete (SecurityGroup::get_vms): a group with VMs in any of its
    sets, also those whose rules are out of date, being updated or failed to update."""
    return any(
        group.find(f"{kind}/ID") is not None
        for kind in ("UPDATED_VMS", "OUTDATED_VMS", "UPDATING_VMS", "ERROR_VMS")
    )


def _in_use(label: str) -> str:
    return f"resource {label} has a dependent object (instances use it)"


# ------------------------------------------------------------------------- rules


def _port(value: Any, member: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise invalid_value(member, value) from None


def _asked(rt: Any, legacy: bool) -> list[dict]:
    """IpPermissions.N, or the old single-permission members (IpProtocol, FromPort, ToPort,
    CidrIp) as one permission."""
    body = rt.body
    perms = list(body.get("IpPermissions") or [])
    if legacy and body.get("IpProtocol") not in (None, ""):
        cidr = body.get("CidrIp")
        perms.append(
            {
                "IpProtocol": body.get("IpProtocol"),
                "FromPort": body.get("FromPort"),
                "ToPort": body.get("ToPort"),
                "IpRanges": [{"CidrIp": cidr}] if cidr else [],
            }
        )
    elif body.get("CidrIp") or body.get("FromPort") is not None:
        raise missing_parameter("IpProtocol")
    if not perms:
        raise missing_parameter("IpPermissions")
    return perms


def _target(text: Any, member: str, v6: bool) -> tuple:
    # the plain form only: Python also reads netmasks (/255.0.0.0), bare addresses and scoped
    # IPv6 (fe80::1%eth0), which OpenNebula's inet_pton refuses or which would not read back
    pattern = _CIDR6 if v6 else _CIDR4
    try:
        if not pattern.fullmatch(str(text)):
            raise ValueError(text)
        net = ipaddress.ip_network(str(text), strict=True)
    except ValueError:
        raise invalid_value(member, text, "Expecting a CIDR block such as 10.0.0.0/24.") from None
    if (net.version == 6) != v6:
        raise invalid_value(member, text, f"Expecting an IPv{6 if v6 else 4} CIDR block.")
    if net.prefixlen == 0:
        return _ANY6 if v6 else _ANY4
    if net.num_addresses > 0xFFFFFFFF:  # OpenNebula's SIZE is an unsigned int
        raise Ec2Error(
            "UnsupportedOperation",
            f"{member} {text}: OpenNebula rules hold at most 2^32 - 1 addresses (::/0 aside)",
        )
    return ("cidr", str(net))


def _atoms(perm: dict, where: str) -> list[tuple[Atom, str]]:
    """One asked permission → (atom, description) pieces, validated."""
    raw = str(perm.get("IpProtocol") or "").lower()
    if not raw:
        raise missing_parameter(f"{where}.IpProtocol")
    proto = _ONE_PROTOCOL.get(raw)
    if proto is None:
        raise invalid_value(
            f"{where}.IpProtocol",
            raw,
            "OpenNebula rules take tcp, udp, icmp, icmpv6, 50 (IPsec) or -1 (all).",
        )
    first = _port(perm.get("FromPort"), f"{where}.FromPort")
    last = _port(perm.get("ToPort"), f"{where}.ToPort")
    if proto in ("TCP", "UDP"):
        if first is None or last is None:
            raise invalid_value(
                f"{where}.FromPort", first, "Must specify both from and to ports with TCP/UDP."
            )
        if not 0 <= first <= last <= 65535:
            raise invalid_value(
                f"{where}.FromPort",
                f"{first}-{last}",
                "TCP/UDP ports go from 0 to 65535, FromPort no higher than ToPort.",
            )
    elif proto in _ICMP_TYPE:
        first = -1 if first is None else first
        if not -1 <= first <= 255:
            raise invalid_value(f"{where}.FromPort", first, "The ICMP type is -1 (all) to 255.")
        if last not in (None, -1):
            raise Ec2Error(
                "UnsupportedOperation",
                f"{where}.ToPort {last}: OpenNebula filters ICMP by type only (ToPort, the code, "
                "must be -1)",
            )
        last = -1
    else:
        first = last = None
    pieces: list[tuple[tuple, str]] = []
    for kind, key, v6 in (("IpRanges", "CidrIp", False), ("Ipv6Ranges", "CidrIpv6", True)):
        for n, entry in enumerate(perm.get(kind) or [], 1):
            member = f"{where}.{kind}.{n}.{key}"
            if not entry.get(key):
                raise missing_parameter(member)
            description = _rule_description(entry.get("Description"), f"{where}.{kind}.{n}")
            pieces.append((_target(entry[key], member, v6), description))
    if not pieces:
        raise missing_parameter(f"{where}.IpRanges")
    return [((proto, first, last, target), description) for target, description in pieces]


def _rule_description(value: Any, where: str) -> str:
    # EC2's rule (255 of its characters) is the spec's (spec/overlay.yaml: IpRange); here what
    # OpenNebula would store otherwise than sent (a blank at the end: `$` lets one through)
    return as_given("" if value is None else str(value), f"{where}.Description")


def _rule_attrs(direction: str, atom: Atom, description: str) -> list[tuple[str, str]]:
    proto, first, last, target = atom
    rule = [("PROTOCOL", proto), ("RULE_TYPE", direction)]
    if proto in ("TCP", "UDP") and (first, last) != (0, 65535):
        rule.append(("RANGE", str(first) if first == last else f"{first}:{last}"))
    if proto in _ICMP_TYPE and first != -1:
        rule.append((_ICMP_TYPE[proto], str(first)))
    if target == _ANY4:
        rule.append(("EC2_CIDR", target[1]))  # matches IPv6 too; shown as asked
    elif target != _ANY6:  # (written only with 0.0.0.0/0, as one rule: see _rules_for)
        if target[0] == "net":
            rule.append(("NETWORK_ID", target[1]))
        else:
            net = ipaddress.ip_network(target[1])
            rule += [("IP", str(net.network_address)), ("SIZE", str(net.num_addresses))]
    if description:
        rule.append(("DESCRIPTION", description))
    return rule


def _rules_for(direction: str, pieces: list[tuple[Atom, str]]) -> list[list[tuple[str, str]]]:
    """OpenNebula RULEs for these pieces: one each, except 0.0.0.0/0 and ::/0 of the same
    protocol and ports, which are one rule for any address (0.0.0.0/0's description). ::/0
    alone cannot be written (the rule would match IPv4 too)."""
    v4 = {a[:3] for a, _ in pieces if a[3] == _ANY4}
    v6 = {a[:3] for a, _ in pieces if a[3] == _ANY6}
    if v6 - v4:
        raise Ec2Error(
            "UnsupportedOperation",
            "::/0 goes only with 0.0.0.0/0 of the same protocol and ports here: an OpenNebula "
            "rule for any address matches IPv4 as well (to add ::/0 to a 0.0.0.0/0 rule, revoke "
            "it and authorize both)",
        )
    described = {a[:3]: d for a, d in pieces if a[3] == _ANY4}
    for atom, description in pieces:
        if atom[3] == _ANY6 and description != described[atom[:3]]:
            raise Ec2Error(
                "UnsupportedOperation",
                f"::/0 with the description {description!r}: OpenNebula keeps 0.0.0.0/0 and "
                "::/0 of the same protocol and ports as one rule, with one description",
            )
    rules = []
    for atom, description in pieces:
        if atom[3] == _ANY6:
            continue
        rule = _rule_attrs(direction, atom, description)
        if atom[3] == _ANY4 and atom[:3] in v6:  # one rule for both families
            rule = [a for a in rule if a[0] != "EC2_CIDR"]
        rules.append(rule)
    return rules


def _rules(group: etree._Element) -> list[dict]:
    """The group's RULE vectors (a single-valued RULE is no rule: kept as it is)."""
    return [
        {child.tag.lower(): (child.text or "") for child in rule}
        for rule in group.iterfind("TEMPLATE/RULE")
        if len(rule)
    ]


def _describe(atom: Atom) -> str:
    proto, first, last, target = atom
    peer = target[1]
    ports = "" if first is None else f", from port: {first}, to port: {last}"
    return f'"peer: {peer}, {_EC2_PROTOCOL.get(proto, "ALL").upper()}{ports}, ALLOW"'


def _change(rt: Any, direction: str, add: bool) -> dict:
    egress = direction == "egress"
    if egress and not rt.body.get("GroupId"):
        raise missing_parameter("GroupId")
    group = _group(rt)
    dry_run_manage(rt, group)
    asked: list[tuple[Atom, str]] = []
    for n, perm in enumerate(_asked(rt, legacy=True), 1):
        for atom, description in _atoms(perm, f"IpPermissions.{n}"):
            if atom in [a for a, _ in asked]:  # EC2 refuses it, not merges it
                raise Ec2Error(
                    "InvalidParameterValue",
                    f"The same permission must not appear multiple times: {_describe(atom)}",
                )
            asked.append((atom, description))
    number = int(group.findtext("ID"))
    # the template is replaced whole: read again under the lock tag changes take (handlers/tags.py)
    with held("template", "secgroup", number):
        group = rt.fetch("one.secgroup.info", number, _not_found(format_id("sg", number)))
        return _change_rules(rt, group, direction, add, asked)


def _change_rules(
    rt: Any, group: etree._Element, direction: str, add: bool, asked: list[tuple[Atom, str]]
) -> dict:
    one_dir = _DIRECTION[direction]
    rules = _rules(group)
    kept: list[list[tuple[str, str]]] = []  # the group's RULEs after the change
    have: list[Atom] = []
    for rule in rules:
        pieces = _rule_atoms(rule) if (rule.get("rule_type") or "").upper() == one_dir else []
        have += [a for a, _ in pieces]
        gone = [p for p in pieces if p[0] in [a for a, _ in asked]] if not add else []
        if not gone:
            kept.append([(k.upper(), v) for k, v in rule.items()])
        else:  # a rule made in OpenNebula may hold more than what is revoked: keep the rest
            kept += _rules_for(one_dir, [p for p in pieces if p not in gone])
    for atom, _ in asked:
        if add and atom in have:
            raise Ec2Error(
                "InvalidPermission.Duplicate",
                f"the specified rule {_describe(atom)} already exists",
            )
        if not add and atom not in have:
            raise Ec2Error(
                "InvalidPermission.NotFound",
                f"The specified rule {_describe(atom)} does not exist in this security group.",
            )
    if add:
        kept += _rules_for(one_dir, asked)
    others = [
        a for a in element_attrs(group.find("TEMPLATE")) if a[0] != "RULE" or isinstance(a[1], str)
    ]
    rt.call(
        "one.secgroup.update",
        int(group.findtext("ID")),
        template_xml(others + [("RULE", r) for r in kept]),
        0,  # a replace: a merge cannot take the last RULE away
        errors={"AUTHORIZATION": "UnauthorizedOperation", "NO_EXISTS": "InvalidGroup.NotFound"},
    )
    return {"Return": True}


def authorize_ingress(rt: Any) -> dict:
    return _change(rt, "ingress", add=True)


def authorize_egress(rt: Any) -> dict:
    return _change(rt, "egress", add=True)


def revoke_ingress(rt: Any) -> dict:
    return _change(rt, "ingress", add=False)


def revoke_egress(rt: Any) -> dict:
    return _change(rt, "egress", add=False)


# ------------------------------------------------------------------------- instances


def set_instance_groups(rt: Any, instance: dict, raw_ids: Any) -> None:
    """ModifyInstanceAttribute GroupId.N: every NIC of the instance in exactly these groups
    (`one.vm.attachsg` for the missing, `one.vm.detachsg` for the others, the network's
    included); what was changed is undone when OpenNebula refuses a step."""
    wanted = set(group_ids(rt, [], as_list(raw_ids)))
    if not wanted:
        raise missing_parameter("GroupId")
    if instance["State"]["Name"] not in ("running", "stopped"):
        raise Ec2Error(
            "IncorrectInstanceState",
            f"The instance '{instance['InstanceId']}' is not in the 'running' or 'stopped' state.",
        )
    vm, vid = instance["_element"], instance["_id"]
    nics = list(vm.iterfind("TEMPLATE/NIC"))
    if not nics:
        raise Ec2Error(
            "InvalidParameterCombination",
            f"The instance '{instance['InstanceId']}' has no network interface to put in groups",
        )
    errors = {"ACTION": "IncorrectInstanceState", "AUTHORIZATION": "UnauthorizedOperation"}
    undo: list[tuple[str, int, int]] = []
    try:
        for nic in nics:
            nic_id = int(nic.findtext("NIC_ID"))
            text = nic.findtext("SECURITY_GROUPS") or ""
            have = group_numbers(text)
            for sid in sorted(wanted - have):  # first in the new groups, then out of the old
                rt.call("one.vm.attachsg", vid, nic_id, sid, errors=errors)
                undo.append(("one.vm.detachsg", nic_id, sid))
            for sid in sorted(have - wanted):
                rt.call("one.vm.detachsg", vid, nic_id, sid, errors=errors)
                undo.append(("one.vm.attachsg", nic_id, sid))
    except Ec2Error:
        for method, nic_id, sid in reversed(undo):
            try:
                rt.call(method, vid, nic_id, sid)
            except Ec2Error as exc:
                log.error("groups of %s not put back (%s): %s", instance["InstanceId"], method, exc)
        raise


@adds("SecurityGroups")
def instance_groups(rt: Any, instances: list[dict]) -> None:
    """The enrich hook of DescribeInstances and DescribeInstanceAttribute: SecurityGroups from
    the NICs' SECURITY_GROUPS (`_sg_ids`). A group's name is in the SECURITY_GROUP_RULEs of
    every VM in it, so it is read from the first instance's element (`_element`) in each set
    of groups, not from every instance; a group without rules is named from the pool (one
    call). Instances in the same groups share one list."""
    seen: dict[tuple, list[dict]] = {}
    missing = False
    for inst in instances:
        key = tuple(inst.get("_sg_ids") or ())
        groups = seen.get(key)
        if groups is None:
            names: dict[str, str | None] = {}
            element = inst.get("_element")
            if element is not None:
                for rule in element.iterfind("TEMPLATE/SECURITY_GROUP_RULE"):
                    names.setdefault(
                        rule.findtext("SECURITY_GROUP_ID") or "",
                        rule.findtext("SECURITY_GROUP_NAME"),
                    )
            ids = sorted(set().union(*map(group_numbers, key)))
            groups = seen[key] = [
                {"GroupId": format_id("sg", i), "GroupName": names.get(str(i))} for i in ids
            ]
            missing = missing or any(g["GroupName"] is None for g in groups)
        inst["SecurityGroups"] = groups
    if not missing:
        return
    known = {g.findtext("ID"): g.findtext("NAME") for g in _visible(rt)}
    for groups in seen.values():
        for group in groups:
            if group["GroupName"] is None:
                group["GroupName"] = known.get(str(parse_id("sg", group["GroupId"])))
