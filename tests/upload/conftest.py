"""Fixtures: a gateway on onesim serving UploadImage, and a streaming SigV2 multipart client."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import socket
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from botocore.auth import SigV2Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from lxml import etree

import econe.front
from econe.client.credentials import Credentials
from tests.e2e.conftest import DEMO_SECRET, Demo, free_port, start_demo, stop_demo, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


def front_serves_uploads() -> bool:
    """Has econe/front.py been patched to hand multipart requests to econe.upload?"""
    return "handle_upload" in Path(econe.front.__file__).read_text()


def start_upload_server(
    tmp: Path, *, upload_max_size: int | None = None, speed: str = "0.05", conf: str = ""
):
    """(process, Demo): `econe-server run --simulator` when the front serves uploads, else
    tests/upload/serve.py (the same app behind the documented front patch). `conf`: more
    econe.conf lines."""
    if front_serves_uploads():
        extra = []
        if upload_max_size is not None:
            conf += f":upload_max_size: {upload_max_size}\n"
        if conf:
            (tmp / "econe.conf").write_text(conf)
            extra = ["--config", str(tmp / "econe.conf")]
        return start_demo(tmp, speed, extra)
    assert not conf, "tests/upload/serve.py takes no econe.conf lines"
    port, sim_port = free_port(), free_port()
    state, log = tmp / "state", tmp / "server.log"
    cmd = [sys.executable, "-m", "tests.upload.serve", "--port", str(port)]
    cmd += ["--sim-port", str(sim_port), "--state-dir", str(state), "--sim-speed", speed]
    if upload_max_size is not None:
        cmd += ["--upload-max-size", str(upload_max_size)]
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        wait_for_port(port, proc)
    except RuntimeError as exc:
        proc.kill()
        raise RuntimeError(f"{exc}\n--- server log ---\n{log.read_text()}") from exc
    url = f"http://127.0.0.1:{port}"
    return proc, Demo(url, port, f"http://127.0.0.1:{sim_port}/RPC2", state, log, log.read_text())


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[subprocess.Popen, Demo]]:
    proc, demo = start_upload_server(tmp_path_factory.mktemp("upload"))
    yield proc, demo
    stop_demo(proc)


@pytest.fixture(scope="module")
def demo(server) -> Demo:
    return server[1]


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM of a process, KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


# -- the client side ---------------------------------------------------------------------------


def signed_fields(
    url: str,
    *,
    user: str = "demo",
    secret: str = DEMO_SECRET,
    name: str | None = None,
    checksum: str | None = None,
    action: str = "UploadImage",
) -> dict[str, str]:
    fields = {
        "Action": action,
        "Version": "2016-11-15",
        "AWSAccessKeyId": user,
        "SignatureVersion": "2",
        "SignatureMethod": "HmacSHA256",
        "Timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if name is not None:
        fields["Name"] = name
    if checksum is not None:
        fields["Checksum"] = checksum
    host = url.split("//", 1)[1]
    fields["Signature"] = sign_v2(secret, "POST", host, "/", fields)
    return fields


def sign_v2(secret: str, method: str, host: str, path: str, params: dict[str, str]) -> str:
    """A SigV2 (HmacSHA256) signature made by botocore's signer."""
    signer = SigV2Auth(BotoCredentials("unused", secret))
    return signer.calc_signature(AWSRequest(method, f"http://{host}{path}"), params)[1]


BOUNDARY = "econe-test-7d1f0c2a"


def field_parts(fields: dict[str, str]) -> bytes:
    return b"".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    )


FILE_HEAD = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="disk.img"\r\n'
    "Content-Type: application/octet-stream\r\n\r\n"
).encode()
TAIL = f"\r\n--{BOUNDARY}--\r\n".encode()


@dataclass
class Answer:
    status: int
    body: bytes

    @property
    def xml(self) -> etree._Element:
        return etree.fromstring(self.body)

    def text(self, tag: str) -> str | None:
        found = self.xml.find(f".//{{*}}{tag}")
        if found is None:
            found = self.xml.find(f".//{tag}")
        return None if found is None else found.text

    @property
    def image_id(self) -> str | None:
        return self.text("imageId")

    @property
    def code(self) -> str | None:
        return self.text("Code")


def read_answer(sock: socket.socket) -> Answer:
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            break
        data += more
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(
        int(v) for k, _, v in (x.partition(":") for x in lines[1:]) if k.lower() == "content-length"
    )
    while len(rest) < length:
        more = sock.recv(65536)
        if not more:
            break
        rest += more
    return Answer(status, rest[:length])


def post_stream(
    url: str,
    parts: Iterable[bytes],
    length: int,
    *,
    stop_after: int | None = None,
    timeout: float = 120,
) -> Answer | None:
    """POST a multipart body from `parts` over a real socket with a Content-Length, without
    holding it in memory. `stop_after`: close the socket after that many body bytes."""
    host = url.split("//", 1)[1]
    hostname, port = host.rsplit(":", 1)
    sock = socket.create_connection((hostname, int(port)), timeout=timeout)
    try:
        sock.sendall(
            (
                f"POST / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: econe-tests\r\n"
                f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
                f"Content-Length: {length}\r\n\r\n"
            ).encode()
        )
        sent = 0
        for chunk in parts:
            if stop_after is not None and sent + len(chunk) >= stop_after:
                sock.sendall(chunk[: stop_after - sent])
                return None
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server answered early: read what it said
            sent += len(chunk)
        return read_answer(sock)
    finally:
        sock.close()


def file_chunks(path: Path, digest: hashlib._Hash | None = None, size: int = 1 << 20):
    with open(path, "rb") as fh:
        while chunk := fh.read(size):
            if digest is not None:
                digest.update(chunk)
            yield chunk


def upload(
    url: str,
    content: bytes | Path,
    *,
    fields: dict[str, str] | None = None,
    file_first: bool = False,
    stop_after: int | None = None,
    **sign,
) -> Answer | None:
    fields = fields if fields is not None else signed_fields(url, **sign)
    head = field_parts(fields)
    if isinstance(content, Path):
        size = content.stat().st_size
        chunks: Iterable[bytes] = file_chunks(content)
    else:
        size, chunks = len(content), [content]
    length = len(head) + len(FILE_HEAD) + size + len(TAIL)
    if file_first:
        parts = [FILE_HEAD, *chunks, b"\r\n", head, f"--{BOUNDARY}--\r\n".encode()]
        length = len(FILE_HEAD) + size + 2 + len(head) + len(BOUNDARY) + 6
    else:
        parts = [head, FILE_HEAD, *chunks, TAIL]
    return post_stream(url, (p for group in [parts] for p in group), length, stop_after=stop_after)


# -- OpenNebula, as oneadmin -------------------------------------------------------------------


def one_images(demo: Demo) -> dict[int, etree._Element]:
    proxy = xmlrpc.client.ServerProxy(demo.sim_url)
    ok, xml, *_ = proxy.one.imagepool.info(demo.one_auth(), -2, -1, -1)
    assert ok, xml
    return {int(i.findtext("ID")): i for i in etree.fromstring(xml.encode()).iterfind("IMAGE")}


def upload_dir(demo: Demo) -> Path:
    return demo.state_dir / "upload"


def wait_until(predicate, timeout: float = 15, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def creds(demo: Demo) -> Credentials:
    return Credentials("demo", DEMO_SECRET, demo.url, "test")
