"""one.image.* and one.imagepool.info"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

from .. import docs, errors, lifecycle, refs
from .. import template as T
from ..core import method
from ..perms import DEFAULT_PERMS, authorize
from .common import name_error, name_taken, parse, pool, update_template

if TYPE_CHECKING:
    from ..core import Sim
    from ..perms import Caller

TYPES = {
    "OS": 0,
    "CDROM": 1,
    "DATABLOCK": 2,
    "KERNEL": 3,
    "RAMDISK": 4,
    "CONTEXT": 5,
    "BACKUP": 6,
    "FILESYSTEM": 7,
}
TYPE_GROUPS = ({0, 1, 2}, {3, 4, 5})
STATE_NAMES = refs.STATE_NAMES
STRIP = {"NAME", "TYPE", "PATH", "SOURCE", "SIZE", "PERSISTENT", "FORMAT", "FS"}


def _size_of(path: str) -> int:
    if "://" in path:
        return 1024  # remote source: the dummy datastore driver reports 1024 MB
    if not (os.path.isfile(path) and os.access(path, os.R_OK)):
        raise errors.internal(
            f"Cannot determine image SIZE: {path} does not exist or is not readable."
        )
    return max(1, math.ceil(os.path.getsize(path) / (1024 * 1024)))


def check_space(sim: Sim, ds: dict, size: int) -> None:
    """The datastore's capacity (DATASTORE_CAPACITY_CHECK = yes, oned's default)."""
    used = sum(i["size"] for i in sim.store.all("image") if i["ds_id"] == ds["id"])
    if size > max(ds["total_mb"] - used, 0):
        raise errors.action("Not enough space in datastore")


def new_image(sim: Sim, caller: Caller, tmpl: list, ds_id: int, from_vm: bool = False) -> int:
    ds = sim.get("datastore", ds_id)
    authorize(caller, ds, "datastore", "USE", sim.acls)
    if ds["type"] == 1:
        raise errors.allocate_error(
            "image", "New images can only be allocated in a files or image datastore."
        )
    # ImageAPI::allocate: size first, then ImagePool::allocate: name, type vs datastore, dups
    path = T.get(tmpl, "PATH") or ""
    source = T.get(tmpl, "SOURCE") or ""
    size_s = T.get(tmpl, "SIZE")
    if path and not from_vm:
        size = _size_of(path)
    else:
        try:
            size = int(size_s) if size_s is not None else -1
        except ValueError:
            size = -1
        if size < 0 and not source:
            raise errors.internal(
                "Cannot parse image SIZE: Wrong number or missing SIZE attribute."
            )
        size = max(size, 0)
    check_space(sim, ds, size)
    name = T.get(tmpl, "NAME") or ""
    bad = name_error(name)
    if bad:
        raise errors.allocate_error("image", bad)
    tname = (T.get(tmpl, "TYPE") or "OS").upper()
    itype = TYPES.get(tname, 0)  # Image::str_to_type falls back to OS
    if itype in (0, 1, 2, 7) and ds["type"] != 0:
        raise errors.allocate_error(
            "image",
            "Only IMAGES of type KERNEL, RAMDISK and CONTEXT can be registered in a "
            "FILE_DS datastore",
        )
    if itype in (3, 4, 5) and ds["type"] != 2:
        raise errors.allocate_error(
            "image",
            "IMAGES of type KERNEL, RAMDISK and CONTEXT cannot be registered in an "
            "IMAGE_DS datastore",
        )
    taken = name_taken(sim, "image", caller.uid, name)
    if taken is not None:
        raise errors.allocate_error("image", f"NAME is already taken by IMAGE {taken['id']}.")
    if tname not in TYPES:
        # oned 7.4 builds this text with "Unknown type " + <enum>: the type name is lost
        raise errors.allocate_error("image", "Unknown type ")
    iid = sim.store.new_id("image")
    now = sim.now()
    t = [[k, v] for k, v in tmpl if k not in STRIP]
    if itype in (0, 2):
        if T.get(t, "DEV_PREFIX") is None:
            t.append(["DEV_PREFIX", "sd"])
    elif itype in (1, 3, 4, 5):  # CDROM and files: no DEV_PREFIX, never persistent
        T.remove(t, "DEV_PREFIX")
    img = {
        "id": iid,
        "uid": caller.uid,
        "gid": caller.gid,
        "perms": list(DEFAULT_PERMS),
        "name": name,
        "type": itype,
        "persistent": 1
        if (T.get(tmpl, "PERSISTENT") or "").upper() == "YES" and itype in (0, 2)
        else 0,
        "regtime": now,
        "modtime": now,
        "source": source,
        "path": path,
        "format": T.get(tmpl, "FORMAT") or "",
        "size": size,
        "state": 4,
        "prev_state": 0,
        "ds_id": ds["id"],
        "vms": [],
        "template": t,
        "steps": [],
    }
    sim.schedule("image", img, "ready")
    sim.store.put("image", img)
    sim.store.invalidate("datastore", ds["id"])
    return iid


@method("one.image.allocate", "sib", 2)
def allocate(sim: Sim, caller: Caller, tmpl: str, ds_id: int, no_check: bool = False) -> int:
    return new_image(sim, caller, parse(tmpl), ds_id)


@method("one.image.info", "ib", 1)
def info(sim: Sim, caller: Caller, iid: int, decrypt: bool = False) -> str:
    return docs.image(sim, sim.get_auth(caller, "image", iid, "USE"))


@method("one.image.delete", "ib", 1)
def delete(sim: Sim, caller: Caller, iid: int, force: bool = False) -> int:
    # ImageAPI::del_image: a forced delete needs ADMIN; a locked image (being copied) goes only
    # with force
    img = sim.get_auth(caller, "image", iid, "ADMIN" if force else "MANAGE")
    if img["state"] in (4, 9, 10) and not force:
        raise errors.OneError(
            errors.INTERNAL,
            "Image locked, use --force flag to remove the image. Force delete may leave some "
            "files on Datastore",
            iid,
        )
    # ImageManager::delete_image refusals, by state
    if img["state"] == 6:
        raise errors.action(
            f"Cannot delete image. There are {len(img.get('clones', []))} active clone operations."
        )
    if img["vms"] or img["state"] in (2, 8, 9, 10):
        raise errors.action(f"Cannot delete image. There are {len(img['vms'])} VMs using it.")
    if img.get("cloning_id", -1) >= 0:
        refs.release_clone(sim, img["cloning_id"], img["id"])
    if img["state"] == 4 and T.get(img["template"], "SAVE_AS_HOT") == "YES":
        # ImageManager::delete_image: the VM whose disk was being saved is released at once
        saving = sim.store.get("vm", int(T.get(img["template"], "SAVED_VM_ID") or -1))
        if saving is not None:
            lifecycle.clear_saveas(saving)
            sim.store.put("vm", saving)
    img["state"] = img["prev_state"] = 7
    sim.schedule("image", img, "delete")
    sim.store.put("image", img)
    return iid


@method("one.image.clone", "isi", 2)
def clone(sim: Sim, caller: Caller, iid: int, name: str, ds_id: int = -1) -> int:
    src = sim.get_auth(caller, "image", iid, "USE")
    if src["type"] not in (0, 1, 2):
        raise errors.action(f"{refs.TYPE_NAMES[src['type']]} images cannot be cloned.")
    if src.get("disk_snaps"):
        raise errors.action("Cannot clone images with snapshots")
    if src["state"] not in (1, 2, 6):  # ImageManager::set_clone_state
        raise errors.allocate_error("image", "Cannot clone image in current state")
    tmpl = [
        ["NAME", name],
        ["SIZE", str(src["size"])],
        ["SOURCE", src["source"] or "dummy_path"],
        ["TYPE", [k for k, v in TYPES.items() if v == src["type"]][0]],
    ]
    tmpl += [list(p) for p in src["template"] if p[0] != "PERSISTENT"]
    if src["persistent"]:  # Image::clone_template: a persistent image's clone is persistent
        tmpl.append(["PERSISTENT", "YES"])
    new = new_image(sim, caller, tmpl, src["ds_id"] if ds_id < 0 else ds_id, from_vm=True)
    if src["state"] == 1:
        src["state"] = src["prev_state"] = 6 if src["persistent"] else 2
    src.setdefault("clones", []).append(new)
    sim.store.put("image", src)
    img = sim.store.get("image", new)
    img["cloning_id"] = src["id"]
    sim.store.put("image", img)
    return new


@method("one.image.chtype", "is")
def chtype(sim: Sim, caller: Caller, iid: int, tname: str) -> int:
    img = sim.get_auth(caller, "image", iid, "MANAGE")
    new = TYPES.get(tname.upper())
    if img["type"] in (6, 7):
        name = [k for k, v in TYPES.items() if v == img["type"]][0]
        raise errors.action(f"Cannot change type for{name} images.")  # sic, no space
    if not any(img["type"] in g and new in g for g in TYPE_GROUPS):
        raise errors.action(
            "Cannot change image type to an incompatible type for the current datastore."
        )
    img["type"] = new
    sim.store.put("image", img)
    return iid


@method("one.image.enable", "ib")
def enable(sim: Sim, caller: Caller, iid: int, flag: bool) -> int:
    img = sim.get_auth(caller, "image", iid, "MANAGE")
    if img["state"] in (1, 3, 5):
        img["state"] = img["prev_state"] = 1 if flag else 3
    else:
        raise errors.internal(
            f"Could not {'enable' if flag else 'disable'} image: Image cannot be in state "
            f"{STATE_NAMES.get(img['state'], '')}."
        )
    sim.store.put("image", img)
    return iid


@method("one.image.persistent", "ib")
def persistent(sim: Sim, caller: Caller, iid: int, flag: bool) -> int:
    img = sim.get_auth(caller, "image", iid, "MANAGE")
    if flag and img["type"] in (3, 4, 5):
        raise errors.action("KERNEL, RAMDISK and CONTEXT must be non-persistent")
    if img["state"] in (2, 6, 8, 9, 10):
        raise errors.internal(
            f"Could not make image {'persistent' if flag else 'non-persistent'}: Image cannot "
            f"be in state {STATE_NAMES[img['state']]}."
        )
    img["persistent"] = 1 if flag else 0
    sim.store.put("image", img)
    return iid


@method("one.image.update", "isi", 2)
def update(sim: Sim, caller: Caller, iid: int, tmpl: str, append: int = 0) -> int:
    img = sim.get_auth(caller, "image", iid, "MANAGE")
    update_template(img, "template", tmpl, append)
    sim.store.put("image", img)
    return iid


@method("one.imagepool.info", "iii")
def pool_info(sim: Sim, caller: Caller, flag: int, start: int, end: int) -> str:
    imgs = pool(sim, caller, "image", flag, start, end)
    return "<IMAGE_POOL>" + "".join(_body(sim, i) for i in imgs) + "</IMAGE_POOL>"


def _body(sim: Sim, img: dict) -> str:
    xml = sim.store.cached("image", img["id"], "full")
    return (
        xml
        if xml is not None
        else sim.store.remember("image", img["id"], "full", docs.image(sim, img))
    )
