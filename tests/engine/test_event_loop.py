"""Describe* actions on a live onesim: the source call waits on the event loop (no worker
thread held), small answers are read there, and anything needing another oned call runs in a
worker with the answer already received."""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path

import pytest

import econe.engine
from econe.engine import Engine
from econe.one.client import OneClient
from econe.one.session import ServerCipherSessions
from econe.paths import data_dir
from tests.engine.conftest import Sim, code_of, context, run

SEEN: list[tuple[str, bool]] = []  # (hook, ran on the event loop thread)


def record_thread(rt, items):
    SEEN.append(("record_thread", threading.current_thread() is threading.main_thread()))


def read_user(rt, items):
    SEEN.append(("read_user", threading.current_thread() is threading.main_thread()))
    rt.call("one.user.info", -1)  # any oned call: cannot block the event loop


class Counting(OneClient):
    """The real client, counting the calls it sends."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.sent: list[str] = []

    def _exchange(self, method, params):
        data = super()._exchange(method, params)
        self.sent.append(method)
        return data

    async def exchange_async(self, method, params):
        data = await super().exchange_async(method, params)
        self.sent.append(method)
        return data


def engine_with_hook(sim: Sim, tmp_path: Path, hook: str) -> tuple[Engine, Counting]:
    mappings = tmp_path / "mappings"
    shutil.copytree(data_dir("mappings"), mappings)
    text = (mappings / "DescribeInstances.yaml").read_text()
    (mappings / "DescribeInstances.yaml").write_text(
        text.replace("- handlers.addresses:add_public_ips", f"- {__name__}:{hook}")
    )
    client = Counting(sim.url, timeout=10)
    return Engine(sim.config(), client, ServerCipherSessions(sim.ec2_auth), mappings), client


def launch(sim: Sim, engine: Engine) -> str:
    run(engine, "RegisterImage", {"ImageLocation": "ami-00000000"}, user="demo")
    out = run(engine, "RunInstances", {"ImageId": "ami-00000000"}, user="demo")
    return out["Instances"][0]["InstanceId"]


@pytest.mark.parametrize(
    ("hook", "on_loop", "calls"),
    [
        ("record_thread", [True], ["one.vmpool.infoextended"]),
        # the hook's call refuses on the loop; the job runs again in a worker, where the
        # source answer received on the loop is reused, not asked for again
        ("read_user", [True, False], ["one.vmpool.infoextended", "one.user.info"]),
    ],
)
def test_small_answers_are_read_on_the_loop_unless_a_hook_calls_oned(
    sim: Sim, tmp_path: Path, hook: str, on_loop: list[bool], calls: list[str]
) -> None:
    engine, client = engine_with_hook(sim, tmp_path, hook)
    try:
        iid = launch(sim, engine)
        SEEN.clear()
        client.sent.clear()
        out = run(engine, "DescribeInstances", {}, user="demo")
        ids = [i["InstanceId"] for r in out["Reservations"] for i in r["Instances"]]
        assert iid in ids
        assert SEEN == [(hook, x) for x in on_loop]
        assert client.sent == calls
    finally:
        engine.close()


def test_large_answers_are_read_in_a_worker(
    sim: Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, client = engine_with_hook(sim, tmp_path, "record_thread")
    try:
        launch(sim, engine)
        small = run(engine, "DescribeInstances", {}, user="demo")
        monkeypatch.setattr(econe.engine, "INLINE_MAX", 100)
        SEEN.clear()
        client.sent.clear()
        assert run(engine, "DescribeInstances", {}, user="demo") == small
        assert SEEN == [("record_thread", False)]
        assert client.sent == ["one.vmpool.infoextended"]
    finally:
        engine.close()


def test_waiting_for_oned_holds_no_worker(sim: Sim) -> None:
    """With a single worker thread, a RebootInstances (which needs the worker) finishes while
    a DescribeInstances is still waiting for a slow oned."""
    engine = Engine(
        sim.config(), OneClient(sim.url, timeout=10), ServerCipherSessions(sim.ec2_auth), None, 1
    )
    try:
        iid = launch(sim, engine)
        sim.as_admin("onesim.fault.set", "one.vmpool.infoextended", 0, "", 1.5, 1)
        finished: list[str] = []

        async def act(action: str, body: dict) -> None:
            await engine.run(action, body, context("demo", action))
            finished.append(action)

        async def both() -> None:
            slow = asyncio.create_task(act("DescribeInstances", {}))
            await asyncio.sleep(0.2)  # the slow call is in flight
            await act("RebootInstances", {"InstanceId": [iid]})
            await slow

        asyncio.run(both())
        assert finished == ["RebootInstances", "DescribeInstances"]
    finally:
        sim.as_admin("onesim.fault.clear")
        engine.close()


def test_no_more_oned_calls_at_once_than_worker_threads(sim: Sim) -> None:
    class Gauge(OneClient):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            self.now = self.most = 0

        async def exchange_async(self, method, params):
            self.now += 1
            self.most = max(self.most, self.now)
            try:
                return await super().exchange_async(method, params)
            finally:
                self.now -= 1

    client = Gauge(sim.url, timeout=10)
    engine = Engine(sim.config(), client, ServerCipherSessions(sim.ec2_auth), None, 2)
    sim.as_admin("onesim.fault.set", "one.vmpool.infoextended", 0, "", 0.2, 0)

    async def six() -> list:
        return await asyncio.gather(
            *(engine.run("DescribeInstances", {}, context("demo", "x")) for _ in range(6))
        )

    try:
        assert len(asyncio.run(six())) == 6
        assert client.most == 2
    finally:
        sim.as_admin("onesim.fault.clear")
        engine.close()


def test_unreachable_oned_is_unavailable(sim: Sim) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = OneClient(f"http://127.0.0.1:{port}/RPC2", timeout=2)
    engine = Engine(sim.config(), client, ServerCipherSessions(sim.ec2_auth))
    try:
        assert code_of(run, engine, "DescribeInstances") == "Unavailable"
        assert code_of(run, engine, "DescribeImages") == "Unavailable"
    finally:
        engine.close()
