"""What oned answers to: its XML-RPC method names, and the document its reads answer with.

The mapping loader refuses a `call:` oned has not (a typo there would start fine, then oned's
"Method not defined" would reach the user as some other error) and an `items`/`item` path
that cannot match the answer's root element (every id NotFound, every list empty).
"""

from __future__ import annotations

# oned's methods by object, `one.<object>.<op>`: the RequestManagerRegistry.addMethod calls of
# OpenNebula/one (src/rm/RequestManager.cc up to 7.0, src/rm/xml-rpc/RequestManagerXRPC.cc
# since 7.2), release-7.4.0 and master; every 6.x method is among them.
_METHODS = {
    "acl": "addrule delrule info",
    "backupjob": "allocate backup cancel chmod chown delete info lock priority rename retry "
    "schedadd scheddelete schedupdate unlock update",
    "cluster": "adddatastore addhost addvnet allocate deldatastore delete delhost delvnet info "
    "optimize plandelete planexecute rename update",
    "datastore": "allocate chmod chown delete enable info rename update",
    "document": "allocate chmod chown clone delete info lock rename unlock update",
    "group": "addadmin allocate deladmin delete info quota update vlan",
    "groupquota": "info update",
    "hook": "allocate delete info lock rename retry unlock update",
    "hooklog": "info",
    "host": "allocate delete info monitoring rename status update",
    "hostpool": "info monitoring",
    "image": "allocate chmod chown chtype clone delete enable info lock persistent rename "
    "restore snapshotdelete snapshotflatten snapshotrevert unlock update",
    "market": "allocate allocatedb chmod chown delete enable info rename update updatedb",
    "marketapp": "allocate allocatedb chmod chown delete dropdb enable info lock rename unlock "
    "update updatedb",
    "secgroup": "allocate chmod chown clone commit delete info rename update",
    "system": "config sql sqlquery version",
    "template": "allocate chmod chown clone delete info instantiate lock rename unlock update",
    "user": "addgroup allocate chauth chgrp delete delgroup enable info login passwd quota update",
    "userquota": "info update",
    "vdc": "addcluster adddatastore addgroup addhost addvnet allocate delcluster deldatastore "
    "delete delgroup delhost delvnet info rename update",
    "vm": "action allocate attach attachnic attachpci attachsg backup backupcancel cancelexec "
    "chmod chown deploy detach detachnic detachpci detachsg diskresize disksaveas "
    "disksnapshotcreate disksnapshotdelete disksnapshotrename disksnapshotrevert exec info lock "
    "migrate monitoring recover rename resize restore retryexec schedadd scheddelete "
    "schedupdate snapshotcreate snapshotdelete snapshotrevert unlock update updateconf "
    "updatenic vmgroupadd vmgroupdel",
    "vmgroup": "allocate chmod chown delete info lock rename roleadd roledelete roleupdate "
    "unlock update",
    "vmpool": "accounting calculateshowback info infoextended infoset monitoring showback",
    "vn": "add_ar allocate chmod chown delete free_ar hold info lock recover release rename "
    "reserve rm_ar unlock update update_ar",
    "vntemplate": "allocate chmod chown clone delete info instantiate lock rename unlock update",
    "vrouter": "allocate attachnic chmod chown delete detachnic info instantiate lock rename "
    "unlock update",
    "zone": "addserver allocate delete delserver enable fedreplicate info raftstatus rename "
    "replicate resetserver update updatedb voterequest",
}
# every other pool has `info` alone
_POOLS = "backupjob cluster datastore document group hook image market marketapp secgroup "
_POOLS += "template user vdc vmgroup vn vntemplate vrouter zone"

ONED_METHODS = frozenset(
    [f"one.{kind}.{op}" for kind, ops in _METHODS.items() for op in ops.split()]
    + [f"one.{kind}pool.info" for kind in _POOLS.split()]
)

# The root element of what `one.<kind>.info` answers; `one.<kind>pool.info*` answers
# <ROOT>_POOL (golden answers: /work/shared/opennebula-golden, onesim/docs.py).
_ROOTS = {
    "vm": "VM",
    "image": "IMAGE",
    "secgroup": "SECURITY_GROUP",
    "vn": "VNET",
    "template": "VMTEMPLATE",
    "user": "USER",
    "group": "GROUP",
    "datastore": "DATASTORE",
    "host": "HOST",
    "cluster": "CLUSTER",
}
# pools holding nothing but their objects (the user and group pools hold QUOTAS too)
_PLAIN_POOLS = {"vm", "image", "secgroup", "vn", "template", "datastore", "host", "cluster"}


def answer_path(method: str) -> tuple[str, ...]:
    """The element names every absolute path into `method`'s answer starts with: (IMAGE,)
    for one.image.info, (IMAGE_POOL, IMAGE) for one.imagepool.info; () when not known."""
    _, kind, op = method.split(".", 2) if method.count(".") == 2 else ("", "", "")
    if not op.startswith("info"):
        return ()
    if kind in _ROOTS:
        return (_ROOTS[kind],)
    base = kind.removesuffix("pool")
    if kind.endswith("pool") and base in _ROOTS:
        pool = f"{_ROOTS[base]}_POOL"
        return (pool, _ROOTS[base]) if base in _PLAIN_POOLS else (pool,)
    return ()
