"""one.template.* and one.templatepool.info"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import docs, errors, vmbuild
from .. import template as T
from ..core import method
from ..perms import DEFAULT_PERMS
from .common import name_error, name_taken, parse, pool, update_template
from .vm import _new_vm

if TYPE_CHECKING:
    from ..core import Sim
    from ..perms import Caller


def new_template(sim: Sim, uid: int, gid: int, tmpl: list, perms: list | None = None) -> int:
    tid = max(int(sim.store.meta.get("next_template", 0)), 0)
    name = T.get(tmpl, "NAME") or ""
    bad = name_error(name)
    if bad:
        raise errors.allocate_error("template", bad)
    taken = name_taken(sim, "template", uid, name)
    if taken is not None:
        raise errors.allocate_error("template", f"NAME is already taken by TEMPLATE {taken['id']}.")
    sim.store.new_id("template")
    t = {
        "id": tid,
        "uid": uid,
        "gid": gid,
        "perms": perms or list(DEFAULT_PERMS),
        "name": name,
        "regtime": sim.now(),
        "template": [[k, v] for k, v in tmpl if k != "NAME"],
    }
    sim.store.put("template", t)
    return tid


@method("one.template.allocate", "s")
def allocate(sim: Sim, caller: Caller, tmpl: str) -> int:
    return new_template(sim, caller.uid, caller.gid, parse(tmpl))


def _extended(sim: Sim, t: dict) -> list:
    out = []
    for k, v in t["template"]:
        if k == "DISK" and isinstance(v, list):
            d = {a: b for a, b in v}
            img = None
            if "IMAGE_ID" in d:
                try:
                    img = sim.store.get("image", int(d["IMAGE_ID"]))
                except ValueError:
                    img = None
            if img is not None:
                disk = vmbuild.image_disk(sim, img, None, None, d)
                T.vset(disk, "DISK_ID", str(len([1 for k2, _ in out if k2 == "DISK"])))
                out.append(["DISK", disk])
                continue
        out.append([k, v])
    return out


@method("one.template.info", "ibb", 1)
def info(sim: Sim, caller: Caller, tid: int, extended: bool = False, decrypt: bool = False) -> str:
    t = sim.get_auth(caller, "template", tid, "USE")
    return docs.vmtemplate(sim, t, _extended(sim, t) if extended else None)


@method("one.template.instantiate", "isbsb", 1)
def instantiate(
    sim: Sim,
    caller: Caller,
    tid: int,
    name: str = "",
    hold: bool = False,
    extra: str = "",
    persistent: bool = False,
) -> int:
    t = sim.get_auth(caller, "template", tid, "USE")
    tmpl = [[k, [list(p) for p in v] if isinstance(v, list) else v] for k, v in t["template"]]
    if extra:
        T.merge(tmpl, parse(extra))
    vid = max(int(sim.store.meta.get("next_vm", 0)), 0)
    vm_name = name or T.get(tmpl, "NAME") or f"{t['name']}-{vid}"
    return _new_vm(sim, caller, tmpl, hold, vm_name, template_id=tid)


@method("one.template.update", "isi", 2)
def update(sim: Sim, caller: Caller, tid: int, tmpl: str, append: int = 0) -> int:
    t = sim.get_auth(caller, "template", tid, "MANAGE")
    update_template(t, "template", tmpl, append)
    sim.store.put("template", t)
    return tid


@method("one.template.delete", "ib", 1)
def delete(sim: Sim, caller: Caller, tid: int, recursive: bool = False) -> int:
    sim.get_auth(caller, "template", tid, "MANAGE")
    sim.store.delete("template", tid)
    return tid


@method("one.template.clone", "isb", 2)
def clone(sim: Sim, caller: Caller, tid: int, name: str, recursive: bool = False) -> int:
    t = sim.get_auth(caller, "template", tid, "USE")
    tmpl = [["NAME", name]] + [list(p) for p in t["template"]]
    return new_template(sim, caller.uid, caller.gid, tmpl)


@method("one.templatepool.info", "iii")
def pool_info(sim: Sim, caller: Caller, flag: int, start: int, end: int) -> str:
    ts = pool(sim, caller, "template", flag, start, end)
    return "<VMTEMPLATE_POOL>" + "".join(docs.vmtemplate(sim, t) for t in ts) + "</VMTEMPLATE_POOL>"
