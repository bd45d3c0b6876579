"""The OpenNebula user pool as econe's authentication needs it, cached.

The pool (`one.userpool.info`, read as serveradmin) holds every user's `PASSWORD`, which is the
EC2 secret for core/public users. It is cached for `ttl` seconds; a miss refreshes at most once
per `min_refresh_interval`, so a flood of requests with unknown keys never turns into a flood of
pool fetches (the Ruby econe 3.4 fetched the whole pool on every failed signature).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from econe.keyseal import is_sealed
from econe.one.client import NeedsOned, no_blocking

log = logging.getLogger(__name__)

# User template vector holding per-user EC2 keys for users whose PASSWORD cannot be an EC2 secret
# (ldap, ssh, x509, server_* drivers), one vector per key:
#   EC2_ACCESS_KEYS = [ ACCESS_KEY_ID = "AKIA…", SECRET = "…", STATUS = "Active" ]
ACCESS_KEYS_ATTR = "EC2_ACCESS_KEYS"
# Key ids `econe admin-keys revoke` revoked, in the server user's own template: users may edit
# their own template (and put a revoked entry back), never another user's.
REVOKED_KEYS_ATTR = "EC2_REVOKED_ACCESS_KEYS"
NO_EXISTS = 0x400  # oned's code when a user id does not exist (econe.one.client.NO_EXISTS)


class UserPoolUnavailable(Exception):
    """The user pool could not be fetched or read (oned down, bad answer)."""


def _may_call_oned() -> None:
    """While the front authenticates on the event loop thread (`no_blocking` set), a look-up
    that would call oned (a pool refresh, a miss, a user re-read) raises NeedsOned instead of
    blocking the loop, and the front runs the whole authentication again in a worker thread.
    Most requests need no oned call and are spared the thread hop."""
    if no_blocking.get():
        raise NeedsOned


@dataclass(frozen=True)
class UserRecord:
    id: int
    name: str
    gid: int
    groups: tuple[int, ...]
    auth_driver: str
    password: str = field(repr=False)  # never in logs or reprs
    enabled: bool
    template: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def access_keys(self) -> list[dict[str, Any]]:
        """The EC2_ACCESS_KEYS vectors of the user template (a single one or a list)."""
        raw = self.template.get(ACCESS_KEYS_ATTR)
        items = raw if isinstance(raw, list) else [raw] if raw is not None else []
        return [item for item in items if isinstance(item, dict)]


def template_to_dict(elem: etree._Element) -> dict[str, Any]:
    """OpenNebula template XML -> dict: leaves are strings, vectors are dicts, repeated
    names become lists (as `EC2_ACCESS_KEYS` or several `NIC`s)."""
    out: dict[str, Any] = {}
    for child in elem:
        if not isinstance(child.tag, str):
            continue  # comments, processing instructions
        value: Any = template_to_dict(child) if len(child) else (child.text or "")
        if child.tag in out:
            prev = out[child.tag]
            out[child.tag] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            out[child.tag] = value
    return out


def _int(text: str | None, default: int = -1) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def parse_user_pool(xml: bytes | str) -> list[UserRecord]:
    """`<USER_POOL><USER>…</USER>…</USER_POOL>` -> records (quota blocks ignored)."""
    if isinstance(xml, str):
        xml = xml.encode("utf-8")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
    root = etree.fromstring(xml, parser)
    users = []
    for u in root.iter("USER"):
        template = u.find("TEMPLATE")
        users.append(
            UserRecord(
                id=_int(u.findtext("ID")),
                name=u.findtext("NAME") or "",
                gid=_int(u.findtext("GID")),
                groups=tuple(_int(g.text) for g in u.findall("GROUPS/ID")),
                auth_driver=u.findtext("AUTH_DRIVER") or "",
                password=u.findtext("PASSWORD") or "",
                enabled=(u.findtext("ENABLED") or "1").strip() == "1",
                template=template_to_dict(template) if template is not None else {},
            )
        )
    return users


@dataclass(frozen=True)
class _Snapshot:
    by_name: Mapping[str, UserRecord]
    by_dn: Mapping[str, UserRecord]
    by_key: Mapping[str, tuple[UserRecord, dict[str, Any]]]
    fetched_at: float


def _index(
    users: list[UserRecord],
    now: float,
    seal_key: bytes | None = None,
    server_user: str | None = None,
) -> _Snapshot:
    """With `seal_key`, only sealed key entries count (an unsealed copy of someone's key id
    cannot make it ambiguous), and none that the server user's template lists as revoked."""
    by_name: dict[str, UserRecord] = {}
    by_dn: dict[str, list[UserRecord]] = {}
    by_key: dict[str, list[tuple[UserRecord, dict[str, Any]]]] = {}
    server = next((u for u in users if u.name == server_user), None) if server_user else None
    revoked = set(str(server.template.get(REVOKED_KEYS_ATTR, "")).split()) if server else set()
    for user in users:
        by_name[user.name] = user
        if user.auth_driver == "x509":
            for dn in user.password.split("|"):
                if dn:
                    by_dn.setdefault(dn, []).append(user)
        for entry in user.access_keys():
            akid = str(entry.get("ACCESS_KEY_ID", "")).strip()
            if not akid or akid in revoked:
                continue
            if seal_key is not None and not is_sealed(seal_key, user.id, entry):
                continue
            by_key.setdefault(akid, []).append((user, entry))
    # A key id or a certificate DN on two users is nobody's: refusing it beats letting pool
    # order decide whose account a request reaches.
    keys = {k: found[0] for k, found in by_key.items() if len({u.id for u, _ in found}) == 1}
    dns = {dn: found[0] for dn, found in by_dn.items() if len({u.id for u in found}) == 1}
    for what, index, kept in (("access key id", by_key, keys), ("certificate DN", by_dn, dns)):
        for name in index.keys() - kept.keys():
            log.warning("%s %r is on several users: refused for all", what, name)
    return _Snapshot(by_name, dns, keys, now)


def _pool_reader(client: Any, sessions: Any) -> Callable[[], bytes | str]:
    return lambda: client.call(sessions.admin_session(), "one.userpool.info")


def _user_reader(client: Any, sessions: Any) -> Callable[[int], bytes | str]:
    return lambda uid: client.call(sessions.admin_session(), "one.user.info", uid)


class UserDirectory:
    """Cached view of the user pool. Thread-safe: readers use an immutable snapshot that a
    refresh swaps in whole; one refresh runs at a time and concurrent misses share it."""

    def __init__(
        self,
        fetch_pool: Callable[[], bytes | str],
        ttl: float = 60.0,
        min_refresh_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        fetch_user: Callable[[int], bytes | str] | None = None,
        confirm_ttl: float = 0.0,
        seal_key: bytes | None = None,
        server_user: str | None = None,
    ):
        self._fetch_pool = fetch_pool
        self._fetch_user = fetch_user
        self.confirm_ttl = confirm_ttl
        self._seal_key, self._server_user = seal_key, server_user  # see _index
        self._confirmed: dict[int, tuple[float, UserRecord]] = {}
        self.ttl = ttl
        self.min_refresh_interval = min_refresh_interval
        self._clock = clock
        self._snap: _Snapshot | None = None
        self._last_failure = float("-inf")  # back off after a failed fetch
        self._last_miss_fetch = float("-inf")  # rate limit of fetches caused by misses
        self._lock = threading.Lock()

    @classmethod
    def from_one(cls, config: Any, client: Any, sessions: Any) -> UserDirectory:
        """The directory the server uses: `one.userpool.info` read as the server admin
        (`client`: econe.one.client.OneClient, `sessions`: econe.one.session.*Sessions)."""
        return cls(
            _pool_reader(client, sessions),
            ttl=config.user_cache_ttl,
            fetch_user=_user_reader(client, sessions),
            confirm_ttl=config.user_confirm_ttl,
            seal_key=sessions.seal_key,
            server_user=sessions.srv_user,
        )

    def _load(self) -> _Snapshot:
        """Fetch and index the pool; caller holds the lock. Failures raise UserPoolUnavailable
        and hold off further attempts for `min_refresh_interval`."""
        try:
            users = parse_user_pool(self._fetch_pool())
        except Exception as exc:  # noqa: BLE001 - any fetch/parse failure means "no pool now"
            self._last_failure = self._clock()
            raise UserPoolUnavailable(f"cannot read the OpenNebula user pool: {exc}") from exc
        snap = _index(users, self._clock(), self._seal_key, self._server_user)
        self._snap = snap
        return snap

    def refresh(self) -> None:
        """Fetch the pool now (start-up, tests)."""
        with self._lock:
            self._load()

    def _current(self) -> _Snapshot:
        snap = self._snap
        if snap is not None and self._clock() - snap.fetched_at < self.ttl:
            return snap
        _may_call_oned()
        if snap is not None:
            # Expired: one thread refreshes, the others keep answering from the old snapshot.
            if not self._lock.acquire(blocking=False):
                return snap
            try:
                if self._snap is not snap:
                    return self._snap  # someone else just refreshed
                if self._clock() - self._last_failure < self.min_refresh_interval:
                    return snap  # the last attempt failed moments ago: do not hammer oned
                try:
                    return self._load()
                except UserPoolUnavailable:
                    log.warning("user pool refresh failed; using the cached pool", exc_info=True)
                    return snap
            finally:
                self._lock.release()
        with self._lock:
            if self._snap is not None:
                return self._snap
            return self._load()

    def _lookup(self, pick: Callable[[_Snapshot], Any]) -> Any:
        started = self._clock()
        snap = self._current()
        found = pick(snap)
        if found is not None or snap.fetched_at >= started:
            return found  # found, or the pool was read during this very call
        # A miss may be a user created since the last fetch: refresh, but at most once per
        # min_refresh_interval for all misses together, so bad keys never flood oned.
        _may_call_oned()
        with self._lock:
            if self._snap is not snap and self._snap is not None:
                return pick(self._snap)
            now = self._clock()
            if (
                now - self._last_miss_fetch < self.min_refresh_interval
                or now - self._last_failure < self.min_refresh_interval
            ):
                return None
            self._last_miss_fetch = now
            return pick(self._load())

    def get(self, name: str) -> UserRecord | None:
        return self._lookup(lambda s: s.by_name.get(name))

    def find_by_dn(self, dn: str) -> UserRecord | None:
        """The x509-driver user listing `dn` (escaped as OpenNebula stores it) in PASSWORD."""
        return self._lookup(lambda s: s.by_dn.get(dn))

    def find_signer(
        self, access_key: str
    ) -> tuple[UserRecord | None, tuple[UserRecord, dict[str, Any]] | None]:
        """(the user named `access_key`, (user, EC2_ACCESS_KEYS entry) holding it as an access
        key id), both from one snapshot; only when neither exists does a miss refresh."""

        def pick(s: _Snapshot) -> Any:
            named, keyed = s.by_name.get(access_key), s.by_key.get(access_key)
            return (named, keyed) if named is not None or keyed is not None else None

        return self._lookup(pick) or (None, None)

    def confirmed_recently(self, user: UserRecord) -> bool:
        """Whether `confirm(user)` would answer without calling oned."""
        hit = self._confirmed.get(user.id)
        return self._fetch_user is None or (
            hit is not None and self._clock() - hit[0] < self.confirm_ttl
        )

    def confirm(self, user: UserRecord) -> UserRecord | None:
        """The user as oned knows it right now (None: deleted), fetched with `fetch_user`.

        The pool cache may be up to `ttl` old, and oned does not check ENABLED for
        server_cipher sessions: a user disabled (or re-keyed) a moment ago must not keep
        working until the next refresh. Costs one `one.user.info` per request unless
        `confirm_ttl` allows reusing a recent answer. Without `fetch_user`: the cached record.
        """
        if self._fetch_user is None:
            return user
        now = self._clock()
        hit = self._confirmed.get(user.id)
        if hit is not None and now - hit[0] < self.confirm_ttl:
            return hit[1]
        _may_call_oned()
        try:
            xml = self._fetch_user(user.id)
        except Exception as exc:  # noqa: BLE001 - sorted below
            if getattr(exc, "code", None) == NO_EXISTS:
                return None  # deleted since the pool was read
            raise UserPoolUnavailable(f"cannot read OpenNebula user {user.id}: {exc}") from exc
        try:
            records = parse_user_pool(xml)
        except etree.XMLSyntaxError as exc:
            raise UserPoolUnavailable(f"unreadable answer for user {user.id}") from exc
        fresh = records[0] if records and records[0].id == user.id else None
        if fresh is not None and self.confirm_ttl > 0:
            self._confirmed[user.id] = (now, fresh)
        return fresh
