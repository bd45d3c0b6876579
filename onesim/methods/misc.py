"""one.system.*, one.datastore.*, one.host.*"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import docs, errors
from ..core import method
from ..perms import allowed

if TYPE_CHECKING:
    from ..core import Sim
    from ..perms import Caller

from .. import ONE_VERSION as VERSION


@method("one.system.version", "")
def version(sim: Sim, caller: Caller) -> str:
    return VERSION


@method("one.system.config", "")
def config(sim: Sim, caller: Caller) -> str:
    return docs.system_config(caller.admin)


@method("one.datastore.info", "ib", 1)
def datastore_info(sim: Sim, caller: Caller, oid: int, decrypt: bool = False) -> str:
    return docs.datastore(sim, sim.get_auth(caller, "datastore", oid, "USE"))


@method("one.datastorepool.info", "")
def datastore_pool(sim: Sim, caller: Caller) -> str:
    dss = [
        d for d in sim.store.all("datastore") if allowed(caller, d, "datastore", "USE", sim.acls)
    ]
    dss.sort(key=lambda d: d["id"], reverse=True)
    return "<DATASTORE_POOL>" + "".join(docs.datastore(sim, d) for d in dss) + "</DATASTORE_POOL>"


def new_host(sim: Sim, name: str, im_mad: str = "dummy", vm_mad: str = "dummy") -> int:
    if any(h["name"] == name for h in sim.store.all("host")):
        taken = [h["id"] for h in sim.store.all("host") if h["name"] == name][0]
        raise errors.allocate_error("host", f"NAME is already taken by HOST {taken}.")
    hid = sim.store.new_id("host")
    sim.store.put(
        "host",
        {
            "id": hid,
            "uid": 0,
            "gid": 0,
            "name": name,
            "im_mad": im_mad,
            "vm_mad": vm_mad,
            "perms": [1, 1, 0, 0, 0, 0, 0, 0, 0],
            "template": [["IM_MAD", im_mad], ["VM_MAD", vm_mad]],
        },
    )
    return hid


@method("one.host.allocate", "sssi", 3)
def host_allocate(
    sim: Sim, caller: Caller, name: str, im_mad: str, vm_mad: str, cluster: int = -1
) -> int:
    if not caller.admin:
        raise errors.not_authorized_create(caller.uid, "host")
    return new_host(sim, name, im_mad, vm_mad)


@method("one.host.info", "ib", 1)
def host_info(sim: Sim, caller: Caller, oid: int, decrypt: bool = False) -> str:
    return docs.host(sim, sim.get_auth(caller, "host", oid, "USE"))


@method("one.hostpool.info", "")
def host_pool(sim: Sim, caller: Caller) -> str:
    hs = [h for h in sim.store.all("host") if allowed(caller, h, "host", "USE", sim.acls)]
    hs.sort(key=lambda h: h["id"], reverse=True)
    return "<HOST_POOL>" + "".join(docs.host(sim, h) for h in hs) + "</HOST_POOL>"
