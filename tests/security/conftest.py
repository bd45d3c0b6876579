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

    def add_file(self, path: Path) -> None:
        self.logs.append((path, ""))


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


def start_logged(
    tmp: Path,
    registry: SecretRegistry,
    extra: list[str] | None = None,
    unix_socket: Path | None = None,
):
    proc, demo = start_demo(tmp, speed="0.05", extra=extra, unix_socket=unix_socket)
    registry.add_log(demo)
    admin = OneAdmin(demo.sim_url, demo.one_auth())
    registry.add(demo.one_auth().split(":", 1)[1], "oneadmin password")
    ec2_auth = (demo.state_dir / ".one" / "ec2_auth").read_text().strip()
    registry.add(ec2_auth.split(":", 1)[1], "serveradmin password")
    # The attacks are RunInstances of the demo image; make sure it is an AMI (EC2_AMI=YES),
    # whether or not the demo seed already registered it.
    admin.call("one.image.update", 0, 'EC2_AMI="YES"', 1)
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


# ----------------------------------------------------------------------- TLS fronts (nginx)


@dataclass
class Stack:
    """econe (`run --simulator`, :trusted_proxies: [127.0.0.2]) behind nginx on loopback."""

    demo: Demo
    admin: OneAdmin
    nginx: object
    pki: object
    front: str  # https://localhost:<nginx port>
    proc: object

    @property
    def econe(self) -> str:
        return self.demo.url

    def tls(self, client: str | None = None):
        import ssl

        ctx = ssl.create_default_context(cafile=str(self.pki.ca))
        if client:
            ident = self.pki.clients[client]
            ctx.load_cert_chain(ident.cert, ident.key)
        return ctx

    def close(self) -> None:
        self.nginx.stop()
        stop_demo(self.proc)


PROXY_SOURCE = "127.0.0.2"


@pytest.fixture(scope="session")
def pki(tmp_path_factory, secrets_used):
    from tests.security.tls import make_pki

    made = make_pki(tmp_path_factory.mktemp("pki"))
    for ident in made.clients.values():
        secrets_used.add(ident.key.read_text().split("-----")[2].split()[0], "client key")
    return made


def start_stack(
    tmp: Path,
    registry: SecretRegistry,
    pki,
    site: str,
    auth: str,
    unix_socket: Path | None = None,
    **values: str,
) -> Stack:
    """With `unix_socket`, econe listens there (:unix_socket:, no :trusted_proxies:) and nginx
    connects to it, as docs/nginx/*.conf say ({{ECONE}} unix:PATH, {{PROXY_SOURCE}} off)."""
    from tests.security.tls import Nginx, free_port, nginx_available

    if not nginx_available():
        pytest.fail("nginx is not installed (.ci/run installs nginx-light)")
    port = free_port()
    front = f"https://localhost:{port}"
    conf = tmp / "econe.conf"
    listen = (
        f":unix_socket: {unix_socket}\n"
        if unix_socket
        else f":trusted_proxies:\n  - {PROXY_SOURCE}\n"
    )
    conf.write_text(f":auth: {auth}\n:ssl_server: {front}/\n{listen}")
    (tmp / "econe").mkdir()
    proc, demo, admin = start_logged(
        tmp / "econe", registry, extra=["--config", str(conf)], unix_socket=unix_socket
    )
    try:
        nginx = Nginx(
            tmp / "nginx",
            site,
            {
                "LISTEN": f"127.0.0.1:{port}",
                "SERVER_NAME": "localhost",
                "SERVER_CERT": str(pki.server.cert),
                "SERVER_KEY": str(pki.server.key),
                "ECONE": f"unix:{unix_socket}" if unix_socket else f"127.0.0.1:{demo.port}",
                "PROXY_SOURCE": "off" if unix_socket else PROXY_SOURCE,
                **values,
            },
        ).start()
    except BaseException:
        stop_demo(proc)
        raise
    registry.add_file(nginx.access_log)
    return Stack(demo, admin, nginx, pki, front, proc)


@pytest.fixture(scope="session")
def tls_stack(tmp_path_factory, secrets_used, pki):
    """:auth: ec2 behind docs/nginx/econe-tls.conf."""
    stack = start_stack(tmp_path_factory.mktemp("tls"), secrets_used, pki, "econe-tls.conf", "ec2")
    yield stack
    stack.close()


@pytest.fixture(scope="session")
def x509_stack(tmp_path_factory, secrets_used, pki):
    """:auth: x509 behind docs/nginx/econe-x509.conf. The demo user (uid 2, owner of the demo
    AMI) becomes the x509 user of alice's certificate; bob is an x509 user who owns nothing;
    mallory's DN is unknown to OpenNebula."""
    stack = start_stack(
        tmp_path_factory.mktemp("x509"),
        secrets_used,
        pki,
        "econe-x509.conf",
        "x509",
        CLIENT_CA=str(pki.ca),
    )
    try:
        stack.admin.call("one.user.chauth", 2, "x509", pki.clients["alice"].dn)
        stack.admin.create_user(new_name("bob"), pki.clients["bob"].dn, "x509")
    except BaseException:
        stack.close()
        raise
    yield stack
    stack.close()


@pytest.fixture(scope="session")
def x509_unix_stack(tmp_path_factory, secrets_used, pki):
    """As x509_stack, with econe on a Unix socket that only nginx's user may open."""
    tmp = tmp_path_factory.mktemp("x509unix")
    stack = start_stack(
        tmp,
        secrets_used,
        pki,
        "econe-x509.conf",
        "x509",
        unix_socket=tmp / "econe.sock",
        CLIENT_CA=str(pki.ca),
    )
    try:
        stack.admin.call("one.user.chauth", 2, "x509", pki.clients["alice"].dn)
    except BaseException:
        stack.close()
        raise
    yield stack
    stack.close()


REMOTE_USERS = {"demo": "demo-basic-pw-6b1f", "eve": "eve-basic-pw-93ac"}


@pytest.fixture(scope="session")
def remote_stack(tmp_path_factory, secrets_used, pki):
    """:auth: remote behind docs/nginx/econe-remote.conf (HTTP Basic). `demo` (owner of the
    demo AMI) becomes a public user whose PASSWORD is its name; so does `eve`, who owns nothing."""
    import base64
    import hashlib as _hashlib

    tmp = tmp_path_factory.mktemp("remote")
    lines = []
    for name, password in REMOTE_USERS.items():
        salt = os.urandom(4)
        digest = _hashlib.sha1(password.encode() + salt).digest()
        lines.append(f"{name}:{{SSHA}}{base64.b64encode(digest + salt).decode()}")
        secrets_used.add(password, f"basic-auth password of {name}")
    htpasswd = tmp / "htpasswd"
    htpasswd.write_text("\n".join(lines) + "\n")
    stack = start_stack(
        tmp, secrets_used, pki, "econe-remote.conf", "remote", HTPASSWD=str(htpasswd)
    )
    try:
        stack.admin.call("one.user.chauth", 2, "public", "demo")
        stack.admin.create_user("eve", "eve", "public")
    except BaseException:
        stack.close()
        raise
    yield stack
    stack.close()
