"""Helpers shared by the method modules."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import errors, perms
from .. import template as T
from ..core import method
from ..names import name_error  # noqa: F401  (re-exported for the method modules)

if TYPE_CHECKING:
    from ..core import Sim
    from ..perms import Caller


def parse(s: str, code: int = errors.INTERNAL, prefix: str = "") -> list:
    """Parse a template argument; syntax errors become ``code`` with oned's message."""
    try:
        return T.parse(s)
    except T.TemplateError as e:
        raise errors.OneError(code, prefix + str(e)) from None


def update_template(
    obj: dict,
    key: str,
    s: str,
    append: int,
    code: int = errors.INTERNAL,
    prefix: str = "Cannot update template. ",
) -> None:
    """``*.update`` after the object was fetched and authorized: 0 replaces, 1 merges;
    anything else is RPC_API "Wrong update type"."""
    if append not in (0, 1):
        raise errors.api("Wrong update type")
    new = parse(s, code, prefix)
    if append == 0:
        obj[key] = new
    else:
        T.merge(obj[key], new)


def pool(sim: Sim, caller: Caller, kind: str, flag: int, start: int, end: int) -> list[dict]:
    objs = perms.pool_filter(sim.store.all(kind), caller, kind, flag, sim.acls)
    return perms.id_range(objs, start, end)


def name_taken(sim: Sim, kind: str, uid: int, name: str, skip: int = -1) -> dict | None:
    for o in sim.store.all(kind):
        if o["uid"] == uid and o["name"] == name and o["id"] != skip:
            return o
    return None


def chmod(sim: Sim, caller: Caller, kind: str, oid: int, bits: tuple[int, ...]) -> int:
    """SharedAPI::chmod: -1 keeps a bit. MANAGE suffices, but an ADMIN bit that changes needs
    ADMIN; the values are checked only after authorization, as oned does."""
    obj = sim.get(kind, oid)
    now = obj.get("perms", perms.DEFAULT_PERMS)
    asked = [-1 if i in (2, 5, 6, 7, 8) and b == now[i] else b for i, b in enumerate(bits)]
    admin_bit_changes = any(asked[i] != -1 for i in (2, 5, 8))
    perms.authorize(caller, obj, kind, "ADMIN" if admin_bit_changes else "MANAGE", sim.acls)
    if any(not -1 <= b <= 1 for b in asked):
        raise errors.internal("New permission values must be -1, 0 or 1")
    obj["perms"] = [old if new == -1 else new for old, new in zip(now, asked, strict=True)]
    sim.store.put(kind, obj)
    return oid


def _chmod_of(kind: str):  # noqa: ANN202
    def chmod_method(sim: Sim, caller: Caller, oid: int, *bits: int) -> int:
        return chmod(sim, caller, kind, oid, bits)

    return chmod_method


# one.<object>.chmod(id, owner u/m/a, group u/m/a, other u/m/a); templates' (with `recursive`
# for their images) is not here
for _prefix, _kind in (("image", "image"), ("vm", "vm"), ("vn", "vnet"), ("secgroup", "secgroup")):
    method(f"one.{_prefix}.chmod", "i" * 10)(_chmod_of(_kind))
