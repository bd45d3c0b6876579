"""SQLite-backed object store.

Every object is a JSON-serialisable dict kept in memory and written through to one row of
``objects(kind, id, uid, gid, state, body)``. Rendered XML bodies are cached per object and
variant, and dropped whenever the object is saved. Id counters and small settings live in
``meta``. All access happens under the simulator lock (see :mod:`onesim.core`).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from typing import Any

KINDS = ("user", "group", "datastore", "host", "vnet", "image", "template", "vm", "secgroup")


class Store:
    def __init__(self, state_dir: str) -> None:
        os.makedirs(state_dir, exist_ok=True)
        self.path = os.path.join(state_dir, "onesim.db")
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS objects (kind TEXT, id INTEGER, uid INTEGER, gid INTEGER,"
            " state INTEGER, body TEXT, PRIMARY KEY (kind, id))"
        )
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        self.objs: dict[str, dict[int, dict]] = {k: {} for k in KINDS}
        self.meta: dict[str, Any] = {}
        self.cache: dict[tuple[str, int], dict[str, str]] = {}
        # documents derived from many objects (a user's quota usage); any change empties it
        self.derived: dict[Any, str] = {}
        self._dirty: dict[tuple[str, int], dict | None] = {}
        self._meta_dirty: set[str] = set()
        for kind, oid, body in self.db.execute("SELECT kind, id, body FROM objects"):
            self.objs.setdefault(kind, {})[oid] = json.loads(body)
        for key, value in self.db.execute("SELECT key, value FROM meta"):
            self.meta[key] = json.loads(value)

    # ------------------------------------------------------------------ objects
    def get(self, kind: str, oid: int) -> dict | None:
        return self.objs[kind].get(oid)

    def all(self, kind: str) -> Iterator[dict]:
        return iter(self.objs[kind].values())

    def new_id(self, kind: str, start: int = 0) -> int:
        key = "next_" + kind
        oid = max(int(self.meta.get(key, start)), start)
        self.set_meta(key, oid + 1)
        return oid

    def put(self, kind: str, obj: dict) -> None:
        self.objs[kind][obj["id"]] = obj
        self.cache.pop((kind, obj["id"]), None)
        self.derived.clear()
        self._dirty[(kind, obj["id"])] = obj

    def delete(self, kind: str, oid: int) -> None:
        self.objs[kind].pop(oid, None)
        self.cache.pop((kind, oid), None)
        self.derived.clear()
        self._dirty[(kind, oid)] = None

    def invalidate(self, kind: str, oid: int) -> None:
        self.cache.pop((kind, oid), None)
        self.derived.clear()

    def cached(self, kind: str, oid: int, variant: str) -> str | None:
        c = self.cache.get((kind, oid))
        return c.get(variant) if c else None

    def remember(self, kind: str, oid: int, variant: str, xml: str) -> str:
        self.cache.setdefault((kind, oid), {})[variant] = xml
        return xml

    def dirty_keys(self) -> list[tuple[str, int]]:
        return list(self._dirty)

    # ------------------------------------------------------------------ meta
    def set_meta(self, key: str, value: Any) -> None:
        self.meta[key] = value
        self._meta_dirty.add(key)

    # ------------------------------------------------------------------ persistence
    def flush(self) -> None:
        if not self._dirty and not self._meta_dirty:
            return
        cur = self.db.cursor()
        cur.execute("BEGIN")
        for (kind, oid), obj in self._dirty.items():
            if obj is None:
                cur.execute("DELETE FROM objects WHERE kind=? AND id=?", (kind, oid))
            else:
                cur.execute(
                    "INSERT OR REPLACE INTO objects VALUES (?,?,?,?,?,?)",
                    (
                        kind,
                        oid,
                        obj.get("uid", 0),
                        obj.get("gid", 0),
                        obj.get("state", 0),
                        json.dumps(obj, separators=(",", ":")),
                    ),
                )
        for key in self._meta_dirty:
            cur.execute(
                "INSERT OR REPLACE INTO meta VALUES (?,?)", (key, json.dumps(self.meta[key]))
            )
        cur.execute("COMMIT")
        self._dirty.clear()
        self._meta_dirty.clear()

    def close(self) -> None:
        self.flush()
        self.db.close()
