"""In-process locks by name: `with held("key pairs", uid): …` lets one request at a time of this
gateway process do what the name covers (a user's key pairs, one elastic IP, one ClientToken).
A name's lock lives while someone holds or waits for it, so names that come and go (tokens)
leave nothing behind. Across gateway processes nothing is serialised: mappings/README says
what that leaves open.

A request waiting for a lock holds one of the engine's worker threads (16) all the while. Where
the holder may take long (an elastic IP's scripts run for up to :script_timeout: each), the
caller passes `busy`, a message: then at most WAITERS requests wait for that name, and one more
is refused at once with RequestLimitExceeded (503; the SDKs retry it after a pause), so that
requests piling up on one address cannot take the workers every other request needs."""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterator
from contextlib import contextmanager

from econe.errors import Ec2Error

WAITERS = 2
_LOCKS: dict[tuple[Hashable, ...], list] = {}  # name → [lock, holders and waiters]
_GUARD = threading.Lock()


@contextmanager
def held(*name: Hashable, busy: str | None = None) -> Iterator[None]:
    with _GUARD:
        entry = _LOCKS.setdefault(name, [threading.Lock(), 0])
        if busy is not None and entry[1] > WAITERS:  # one holds it, WAITERS wait
            raise Ec2Error("RequestLimitExceeded", busy)
        entry[1] += 1
    try:
        with entry[0]:
            yield
    finally:
        with _GUARD:
            entry[1] -= 1
            if not entry[1]:
                del _LOCKS[name]
