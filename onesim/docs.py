"""XML documents for users, groups, images, networks, templates, datastores and hosts, in the
element order of oned 7.4's ``to_xml`` routines (checked against the golden responses)."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from . import template as T
from .perms import perms_xml

if TYPE_CHECKING:
    from .core import Sim

QUOTA_EMPTY = (
    "<DATASTORE_QUOTA></DATASTORE_QUOTA><NETWORK_QUOTA></NETWORK_QUOTA>"
    "<VM_QUOTA></VM_QUOTA><IMAGE_QUOTA></IMAGE_QUOTA>"
)


def _c(v: object) -> str:
    return T.cdata(str(v))


def _head(sim: Sim, o: dict) -> str:
    return (
        f"<ID>{o['id']}</ID><UID>{o['uid']}</UID><GID>{o['gid']}</GID>"
        f"<UNAME>{T.esc(sim.uname(o['uid']))}</UNAME><GNAME>{T.esc(sim.gname(o['gid']))}</GNAME>"
        f"<NAME>{T.esc(o['name'])}</NAME>" + perms_xml(o["perms"])
    )


def _ids(tag: str, ids) -> str:
    return f"<{tag}>" + "".join(f"<ID>{i}</ID>" for i in ids) + f"</{tag}>"


# ---------------------------------------------------------------------------- users & groups


def owned(sim: Sim) -> dict[int, tuple[list, list]]:
    """uid -> (images, VMs) in one pass (for pools of users)."""
    out: dict[int, tuple[list, list]] = {}
    for img in sim.store.all("image"):
        out.setdefault(img["uid"], ([], []))[0].append(img)
    for vm in sim.store.all("vm"):
        out.setdefault(vm["uid"], ([], []))[1].append(vm)
    return out


def quotas(sim: Sim, uid: int, index: dict | None = None) -> str:
    """Usage counters as oned keeps them (limits are -1, i.e. default/unlimited).

    oned updates its counters as objects change; here they are summed over the user's VMs and
    images, once per change of the store (a 10,000-VM user's one.user.info took ~150 ms)."""
    key = ("quotas", uid)
    hit = sim.store.derived.get(key)
    if hit is None:
        hit = sim.store.derived[key] = _usage(sim, uid, index)
    return hit


def _usage(sim: Sim, uid: int, index: dict | None) -> str:
    if index is None:
        index = {
            uid: (
                [i for i in sim.store.all("image") if i["uid"] == uid],
                [v for v in sim.store.all("vm") if v["uid"] == uid],
            )
        }
    my_images, my_vms = index.get(uid, ([], []))
    ds: dict[int, list[int]] = {}
    for img in my_images:
        if img["state"] != 7:
            d = ds.setdefault(img["ds_id"], [0, 0])
            d[0] += 1
            d[1] += img["size"]
    nets: dict[int, int] = {}
    imgs: dict[int, int] = {}
    cpu = mem = vms = sysdisk = 0.0
    for vm in my_vms:
        if vm["state"] == 6:
            continue
        vms += 1
        cpu += float(T.get(vm["template"], "CPU", "0") or 0)
        mem += int(T.get(vm["template"], "MEMORY", "0") or 0)
        for nic in T.get_vec(vm["template"], "NIC"):
            nid = int(T.vget(nic, "NETWORK_ID", "-1"))
            nets[nid] = nets.get(nid, 0) + 1
        for disk in T.get_vec(vm["template"], "DISK"):
            if T.vget(disk, "IMAGE_ID") is not None:
                iid = int(T.vget(disk, "IMAGE_ID"))
                imgs[iid] = imgs.get(iid, 0) + 1
            sysdisk += int(T.vget(disk, "SIZE", "0") or 0)
    out = ["<DATASTORE_QUOTA>"]
    for i, (n, size) in sorted(ds.items()):
        out.append(
            f"<DATASTORE><ID>{_c(i)}</ID><IMAGES>{_c(-1)}</IMAGES><IMAGES_USED>{_c(n)}"
            f"</IMAGES_USED><SIZE>{_c(-1)}</SIZE><SIZE_USED>{_c(size)}</SIZE_USED>"
            "</DATASTORE>"
        )
    out.append("</DATASTORE_QUOTA><NETWORK_QUOTA>")
    for i, n in sorted(nets.items()):
        out.append(
            f"<NETWORK><ID>{_c(i)}</ID><LEASES>{_c(-1)}</LEASES><LEASES_USED>{_c(n)}"
            "</LEASES_USED></NETWORK>"
        )
    out.append("</NETWORK_QUOTA><VM_QUOTA>")
    if vms:
        vals = {
            "CPU": f"{cpu:.2f}",
            "MEMORY": str(int(mem)),
            "PCI_DEV": "0",
            "PCI_NIC": "0",
            "RUNNING_CPU": f"{cpu:.2f}",
            "RUNNING_MEMORY": str(int(mem)),
            "RUNNING_PCI_DEV": "0",
            "RUNNING_PCI_NIC": "0",
            "RUNNING_VMS": str(int(vms)),
            "SYSTEM_DISK_SIZE": str(int(sysdisk)),
            "VMS": str(int(vms)),
        }
        out.append(
            "<VM>"
            + "".join(f"<{k}>{_c(-1)}</{k}><{k}_USED>{_c(v)}</{k}_USED>" for k, v in vals.items())
            + "</VM>"
        )
    out.append("</VM_QUOTA><IMAGE_QUOTA>")
    for i, n in sorted(imgs.items()):
        out.append(
            f"<IMAGE><ID>{_c(i)}</ID><RVMS>{_c(-1)}</RVMS><RVMS_USED>{_c(n)}</RVMS_USED></IMAGE>"
        )
    out.append("</IMAGE_QUOTA>")
    return "".join(out)


def user(sim: Sim, u: dict, extended: bool = True) -> str:
    toks = "".join(
        f"<LOGIN_TOKEN><TOKEN>{t['token']}</TOKEN><EXPIRATION_TIME>{t['expire']}"
        f"</EXPIRATION_TIME><EGID>{t['egid']}</EGID></LOGIN_TOKEN>"
        for t in sorted(u.get("tokens", []), key=lambda t: t["token"])
    )
    body = (
        f"<ID>{u['id']}</ID><GID>{u['gid']}</GID>"
        + _ids("GROUPS", sorted(u["groups"]))
        + f"<GNAME>{T.esc(sim.gname(u['gid']))}</GNAME><NAME>{T.esc(u['name'])}</NAME>"
        f"<PASSWORD>{_c(u['password'])}</PASSWORD><AUTH_DRIVER>{_c(u['auth_driver'])}"
        f"</AUTH_DRIVER><ENABLED>{1 if u['enabled'] else 0}</ENABLED>"
        + toks
        + T.render(u["template"])
    )
    if extended:
        body += (
            quotas(sim, u["id"]) + "<DEFAULT_USER_QUOTAS>" + QUOTA_EMPTY + "</DEFAULT_USER_QUOTAS>"
        )
    return "<USER>" + body + "</USER>"


def user_pool_entry(sim: Sim, u: dict, index: dict | None = None) -> str:
    quota = quotas(sim, u["id"], index)
    return user(sim, u, False) + f"<QUOTAS><ID>{u['id']}</ID>" + quota + "</QUOTAS>"


def group(sim: Sim, g: dict, pool: bool = False) -> str:
    users = sorted(u["id"] for u in sim.store.all("user") if g["id"] in u["groups"])
    head = (
        f"<GROUP><ID>{g['id']}</ID><NAME>{T.esc(g['name'])}</NAME>"
        + T.render(g["template"])
        + _ids("USERS", users)
        + "<ADMINS></ADMINS>"
    )
    vlan = f"<VLAN_RULES><ID>{g['id']}</ID></VLAN_RULES>"
    if pool:
        return head + f"</GROUP><QUOTAS><ID>{g['id']}</ID>{QUOTA_EMPTY}</QUOTAS>" + vlan
    return (
        head
        + QUOTA_EMPTY
        + vlan
        + "<DEFAULT_GROUP_QUOTAS>"
        + QUOTA_EMPTY
        + "</DEFAULT_GROUP_QUOTAS></GROUP>"
    )


# ---------------------------------------------------------------------------- images


def image(sim: Sim, img: dict) -> str:
    ds = sim.store.get("datastore", img["ds_id"])
    return (
        "<IMAGE>" + _head(sim, img) + f"<TYPE>{img['type']}</TYPE><DISK_TYPE>0</DISK_TYPE>"
        f"<PERSISTENT>{img['persistent']}</PERSISTENT><REGTIME>{img['regtime']}</REGTIME>"
        f"<MODTIME>{img['modtime']}</MODTIME><SOURCE>{_c(img['source'])}</SOURCE>"
        f"<PATH>{_c(img['path'])}</PATH><FORMAT>{_c(img['format'])}</FORMAT><FS>{_c('')}</FS>"
        f"<SIZE>{img['size']}</SIZE><STATE>{img['state']}</STATE>"
        f"<PREV_STATE>{img['prev_state']}</PREV_STATE><RUNNING_VMS>{len(img['vms'])}"
        f"</RUNNING_VMS><CLONING_OPS>{len(img.get('clones', []))}</CLONING_OPS>"
        f"<CLONING_ID>{img.get('cloning_id', -1)}</CLONING_ID>"
        f"<TARGET_SNAPSHOT>-1</TARGET_SNAPSHOT><DATASTORE_ID>{img['ds_id']}</DATASTORE_ID>"
        f"<DATASTORE>{T.esc(ds['name'] if ds else '')}</DATASTORE>"
        + _ids("VMS", sorted(img["vms"]))
        + _ids("CLONES", sorted(img.get("clones", [])))
        + "<APP_CLONES></APP_CLONES>"
        + T.render(img["template"])
        + f"<SNAPSHOTS><ALLOW_ORPHANS>{_c('NO')}</ALLOW_ORPHANS><CURRENT_BASE>{_c(-1)}"
        f"</CURRENT_BASE><NEXT_SNAPSHOT>{_c(0)}</NEXT_SNAPSHOT></SNAPSHOTS>"
        "<BACKUP_INCREMENTS></BACKUP_INCREMENTS><BACKUP_DISK_IDS></BACKUP_DISK_IDS></IMAGE>"
    )


# ---------------------------------------------------------------------------- networks


def _ip_int(ip: str) -> int:
    return int(ipaddress.IPv4Address(ip.strip()))


def ip_str(n: int) -> str:
    return f"{n >> 24 & 255}.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


def mac_for(ip: int) -> str:
    return "02:00:" + ":".join(f"{ip >> s & 255:02x}" for s in (24, 16, 8, 0))


def ar_attrs(ar: dict, pool: bool) -> list:
    attrs = [
        ["AR_ID", str(ar["ar_id"])],
        ["IP", ar["ip"]],
        ["MAC", ar["mac"]],
        ["NEXT_INDEX", str(ar["next_index"])],
        ["SHARED", "NO"],
        ["SIZE", str(ar["size"])],
        ["TYPE", ar["type"]],
    ] + ar.get("attrs", [])
    if pool and ar.get("allocated_ever"):
        alloc = "".join(
            f" {i} {0x1000000000 | (v & 0xFFFFFFFF)}"
            for i, v in sorted(ar["leases"].items(), key=lambda p: int(p[0]))
        )
        attrs.append(["ALLOCATED", alloc])
    return attrs


def _ar(ar: dict, pool: bool, vms: set | None = None) -> str:
    body = T.render_body(ar_attrs(ar, pool))
    if not pool:
        start = _ip_int(ar["ip"])
        end = start + ar["size"] - 1
        leases = "".join(
            f"<LEASE><IP>{_c(ip_str(start + int(i)))}</IP><MAC>{_c(mac_for(start + int(i)))}</MAC>"
            f"<VM>{_c(v)}</VM></LEASE>"
            for i, v in sorted(ar["leases"].items(), key=lambda p: int(p[0]))
            if vms is None or v in vms
        )
        body += (
            f"<MAC_END>{_c(mac_for(end))}</MAC_END><IP_END>{_c(ip_str(end))}</IP_END>"
            f"<USED_LEASES>{len(ar['leases'])}</USED_LEASES>"
            + (f"<LEASES>{leases}</LEASES>" if leases else "<LEASES/>")
        )
    return "<AR>" + body + "</AR>"


def vnet(sim: Sim, vn: dict, pool: bool = False, vms: set | None = None) -> str:
    """``vms``: ids of the VMs the caller may see (None = all); other leases are not listed
    (``AddressRange::to_xml``), held ones (VM -1) only for callers who see every VM."""
    used = sum(len(ar["leases"]) for ar in vn["ars"])
    updated = sorted({v for ar in vn["ars"] for v in ar["leases"].values() if v >= 0})
    return (
        "<VNET>" + _head(sim, vn) + "<CLUSTERS><ID>0</ID></CLUSTERS>"
        f"<BRIDGE>{_c(vn['bridge'])}</BRIDGE><BRIDGE_TYPE>{_c(vn['bridge_type'])}</BRIDGE_TYPE>"
        f"<STATE>{_c(1)}</STATE><PREV_STATE>{_c(1)}</PREV_STATE><PARENT_NETWORK_ID/>"
        f"<TEMPLATE_ID/><VN_MAD>{_c(vn['vn_mad'])}</VN_MAD><PHYDEV/><VLAN_ID/><OUTER_VLAN_ID/>"
        "<VLAN_ID_AUTOMATIC>0</VLAN_ID_AUTOMATIC><OUTER_VLAN_ID_AUTOMATIC>0"
        f"</OUTER_VLAN_ID_AUTOMATIC><USED_LEASES>{used}</USED_LEASES><VROUTERS></VROUTERS>"
        + _ids("UPDATED_VMS", updated)
        + "<OUTDATED_VMS></OUTDATED_VMS><UPDATING_VMS></UPDATING_VMS><ERROR_VMS></ERROR_VMS>"
        + T.render(vn["template"])
        + "<AR_POOL>"
        + "".join(_ar(ar, pool, vms) for ar in vn["ars"])
        + "</AR_POOL></VNET>"
    )


def secgroup(sim: Sim, sg: dict) -> str:
    return (
        "<SECURITY_GROUP>"
        + _head(sim, sg)
        + _ids("UPDATED_VMS", sorted(set(sg["vms"]) - set(sg.get("error_vms", []))))
        + "<OUTDATED_VMS></OUTDATED_VMS><UPDATING_VMS></UPDATING_VMS>"
        + _ids("ERROR_VMS", sorted(sg.get("error_vms", [])))
        + T.render(sg["template"])
        + "</SECURITY_GROUP>"
    )


# ---------------------------------------------------------------------------- templates etc.


def vmtemplate(sim: Sim, t: dict, tmpl: list | None = None) -> str:
    return (
        "<VMTEMPLATE>"
        + _head(sim, t)
        + f"<REGTIME>{t['regtime']}</REGTIME>"
        + T.render(t["template"] if tmpl is None else tmpl)
        + "</VMTEMPLATE>"
    )


def datastore(sim: Sim, ds: dict) -> str:
    imgs = sorted(i["id"] for i in sim.store.all("image") if i["ds_id"] == ds["id"])
    used = sum(i["size"] for i in sim.store.all("image") if i["ds_id"] == ds["id"])
    total = ds["total_mb"]
    base = "/var/lib/one//datastores/" + str(ds["id"])
    return (
        "<DATASTORE>"
        + _head(sim, ds)
        + f"<DS_MAD>{_c(ds['ds_mad'])}</DS_MAD><TM_MAD>{_c(ds['tm_mad'])}</TM_MAD>"
        f"<BASE_PATH>{_c(base)}</BASE_PATH>"
        f"<TYPE>{ds['type']}</TYPE><DISK_TYPE>0</DISK_TYPE><STATE>0</STATE>"
        f"<CLUSTERS><ID>0</ID></CLUSTERS><TOTAL_MB>{total}</TOTAL_MB>"
        f"<FREE_MB>{max(total - used, 0)}</FREE_MB><USED_MB>{used}</USED_MB>"
        + _ids("IMAGES", imgs)
        + T.render(ds["template"])
        + "</DATASTORE>"
    )


def host(sim: Sim, h: dict) -> str:
    """``Host::to_xml``; the share is a fixed dummy host (8 CPUs, 16 GB)."""
    vms = sorted(
        v["id"]
        for v in sim.store.all("vm")
        if v["history"] and v["history"][-1]["hid"] == h["id"] and v["state"] in (3, 5)
    )
    share = (
        "<HOST_SHARE><MEM_USAGE>0</MEM_USAGE><CPU_USAGE>0</CPU_USAGE>"
        "<TOTAL_MEM>16777216</TOTAL_MEM><TOTAL_CPU>800</TOTAL_CPU><MAX_MEM>16777216</MAX_MEM>"
        f"<MAX_CPU>800</MAX_CPU><RUNNING_VMS>{len(vms)}</RUNNING_VMS><VMS_THREAD>1</VMS_THREAD>"
        f"<DATASTORES><DISK_USAGE>{_c(0)}</DISK_USAGE><FREE_DISK>{_c(20480)}</FREE_DISK>"
        f"<MAX_DISK>{_c(20480)}</MAX_DISK><USED_DISK>{_c(0)}</USED_DISK></DATASTORES>"
        "<PCI_DEVICES></PCI_DEVICES><NUMA_NODES></NUMA_NODES></HOST_SHARE>"
    )
    return (
        f"<HOST><ID>{h['id']}</ID><NAME>{T.esc(h['name'])}</NAME><STATE>2</STATE>"
        f"<PREV_STATE>2</PREV_STATE><IM_MAD>{T.esc(h['im_mad'])}</IM_MAD>"
        f"<VM_MAD>{T.esc(h['vm_mad'])}</VM_MAD><CLUSTER_ID>0</CLUSTER_ID><CLUSTER>default</CLUSTER>"
        + share
        + _ids("VMS", vms)
        + T.render(h["template"])
        + "<MONITORING/></HOST>"
    )


SYSTEM_CONFIG = [
    ["ACTION_TIMEOUT", "300"],
    ["API_LIST_ORDER", "DESC"],
    [
        "AUTH_MAD",
        [["AUTHN", "ssh,x509,ldap,server_cipher,server_x509,saml"], ["EXECUTABLE", "one_auth_mad"]],
    ],
    ["DEFAULT_AUTH", "default"],
    ["DEFAULT_UMASK", "177"],
    ["DS_MAD_CONF", [["NAME", "dummy"]]],
    ["LISTEN_ADDRESS", "127.0.0.1"],
    ["MANAGER_TIMER", "15"],
    ["PORT", "2633"],
    ["SESSION_EXPIRATION_TIME", "900"],
    ["VM_SUBMIT_ON_HOLD", "NO"],
    ["VNC_PORTS", [["START", "5900"]]],
]


def system_config(admin: bool) -> str:
    return T.render(SYSTEM_CONFIG if admin else [], "OPENNEBULA_CONFIGURATION")
