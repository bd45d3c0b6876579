"""First-start bootstrap (as oned does it) and the optional demo cloud.

Bootstrap: groups ``oneadmin`` (0) and ``users`` (1); users ``oneadmin`` (0, core) and
``serveradmin`` (1, server_cipher) with random passwords written to ``DIR/.one/one_auth`` and
``DIR/.one/ec2_auth`` (mode 0600); datastores ``system`` (0), ``default`` (1), ``files`` (2).

Demo (``seed="demo"``): user ``demo``/``demo`` (2, group users), host ``host01`` (0), network
``private`` (0, group users, USE for the group, 10.0.0.2-10.0.0.251), network ``elastic-ips``
(1, oneadmin only, 16 ARs of SIZE 1: 198.51.100.1-16), image ``ttylinux`` (0, owned by demo,
datastore 1, READY) and VM template ``m1.small`` (0, EC2_INSTANCE_TYPE=m1.small, USE for
group users).
"""

from __future__ import annotations

import os
import secrets

from . import template as T
from .auth import sha256_hex
from .core import Sim
from .methods import secgroup
from .methods.misc import new_host
from .methods.tmpl import new_template
from .methods.user import new_group, new_user
from .methods.vnet import new_vnet

ADMIN_PERMS = [1, 1, 0, 0, 0, 0, 0, 0, 0]
GROUP_USE = [1, 1, 0, 1, 0, 0, 0, 0, 0]


def _write_secret(path: str, line: str) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(line + "\n")
    os.chmod(path, 0o600)


def _datastore(sim: Sim, oid: int, name: str, dtype: int) -> None:
    tmpl = [
        ["ALLOW_ORPHANS", "NO"],
        ["DISK_TYPE", "FILE"],
        ["DS_MAD", "dummy"],
        ["PERSISTENT_SNAPSHOTS", "YES"],
        ["RESTRICTED_DIRS", "/"],
        ["SAFE_DIRS", "/var/tmp"],
        ["TM_MAD", "dummy"],
        ["TYPE", ("IMAGE_DS", "SYSTEM_DS", "FILE_DS")[dtype]],
    ]
    if dtype == 0:
        tmpl += [["CLONE_TARGET", "SYSTEM"], ["LN_TARGET", "NONE"]]
    if dtype == 1:
        T.tset(tmpl, "DS_MAD", "-")
        tmpl += [
            ["DS_LIVE_MIGRATE", "YES"],
            ["DS_MIGRATE", "YES"],
            ["DS_MIGRATE_SNAP", "YES"],
            ["SHARED", "YES"],
        ]
        tmpl = [p for p in tmpl if p[0] != "DS_MAD"]
    sim.store.put(
        "datastore",
        {
            "id": oid,
            "uid": 0,
            "gid": 0,
            "name": name,
            "perms": [1, 1, 0, 1, 0, 0, 0, 0, 0],
            "type": dtype,
            "ds_mad": "-" if dtype == 1 else "dummy",
            "tm_mad": "dummy",
            "total_mb": 20480,
            "template": tmpl,
        },
    )
    sim.store.set_meta("next_datastore", 3)


def bootstrap(sim: Sim, seed: str | None = "demo") -> tuple[str, str]:
    """Create the initial objects on first start; return (one_auth, ec2_auth) lines."""
    one_dir = os.path.join(sim.state_dir, ".one")
    if sim.store.get("user", 0) is None:
        new_group(sim, "oneadmin", 0)
        new_group(sim, "users", 1)
        sim.store.set_meta("next_group", 100)
        admin_pw = secrets.token_hex(16)
        server_pw = secrets.token_hex(16)
        new_user(sim, "oneadmin", admin_pw, "core", [0], uid=0)
        # oned stores sha256(password) for serveradmin; the driver keys on its first 32 chars
        new_user(sim, "serveradmin", sha256_hex(server_pw), "server_cipher", [0], uid=1)
        sim.store.set_meta("next_user", 2)
        sim.store.set_meta(
            "secrets", {"one_auth": f"oneadmin:{admin_pw}", "ec2_auth": f"serveradmin:{server_pw}"}
        )
        for oid, name, dtype in ((0, "system", 1), (1, "default", 0), (2, "files", 2)):
            _datastore(sim, oid, name, dtype)
        # users-group defaults (oned's default VDC): use datastores and hosts of cluster 0
        sim.store.set_meta("acls", [[1, ["datastore", "host"], ["USE"]]])
        secgroup.bootstrap(sim)
        if seed == "demo":
            demo(sim)
    secgroup.bootstrap(sim)  # a state directory from before onesim had security groups
    sec = sim.store.meta["secrets"]
    _write_secret(os.path.join(one_dir, "one_auth"), sec["one_auth"])
    _write_secret(os.path.join(one_dir, "ec2_auth"), sec["ec2_auth"])
    return sec["one_auth"], sec["ec2_auth"]


def demo(sim: Sim) -> None:
    new_user(sim, "demo", "demo", "core", [1])
    new_host(sim, "host01")
    new_vnet(
        sim,
        0,
        1,
        T.parse(
            'NAME="private"\nVN_MAD="dummy"\nBRIDGE="br0"\nDNS="10.0.0.1"\nGATEWAY="10.0.0.1"\n'
            'NETWORK_ADDRESS="10.0.0.0"\nNETWORK_MASK="255.255.255.0"\n'
            'DESCRIPTION="demo private network"\nAR=[TYPE="IP4", IP="10.0.0.2", SIZE="250"]\n'
        ),
        perms=list(GROUP_USE),
    )
    eips = 'NAME="elastic-ips"\nVN_MAD="dummy"\nBRIDGE="br1"\nDESCRIPTION="demo elastic IPs"\n'
    eips += "".join(f'AR=[TYPE="IP4", IP="198.51.100.{i}", SIZE="1"]\n' for i in range(1, 17))
    new_vnet(sim, 0, 0, T.parse(eips), perms=list(ADMIN_PERMS))
    img_dir = os.path.join(sim.state_dir, "images")
    os.makedirs(img_dir, exist_ok=True)
    path = os.path.join(img_dir, "ttylinux.img")
    with open(path, "wb") as f:
        f.truncate(40 * 1024 * 1024)  # sparse 40 MB file
    now = sim.now()
    sim.store.put(
        "image",
        {
            "id": 0,
            "uid": 2,
            "gid": 1,
            "perms": [1, 1, 0, 0, 0, 0, 0, 0, 0],
            "name": "ttylinux",
            "type": 0,
            "persistent": 0,
            "regtime": now,
            "modtime": now,
            "source": "dummy_path",
            "path": path,
            "format": "dummy_format",
            "size": 40,
            "state": 1,
            "prev_state": 1,
            "ds_id": 1,
            "vms": [],
            "steps": [],
            # Registered as an AMI, so the demo can launch it at once (RegisterImage sets the same).
            "template": [
                ["DESCRIPTION", "ttylinux demo image"],
                ["DEV_PREFIX", "sd"],
                ["EC2_AMI", "YES"],
            ],
        },
    )
    sim.store.set_meta("next_image", 1)
    new_template(
        sim,
        0,
        1,
        T.parse(
            'NAME="m1.small"\nEC2_INSTANCE_TYPE="m1.small"\nCPU="1"\nVCPU="1"\nMEMORY="256"\n'
            'NIC=[NETWORK_ID="0"]\nCONTEXT=[NETWORK="YES"]\n'
            'DESCRIPTION="demo instance type m1.small"\n'
        ),
        perms=list(GROUP_USE),
    )
