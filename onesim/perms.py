"""Authorization as oned does it: permission bits, the oneadmin group, a tiny ACL table, and the
pool filter flags of ``PoolSharedAPI``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from . import errors

OPS = {"USE": 0, "MANAGE": 1, "ADMIN": 2}

# Default permissions (umask 177 style, as oned's DEFAULT_UMASK gives): owner USE+MANAGE.
DEFAULT_PERMS = [1, 1, 0, 0, 0, 0, 0, 0, 0]


@dataclass
class Caller:
    """The authenticated identity a request runs as."""

    uid: int
    gid: int
    groups: list[int] = field(default_factory=list)
    name: str = ""

    @property
    def admin(self) -> bool:
        return 0 in self.groups or self.uid == 0


def perms_xml(p: list[int]) -> str:
    n = (
        "OWNER_U",
        "OWNER_M",
        "OWNER_A",
        "GROUP_U",
        "GROUP_M",
        "GROUP_A",
        "OTHER_U",
        "OTHER_M",
        "OTHER_A",
    )
    return (
        "<PERMISSIONS>"
        + "".join(f"<{k}>{v}</{k}>" for k, v in zip(n, p, strict=False))
        + "</PERMISSIONS>"
    )


def acl_allows(acls: Iterable[list], caller: Caller, kind: str, op: str) -> bool:
    """ACL rules are ``[group_id or -1 for all, [kinds], [ops]]`` applying to every object."""
    for gid, kinds, ops in acls:
        if (gid == -1 or gid in caller.groups) and kind in kinds and op in ops:
            return True
    return False


def allowed(caller: Caller, obj: dict, kind: str, op: str, acls: Iterable[list] = ()) -> bool:
    if caller.admin:
        return True
    i = OPS[op]
    p = obj.get("perms", DEFAULT_PERMS)
    if obj.get("uid") == caller.uid and p[i]:
        return True
    if obj.get("gid") in caller.groups and p[3 + i]:
        return True
    if p[6 + i]:
        return True
    return acl_allows(acls, caller, kind, op)


def authorize(caller: Caller, obj: dict, kind: str, op: str, acls: Iterable[list] = ()) -> None:
    if not allowed(caller, obj, kind, op, acls):
        raise errors.not_authorized(caller.uid, op, kind, obj["id"])


def pool_filter(
    objs: Iterable[dict], caller: Caller, kind: str, flag: int, acls: Iterable[list] = ()
) -> list[dict]:
    """Apply filter_flag (-4 group, -3 mine, -2 all, -1 mine+group, >=0 uid)."""
    if flag < -4:
        raise errors.api("Incorrect filter_flag")
    acls = list(acls)
    kind_acl = caller.admin or acl_allows(acls, caller, kind, "USE")

    def visible(o: dict) -> bool:  # PoolSQL::usr_filter: owner, other_u, group_u, ACLs
        if kind_acl or o["uid"] == caller.uid:
            return True
        p = o.get("perms", DEFAULT_PERMS)
        return bool(p[6] or (p[3] and o["gid"] in caller.groups))

    uid, groups = caller.uid, caller.groups
    if flag == -3:
        return [o for o in objs if o["uid"] == uid]
    if flag == -2:
        return [o for o in objs if visible(o)]
    if flag == -1:
        return [o for o in objs if o["uid"] == uid or (o["gid"] in groups and visible(o))]
    if flag == -4:
        return [o for o in objs if o["gid"] == caller.gid and visible(o)]
    return [o for o in objs if o["uid"] == flag and visible(o)]


def id_range(objs: list[dict], start: int, end: int) -> list[dict]:
    """ID range (end >= -1) or pagination (end < -1); objects sorted by id descending
    (oned's default API_LIST_ORDER is DESC)."""
    objs = sorted(objs, key=lambda o: o["id"], reverse=True)
    if end < -1:
        off = max(start, 0)
        return objs[off : off + (-end)]
    if start == -1:
        return objs
    return [o for o in objs if o["id"] >= start and (end == -1 or o["id"] <= end)]
