"""Fixtures: an Engine on recorded oned 7.4 responses (golden), and one on a live onesim."""

from __future__ import annotations

import asyncio
import importlib
import os
import xmlrpc.client
from pathlib import Path
from typing import Any

import pytest

from econe.config import Config
from econe.context import Principal, RequestContext
from econe.engine import Engine
from econe.errors import Ec2Error
from econe.mapping.onecall import OneError

GOLDEN = Path(__file__).resolve().parents[3] / "shared" / "opennebula-golden"
if not GOLDEN.is_dir():
    GOLDEN = Path("/work/shared/opennebula-golden")


def golden(name: str) -> Any:
    result = xmlrpc.client.loads(GOLDEN.joinpath(name).read_text())[0][0]
    if result[0]:
        return result[1]
    raise OneError(result[2], result[1], name, result[3])


class GoldenOne:
    """OneClient stand-in answering from the recorded responses; logs every call."""

    VMS = {
        0: "one.vm.info.done.ok.xml",
        1: "one.vm.info.running.ok.xml",
        2: "one.vm.info.hold.ok.xml",
    }

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.overrides: dict[str, Any] = {}

    def call(self, session: str, method: str, *args: Any) -> Any:
        self.calls.append((session, method, args))
        if method in self.overrides:
            value = self.overrides[method]
            return value(*args) if callable(value) else value
        if method == "one.vmpool.infoextended":
            return golden("one.vmpool.infoextended.all.ok.xml")
        if method == "one.vm.info":
            return golden(self.VMS.get(args[0], "one.vm.info.noexists.xml"))
        if method == "one.vm.action":
            return args[1]
        if method == "one.imagepool.info":
            return golden("one.imagepool.info.all.ok.xml")
        if method == "one.image.info":
            return golden(
                "one.image.info.ok.xml" if args[0] == 0 else "one.image.info.noexists.xml"
            )
        raise AssertionError(f"unexpected call {method}{args}")


class FakeSessions:
    def session_for(self, user: str) -> str:
        return f"serveradmin:{user}:token"

    def admin_session(self) -> str:
        return "serveradmin:serveradmin:token"


def context(user: str = "alice", action: str = "Test") -> RequestContext:
    return RequestContext("req-1", action, "2016-11-15", Principal(user, 2, 100, "core", "sigv4"))


def run(engine: Engine, action: str, body: dict | None = None, user: str = "alice") -> dict:
    return asyncio.run(engine.run(action, body or {}, context(user, action)))


@pytest.fixture
def one() -> GoldenOne:
    return GoldenOne()


@pytest.fixture
def golden_engine(one: GoldenOne) -> Engine:
    engine = Engine(Config(), one, FakeSessions())
    yield engine
    engine.close()


# -- live onesim -----------------------------------------------------------------------------


def _read(value: str) -> str:
    return Path(value).read_text().strip() if os.path.exists(str(value)) else str(value).strip()


class Sim:
    """A running onesim plus helpers to act as oneadmin and to build engines on it."""

    def __init__(self, server: Any):
        from econe.one.client import OneClient

        self.server = server
        self.url = server.url
        self.client = OneClient(server.url, timeout=30)
        self.admin = _read(server.one_auth)
        self.ec2_auth = Path(server.state_dir) / ".one" / "ec2_auth"

    def config(self, **overrides: Any) -> Config:
        return Config(one_xmlrpc=self.url, ec2_auth=str(self.ec2_auth), **overrides)

    def engine(self, mappings_dir: Path | None = None, **overrides: Any) -> Engine:
        from econe.one.session import ServerCipherSessions

        return Engine(
            self.config(**overrides),
            self.client,
            ServerCipherSessions(self.ec2_auth),
            mappings_dir,
        )

    def as_admin(self, method: str, *args: Any) -> Any:
        return self.client.call(self.admin, method, *args)

    def vm(self, vm_id: int) -> Any:
        from lxml import etree

        return etree.fromstring(self.as_admin("one.vm.info", vm_id).encode())


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Sim:
    server_mod = importlib.import_module("onesim.server")
    importlib.import_module("econe.one.session")
    server = server_mod.SimServer(
        str(tmp_path_factory.mktemp("onesim")), host="127.0.0.1", port=0, seed="demo", speed=0
    )
    server.start()
    try:
        yield Sim(server)
    finally:
        server.stop()


AMI = "ami-00000000"  # the demo image, registered by the `engine` fixture


@pytest.fixture(scope="module")
def engine(sim: Sim):
    """An engine on the module's onesim, with the demo image registered as an AMI."""
    eng = sim.engine()
    run(eng, "RegisterImage", {"ImageLocation": AMI}, user="demo")
    yield eng
    eng.close()


def code_of(fn, *args, **kw) -> str:
    """The EC2 error code `fn(*args, **kw)` raises."""
    with pytest.raises(Ec2Error) as err:
        fn(*args, **kw)
    return err.value.code
