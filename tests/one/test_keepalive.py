"""OneClient's kept-alive connections to onesim, which keeps them as oned's xmlrpc-c server
does: open when asked, at most MAX_CONN connections at once (idle ones included)."""

from __future__ import annotations

import asyncio
import threading
import time
import xmlrpc.client

import pytest

from econe.one import client as one_client
from econe.one.client import OneClient
from onesim.server import SimServer


@pytest.fixture
def sim(tmp_path):
    """onesim counting the connections it accepts (in `sim.accepted`)."""
    s = SimServer(str(tmp_path), seed="demo", speed=0, max_conn=5)
    s.accepted = 0
    accept = s.httpd.process_request

    def counted(request, address):
        s.accepted += 1
        accept(request, address)

    s.httpd.process_request = counted
    s.start()
    yield s
    s.stop()


def _version(client: OneClient, sim) -> None:
    assert client.call(sim.one_auth, "one.system.version") == "7.4.0"


def test_calls_share_one_connection(sim) -> None:
    client = OneClient(sim.url, timeout=5)
    for _ in range(10):
        _version(client, sim)

    async def on_the_loop():
        for _ in range(10):
            await client.exchange_async("one.system.version", (sim.one_auth,))

    asyncio.run(on_the_loop())
    assert sim.accepted == 2  # one for the worker threads' calls, one for the event loop's


def test_keepalive_0_opens_a_connection_per_call(sim) -> None:
    client = OneClient(sim.url, timeout=5, keepalive=0)
    for _ in range(3):
        _version(client, sim)
    assert sim.accepted == 3 and client._idle == []


def test_a_connection_idle_too_long_is_not_reused(sim, monkeypatch) -> None:
    client = OneClient(sim.url, timeout=5)
    monkeypatch.setattr(one_client, "IDLE_REUSE", 0.05)
    _version(client, sim)
    time.sleep(0.1)
    _version(client, sim)
    assert sim.accepted == 2


def test_a_burst_leaves_oned_free_for_its_other_clients(sim) -> None:
    """oned serves MAX_CONN connections at once (here 5), kept-alive idle ones included, for
    KEEPALIVE_TIMEOUT (15 s): after a burst of concurrent calls econe keeps at most
    `keepalive` (4) of them open, so Sunstone's or the CLI's next call is answered at once."""
    client = OneClient(sim.url, timeout=20)
    errors = []

    def calls() -> None:
        try:
            for _ in range(5):
                _version(client, sim)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=calls) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    start = time.monotonic()
    other = xmlrpc.client.ServerProxy(sim.url)  # another oned client, as the CLI
    assert other.one.system.version(sim.one_auth)[1] == "7.4.0"
    assert time.monotonic() - start < 2


def test_kept_alive_calls_do_not_wait_for_delayed_acks(sim) -> None:
    """onesim, as oned's Abyss server, writes an answer's head and body separately: on a
    kept-alive connection the body waited 40 ms for the client's delayed ACK of the head."""
    client = OneClient(sim.url, timeout=5)

    def timed(call) -> float:
        times = []
        for _ in range(20):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        return sorted(times)[10]

    blocking = timed(lambda: _version(client, sim))

    async def on_the_loop() -> float:
        times = []
        for _ in range(20):
            start = time.perf_counter()
            await client.exchange_async("one.system.version", (sim.one_auth,))
            times.append(time.perf_counter() - start)
        return sorted(times)[10]

    assert blocking < 0.02 and asyncio.run(on_the_loop()) < 0.02
    assert sim.accepted == 2


def test_a_full_pool_makes_room_for_fresh_connections(sim, monkeypatch) -> None:
    """After a burst of worker-thread calls fills the pool, the event loop's calls still
    reuse a connection (each opened a new one), and connections idle too long are closed."""
    client = OneClient(sim.url, timeout=5)
    barrier = threading.Barrier(4)

    def call() -> None:
        barrier.wait()
        _version(client, sim)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    before = sim.accepted

    async def on_the_loop() -> None:
        for _ in range(20):
            await client.exchange_async("one.system.version", (sim.one_auth,))

    asyncio.run(on_the_loop())
    assert sim.accepted - before == 1
    monkeypatch.setattr(one_client, "IDLE_REUSE", 0.05)
    time.sleep(0.1)
    _version(client, sim)  # gives back: the old ones are closed, not kept
    assert len(client._idle) == 1
