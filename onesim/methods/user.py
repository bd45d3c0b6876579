"""one.user.*, one.userpool.info, one.group.info, one.grouppool.info"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .. import docs, errors
from ..auth import sha256_hex
from ..core import method
from ..perms import authorize
from .common import name_error, parse, update_template

if TYPE_CHECKING:
    from ..core import Sim
    from ..perms import Caller

USER_INVALID_CHARS = " :\t\n\v\f\r"

MAX_TOKENS = 10


def new_user(
    sim: Sim,
    name: str,
    password: str,
    driver: str = "core",
    gids: list | None = None,
    uid: int | None = None,
) -> int:
    bad = name_error(name, USER_INVALID_CHARS)
    if bad:
        raise errors.allocate_error("user", bad + ".")
    if sim.user_by_name(name) is not None:
        taken = sim.user_by_name(name)["id"]
        raise errors.allocate_error("user", f"NAME is already taken by USER {taken}.")
    driver = driver or "core"
    gids = list(gids) if gids else [1]
    if any(sim.store.get("group", g) is None for g in gids):
        raise errors.allocate_error(
            "user", "The array of groups needs to have at least a valid Group ID."
        )
    oid = sim.store.new_id("user") if uid is None else uid
    u = {
        "id": oid,
        "uid": oid,
        "gid": gids[0],
        "groups": gids,
        "name": name,
        "password": sha256_hex(password) if driver == "core" else password,
        "auth_driver": driver,
        "enabled": True,
        "tokens": [],
        "perms": [1, 1, 0, 0, 0, 0, 0, 0, 0],
        "template": [["TOKEN_PASSWORD", sha256_hex(os.urandom(16).hex())]],
    }
    sim.store.put("user", u)
    return oid


@method("one.user.allocate", "sssA", 3)
def allocate(
    sim: Sim, caller: Caller, name: str, password: str, driver: str, gids: list = ()
) -> int:
    if not caller.admin:
        raise errors.not_authorized_create(caller.uid, "user")
    return new_user(sim, name, password, driver, [int(g) for g in gids] or None)


@method("one.user.info", "ib", 1)
def info(sim: Sim, caller: Caller, oid: int, decrypt: bool = False) -> str:
    u = sim.get_auth(caller, "user", caller.uid if oid == -1 else oid, "USE")
    return docs.user(sim, u)


@method("one.userpool.info", "")
def pool_info(sim: Sim, caller: Caller) -> str:
    users = [u for u in sim.store.all("user") if caller.admin or u["id"] == caller.uid]
    users.sort(key=lambda u: u["id"], reverse=True)
    index = docs.owned(sim)
    return (
        "<USER_POOL>"
        + "".join(docs.user_pool_entry(sim, u, index) for u in users)
        + "<DEFAULT_USER_QUOTAS>"
        + docs.QUOTA_EMPTY
        + "</DEFAULT_USER_QUOTAS></USER_POOL>"
    )


@method("one.user.passwd", "is")
def passwd(sim: Sim, caller: Caller, oid: int, password: str) -> int:
    u = sim.get_auth(caller, "user", oid, "MANAGE")
    u["password"] = sha256_hex(password) if u["auth_driver"] == "core" else password
    sim.sessions = {k: v for k, v in sim.sessions.items() if v[0] != oid}
    sim.store.put("user", u)
    return oid


@method("one.user.chauth", "iss", 2)
def chauth(sim: Sim, caller: Caller, oid: int, driver: str, password: str = "") -> int:
    u = sim.get_auth(caller, "user", oid, "ADMIN")
    u["auth_driver"] = driver or u["auth_driver"]
    if password:
        u["password"] = sha256_hex(password) if u["auth_driver"] == "core" else password
    sim.sessions = {k: v for k, v in sim.sessions.items() if v[0] != oid}
    sim.store.put("user", u)
    return oid


@method("one.user.enable", "ib")
def enable(sim: Sim, caller: Caller, oid: int, flag: bool) -> int:
    u = sim.get_auth(caller, "user", oid, "ADMIN")
    u["enabled"] = bool(flag)
    sim.store.put("user", u)
    return oid


@method("one.user.update", "isi", 2)
def update(sim: Sim, caller: Caller, oid: int, tmpl: str, append: int = 0) -> int:
    u = sim.get_auth(caller, "user", oid, "MANAGE")
    update_template(u, "template", tmpl, append)
    sim.store.put("user", u)
    return oid


@method("one.user.login", "ssii", 3)
def login(sim: Sim, caller: Caller, username: str, token: str, valid: int, egid: int = -1) -> str:
    if valid < -1:
        raise errors.api("Wrong valid period for token")
    u = sim.user_by_name(username)
    if u is None:
        raise errors.no_exists("user", -1)
    authorize(caller, u, "user", "MANAGE", sim.acls)
    now = sim.now()
    toks = list(u.get("tokens", []))
    if valid == 0:  # reset one token, or all of them
        if not token:
            toks = []
        elif any(t["token"] == token for t in toks):
            toks = [t for t in toks if t["token"] != token]
        else:
            raise errors.api(f"Could not find token: {token}")
        u["tokens"] = toks
        sim.sessions = {k: v for k, v in sim.sessions.items() if v[0] != u["id"]}
        sim.store.put("user", u)
        return token
    if egid != -1 and not caller.admin and (egid not in u["groups"] or egid not in caller.groups):
        raise errors.api("EGID is not in user group list")
    if egid == -1 and sorted(u["groups"]) != sorted(caller.groups):
        raise errors.api("Cannot create a full token with a specific group token")
    toks = [t for t in toks if t["expire"] == -1 or t["expire"] > now]  # reset_expired()
    if len(toks) >= MAX_TOKENS:
        raise errors.api("Max number of tokens limit reached.")
    token = token or sha256_hex(os.urandom(32).hex())
    if not any(t["token"] == token for t in toks):  # std::map insert keeps an existing key
        toks.append({"token": token, "expire": -1 if valid == -1 else now + valid, "egid": egid})
    u["tokens"] = toks
    sim.store.put("user", u)
    return token


@method("one.group.info", "ib", 1)
def group_info(sim: Sim, caller: Caller, gid: int, decrypt: bool = False) -> str:
    gid = caller.gid if gid == -1 else gid
    g = sim.get("group", gid)
    if not caller.admin and gid not in caller.groups:
        raise errors.not_authorized(caller.uid, "USE", "group", gid)
    return docs.group(sim, g)


@method("one.grouppool.info", "")
def group_pool(sim: Sim, caller: Caller) -> str:
    gs = [g for g in sim.store.all("group") if caller.admin or g["id"] in caller.groups]
    gs.sort(key=lambda g: g["id"], reverse=True)
    return (
        "<GROUP_POOL>"
        + "".join(docs.group(sim, g, pool=True) for g in gs)
        + "<DEFAULT_GROUP_QUOTAS>"
        + docs.QUOTA_EMPTY
        + "</DEFAULT_GROUP_QUOTAS></GROUP_POOL>"
    )


def new_group(sim: Sim, name: str, gid: int | None = None) -> int:
    oid = sim.store.new_id("group", 100) if gid is None else gid
    sim.store.put(
        "group",
        {
            "id": oid,
            "uid": 0,
            "gid": oid,
            "name": name,
            "template": [],
            "perms": [1, 1, 0, 0, 0, 0, 0, 0, 0],
        },
    )
    return oid


@method("one.group.allocate", "s")
def group_allocate(sim: Sim, caller: Caller, name: str) -> int:
    if not caller.admin:
        raise errors.not_authorized_create(caller.uid, "group")
    if any(g["name"] == name for g in sim.store.all("group")):
        raise errors.allocate_error("group", "NAME is already taken by GROUP.")
    parse("")  # groups take no template at allocation
    return new_group(sim, name)
