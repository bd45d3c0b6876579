"""End-to-end fixtures: `econe-server run --simulator` started as a user starts it."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

DEMO_SECRET = hashlib.sha256(b"demo").hexdigest()
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(
    port: int, proc: subprocess.Popen, timeout: float = 60, unix_socket: Path | None = None
) -> None:
    """Until econe answers on `port` (or on `unix_socket`, when its config says so)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"econe-server exited with {proc.returncode}")
        try:
            if unix_socket is None:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            else:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(unix_socket))
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("econe-server did not open its port")


@dataclass
class Demo:
    url: str
    port: int
    sim_url: str
    state_dir: Path
    log: Path
    banner: str

    def client(self, user: str = "demo", secret: str = DEMO_SECRET, **cfg) -> object:
        return boto3.client(
            "ec2",
            endpoint_url=self.url,
            region_name="opennebula",
            aws_access_key_id=user,
            aws_secret_access_key=secret,
            config=BotoConfig(retries={"max_attempts": 1}, **cfg),
        )

    def one_auth(self) -> str:
        return (self.state_dir / ".one" / "one_auth").read_text().strip()

    def add_user(self, name: str, password: str, driver: str = "core") -> int:
        """Create an OpenNebula user (group users) as oneadmin; return once econe knows it.

        econe refreshes its user list on a miss at most every 2 s, so a brand-new user's first
        request can be refused for that long.
        """
        proxy = xmlrpc.client.ServerProxy(self.sim_url)
        ok, uid, *_ = proxy.one.user.allocate(self.one_auth(), name, password, driver, [1])
        assert ok, uid
        secret = hashlib.sha256(password.encode()).hexdigest() if driver == "core" else password
        client = self.client(user=name, secret=secret)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.describe_regions()
                return int(uid)
            except ClientError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)


def start_demo(
    tmp: Path,
    speed: str = "0.05",
    extra: list[str] | None = None,
    checkout: Path | None = None,
    unix_socket: Path | None = None,
):
    """`econe-server run --simulator`; with `checkout`, the econe of that copy of the project
    (its spec, mappings and code), run from it as `python -m econe.server_cli`; `unix_socket`:
    the :unix_socket: of the config in `extra`, where it then listens instead of its port."""
    port, sim_port = free_port(), free_port()
    state = tmp / "state"
    log = tmp / "server.log"
    exe = [sys.executable, "-m", "econe.server_cli"] if checkout else [str(BIN / "econe-server")]
    cmd = [
        *exe,
        "run",
        "--simulator",
        "--port",
        str(port),
        "--sim-port",
        str(sim_port),
        "--state-dir",
        str(state),
        "--sim-speed",
        speed,
    ]
    cmd += extra or []
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if checkout:
        env["PYTHONPATH"] = str(checkout)
    out = open(log, "wb")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=checkout or tmp)
    try:
        wait_for_port(port, proc, unix_socket=unix_socket)
    except RuntimeError as exc:
        proc.kill()
        raise RuntimeError(f"{exc}\n--- server log ---\n{log.read_text()}") from exc
    demo = Demo(
        f"http://127.0.0.1:{port}",
        port,
        f"http://127.0.0.1:{sim_port}/RPC2",
        state,
        log,
        log.read_text(),
    )
    return proc, demo


def libcloud_driver(url: str, **options: Any) -> Any:
    """libcloud's EC2 driver for the demo user at `url` (region us-east-1: libcloud takes
    only the AWS region names it knows)."""
    from urllib.parse import urlsplit

    from libcloud.compute.providers import get_driver
    from libcloud.compute.types import Provider

    parts = urlsplit(url)
    return get_driver(Provider.EC2)(
        "demo",
        DEMO_SECRET,
        secure=False,
        host=parts.hostname,
        port=parts.port,
        region="us-east-1",
        **options,
    )


def stop_demo(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> Iterator[Demo]:
    proc, d = start_demo(tmp_path_factory.mktemp("demo"))
    yield d
    stop_demo(proc)


@pytest.fixture(scope="session")
def ec2(demo):
    return demo.client()


def wait_state(ec2, instance_ids, state: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        res = ec2.describe_instances(InstanceIds=list(instance_ids))
        states = {
            i["InstanceId"]: i["State"]["Name"] for r in res["Reservations"] for i in r["Instances"]
        }
        if all(states.get(i) == state for i in instance_ids):
            return res
        if time.monotonic() > deadline:
            raise AssertionError(f"instances did not reach {state}: {states}")
        time.sleep(0.1)
