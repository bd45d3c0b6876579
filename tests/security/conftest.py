"""Fixtures of the attack suite: the demo server started as a user starts it, oneadmin, users.

Every secret, signature, token and certificate a test uses is registered in `secrets_used`;
`test_zz_secrets_not_logged.py` greps the server logs for all of them at the end.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import DEMO_SECRET, Demo, start_demo, stop_demo
from tests.security.helpers import OneAdmin, action_params, eventually, send, sha256_hex, sign_v4


class SecretRegistry:
    """Strings that must never show up in a server log, and the logs to search."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}  # value -> what it is
        self.logs: list[tuple[Path, str]] = []  # (log file, banner to skip)

    def add(self, value: str | bytes | None, what: str) -> None:
        if value is None:
            return
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        value = value.strip()
        if len(value) >= 8:  # shorter strings would match by chance
            self.values.setdefault(value, what)

    def add_log(self, demo: Demo) -> None:
        self.logs.append((demo.log, demo.banner))


@pytest.fixture(scope="session")
def secrets_used() -> SecretRegistry:
    return SecretRegistry()


@dataclass
class User:
    name: str
    uid: int
    password: str
    driver: str

    @property
    def secret(self) -> str:
        """The EC2 secret key: what oned stores as PASSWORD (sha256 for core users)."""
        return sha256_hex(self.password) if self.driver == "core" else self.password


def new_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_user(
    admin: OneAdmin,
    registry: SecretRegistry,
    prefix: str,
    driver: str = "core",
    password: str | None = None,
) -> User:
    password = password or secrets.token_urlsafe(18)
    name = new_name(prefix)
    uid = admin.create_user(name, password, driver)
    user = User(name, uid, password, driver)
    registry.add(password, f"password of {name}")
    registry.add(user.secret, f"EC2 secret of {name}")
    return user


def start_logged(tmp: Path, registry: SecretRegistry, extra: list[str] | None = None):
    proc, demo = start_demo(tmp, speed="0.05", extra=extra)
    registry.add_log(demo)
    admin = OneAdmin(demo.sim_url, demo.one_auth())
    registry.add(demo.one_auth().split(":", 1)[1], "oneadmin password")
    ec2_auth = (demo.state_dir / ".one" / "ec2_auth").read_text().strip()
    registry.add(ec2_auth.split(":", 1)[1], "serveradmin password")
    return proc, demo, admin


@pytest.fixture(scope="session")
def sec_demo(tmp_path_factory, secrets_used) -> Iterator[tuple[Demo, OneAdmin]]:
    """`econe-server run --simulator` with the shipped econe.conf (:auth: ec2)."""
    proc, demo, admin = start_logged(tmp_path_factory.mktemp("sec"), secrets_used)
    yield demo, admin
    stop_demo(proc)


@pytest.fixture(scope="session")
def demo(sec_demo) -> Demo:
    return sec_demo[0]


@pytest.fixture(scope="session")
def admin(sec_demo) -> OneAdmin:
    return sec_demo[1]


def assert_accepted(reply, what: str = "") -> None:
    assert reply.status == 200, f"{what}: expected success, got {reply}"


def wait_until_known(demo: Demo, user: User) -> None:
    """Until econe's user cache has `user` (a miss refreshes it at most every 2 s)."""

    def check():
        reply = send(sign_v4(demo.url, action_params("DescribeRegions"), user.name, user.secret))
        assert reply.status == 200, reply

    eventually(check)


@pytest.fixture(scope="session")
def demo_secret() -> str:
    return DEMO_SECRET


def pytest_report_header(config):
    if os.geteuid() == 0:
        return "security suite: running as root (nginx runs single-process, no privilege drop)"
    return None
