"""Helpers shared by the method modules."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import errors, perms
from .. import template as T
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
