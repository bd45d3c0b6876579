"""In-process locks by name: `with held("key pairs", uid): …` lets one request at a time of this
gateway process do what the name covers (a user's key pairs, one elastic IP, one ClientToken).
A name's lock lives while someone holds or waits for it, so names that come and go (tokens)
leave nothing behind. Across gateway processes nothing is serialised: mappings/README says
what that leaves open."""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterator
from contextlib import contextmanager

_LOCKS: dict[tuple[Hashable, ...], list] = {}  # name → [lock, holders and waiters]
_GUARD = threading.Lock()


@contextmanager
def held(*name: Hashable) -> Iterator[None]:
    with _GUARD:
        entry = _LOCKS.setdefault(name, [threading.Lock(), 0])
        entry[1] += 1
    try:
        with entry[0]:
            yield
    finally:
        with _GUARD:
            entry[1] -= 1
            if not entry[1]:
                del _LOCKS[name]
