"""VM documents, in the element order of oned 7.4 (``VirtualMachine::to_xml_extended`` and
``to_xml_short``). Template children are sorted by name; values are CDATA as oned emits them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import template as T
from .perms import perms_xml

if TYPE_CHECKING:
    from .core import Sim

SHORT_DISK = (
    "DISK_ID",
    "DATASTORE",
    "DATASTORE_ID",
    "IMAGE",
    "IMAGE_ID",
    "SIZE",
    "TYPE",
    "CLONE",
    "CLONE_TARGET",
    "LN_TARGET",
    "DISK_SNAPSHOT_TOTAL_SIZE",
)
SHORT_NIC = (
    "IP",
    "IP6",
    "IP6_GLOBAL",
    "IP6_LINK",
    "IP6_ULA",
    "EXTERNAL_IP",
    "MAC",
    "NETWORK",
    "NETWORK_ID",
    "NIC_ID",
    "SECURITY_GROUPS",
)
SHORT_USER = (
    "LABELS",
    "ERROR",
    "SCHED_MESSAGE",
    "SCHED_RANK",
    "SCHED_DS_RANK",
    "SCHED_REQUIREMENTS",
    "SCHED_DS_REQUIREMENTS",
    "USER_PRIORITY",
    "SCHED_ACTION",
)


def _head(sim: Sim, vm: dict) -> str:
    return (
        f"<ID>{vm['id']}</ID><UID>{vm['uid']}</UID><GID>{vm['gid']}</GID>"
        f"<UNAME>{T.esc(sim.uname(vm['uid']))}</UNAME><GNAME>{T.esc(sim.gname(vm['gid']))}</GNAME>"
        f"<NAME>{T.esc(vm['name'])}</NAME>"
    )


def _history_full(vm: dict, h: dict) -> str:
    return (
        f"<HISTORY><OID>{vm['id']}</OID><SEQ>{h['seq']}</SEQ><HOSTNAME>{T.esc(h['hostname'])}"
        f"</HOSTNAME><HID>{h['hid']}</HID><CID>0</CID><STIME>{h['stime']}</STIME>"
        f"<ETIME>{h['etime']}</ETIME><VM_MAD>{T.cdata('dummy')}</VM_MAD>"
        f"<TM_MAD>{T.cdata('dummy')}</TM_MAD><DS_ID>0</DS_ID><PLAN_ID>-1</PLAN_ID>"
        f"<ACTION_ID>0</ACTION_ID><PSTIME>{h['pstime']}</PSTIME><PETIME>{h['petime']}</PETIME>"
        f"<RSTIME>{h['rstime']}</RSTIME><RETIME>{h['retime']}</RETIME>"
        f"<ESTIME>{h['estime']}</ESTIME><EETIME>{h['eetime']}</EETIME>"
        f"<ACTION>{h['action']}</ACTION><UID>{h['uid']}</UID><GID>{h['gid']}</GID>"
        f"<REQUEST_ID>{h['req']}</REQUEST_ID></HISTORY>"
    )


def _history_short(vm: dict, h: dict) -> str:
    return (
        f"<HISTORY><OID>{vm['id']}</OID><SEQ>{h['seq']}</SEQ>"
        f"<HOSTNAME>{T.cdata(h['hostname'])}</HOSTNAME><HID>{h['hid']}</HID><CID>0</CID>"
        f"<DS_ID>0</DS_ID><VM_MAD>{T.cdata('dummy')}</VM_MAD><TM_MAD>{T.cdata('dummy')}</TM_MAD>"
        f"<ACTION>{T.cdata(str(h['action']))}</ACTION></HISTORY>"
    )


def monitoring(vm: dict, now: int) -> str:
    """Dummy-driver style monitoring values, stable per VM."""
    i = vm["id"]
    mem = int(T.get(vm["template"], "MEMORY", "0") or 0) * (400 + i % 300) + 1
    vals = [
        ("CPU", "0"),
        ("DISKRDBYTES", str(100 + i % 900)),
        ("DISKRDIOPS", str(10 + i % 500)),
        ("DISKWRBYTES", str(200 + i % 700)),
        ("DISKWRIOPS", str(20 + i % 600)),
        ("ID", str(i)),
        ("MEMORY", str(mem)),
        ("NETRX", str(2000 + i % 500)),
        ("NETTX", str(2100 + i % 500)),
        ("TIMESTAMP", str(now)),
    ]
    return "<MONITORING>" + "".join(f"<{k}>{T.cdata(v)}</{k}>" for k, v in vals) + "</MONITORING>"


def snapshots(vm: dict) -> str:
    """One ``<SNAPSHOTS>`` block per disk with snapshots (a sorted, CDATA template)."""
    out = []
    for disk_id, snaps in sorted(vm.get("disk_snaps", {}).items(), key=lambda p: int(p[0])):
        body = [
            ["ALLOW_ORPHANS", "NO"],
            ["CURRENT_BASE", "-1"],
            ["DISK_ID", disk_id],
            ["NEXT_SNAPSHOT", str(snaps["next"])],
        ]
        for sn in snaps["list"]:
            vec = [
                ["DATE", str(sn["date"])],
                ["ID", str(sn["id"])],
                ["PARENT", str(sn["parent"])],
                ["SIZE", str(sn["size"])],
            ]
            if sn["name"]:
                vec.append(["NAME", sn["name"]])
            if sn["id"] == snaps["active"]:
                vec.append(["ACTIVE", "YES"])
            if sn["children"]:
                vec.append(["CHILDREN", ",".join(str(c) for c in sn["children"])])
            body.append(["SNAPSHOT", vec])
        out.append(T.render(body, "SNAPSHOTS"))
    return "".join(out)


def full(sim: Sim, vm: dict, extended_pool: bool = False) -> str:
    """``one.vm.info`` body, or (extended_pool) the ``infoextended`` pool body."""
    st, lcm = vm["state"], vm["lcm_state"]
    if extended_pool:
        last_poll, mon = 0, "<MONITORING></MONITORING>"
        hist = vm["history"][-1:]
    else:
        now = sim.now()
        last_poll, mon = now, monitoring(vm, now)
        hist = vm["history"]
    hrec = (
        "<HISTORY_RECORDS>" + "".join(_history_full(vm, h) for h in hist) + "</HISTORY_RECORDS>"
        if hist
        else "<HISTORY_RECORDS/>"
    )
    return (
        "<VM>"
        + _head(sim, vm)
        + perms_xml(vm["perms"])
        + f"<LAST_POLL>{last_poll}</LAST_POLL><STATE>{st}</STATE><LCM_STATE>{lcm}</LCM_STATE>"
        f"<PREV_STATE>{st}</PREV_STATE><PREV_LCM_STATE>{lcm}</PREV_LCM_STATE>"
        f"<RESCHED>{vm['resched']}</RESCHED><STIME>{vm['stime']}</STIME>"
        f"<ETIME>{vm['etime']}</ETIME><DEPLOY_ID>{T.esc(vm['deploy_id'])}</DEPLOY_ID>"
        + mon
        + "<SCHED_ACTIONS></SCHED_ACTIONS>"
        + T.render(vm["template"])
        + T.render(vm["user_template"], "USER_TEMPLATE")
        + hrec
        + snapshots(vm)
        + "<BACKUPS><BACKUP_CONFIG/><BACKUP_IDS></BACKUP_IDS></BACKUPS></VM>"
    )


def _short_vec(name: str, vec: list, keys: tuple) -> str:
    d = {}
    for k, v in vec:
        d.setdefault(k, v)
    body = "".join(f"<{k}>{T.cdata(d[k])}</{k}>" for k in keys if k in d)
    return f"<{name}>{body}</{name}>"


def short(sim: Sim, vm: dict) -> str:
    """``one.vmpool.info`` body (``to_xml_short``)."""
    t = vm["template"]
    parts = []
    for k in ("CPU", "MEMORY", "VCPU"):
        v = T.get(t, k)
        if v is not None:
            parts.append(f"<{k}>{T.esc(v)}</{k}>")
    for k, v in t:
        if k == "DISK" and isinstance(v, list):
            parts.append(_short_vec("DISK", v, SHORT_DISK))
    for k, v in t:
        if k in ("NIC", "NIC_ALIAS") and isinstance(v, list):
            parts.append(_short_vec(k, v, SHORT_NIC))
    for v in T.get_vec(t, "GRAPHICS")[:1]:
        parts.append(T.render_vec("GRAPHICS", v))
    ut = [p for p in vm["user_template"] if p[0] in SHORT_USER]
    ut_xml = T.render(ut, "USER_TEMPLATE") if ut else "<USER_TEMPLATE/>"
    hist = vm["history"][-1:]
    hrec = (
        "<HISTORY_RECORDS>" + _history_short(vm, hist[0]) + "</HISTORY_RECORDS>"
        if hist
        else "<HISTORY_RECORDS/>"
    )
    return (
        "<VM>" + _head(sim, vm) + f"<LAST_POLL>0</LAST_POLL><STATE>{vm['state']}</STATE>"
        f"<LCM_STATE>{vm['lcm_state']}</LCM_STATE><RESCHED>{vm['resched']}</RESCHED>"
        f"<STIME>{vm['stime']}</STIME><ETIME>{vm['etime']}</ETIME>"
        f"<DEPLOY_ID>{T.esc(vm['deploy_id'])}</DEPLOY_ID>"
        + "<TEMPLATE>"
        + "".join(parts)
        + "</TEMPLATE><MONITORING/>"
        + ut_xml
        + hrec
        + "</VM>"
    )


def pool_body(sim: Sim, vm: dict, extended: bool) -> str:
    """The pool body of ``vm``, already escaped for the XML-RPC string (cached)."""
    variant = "ext" if extended else "short"
    xml = sim.store.cached("vm", vm["id"], variant)
    if xml is None:
        xml = T.xmlrpc_escape(full(sim, vm, True) if extended else short(sim, vm))
        sim.store.remember("vm", vm["id"], variant, xml)
    return xml


def warm(sim: Sim, vm: dict) -> None:
    """Render both pool bodies ahead of the next pool call."""
    pool_body(sim, vm, False)
    pool_body(sim, vm, True)
