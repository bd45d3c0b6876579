"""The simulator's shared state: store, lock, clock, method registry and lookups."""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable
from typing import Any

from . import errors
from .perms import Caller, authorize
from .store import Store

# method name -> (param types after the session, number of required params, function)
METHODS: dict[str, tuple[str, int, Callable[..., Any]]] = {}


def method(name: str, types: str = "", required: int | None = None) -> Callable:
    """Register ``fn(sim, caller, *params)`` as XML-RPC method ``name``.

    ``types`` uses xmlrpc-c letters: i int, s string, b boolean, A array."""

    def deco(fn: Callable) -> Callable:
        METHODS[name] = (types, len(types) if required is None else required, fn)
        return fn

    return deco


class Sim:
    """State and helpers shared by the method modules. Every public call runs under ``lock``."""

    def __init__(self, state_dir: str, speed: float = 1.0) -> None:
        self.state_dir = state_dir
        self.store = Store(state_dir)
        self.lock = threading.RLock()
        self.speed = float(speed)
        self.sessions: dict[str, tuple[int, int, float]] = {}  # session -> (uid, egid, expiry)
        self.server_x509_cert = None  # x509.Certificate of server_x509 users (--server-x509-cert)
        self._timers: list[tuple[float, int, str, int]] = []  # (due, seq, kind, id)
        self._seq = 0
        self._at = 0.0
        self.request_id = 1000
        for vm in self.store.all("vm"):
            for due, _step in vm.get("steps", [])[:1]:
                self._push(due, "vm", vm["id"])
        for img in self.store.all("image"):
            if img.get("steps"):
                self._push(img["steps"][0][0], "image", img["id"])

    # ------------------------------------------------------------------ clock
    def now(self) -> int:
        """Current time, or the due time of the step being applied (so a step that is applied
        lazily, long after it was due, still carries the time it happened)."""
        return int(self._at) if self._at else int(time.time())

    def due(self, steps: int = 1) -> float:
        """Absolute time when something ``steps`` lifecycle steps from now happens
        (0.0, i.e. already due, when the speed is 0)."""
        if self.speed <= 0 or steps <= 0:
            return 0.0
        return (self._at or time.time()) + self.speed * steps

    def _push(self, due: float, kind: str, oid: int) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (due, self._seq, kind, oid))

    def schedule(self, kind: str, obj: dict, step: str, steps: int = 1) -> None:
        """Queue ``step`` for ``obj``; applied lazily when due (immediately with speed 0)."""
        due = self.due(steps)
        obj.setdefault("steps", []).append([due, step])
        self._push(due, kind, obj["id"])

    def advance(self) -> None:
        """Apply every due lifecycle step (called before each request is served)."""
        from . import lifecycle

        now = time.time()
        while self._timers and self._timers[0][0] <= now:
            now = time.time()
            _due, _seq, kind, oid = heapq.heappop(self._timers)
            obj = self.store.get(kind, oid)
            if obj is None:
                continue
            while obj.get("steps") and obj["steps"][0][0] <= now:
                d, step = obj["steps"].pop(0)
                self._at = d
                try:
                    lifecycle.apply(self, kind, obj, step)
                finally:
                    self._at = 0.0
                if self.store.get(kind, oid) is None:
                    break
            if self.store.get(kind, oid) is not None:
                self.store.put(kind, obj)

    def warm(self) -> None:
        """Pre-render the pool bodies of the VMs changed by this request."""
        from .docs_vm import warm

        for kind, oid in self.store.dirty_keys():
            if kind == "vm":
                vm = self.store.get("vm", oid)
                if vm is not None:
                    warm(self, vm)

    # ------------------------------------------------------------------ lookups
    def get(self, kind: str, oid: int) -> dict:
        obj = self.store.get(kind, oid)
        if obj is None:
            raise errors.no_exists(kind, oid)
        return obj

    def get_auth(self, caller: Caller, kind: str, oid: int, op: str) -> dict:
        obj = self.get(kind, oid)
        authorize(caller, obj, kind, op, self.acls)
        return obj

    @property
    def acls(self) -> list:
        return self.store.meta.get("acls", [])

    def uname(self, uid: int) -> str:
        u = self.store.get("user", uid)
        return u["name"] if u else ""

    def gname(self, gid: int) -> str:
        g = self.store.get("group", gid)
        return g["name"] if g else ""

    def user_by_name(self, name: str) -> dict | None:
        for u in self.store.all("user"):
            if u["name"] == name:
                return u
        return None

    def caller_for(self, user: dict, egid: int = -1) -> Caller:
        groups = list(user["groups"])
        gid = user["gid"]
        if egid >= 0 and egid in groups:
            groups, gid = [egid], egid
        return Caller(uid=user["id"], gid=gid, groups=groups, name=user["name"])

    def next_request_id(self) -> int:
        self.request_id += 1
        return self.request_id
