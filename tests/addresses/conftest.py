"""Fixtures for the elastic-IP tests: a live onesim (demo seed: vnet 1 `elastic-ips`, 16 ARs of
SIZE 1, 198.51.100.1-16) and engines on it acting as real users through server_cipher."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from econe.config import Config
from econe.context import Principal, RequestContext
from econe.engine import Engine

RECORDER = Path(__file__).resolve().parents[2] / "econe" / "scripts" / "record-elastic-ip-call"
EIP_VNET = 1


def _read(value: str) -> str:
    return Path(value).read_text().strip() if os.path.exists(str(value)) else str(value).strip()


class Sim:
    """A running onesim, oneadmin helpers, and engines (one per configuration) on it."""

    def __init__(self, server: Any, tmp: Path):
        from econe.one.client import OneClient

        self.server = server
        self.tmp = tmp
        self.url = server.url
        self.client = OneClient(server.url, timeout=30)
        self.admin = _read(server.one_auth)
        self.ec2_auth = Path(server.state_dir) / ".one" / "ec2_auth"
        self.engines: list[Engine] = []
        self.uids: dict[str, int] = {"demo": 2}

    def as_admin(self, method: str, *args: Any) -> Any:
        return self.client.call(self.admin, method, *args)

    def engine(self, **overrides: Any) -> Engine:
        from econe.one.session import ServerCipherSessions

        values = {
            "one_xmlrpc": self.url,
            "ec2_auth": str(self.ec2_auth),
            "elasticips_vnet_id": EIP_VNET,
            "tmpdir": str(self.tmp),
            "script_timeout": 10.0,
        }
        values.update(overrides)
        engine = Engine(Config(**values), self.client, ServerCipherSessions(self.ec2_auth))
        self.engines.append(engine)
        return engine

    def user(self, name: str) -> str:
        if name not in self.uids:
            self.uids[name] = int(
                self.as_admin("one.user.allocate", name, name + "pw", "core", [1])
            )
        return name

    def vnet(self, vid: int = EIP_VNET) -> etree._Element:
        return etree.fromstring(self.as_admin("one.vn.info", vid).encode())

    def ar(self, ip: str, vid: int = EIP_VNET) -> etree._Element:
        return self.vnet(vid).xpath("AR_POOL/AR[IP = $ip]", ip=ip)[0]

    def vm(self, user: str = "demo", nic: bool = True) -> int:
        """A VM of `user` with one NIC in the private network (or none)."""
        tmpl = 'NAME="t"\nCPU="1"\nMEMORY="64"\n' + ('NIC=[NETWORK_ID="0"]\n' if nic else "")
        return int(self.client.call(self.session(user), "one.vm.allocate", tmpl, False))

    def session(self, user: str) -> str:
        from econe.one.session import ServerCipherSessions

        return ServerCipherSessions(self.ec2_auth).session_for(self.user(user))

    def new_pool(self, name: str, size: int, prefix: str = "203.0.113") -> int:
        """A fresh elastic-IP network: `size` ARs of SIZE 1, <prefix>.1 …"""
        tmpl = f'NAME="{name}"\nVN_MAD="dummy"\nBRIDGE="br-{name}"\n'
        tmpl += "".join(
            f'AR=[TYPE="IP4", IP="{prefix}.{i}", SIZE="1"]\n' for i in range(1, size + 1)
        )
        return int(self.as_admin("one.vn.allocate", tmpl, -1))

    def vm_ip(self, vid: int) -> str:
        vm = etree.fromstring(self.as_admin("one.vm.info", vid).encode())
        return vm.findtext("TEMPLATE/NIC/IP")


def context(user: str, uid: int, action: str) -> RequestContext:
    return RequestContext("req-1", action, "2016-11-15", Principal(user, uid, 1, "core", "sigv4"))


def run(sim: Sim, engine: Engine, action: str, body: dict | None = None, user: str = "demo"):
    ctx = context(user, sim.uids[sim.user(user)], action)
    return asyncio.run(engine.run(action, body or {}, ctx))


def script(tmp: Path, name: str, body: str) -> Path:
    """An executable Python script in tmp."""
    path = tmp / name
    path.write_text(f"#!{sys.executable}\nimport sys, os, json\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def calls(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    return [json.loads(line)["argv"] for line in log.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory):
    from onesim.server import SimServer

    tmp = tmp_path_factory.mktemp("eip")
    server = SimServer(str(tmp / "one"), host="127.0.0.1", port=0, seed="demo", speed=0)
    server.start()
    s = Sim(server, tmp)
    try:
        yield s
    finally:
        for engine in s.engines:
            engine.close()
        server.stop()


@pytest.fixture
def eip_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "eip.jsonl"
    monkeypatch.setenv("ECONE_EIP_LOG", str(log))
    return log


def b64xml(text: str) -> etree._Element:
    import base64

    return etree.fromstring(base64.b64decode(text, validate=True))


# -- end to end: extra gateways on the demo's onesim ------------------------------------------


def start_gateway(tmp: Path, demo: Any, name: str, **conf: Any) -> tuple[Any, str]:
    """A second `econe-server run --config …` against the demo's onesim; → (proc, url)."""
    import subprocess

    import yaml

    from tests.e2e.conftest import BIN, free_port, wait_for_port

    port = free_port()
    values = {
        "one_xmlrpc": demo.sim_url,
        "ec2_auth": str(demo.state_dir / ".one" / "ec2_auth"),
        "elasticips_vnet_id": EIP_VNET,
        "host": "127.0.0.1",
        "port": port,
        "tmpdir": str(tmp),
        **conf,
    }
    path = tmp / f"{name}.conf"
    path.write_text(yaml.safe_dump({f":{k}:": v for k, v in values.items()}))
    log = tmp / f"{name}.log"
    proc = subprocess.Popen(
        [str(BIN / "econe-server"), "run", "--config", str(path)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=tmp,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    try:
        wait_for_port(port, proc)
    except RuntimeError as exc:
        proc.kill()
        raise RuntimeError(f"{exc}\n--- {name} log ---\n{log.read_text()}") from exc
    return proc, f"http://127.0.0.1:{port}"


def boto_client(url: str, user: str, secret: str) -> Any:
    import boto3
    from botocore.config import Config as BotoConfig

    return boto3.client(
        "ec2",
        endpoint_url=url,
        region_name="opennebula",
        aws_access_key_id=user,
        aws_secret_access_key=secret,
        config=BotoConfig(retries={"max_attempts": 1}, max_pool_connections=50),
    )


def add_user(demo: Any, name: str, password: str) -> int:
    """A core user in group users (1); its EC2 secret is sha256(password)."""
    return demo.add_user(name, password)


def sim_call(demo: Any, method: str, *args: Any) -> Any:
    import xmlrpc.client

    proxy = xmlrpc.client.ServerProxy(demo.sim_url)
    ok, value, *rest = getattr(proxy, method)(demo.one_auth(), *args)
    assert ok, value
    return value
