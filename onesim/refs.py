"""The images and networks a VM refers to: lookup by id or name (``*_UID``/``*_UNAME``),
authorization, and image acquisition/release (``ImageManager::acquire_image``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import errors
from .perms import allowed

if TYPE_CHECKING:
    from .core import Sim
    from .perms import Caller

TYPE_NAMES = {
    0: "OS",
    1: "CDROM",
    2: "DATABLOCK",
    3: "KERNEL",
    4: "RAMDISK",
    5: "CONTEXT",
    6: "BACKUP",
    7: "FILESYSTEM",
}
STATE_NAMES = {
    0: "INIT",
    1: "READY",
    2: "USED",
    3: "DISABLED",
    4: "LOCKED",
    5: "ERROR",
    6: "CLONE",
    7: "DELETE",
    8: "USED",
    9: "LOCKED_USED",
    10: "LOCKED_USED",
}


def _owner(sim: Sim, d: dict, prefix: str, default: int) -> int | None:
    if d.get(f"{prefix}_UID"):
        try:
            return int(d[f"{prefix}_UID"])
        except ValueError:
            return None
    if d.get(f"{prefix}_UNAME"):
        u = sim.user_by_name(d[f"{prefix}_UNAME"])
        return u["id"] if u else None
    return default


def lookup_vnet(sim: Sim, d: dict, uid: int) -> tuple[dict | None, str]:
    """(network, error text) for a NIC; (None, "") when the NIC names no network."""
    if d.get("NETWORK_ID"):
        try:
            vn = sim.store.get("vnet", int(d["NETWORK_ID"]))
        except ValueError:
            vn = None
        return vn, "" if vn else f"Virtual network with ID: {d['NETWORK_ID']} does not exist"
    if d.get("NETWORK"):
        owner = _owner(sim, d, "NETWORK", uid)
        if owner is None:
            if d.get("NETWORK_UID"):
                return None, "Cannot get user in NETWORK_UID"
            return None, "User set in NETWORK_UNAME does not exist"
        for vn in sim.store.all("vnet"):
            if vn["name"] == d["NETWORK"] and vn["uid"] == owner:
                return vn, ""
        return None, (
            f"User {owner} does not own a network with name: {d['NETWORK']} . "
            "Set NETWORK_UNAME or NETWORK_UID of owner in NIC."
        )
    return None, ""


def lookup_image(sim: Sim, d: dict, uid: int) -> tuple[dict | None, str]:
    if d.get("IMAGE_ID"):
        try:
            img = sim.store.get("image", int(d["IMAGE_ID"]))
        except ValueError:
            img = None
        return img, "" if img else f"Image with ID: {d['IMAGE_ID']} does not exist"
    if d.get("IMAGE"):
        owner = _owner(sim, d, "IMAGE", uid)
        for img in sim.store.all("image"):
            if owner is not None and img["name"] == d["IMAGE"] and img["uid"] == owner:
                return img, ""
        return None, (
            f"User {uid if owner is None else owner} does not own an image with "
            f"name: {d['IMAGE']} . Set IMAGE_UNAME or IMAGE_UID of owner in DISK."
        )
    return None, ""


def authorize(sim: Sim, caller: Caller, disks: list[dict], nics: list[dict]) -> None:
    """USE on every existing image and network referenced (oned authorizes before insert)."""
    for d in disks:
        img, _ = lookup_image(sim, d, caller.uid)
        if img is not None and not allowed(caller, img, "image", "USE", sim.acls):
            raise errors.not_authorized(caller.uid, "USE", "image", img["id"])
    for n in nics:
        vn, _ = lookup_vnet(sim, n, caller.uid)
        if vn is not None and not allowed(caller, vn, "vnet", "USE", sim.acls):
            raise errors.not_authorized(caller.uid, "USE", "vnet", vn["id"])


def check_image(img: dict, attach: bool) -> None:
    """Raise oned's error if ``img`` cannot be acquired (no change made)."""
    oid, st = img["id"], img["state"]
    if img["type"] in (3, 4, 5, 6):
        raise errors.internal(
            f"Image {oid} ({img['name']}) of type {TYPE_NAMES[img['type']]} cannot be used as DISK."
        )
    if st in (8, 10):
        raise errors.internal(f"Cannot acquire image {oid}, it is persistent and already in use")
    if st in (4, 9) and attach:
        raise errors.internal(f"Cannot acquire image {oid}, it is locked")
    if st not in (1, 2, 4, 9):
        raise errors.internal(f"Cannot acquire image {oid}, it is in state: {STATE_NAMES[st]}")


def check_disk_size(img: dict, disk: dict) -> None:
    """ImagePool::acquire_disk: a DISK SIZE other than the image's, for a persistent or a
    CDROM image (which cannot be resized), or smaller than the image. (Volatile disks, which
    econe never makes, are not checked.)"""
    size = (disk.get("SIZE") or "").strip()
    if not size or not size.lstrip("-").isdigit() or int(size) == img["size"]:
        return
    if img["persistent"]:
        raise errors.internal(
            f"SIZE attribute is not supported for persistent image [{img['id']}]."
        )
    if img["type"] == 1:
        raise errors.internal(f"SIZE attribute is not supported for CDROM image [{img['id']}].")
    if int(size) < img["size"]:
        raise errors.internal(
            f"SIZE of {int(size)}MB is less than the image [{img['id']}] size of {img['size']}MB."
        )


def acquire_image(sim: Sim, img: dict, vid: int, attach: bool = False) -> None:
    check_image(img, attach)
    img["vms"].append(vid)
    pers = bool(img["persistent"])
    if img["state"] == 1:
        img["state"] = img["prev_state"] = 8 if pers else 2
    elif img["state"] == 4:
        img["state"] = img["prev_state"] = 10 if pers else 9
    sim.store.put("image", img)


def release_clone(sim: Sim, iid: int, clone_id: int) -> None:
    """The clone ``clone_id`` of image ``iid`` is done (``release_cloning_image``)."""
    img = sim.store.get("image", iid)
    if img is None or clone_id not in img.get("clones", []):
        return
    img["clones"].remove(clone_id)
    if not img["clones"] and not img["vms"] and img["state"] in (2, 6):
        img["state"] = img["prev_state"] = 1
    sim.store.put("image", img)


def release_image(sim: Sim, iid: int, vid: int) -> None:
    img = sim.store.get("image", iid)
    if img is None or vid not in img["vms"]:
        return
    img["vms"].remove(vid)
    if not img["vms"] and not img.get("clones"):
        if img["state"] in (2, 8):
            img["state"] = img["prev_state"] = 1
        elif img["state"] in (9, 10):
            img["state"] = img["prev_state"] = 4
    sim.store.put("image", img)


def image_ready(img: dict) -> None:
    """End of the LOCKED step: LOCKED -> READY, LOCKED_USED(_PERS) -> USED(_PERS)."""
    img["state"] = img["prev_state"] = {4: 1, 9: 2, 10: 8}[img["state"]]
