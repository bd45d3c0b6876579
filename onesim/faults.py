"""Fault hooks for tests (off by default), set through admin-only XML-RPC methods:

``onesim.fault.set(session, method, code, message, latency_s, count)``
    ``method``: an XML-RPC method name, or ``*`` for every ``one.*`` method.
    ``code`` > 0: answer ``[false, "[method] message", code, -1, -1]``;
    ``code`` < 0: answer an XML-RPC ``<fault>`` with that faultCode and ``message``;
    ``code`` = 0: answer normally (after the latency).
    ``message`` = ``"hang"`` (with code 0): hold the connection ``latency_s`` seconds (at most
    300) and then close it without any response.
    ``latency_s`` (int or double): delay before answering.
    ``count``: how many calls the rule applies to; 0 or negative = until cleared.
``onesim.fault.clear(session)``: remove every rule.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from . import errors
from .core import method

if TYPE_CHECKING:
    from .core import Sim
    from .perms import Caller

MAX_HANG = 300.0


class Hang(Exception):
    """Drop the connection without answering."""


class FaultRules:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rules: dict[str, dict] = {}

    def set(self, name: str, code: int, message: str, latency: float, count: int) -> None:
        with self.lock:
            self.rules[name] = {
                "code": code,
                "message": message,
                "latency": float(latency),
                "count": count,
            }

    def clear(self) -> None:
        with self.lock:
            self.rules.clear()

    def take(self, name: str) -> dict | None:
        """The rule applying to this call (consuming one use), or None."""
        if name.startswith("onesim."):
            return None
        with self.lock:
            rule = self.rules.get(name) or self.rules.get("*")
            if rule is None:
                return None
            if rule["count"] > 0:
                rule["count"] -= 1
                if rule["count"] == 0:
                    for k in [k for k, v in self.rules.items() if v is rule]:
                        del self.rules[k]
            return dict(rule)


def _admin(caller: Caller) -> None:
    if not caller.admin:
        raise errors.auth_failed()


@method("onesim.fault.set", "sisni")
def fault_set(
    sim: Sim, caller: Caller, name: str, code: int, message: str, latency: float, count: int
) -> int:
    _admin(caller)
    sim.faults.set(name, code, message, latency, count)
    return 0


@method("onesim.fault.clear", "")
def fault_clear(sim: Sim, caller: Caller) -> int:
    _admin(caller)
    sim.faults.clear()
    return 0
