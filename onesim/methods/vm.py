"""one.vm.* and one.vmpool.*"""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING

from .. import docs_vm, errors, leases, lifecycle, refs, vmbuild, vmvars
from .. import template as T
from ..core import method
from ..perms import DEFAULT_PERMS, authorize, pool_filter
from . import secgroup
from .common import parse, pool, update_template

if TYPE_CHECKING:
    from ..core import Sim
    from ..perms import Caller


def _new_vm(
    sim: Sim,
    caller: Caller,
    tmpl: list,
    hold: bool,
    name: str | None = None,
    template_id: int | None = None,
) -> int:
    vid = max(int(sim.store.meta.get("next_vm", 0)), 0)
    built = vmbuild.build(sim, caller, tmpl, vid, hold, template_id, name)
    sim.store.new_id("vm")
    now = sim.now()
    vm = {
        "id": vid,
        "uid": caller.uid,
        "gid": caller.gid,
        "perms": list(DEFAULT_PERMS),
        "name": name or T.get(tmpl, "NAME") or f"one-{vid}",
        "state": 2 if hold else 1,
        "lcm_state": 0,
        "resched": 0,
        "stime": now,
        "etime": 0,
        "deploy_id": "",
        "template": built["template"],
        "user_template": built["user_template"],
        "history": [],
        "steps": [],
    }
    if not hold:
        sim.schedule("vm", vm, "prolog")
    sim.store.put("vm", vm)
    return vid


@method("one.vm.allocate", "sb", 1)
def allocate(sim: Sim, caller: Caller, tmpl: str, hold: bool = False) -> int:
    return _new_vm(sim, caller, parse(tmpl), hold)


@method("one.vm.info", "ib", 1)
def info(sim: Sim, caller: Caller, vid: int, decrypt: bool = False) -> str:
    vm = sim.get_auth(caller, "vm", vid, "USE")
    return docs_vm.full(sim, vm)


@method("one.vm.action", "si")
def action(sim: Sim, caller: Caller, name: str, vid: int) -> int:
    if name not in lifecycle.ACTIONS:
        raise errors.action(f'Action "{name}" is not supported')
    # oned.conf VM_ADMIN_OPERATIONS includes resched; the rest are VM_MANAGE_OPERATIONS
    op = "ADMIN" if name in ("resched", "unresched") else "MANAGE"
    vm = sim.get_auth(caller, "vm", vid, op)
    lifecycle.action(sim, caller, vm, name)
    sim.store.put("vm", vm)
    return vid


@method("one.vm.update", "isi", 2)
def update(sim: Sim, caller: Caller, vid: int, tmpl: str, append: int = 0) -> int:
    vm = sim.get_auth(caller, "vm", vid, "MANAGE")
    update_template(vm, "user_template", tmpl, append, errors.ACTION, "")
    sim.store.put("vm", vm)
    return vid


def _next_id(vm: dict, vec: str, key: str) -> int:
    ids = [int(T.vget(v, key, "-1")) for v in T.get_vec(vm["template"], vec)]
    if vec == "DISK":
        for ctx in T.get_vec(vm["template"], "CONTEXT"):
            ids.append(int(T.vget(ctx, "DISK_ID", "-1")))
    return max(ids, default=-1) + 1


@method("one.vm.attach", "is")
def attach(sim: Sim, caller: Caller, vid: int, tmpl: str) -> int:
    vm = sim.get_auth(caller, "vm", vid, "MANAGE")
    disks = T.get_vec(parse(tmpl), "DISK")
    if not disks:
        raise errors.action("Internal error parsing DISK attribute")
    d = {k: v for k, v in disks[0]}
    lifecycle.hotplug(sim, vm, "disk_attach", check=True)
    refs.authorize(sim, caller, [d], [])
    img, err = refs.lookup_image(sim, d, caller.uid)
    if img is None and err:
        raise errors.action(err)
    if img is not None:
        try:
            refs.check_image(img, attach=True)
            refs.check_disk_size(img, d)
        except errors.OneError as e:
            raise errors.action(e.message) from None
    lifecycle.hotplug(sim, vm, "disk_attach", caller=caller)
    did = _next_id(vm, "DISK", "DISK_ID")
    used = {T.vget(x, "TARGET") for x in T.get_vec(vm["template"], "DISK")}
    used |= {T.vget(x, "TARGET") for x in T.get_vec(vm["template"], "CONTEXT")}
    prefix = T.get(img["template"], "DEV_PREFIX", "sd") if img else d.get("DEV_PREFIX", "sd")
    target = d.get("TARGET") or next(
        prefix + chr(c) for c in range(ord("a"), ord("z") + 1) if prefix + chr(c) not in used
    )
    if img is not None:
        refs.acquire_image(sim, img, vid, attach=True)
        disk = vmbuild.image_disk(sim, img, did, target, d)
    else:
        disk = [[k, v] for k, v in d.items()] + [["DISK_ID", str(did)], ["TARGET", target]]
    T.vset(disk, "ATTACH", "YES")  # until the hotplug ends (lifecycle.end_disk_hotplug)
    vm["template"].append(["DISK", disk])
    sim.store.put("vm", vm)
    return vid


@method("one.vm.detach", "ii")
def detach(sim: Sim, caller: Caller, vid: int, disk_id: int) -> int:
    vm = sim.get_auth(caller, "vm", vid, "MANAGE")
    lifecycle.hotplug(sim, vm, "disk_detach", check=True)
    disks = [v for k, v in vm["template"] if k == "DISK" and T.vget(v, "DISK_ID") == str(disk_id)]
    if not disks:
        raise errors.action(f"Disk {disk_id} does not exist")
    lifecycle.hotplug(sim, vm, "disk_detach", caller=caller)
    T.vset(disks[0], "ATTACH", "YES")  # VirtualMachineDisks::set_attach; gone at the end
    vm["detaching"] = True
    sim.store.put("vm", vm)
    return vid


@method("one.vm.attachnic", "is")
def attachnic(sim: Sim, caller: Caller, vid: int, tmpl: str) -> int:
    vm = sim.get_auth(caller, "vm", vid, "MANAGE")
    nics = T.get_vec(parse(tmpl), "NIC")
    if not nics:
        raise errors.action("Wrong format or missing NIC/NIC_ALIAS/PCI attribute")
    n = {k: v for k, v in nics[0]}
    lifecycle.hotplug(sim, vm, "nic_attach", check=True)
    refs.authorize(sim, caller, [], [n])
    vn, err = refs.lookup_vnet(sim, n, caller.uid)
    if vn is None:
        raise errors.action(err or "NIC: NETWORK_ID or NETWORK missing")
    secgroup.authorize(sim, caller, secgroup.nic_groups(n, vn, vn["ars"]))
    ar, ip, mac = leases.allocate(vn, vid, n.get("IP"))
    groups = secgroup.nic_groups(n, vn, [ar])
    i = _next_id(vm, "NIC", "NIC_ID")
    nic = vmbuild.nic_attributes(vn, ar, ip, mac, vid, i)
    T.vset(nic, "SECURITY_GROUPS", ",".join(map(str, groups)))
    lifecycle.hotplug(sim, vm, "nic_attach", caller=caller)
    new_groups = sorted(set(groups) - secgroup.vm_groups(vm))  # rules for groups new to the VM
    vm["template"].append(["NIC", nic])
    vm["template"] += [["SECURITY_GROUP_RULE", r] for r in secgroup.take(sim, vid, new_groups)]
    sim.store.put("vnet", vn)
    sim.store.put("vm", vm)
    return vid


@method("one.vm.detachnic", "ii")
def detachnic(sim: Sim, caller: Caller, vid: int, nic_id: int) -> int:
    vm = sim.get_auth(caller, "vm", vid, "MANAGE")
    lifecycle.hotplug(sim, vm, "nic_detach", check=True)
    nics = [v for k, v in vm["template"] if k == "NIC" and T.vget(v, "NIC_ID") == str(nic_id)]
    if not nics:
        raise errors.action(f"Could not detach NIC with NIC_ID {nic_id}, it does not exist.")
    lifecycle.hotplug(sim, vm, "nic_detach", caller=caller)
    nic = nics[0]
    vn = sim.store.get("vnet", int(T.vget(nic, "NETWORK_ID", "-1")))
    if vn is not None:
        ip = T.vget(nic, "IP")
        for ar in vn["ars"]:
            for k, v in list(ar["leases"].items()):
                if v == vid and leases.ip_str(leases._ip_int(ar["ip"]) + int(k)) == ip:
                    del ar["leases"][k]
        sim.store.put("vnet", vn)
    before = secgroup.vm_groups(vm)
    vm["template"] = [p for p in vm["template"] if not (p[0] == "NIC" and p[1] is nic)]
    for sid in before - secgroup.vm_groups(vm):  # VirtualMachinePool::delete_attach_nic
        secgroup.leave(sim, vm, sid)
    sim.store.put("vm", vm)
    return vid


@method("one.vm.disksnapshotcreate", "iis")
def disksnapshotcreate(sim: Sim, caller: Caller, vid: int, disk_id: int, name: str) -> int:
    vm = sim.get_auth(caller, "vm", vid, "MANAGE")
    disks = [v for v in T.get_vec(vm["template"], "DISK") if T.vget(v, "DISK_ID") == str(disk_id)]
    if not disks:
        raise errors.action("VM disk does not exist")
    lifecycle.hotplug(sim, vm, "snapshot", caller=caller)
    # Snapshots::create_snapshot with ALLOW_ORPHANS=NO (add_child_deny)
    snaps = vm.setdefault("disk_snaps", {}).setdefault(
        str(disk_id), {"next": 0, "active": -1, "list": []}
    )
    sid, size = snaps["next"], int(T.vget(disks[0], "SIZE", "0") or 0)
    for old in snaps["list"]:
        if old["id"] == snaps["active"]:
            old["children"].append(sid)
    snaps["list"].append(
        {
            "id": sid,
            "name": name,
            "date": sim.now(),
            "size": size,
            "parent": snaps["active"],
            "children": [],
        }
    )
    snaps["next"], snaps["active"] = sid + 1, sid
    total = int(T.vget(disks[0], "DISK_SNAPSHOT_TOTAL_SIZE", "0") or 0) + size
    T.vset(disks[0], "DISK_SNAPSHOT_TOTAL_SIZE", str(total))
    sim.store.put("vm", vm)
    return sid


def _resize_value(tmpl: list, name: str, kind: type, what: str) -> float:
    """VirtualMachineAPI::resize: a missing or unparsable value counts as 0 (keep)."""
    try:
        value = kind(T.get(tmpl, name) or 0)
    except ValueError:
        value = 0
    if value < 0:
        raise errors.internal(f"{name} must be a positive {what} value.")
    return value


@method("one.vm.resize", "isb", 2)
def resize(sim: Sim, caller: Caller, vid: int, tmpl: str, enforce: bool = True) -> int:
    """VirtualMachineAPI::resize + DispatchManager::resize (7.4): CPU, VCPU, MEMORY (0 or
    absent: unchanged) of a VM not yet deployed, powered off or undeployed; a RUNNING VM only
    when nothing changes (the dummy VM_MAD has no LIVE_RESIZE); STOPPED, SUSPENDED, DONE and
    other ACTIVE states are refused (ACTION)."""
    parsed = parse(tmpl)
    vm = sim.get_auth(caller, "vm", vid, "MANAGE")
    cpu = _resize_value(parsed, "CPU", float, "float or integer")
    memory = _resize_value(parsed, "MEMORY", int, "integer")
    vcpu = _resize_value(parsed, "VCPU", int, "integer")
    st, lcm = vm["state"], vm["lcm_state"]
    running = st == 3 and lcm == 3
    if st in (4, 5, 6) or (st == 3 and not running):
        raise errors.action(f"Cannot resize a VM in state {lifecycle.STATES[st]}")
    new = {"CPU": f"{cpu:g}" if cpu else None, "VCPU": vcpu or None, "MEMORY": memory or None}
    changes = {k: str(v) for k, v in new.items() if v is not None}
    if running:
        current = {k: T.get(vm["template"], k) for k in changes}
        if any(float(current[k] or 0) != float(v) for k, v in changes.items()):
            raise errors.action("Hotplug resize not supported by driver dummy")
        lifecycle.close_cp_history(sim, vm, lifecycle.RESIZE_ACTION, caller)  # oned does so
        sim.store.put("vm", vm)
        return vid  # "Nothing to resize"
    for name, value in changes.items():
        T.tset(vm["template"], name, value)
    if st == 8:  # a VM not yet deployed or undeployed keeps its history as it is
        lifecycle.close_cp_history(sim, vm, lifecycle.RESIZE_ACTION, caller)
    sim.store.put("vm", vm)
    return vid


# VirtualMachineTemplate::UPDATECONF_ATTRS (7.4): what one.vm.updateconf takes of each vector
_UPDATECONF = {
    "OS": (
        "ARCH", "MACHINE", "KERNEL", "INITRD", "BOOTLOADER", "BOOT", "KERNEL_CMD", "ROOT",
        "SD_DISK_BUS", "UUID", "FIRMWARE", "FIRMWARE_FORMAT",
    ),
    "FEATURES": (
        "PAE", "ACPI", "APIC", "LOCALTIME", "HYPERV", "GUEST_AGENT", "VIRTIO_SCSI_QUEUES",
        "VIRTIO_BLK_QUEUES", "IOTHREADS", "GIC", "RAS", "MIGRATE_AUTO_CONVERGE",
        "MIGRATE_COMPRESSED",
    ),
    "INPUT": ("TYPE", "BUS"),
    "GRAPHICS": ("TYPE", "LISTEN", "PASSWD", "KEYMAP", "COMMAND"),
    "VIDEO": ("IOMMU", "ATS", "TYPE", "VRAM", "RESOLUTION"),
    "RAW": ("TYPE", "DATA", "VALIDATE", "DATA_VMX"),
    "CPU_MODEL": ("MODEL", "FEATURES"),
}  # fmt: skip
# VirtualMachine::updateconf: the ACTIVE LCM states a configuration may change in
_UPDATECONF_LCM = frozenset({0, 1, 3, 11, 12, 15, 18, 23, 27, 29, 30, 31, 33, 34, 36, 39, 40,
                             42, 43, 44, 47, 50, 51, 52, 53})  # fmt: skip
_ETH = re.compile(r"ETH\d+_\w+")


# oned.conf's VM_RESTRICTED_ATTR that an updateconf template can carry, in oned's (name) order
_RESTRICTED = (("CONTEXT", "FILES"), ("RAW", "DATA"))


def _check_restricted(new: list, current: list) -> None:
    """Template::check_restricted(append=true) on the updateconf template: a non-admin's
    CONTEXT (or RAW with DATA, the part updateconf takes) must carry the same restricted values
    as the VM's, absent ones included."""
    for name, sub in _RESTRICTED:
        given = T.get_vec(new, name)[:1]  # oned takes the first of each
        if name == "RAW":  # copy_vector_values: only UPDATECONF_ATTRS with a value remain
            given = [[[k, x] for k, x in v if k in _UPDATECONF["RAW"] and x] for v in given]
            given = [v for v in given if v]
        if not given:
            continue
        values = sorted(f"{sub}={x}" for v in given for k, x in v if k == sub)
        base = sorted(f"{sub}={x}" for v in T.get_vec(current, name) for k, x in v if k == sub)
        if values != base:
            raise errors.OneError(
                errors.AUTHORIZATION, f"Template includes a restricted attribute {name}"
            )


def _context_update(old: list, new: list, append: bool) -> list:
    """VirtualMachine::updateconf's CONTEXT: values equal to the current ones dropped, no ETHx_
    value added or changed (CONTEXT_ALLOW_ETH_UPDATES = NO), TARGET and DISK_ID kept; merged
    into the current context (append), or the new one with the equal values (replace)."""
    cur = {k: v for k, v in old}
    given = {k: v for k, v in new}
    for key in sorted(given):  # oned walks both in name order
        if _ETH.fullmatch(key) and cur.get(key) != given[key]:
            verb = "add" if key not in cur else "update"
            raise errors.internal(f"Unable to {verb} {key}, update NIC to update network context")
    if append:
        out = [list(p) for p in old]
        for key, value in given.items():
            if key not in ("TARGET", "DISK_ID"):
                T.vset(out, key, value)
        return out
    out = [[k, v] for k, v in given.items() if k not in ("TARGET", "DISK_ID")]
    if (given.get("NETWORK") or "").upper() == "YES":  # parse_context regenerates ETHx_
        out += [[k, v] for k, v in old if _ETH.fullmatch(k) and k not in given]
    for key in ("TARGET", "DISK_ID"):
        T.vset(out, key, cur.get(key, ""))
    return out


@method("one.vm.updateconf", "isi", 2)
def updateconf(sim: Sim, caller: Caller, vid: int, tmpl: str, update_type: int = 0) -> int:
    """VirtualMachineAPI::update_conf + VirtualMachine::updateconf (7.4): OS, FEATURES, INPUT,
    GRAPHICS, VIDEO, RAW, CPU_MODEL (their UPDATECONF_ATTRS only) and CONTEXT of a VM not
    running on a host or RUNNING; update_type 1 merges, 0 replaces (a vector left out is
    removed)."""
    if update_type not in (0, 1):
        raise errors.api("Wrong update type")
    parsed = parse(tmpl)
    vm = sim.get_auth(caller, "vm", vid, "MANAGE")
    contexts = T.get_vec(parsed, "CONTEXT")
    current = T.get_vec(vm["template"], "CONTEXT")
    if not caller.admin:
        _check_restricted(parsed, vm["template"])
    st, lcm = vm["state"], vm["lcm_state"]
    if st in (0, 4, 5, 6) or (st == 3 and lcm not in _UPDATECONF_LCM):
        raise errors.internal(
            f"configuration cannot be updated in state {lifecycle.state_name(vm)}"
        )
    append = update_type == 1
    template = copy.deepcopy(vm["template"])  # a failure changes nothing
    for name, keys in _UPDATECONF.items():
        given = T.get_vec(parsed, name)
        values = [[k, v] for k, v in (given[0] if given else []) if k in keys and v]
        old = T.get_vec(template, name)
        if not values:
            if not append:
                T.remove(template, name)
        elif not old:
            template.append([name, values])
        else:
            for key in keys:
                value = T.vget(values, key)
                if value is not None:
                    T.vset(old[0], key, value)
                elif not append:
                    old[0][:] = [p for p in old[0] if p[0] != key]
    if contexts and not current:
        raise errors.internal("Virtual machine does not have context, cannot add a new one.")
    if contexts:
        context = _context_update(current[0], contexts[0], append)
        # oned's parse_context again: every value's variables, the kept ones' too
        context = vmvars.expand_context(sim, {**vm, "template": template}, context)
        T.get_vec(template, "CONTEXT")[0][:] = context
    vm["template"] = template
    sim.store.put("vm", vm)
    return vid


# Image types whose disk cannot be saved (VirtualMachineAPI::disk_save_as)
_UNSAVABLE = frozenset({3, 4, 5, 6, 7})  # KERNEL, RAMDISK, CONTEXT, BACKUP, FILESYSTEM


@method("one.vm.disksaveas", "iissi")
def disksaveas(
    sim: Sim, caller: Caller, vid: int, disk_id: int, name: str, itype: str, snap: int
) -> int:
    """VirtualMachineAPI::disk_save_as (7.4): the VM's state and disk are checked before the
    caller's rights (oned enters the saveas state first and clears it on any failure), so a
    wrong state or disk is INTERNAL even for a VM the caller may not manage."""
    from .image import check_space, new_image

    vm = sim.get("vm", vid)
    lifecycle.hotplug(sim, vm, "saveas", check=True)
    disks = [v for v in T.get_vec(vm["template"], "DISK") if T.vget(v, "DISK_ID") == str(disk_id)]
    if not disks:
        raise errors.internal("Cannot use DISK. DISK does not exist.")
    source_id = T.vget(disks[0], "IMAGE_ID", "")
    if not source_id.lstrip("-").isdigit():
        raise errors.internal("Cannot use DISK. DISK does not have a valid IMAGE_ID.")
    snaps = vm.get("disk_snaps", {}).get(str(disk_id), {"list": []})["list"]
    if snap != -1 and not any(s["id"] == snap for s in snaps):
        raise errors.internal("Cannot use DISK. Snapshot does not exist.")
    src = sim.store.get("image", int(source_id))
    if src is None:
        raise errors.no_exists("image", int(source_id))
    if src["type"] in _UNSAVABLE:
        raise errors.internal(f"Cannot save an image of type {refs.TYPE_NAMES[src['type']]}")
    size = int(T.vget(disks[0], "SIZE", "0") or 0)
    check_space(sim, sim.get("datastore", src["ds_id"]), size)  # before the caller's rights
    tmpl = [
        ["NAME", name],
        ["SIZE", str(size)],
        ["SAVED_IMAGE_ID", str(src["id"])],
        ["SAVED_DISK_ID", str(disk_id)],
        ["SAVED_VM_ID", str(vid)],
        ["SAVE_AS_HOT", "YES"],
        ["TYPE", itype or refs.TYPE_NAMES[src["type"]]],  # empty: the disk image's type
    ]
    tmpl += [[k, v] for k, v in src["template"] if k in ("TARGET", "DEV_PREFIX")]
    authorize(caller, vm, "vm", "MANAGE", sim.acls)
    iid = new_image(sim, caller, tmpl, src["ds_id"], from_vm=True)
    lifecycle.hotplug(sim, vm, "saveas")
    sim.store.put("vm", vm)
    return iid


# ---------------------------------------------------------------------------- pools


def _pool(
    sim: Sim,
    caller: Caller,
    flag: int,
    start: int,
    end: int,
    state: int,
    query: str,
    extended: bool,
) -> str:
    # VirtualMachinePoolAPI::info order: json query, state, then the filter flag
    if query:
        raise errors.internal("JSON query search is not supported by the SQL backend")
    if state < -2 or state > 11:
        raise errors.api(f"Incorrect state filter {state}")
    if flag < -4:
        raise errors.api("Incorrect filter_flag")
    vms = pool(sim, caller, "vm", flag, start, end)
    if state == -1:
        vms = [v for v in vms if v["state"] != 6]
    elif state >= 0:
        vms = [v for v in vms if v["state"] == state]
    body = "".join(docs_vm.pool_body(sim, v, extended) for v in vms)
    return T.Escaped("&lt;VM_POOL&gt;" + body + "&lt;/VM_POOL&gt;")


@method("one.vmpool.info", "iiiis", 4)
def pool_info(
    sim: Sim, caller: Caller, flag: int, start: int, end: int, state: int, query: str = ""
) -> str:
    return _pool(sim, caller, flag, start, end, state, query, False)


@method("one.vmpool.infoextended", "iiiis", 4)
def pool_infoextended(
    sim: Sim, caller: Caller, flag: int, start: int, end: int, state: int, query: str = ""
) -> str:
    return _pool(sim, caller, flag, start, end, state, query, True)


@method("one.vmpool.infoset", "sb")
def pool_infoset(sim: Sim, caller: Caller, ids: str, extended: bool) -> str:
    wanted = {int(x) for x in ids.split(",") if x.strip().isdigit()}
    objs = [sim.store.get("vm", i) for i in wanted]
    vms = pool_filter([o for o in objs if o], caller, "vm", -2, sim.acls)
    vms.sort(key=lambda v: v["id"], reverse=True)
    body = "".join(docs_vm.pool_body(sim, v, extended) for v in vms)
    return T.Escaped("&lt;VM_POOL&gt;" + body + "&lt;/VM_POOL&gt;")
