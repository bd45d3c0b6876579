"""one.vn.* and one.vnpool.info"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import docs, errors, leases
from .. import template as T
from ..core import method
from ..perms import DEFAULT_PERMS, acl_allows, pool_filter
from .common import name_error, name_taken, parse, pool, update_template

if TYPE_CHECKING:
    from ..core import Sim
    from ..perms import Caller

FIXED = {"NAME", "AR", "BRIDGE", "BRIDGE_TYPE", "VN_MAD"}


def new_vnet(sim: Sim, uid: int, gid: int, tmpl: list, perms: list | None = None) -> int:
    name = T.get(tmpl, "NAME")
    if not name:
        raise errors.allocate_error("vnet", "No NAME in template for Virtual Network.")
    bad = name_error(name)
    if bad:
        raise errors.allocate_error("vnet", bad)
    taken = name_taken(sim, "vnet", uid, name)
    if taken is not None:
        raise errors.allocate_error("vnet", f"NAME is already taken by NET {taken['id']}.")
    vn_mad = T.get(tmpl, "VN_MAD")
    if not vn_mad:
        raise errors.allocate_error("vnet", "No VN_MAD in template for Virtual Network.")
    vid = max(int(sim.store.meta.get("next_vnet", 0)), 0)
    try:
        ars = [leases.make_ar(i, vec) for i, vec in enumerate(T.get_vec(tmpl, "AR"))]
    except errors.OneError as e:
        raise errors.allocate_error("vnet", e.message) from None
    sim.store.new_id("vnet")
    bridge = T.get(tmpl, "BRIDGE") or f"onebr{vid}"
    btype = T.get(tmpl, "BRIDGE_TYPE") or "linux"
    t = [[k, v] for k, v in tmpl if k not in FIXED]
    t += [["BRIDGE", bridge], ["BRIDGE_TYPE", btype], ["VN_MAD", vn_mad]]
    for k, default in (
        ("OUTER_VLAN_ID", ""),
        ("PHYDEV", ""),
        ("SECURITY_GROUPS", "0"),
        ("VLAN_ID", ""),
    ):
        if T.get(t, k) is None:
            t.append([k, default])
    vn = {
        "id": vid,
        "uid": uid,
        "gid": gid,
        "perms": perms or list(DEFAULT_PERMS),
        "name": name,
        "bridge": bridge,
        "bridge_type": btype,
        "vn_mad": vn_mad,
        "template": t,
        "ars": ars,
        "next_ar": len(ars),
    }
    sim.store.put("vnet", vn)
    return vid


@method("one.vn.allocate", "si")
def allocate(sim: Sim, caller: Caller, tmpl: str, cluster_id: int) -> int:
    return new_vnet(sim, caller.uid, caller.gid, parse(tmpl))


@method("one.vn.info", "ib", 1)
def info(sim: Sim, caller: Caller, vid: int, decrypt: bool = False) -> str:
    vn = sim.get_auth(caller, "vnet", vid, "USE")
    vms = None
    if not (caller.admin or acl_allows(sim.acls, caller, "vm", "USE")):
        vms = {v["id"] for v in pool_filter(sim.store.all("vm"), caller, "vm", -2, sim.acls)}
    return docs.vnet(sim, vn, vms=vms)


@method("one.vn.hold", "is")
def hold(sim: Sim, caller: Caller, vid: int, tmpl: str) -> int:
    vn = sim.get_auth(caller, "vnet", vid, "MANAGE")
    leases.hold(vn, parse(tmpl))
    sim.store.put("vnet", vn)
    return vid


@method("one.vn.release", "is")
def release(sim: Sim, caller: Caller, vid: int, tmpl: str) -> int:
    vn = sim.get_auth(caller, "vnet", vid, "MANAGE")
    leases.release(vn, parse(tmpl))
    sim.store.put("vnet", vn)
    return vid


@method("one.vn.update", "isi", 2)
def update(sim: Sim, caller: Caller, vid: int, tmpl: str, append: int = 0) -> int:
    vn = sim.get_auth(caller, "vnet", vid, "MANAGE")
    update_template(vn, "template", tmpl, append)
    for k in ("BRIDGE", "BRIDGE_TYPE", "VN_MAD"):  # kept by oned
        T.tset(vn["template"], k, vn[k.lower()])
    sim.store.put("vnet", vn)
    return vid


@method("one.vn.update_ar", "is")
def update_ar(sim: Sim, caller: Caller, vid: int, tmpl: str) -> int:
    vn = sim.get_auth(caller, "vnet", vid, "MANAGE")
    leases.update_ar(vn, parse(tmpl))
    sim.store.put("vnet", vn)
    return vid


@method("one.vn.add_ar", "is")
def add_ar(sim: Sim, caller: Caller, vid: int, tmpl: str) -> int:
    vn = sim.get_auth(caller, "vnet", vid, "ADMIN")
    vecs = T.get_vec(parse(tmpl), "AR")
    if not vecs:
        raise errors.internal("Wrong AR definition. AR vector attribute is missing.")
    ar = leases.make_ar(vn["next_ar"], vecs[0])
    vn["next_ar"] += 1
    vn["ars"].append(ar)
    sim.store.put("vnet", vn)
    return vid


@method("one.vnpool.info", "iii")
def pool_info(sim: Sim, caller: Caller, flag: int, start: int, end: int) -> str:
    vns = pool(sim, caller, "vnet", flag, start, end)
    return "<VNET_POOL>" + "".join(docs.vnet(sim, v, pool=True) for v in vns) + "</VNET_POOL>"
