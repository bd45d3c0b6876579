"""`econe admin-keys create USER | list [USER] | revoke USER ACCESS_KEY_ID`: per-user EC2 keys.

Users whose OpenNebula password cannot be an EC2 secret (auth drivers ldap, ssh, x509, …) get
EC2 access keys of their own. A key lives in the user's template, one vector per key, which is
what econe.auth.users/authenticator read:

    EC2_ACCESS_KEYS = [ ACCESS_KEY_ID = "AKON…", SECRET = "…", STATUS = "Active",
                        CREATED = "<unix time>", SEAL = "<hmac>" ]

Users may edit their own template, so econe honours an entry only with a valid SEAL (an HMAC
keyed from the server credentials in econe.conf, econe.keyseal); `create` therefore reads
econe.conf (`--config`) as econe-server does.

Verification (HMAC, SigV2 and SigV4) needs the secret itself, so SECRET is stored as issued:
the user template is readable by the user and by oneadmin, as the core password hash that
serves as the EC2 secret of core users is. A revoked key keeps its ACCESS_KEY_ID for the
record, with STATUS = "Inactive", REVOKED = "<unix time>" and no SECRET; its id is also
listed in the server user's template (EC2_REVOKED_ACCESS_KEYS), because the user could write
the old sealed entry back into their own template.

This talks to oned directly with oneadmin's credentials (`--one-auth user:password`, else the
file in $ONE_AUTH, else ~/.one/one_auth) at `--one-xmlrpc` (else the `:one_xmlrpc:` of the
`--config` file, else $ONE_XMLRPC, else http://localhost:2633/RPC2). `one.user.update` in merge mode replaces every EC2_ACCESS_KEYS
vector at once, so each change writes the user's whole key list back (read, change, write);
do not run two admin-keys commands for the same user at the same moment.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import re
import secrets
import sys
import time
import xmlrpc.client
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from lxml import etree

from econe.auth.users import REVOKED_KEYS_ATTR
from econe.client.credentials import CredentialsError, check_url
from econe.keyseal import seal

ATTR = "EC2_ACCESS_KEYS"
KEY_PREFIX = "AKON"  # "Access Key, OpenNebula": 4 + 16 characters, the length of AWS key ids
DEFAULT_XMLRPC = "http://localhost:2633/RPC2"
_SAFE_VALUE = re.compile(r'^[^"\\\n\r]*$')
_KEY_ID = re.compile(r"^[A-Z0-9]{16,128}$")


class AdminKeysError(Exception):
    """A failure to report in one line, with the econe CLI's exit status: 1 (what oned or the
    server refused), 2 (usage: unreadable credentials), 3 (oned unreachable)."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class AccessKey:
    user: str
    access_key_id: str
    status: str
    created: str
    revoked: str = ""


@dataclass(frozen=True)
class NewKey:
    user: str
    access_key_id: str
    secret: str  # shown once, never logged


# ------------------------------------------------------------------------------ oned


class OneAdmin:
    """The few oned calls admin-keys needs, as oneadmin."""

    def __init__(self, url: str, session: str, timeout: float = 30):
        self.url = url
        self._session = session
        try:
            self._proxy = xmlrpc.client.ServerProxy(url, allow_none=True)
        except OSError as exc:  # not an http(s) URL
            raise AdminKeysError(f"--one-xmlrpc {url!r}: {exc}") from None
        self._timeout = timeout

    def __repr__(self) -> str:  # never the session
        return f"OneAdmin({self.url!r})"

    def _call(self, method: str, *args: object) -> object:
        try:
            result = getattr(self._proxy, method)(self._session, *args)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise AdminKeysError(f"cannot reach oned at {self.url}: {reason}", 3) from None
        except (xmlrpc.client.Error, http.client.HTTPException) as exc:
            raise AdminKeysError(f"bad answer from oned at {self.url}: {exc}") from None
        if not result[0]:
            raise AdminKeysError(str(result[1]))
        return result[1]

    def user_pool(self) -> etree._Element:
        return _xml(self._call("one.userpool.info"))

    def user(self, uid: int) -> etree._Element:
        return _xml(self._call("one.user.info", uid, False))

    def merge_template(self, uid: int, template: str) -> None:
        self._call("one.user.update", uid, template, 1)


def _xml(text: object) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
    return etree.fromstring(str(text).encode("utf-8"), parser)


def read_one_auth(value: str | None = None, env: dict[str, str] | None = None) -> str:
    """`user:password` from --one-auth, else the $ONE_AUTH file, else ~/.one/one_auth."""
    if value:
        session = value
    else:
        env = os.environ if env is None else env
        path = Path(env.get("ONE_AUTH") or Path.home() / ".one" / "one_auth")
        try:
            session = path.read_text().strip().splitlines()[0].strip()
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise AdminKeysError(
                f"cannot read oneadmin credentials from {path}: {reason}", 2
            ) from None
        except IndexError:
            raise AdminKeysError(f"{path} is empty: it must hold user:password", 2) from None
    if ":" not in session:
        raise AdminKeysError("oneadmin credentials must have the form user:password", 2)
    return session


# ------------------------------------------------------------------------------ keys


def _entries(user: etree._Element) -> list[dict[str, str]]:
    out = []
    for vector in user.findall(f"TEMPLATE/{ATTR}"):
        out.append(
            {child.tag: (child.text or "") for child in vector if isinstance(child.tag, str)}
        )
    return out


def _render(entries: list[dict[str, str]]) -> str:
    blocks = []
    for entry in entries:
        for name, value in entry.items():
            if not re.match(r"^[A-Z0-9_]+$", name) or not _SAFE_VALUE.match(value):
                raise AdminKeysError(
                    f"{ATTR} holds a value admin-keys cannot rewrite ({name}); fix it by hand"
                )
        body = ",\n  ".join(f'{name} = "{value}"' for name, value in entry.items())
        blocks.append(f"{ATTR} = [\n  {body} ]")
    return "\n".join(blocks) + "\n"


def _find_user(pool: etree._Element, name: str) -> etree._Element:
    users = pool.findall("USER")
    for user in users:
        if user.findtext("NAME") == name:
            return user
    for user in users:
        if name.isdigit() and user.findtext("ID") == name:
            return user
    raise AdminKeysError(f"no OpenNebula user {name!r}")


def _key_ids_in_use(pool: etree._Element) -> set[str]:
    ids = {u.findtext("NAME") or "" for u in pool.findall("USER")}
    for vector in pool.findall(f"USER/TEMPLATE/{ATTR}"):
        ids.add(vector.findtext("ACCESS_KEY_ID") or "")
    return ids


def new_access_key_id() -> str:
    return KEY_PREFIX + base64.b32encode(secrets.token_bytes(10)).decode()[:16]


def new_secret() -> str:
    return secrets.token_urlsafe(30)  # 40 characters, 240 bits


def create_key(one: OneAdmin, user_name: str, seal_key: bytes, now: float | None = None) -> NewKey:
    pool = one.user_pool()
    user = _find_user(pool, user_name)
    uid = int(user.findtext("ID") or -1)
    taken = _key_ids_in_use(pool)
    key_id = new_access_key_id()
    while key_id in taken:
        key_id = new_access_key_id()
    secret = new_secret()
    entries = _entries(one.user(uid))  # fresh, with the whole template
    entry = {
        "ACCESS_KEY_ID": key_id,
        "SECRET": secret,
        "STATUS": "Active",
        "CREATED": str(int(time.time() if now is None else now)),
    }
    entry["SEAL"] = seal(seal_key, uid, entry)  # users can edit their template; not this
    entries.append(entry)
    one.merge_template(uid, _render(entries))
    return NewKey(user.findtext("NAME") or user_name, key_id, secret)


def list_keys(one: OneAdmin, user_name: str | None = None) -> list[AccessKey]:
    pool = one.user_pool()
    users = [_find_user(pool, user_name)] if user_name else pool.findall("USER")
    keys = []
    for user in users:
        if user_name:
            user = one.user(int(user.findtext("ID") or -1))
        for entry in _entries(user):
            keys.append(
                AccessKey(
                    user.findtext("NAME") or "",
                    entry.get("ACCESS_KEY_ID", ""),
                    entry.get("STATUS", "Active") or "Active",
                    entry.get("CREATED", ""),
                    entry.get("REVOKED", ""),
                )
            )
    return keys


def revoke_key(
    one: OneAdmin,
    user_name: str,
    access_key_id: str,
    server_user: str,
    now: float | None = None,
) -> None:
    """Revoke a key: listed first in the server user's template (EC2_REVOKED_ACCESS_KEYS,
    which the user cannot edit: putting the old entry back into their own template does not
    bring the key back), then marked Inactive, without its secret, in the user's."""
    pool = one.user_pool()
    user = _find_user(pool, user_name)
    uid = int(user.findtext("ID") or -1)
    entries = _entries(one.user(uid))
    found = [e for e in entries if e.get("ACCESS_KEY_ID") == access_key_id]
    if not found:
        raise AdminKeysError(f"user {user_name!r} has no access key {access_key_id!r}")
    server = int(_find_user(pool, server_user).findtext("ID") or -1)
    listed = (one.user(server).findtext(f"TEMPLATE/{REVOKED_KEYS_ATTR}") or "").split()
    if access_key_id not in listed:
        one.merge_template(server, f'{REVOKED_KEYS_ATTR}="{" ".join([*listed, access_key_id])}"')
    for entry in found:
        entry.pop("SECRET", None)
        entry["STATUS"] = "Inactive"
        entry.setdefault("REVOKED", str(int(time.time() if now is None else now)))
    one.merge_template(uid, _render(entries))


# ------------------------------------------------------------------------------ CLI


def _when(stamp: str) -> str:
    if not stamp.isdigit():
        return stamp or "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(stamp)))


def add_admin_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `admin-keys {create,list,revoke}` to an argparse sub-parser set; the chosen
    function is `args.admin_keys_func(args, out=…, err=…, env=…) -> exit status`."""
    parser = subparsers.add_parser(
        "admin-keys",
        help="manage per-user EC2 access keys (as oneadmin, talking to oned)",
        description="Create, list and revoke EC2 access keys of OpenNebula users whose "
        "password cannot be an EC2 secret (ldap, ssh, x509 drivers). The secret is printed "
        "once, on create.",
    )
    parser.add_argument(
        "--one-xmlrpc",
        help="oned XML-RPC endpoint (default: --config's :one_xmlrpc:, else $ONE_XMLRPC, "
        f"else {DEFAULT_XMLRPC})",
    )
    parser.add_argument(
        "--config",
        help="econe.conf whose server credentials seal new keys (:ec2_auth: or "
        ":server_x509_auth:; default: the file econe-server would read)",
    )
    parser.add_argument(
        "--one-auth",
        metavar="USER:PASSWORD",
        help="oneadmin credentials (default: the file in $ONE_AUTH, else ~/.one/one_auth; "
        "prefer those: other local users can read a command line)",
    )
    cmds = parser.add_subparsers(dest="admin_keys_command", metavar="ACTION", required=True)
    create = cmds.add_parser("create", help="issue a new key; prints the secret once")
    create.add_argument("user", help="OpenNebula user name (or id)")
    listing = cmds.add_parser("list", help="list keys (never secrets)")
    listing.add_argument("user", nargs="?", help="only this user's keys")
    revoke = cmds.add_parser("revoke", help="deactivate a key and drop its secret")
    revoke.add_argument("user", help="OpenNebula user name (or id)")
    revoke.add_argument("access_key_id", help="the key to revoke")
    parser.set_defaults(admin_keys_func=run_admin_keys)
    return parser


def _server(config_path: str | None) -> Any:
    """econe-server's sessions: the key it checks seals with (derived from its own server
    credentials) and its server user (where revocations are listed)."""
    from econe.config import ConfigError, default_config_path, load_config
    from econe.one.session import SessionConfigError, sessions_from_config

    try:
        config = load_config(config_path or default_config_path())
        return sessions_from_config(config)
    except (ConfigError, SessionConfigError) as exc:
        raise AdminKeysError(f"cannot read the server credentials that seal keys: {exc}") from exc


def _config_xmlrpc(config_path: str | None) -> str | None:
    """The :one_xmlrpc: of the econe.conf given with --config (the oned econe-server uses)."""
    if not config_path:
        return None
    from econe.config import Config, ConfigError, load_config

    try:
        url = load_config(config_path).one_xmlrpc
    except ConfigError as exc:
        raise AdminKeysError(f"--config: {exc}", 2) from None
    return url if url != Config().one_xmlrpc else None  # not set there: $ONE_XMLRPC may say


def run_admin_keys(
    args: argparse.Namespace,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    env: dict[str, str] | None = None,
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    env = dict(os.environ) if env is None else env
    try:
        url = args.one_xmlrpc or _config_xmlrpc(args.config) or env.get("ONE_XMLRPC")
        url = url or DEFAULT_XMLRPC
        try:
            check_url(url)
        except CredentialsError as exc:
            raise AdminKeysError(f"--one-xmlrpc: {exc}", 2) from None
        one = OneAdmin(url, read_one_auth(args.one_auth, env))
        if args.admin_keys_command == "create":
            key = create_key(one, args.user, _server(args.config).seal_key)
            out.write(
                f"user:              {key.user}\n"
                f"access key id:     {key.access_key_id}\n"
                f"secret access key: {key.secret}\n"
                "The secret is shown only now. Use it as AWS_SECRET_ACCESS_KEY with the access "
                "key id as AWS_ACCESS_KEY_ID.\n"
            )
        elif args.admin_keys_command == "list":
            keys = list_keys(one, args.user)
            out.write(f"{'USER':<20} {'ACCESS_KEY_ID':<24} {'STATUS':<9} {'CREATED':<21} REVOKED\n")
            for k in keys:
                out.write(
                    f"{k.user:<20} {k.access_key_id:<24} {k.status:<9} {_when(k.created):<21} "
                    f"{_when(k.revoked) if k.revoked else ''}\n".rstrip()
                    + "\n"
                )
        else:
            if not _KEY_ID.match(args.access_key_id):
                raise AdminKeysError(f"{args.access_key_id!r} is not an access key id")
            revoke_key(one, args.user, args.access_key_id, _server(args.config).srv_user)
            out.write(f"revoked {args.access_key_id} of {args.user}\n")
        out.flush()
        return 0
    except AdminKeysError as exc:
        err.write(f"econe admin-keys: {exc}\n")
        return exc.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m econe.admin_keys …` (the same as `econe admin-keys …`)."""
    parser = argparse.ArgumentParser(prog="econe")
    add_admin_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.admin_keys_func(args)


if __name__ == "__main__":
    sys.exit(main())
