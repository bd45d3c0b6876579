"""One user's flood of requests cannot hold every worker: Engine.run runs at most half of
them for one user at once, and the others wait their turn (a security review had 40 parallel
CreateTags of one user make another user's DescribeKeyPairs take 30 s)."""

from __future__ import annotations

import asyncio
import threading

from econe.engine import Engine
from econe.one.client import OneClient
from econe.one.session import ServerCipherSessions
from tests.engine.conftest import Sim, context


class Gate(OneClient):
    """The real client; demo's calls wait at a gate until it opens, and are counted."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.open = threading.Event()
        self.lock = threading.Lock()
        self.inside = self.most = 0

    def _exchange(self, method, params):
        if params[0].split(":")[1] != "demo":
            return super()._exchange(method, params)
        with self.lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        try:
            assert self.open.wait(20)
            return super()._exchange(method, params)
        finally:
            with self.lock:
                self.inside -= 1


def test_one_users_flood_leaves_workers_for_the_others(sim: Sim) -> None:
    sim.as_admin("one.user.allocate", "fairbob", "pw", "core", [1])
    client = Gate(sim.url, timeout=10)
    engine = Engine(sim.config(), client, ServerCipherSessions(sim.ec2_auth), max_workers=4)

    async def call(user: str) -> dict:
        return await engine.run("DescribeKeyPairs", {}, context(user, "DescribeKeyPairs"))

    async def go() -> None:
        flood = [asyncio.create_task(call("demo")) for _ in range(8)]
        while client.inside < 2:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # time for more of demo's to start, were they let
        assert client.inside == 2  # half of the 4 workers; the other 6 wait their turn
        # another user's request runs meanwhile, on a worker demo's flood left free
        assert "KeyPairs" in await asyncio.wait_for(call("fairbob"), 10)
        client.open.set()
        assert all("KeyPairs" in r for r in await asyncio.gather(*flood))  # each ran, in turn

    try:
        asyncio.run(go())
        assert client.most == 2
        assert not any(engine._turns.values())  # nothing kept for users with no request
    finally:
        engine.close()
