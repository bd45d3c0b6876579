"""Turn a submitted template into a VM as oned does (``VirtualMachine::insert``): validate
CPU/MEMORY, split TEMPLATE/USER_TEMPLATE, expand DISKs from images, lease NICs, fill CONTEXT."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from . import errors, leases, refs, vmvars
from . import template as T
from .methods import secgroup
from .names import name_error

if TYPE_CHECKING:
    from .core import Sim
    from .perms import Caller

SYSTEM_ATTRS = {
    "CPU",
    "VCPU",
    "MEMORY",
    "DISK",
    "NIC",
    "NIC_ALIAS",
    "NIC_DEFAULT",
    "CONTEXT",
    "OS",
    "GRAPHICS",
    "INPUT",
    "FEATURES",
    "RAW",
    "PCI",
    "VIDEO",
    "TOPOLOGY",
    "NUMA_NODE",
    "CPU_MODEL",
    "MEMORY_SLOTS",
    "MEMORY_MAX",
    "VCPU_MAX",
    "TEMPLATE_ID",
    "VMID",
    "SECURITY_GROUP_RULE",
    "TM_MAD_SYSTEM",
    "SUBMIT_ON_HOLD",
    "AUTOMATIC_REQUIREMENTS",
    "AUTOMATIC_DS_REQUIREMENTS",
    "AUTOMATIC_NIC_REQUIREMENTS",
    "HYPERVISOR",
    "SPICE_OPTIONS",
    "TPM",
    "BACKUP_CONFIG",
}
ETH_KEYS = (
    "DNS",
    "EXTERNAL",
    "GATEWAY",
    "IP",
    "IP6",
    "IP6_GATEWAY",
    "IP6_METHOD",
    "IP6_METRIC",
    "IP6_PREFIX_LENGTH",
    "IP6_ULA",
    "MAC",
    "MASK",
    "METHOD",
    "METRIC",
    "MTU",
    "NETWORK",
    "ROUTES",
    "SEARCH_DOMAIN",
    "VLAN_ID",
    "VROUTER_IP",
    "VROUTER_IP6",
    "VROUTER_MANAGEMENT",
)
VNET_CTX = {
    "DNS": "DNS",
    "GATEWAY": "GATEWAY",
    "MASK": "NETWORK_MASK",
    "NETWORK": "NETWORK_ADDRESS",
    "MTU": "GUEST_MTU",
    "SEARCH_DOMAIN": "SEARCH_DOMAIN",
}


def _positive_int(v: str | None) -> bool:
    try:
        return v is not None and int(v) > 0
    except ValueError:
        return False


def _positive_float(v: str | None) -> bool:
    try:
        return v is not None and float(v) > 0
    except ValueError:
        return False


def image_disk(sim: Sim, img: dict, disk_id: int | None, target: str | None, extra: dict) -> list:
    ds = sim.store.get("datastore", img["ds_id"])
    pers = bool(img["persistent"])
    disk = [
        ["ALLOW_ORPHANS", "NO"],
        ["CLONE", "NO" if pers else "YES"],
        ["CLONE_TARGET", "SYSTEM"],
        ["CLUSTER_ID", "0"],
        ["DATASTORE", ds["name"]],
        ["DATASTORE_ID", str(ds["id"])],
        ["DEV_PREFIX", T.get(img["template"], "DEV_PREFIX", "sd")],
        ["DISK_SNAPSHOT_TOTAL_SIZE", "0"],
        ["DISK_TYPE", "FILE"],
        ["DRIVER", img["format"] or "raw"],
        ["FORMAT", img["format"] or "raw"],
        ["IMAGE", img["name"]],
        ["IMAGE_ID", str(img["id"])],
        ["IMAGE_STATE", str(img["state"])],
        ["LN_TARGET", "NONE"],
        ["ORIGINAL_SIZE", str(img["size"])],
        ["PERSISTENT_SNAPSHOTS", "YES"],
        ["READONLY", "NO"],
        ["SAVE", "YES" if pers else "NO"],
        ["SIZE", str(img["size"])],
        ["SOURCE", img["source"]],
        ["TM_MAD", "dummy"],
        ["TYPE", "FILE"],
    ]
    if pers:
        disk.append(["PERSISTENT", "YES"])
    if disk_id is not None:
        disk.append(["DISK_ID", str(disk_id)])
    if target is not None:
        disk.append(["TARGET", target])
    for k, v in extra.items():
        if k not in ("IMAGE_ID", "IMAGE", "IMAGE_UNAME", "IMAGE_UID"):
            T.vset(disk, k, v)
    return disk


def build(
    sim: Sim,
    caller: Caller,
    tmpl: list,
    vid: int,
    hold: bool,
    template_id: int | None = None,
    name: str | None = None,
) -> dict:
    """Validate and expand ``tmpl`` for new VM ``vid``; leases and images are taken.

    Order as oned: authorization of referenced images/networks, then MEMORY/CPU/VCPU, then
    network leases, then disk images (leases are rolled back if a disk fails)."""
    disks_in = [{k: v for k, v in d} for d in T.get_vec(tmpl, "DISK")]
    nics_in = [{k: v for k, v in n} for n in T.get_vec(tmpl, "NIC")]
    refs.authorize(sim, caller, disks_in, nics_in)
    bad = name_error(name or T.get(tmpl, "NAME") or "one")
    if bad:
        raise errors.internal(bad)
    if not _positive_int(T.get(tmpl, "MEMORY")):
        raise errors.internal("MEMORY attribute must be a positive integer value.")
    if not _positive_float(T.get(tmpl, "CPU")):
        raise errors.internal("CPU attribute must be a positive float or integer value.")
    vcpu = T.get(tmpl, "VCPU")
    if vcpu not in (None, "") and not _positive_int(vcpu):
        raise errors.internal("VCPU attribute must be a positive integer value.")
    tmpl = [list(p) for p in tmpl]
    T.tset(tmpl, "MEMORY", str(int(T.get(tmpl, "MEMORY"))))
    T.tset(tmpl, "CPU", f"{float(T.get(tmpl, 'CPU')):g}")
    if vcpu not in (None, ""):
        T.tset(tmpl, "VCPU", str(int(vcpu)))

    taken: list[dict] = []
    nics = []
    try:
        for i, n in enumerate(nics_in):
            vn, err = refs.lookup_vnet(sim, n, caller.uid)
            if vn is None:
                if err:
                    raise errors.internal(err)
                nics.append(([[k, v] for k, v in n.items()] + [["NIC_ID", str(i)]], None))
                continue
            secgroup.authorize(sim, caller, secgroup.nic_groups(n, vn, vn["ars"]))
            ar, ip, mac = leases.allocate(vn, vid, n.get("IP"))
            groups = secgroup.nic_groups(n, vn, [ar])
            taken.append(vn)
            nic = nic_attributes(vn, ar, ip, mac, vid, i)
            for k, v in n.items():
                if k not in ("NETWORK_ID", "NETWORK", "IP", "SECURITY_GROUPS"):
                    T.vset(nic, k, v)
            T.vset(nic, "SECURITY_GROUPS", ",".join(map(str, groups)))
            nics.append((nic, vn))
        images = []
        for d in disks_in:
            img, err = refs.lookup_image(sim, d, caller.uid)
            if img is None and err:
                raise errors.internal(err)
            if img is not None:
                refs.check_image(img, attach=False)
                refs.check_disk_size(img, d)
            images.append(img)
    except errors.OneError:
        for vn in taken:
            leases.free_vm(vn, vid)
        raise
    for vn in taken:
        sim.store.put("vnet", vn)

    out: list = []
    user_t: list = []
    for k, v in tmpl:
        if k in ("NAME", "DISK", "NIC", "CONTEXT"):
            continue
        (out if k in SYSTEM_ATTRS else user_t).append([k, v])
    out += [
        ["AUTOMATIC_DS_REQUIREMENTS", '("CLUSTERS/ID" @> 0)'],
        ["AUTOMATIC_REQUIREMENTS", "(CLUSTER_ID = 0) & !(PIN_POLICY = PINNED)"],
    ]
    if nics:
        out.append(["AUTOMATIC_NIC_REQUIREMENTS", '("CLUSTERS/ID" @> 0)'])
    letters: dict[str, int] = {}
    for i, (d, img) in enumerate(zip(disks_in, images, strict=False)):
        if img is not None:
            prefix = T.get(img["template"], "DEV_PREFIX", "sd")
        else:
            prefix = d.get("DEV_PREFIX", "sd")
        n = letters.get(prefix, 0)
        letters[prefix] = n + 1
        target = d.get("TARGET") or prefix + chr(ord("a") + n)
        if img is not None:
            try:
                refs.acquire_image(sim, img, vid)
            except errors.OneError:  # e.g. the same persistent image twice: undo everything
                _release(sim, vid, images[:i], taken)
                raise
            disk = image_disk(sim, img, i, target, d)
        else:
            disk = [[k, v] for k, v in d.items()] + [["DISK_ID", str(i)], ["TARGET", target]]
            T.vset(disk, "TYPE", d.get("TYPE", "fs"))
        out.append(["DISK", disk])
    for nic, _vn in nics:
        out.append(["NIC", nic])
    ctx_in = T.get_vec(tmpl, "CONTEXT")
    if ctx_in:
        vm = {
            "uid": caller.uid,
            "gid": caller.gid,
            "name": name or T.get(tmpl, "NAME") or f"one-{vid}",
            "template": out,
            "user_template": user_t,
        }
        try:  # before the network context, as VirtualMachine::parse_context
            ctx = vmvars.expand_context(sim, vm, ctx_in[0])
        except errors.OneError:
            _release(sim, vid, images, taken)
            raise
        net = (T.vget(ctx, "NETWORK", "") or "").upper() == "YES"
        if net:
            for i, (nic, vn) in enumerate(nics):
                for key in ETH_KEYS:
                    val = ""
                    if key == "IP":
                        val = T.vget(nic, "IP", "")
                    elif key == "MAC":
                        val = T.vget(nic, "MAC", "")
                    elif key in VNET_CTX:
                        val = T.get(vn["template"], VNET_CTX[key], "") or ""
                    T.vset(ctx, f"ETH{i}_{key}", val)
        n = letters.get("sd", 0)
        T.vset(ctx, "DISK_ID", str(len(disks_in)))
        T.vset(ctx, "TARGET", T.vget(ctx, "TARGET") or "sd" + chr(ord("a") + n))
        out.append(["CONTEXT", ctx])
    if T.get(out, "OS") is None and not T.get_vec(out, "OS"):
        out.append(["OS", [["MACHINE", "q35"], ["UUID", str(uuid.uuid4())]]])
    groups = sorted({g for nic, vn in nics if vn is not None for g in _groups_of(nic)})
    out += [["SECURITY_GROUP_RULE", rule] for rule in secgroup.take(sim, vid, groups)]
    if hold:
        T.tset(out, "SUBMIT_ON_HOLD", "YES")
    if template_id is not None:
        T.tset(out, "TEMPLATE_ID", str(template_id))
    T.tset(out, "VMID", str(vid))
    return {"template": out, "user_template": user_t}


def _release(sim: Sim, vid: int, images: list, taken: list[dict]) -> None:
    """Give back the images and leases a VM that oned refuses took."""
    for img in images:
        if img is not None:
            refs.release_image(sim, img["id"], vid)
    for vn in taken:
        leases.free_vm(vn, vid)


def _groups_of(nic: list) -> list[int]:
    return [int(g) for g in (T.vget(nic, "SECURITY_GROUPS") or "").split(",") if g]


def nic_attributes(vn: dict, ar: dict, ip: str, mac: str, vid: int, nic_id: int) -> list:
    """The attributes oned puts in a leased NIC (sorted, as oned's template is)."""
    return [
        ["AR_ID", str(ar["ar_id"])],
        ["BRIDGE", vn["bridge"]],
        ["BRIDGE_TYPE", vn["bridge_type"]],
        ["CLUSTER_ID", "0"],
        ["IP", ip],
        ["MAC", mac],
        ["NAME", f"NIC{nic_id}"],
        ["NETWORK", vn["name"]],
        ["NETWORK_ID", str(vn["id"])],
        ["NIC_ID", str(nic_id)],
        ["SECURITY_GROUPS", "0"],
        ["TARGET", f"one-{vid}-{nic_id}"],
        ["VN_MAD", vn["vn_mad"]],
    ]
