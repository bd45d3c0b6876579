"""handle_upload in process: real onesim, real OneClient, sessions and Authenticator; the ASGI
messages driven directly, so disconnects and cancellation can happen at any point."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
import xmlrpc.client
from pathlib import Path

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from lxml import etree

from econe.auth.authenticator import Authenticator
from econe.auth.users import UserDirectory
from econe.config import Config
from econe.errors import Ec2Error
from econe.one.client import OneClient
from econe.one.session import ServerCipherSessions
from econe.upload import UploadJanitor, handle_upload, is_upload_request, store
from econe.upload.images import Existing, reuse
from econe.upload.store import PREFIX
from onesim.server import SimServer
from tests.e2e.conftest import DEMO_SECRET
from tests.gateway.conftest import botocore_parse

from .conftest import BOUNDARY, FILE_HEAD, TAIL, field_parts, sign_v2

HOST = "127.0.0.1:4567"


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    server = SimServer(str(tmp_path_factory.mktemp("sim")), port=0, seed="demo", speed=0.05)
    server.start()
    yield server
    server.stop()


class Gateway:
    def __init__(self, sim: SimServer, tmpdir: Path, **overrides):
        self.sim = sim
        self.config = Config(
            one_xmlrpc=sim.url,
            host="127.0.0.1",
            port=4567,
            ec2_auth=os.path.join(sim.state_dir, ".one", "ec2_auth"),
            tmpdir=str(tmpdir),
            **overrides,
        )
        self.one = OneClient(sim.url, timeout=10)
        self.sessions = ServerCipherSessions(self.config.ec2_auth)
        users = UserDirectory.from_one(self.config, self.one, self.sessions)
        self.authenticator = Authenticator(self.config, users)
        self.janitor = UploadJanitor(poll_first=0.05, poll_max=0.2)
        self.tmpdir = tmpdir

    def scope(self, headers: dict[str, str] | None = None) -> dict:
        base = {
            "host": HOST,
            "content-type": f"multipart/form-data; boundary={BOUNDARY}",
            **(headers or {}),
        }
        return {
            "type": "http",
            "method": "POST",
            "path": "/",
            "query_string": b"",
            "headers": [(k.encode(), v.encode()) for k, v in base.items()],
            "client": ("127.0.0.1", 40000),
        }

    async def call(
        self,
        chunks,
        headers=None,
        *,
        disconnect_after: int | None = None,
        hang: bool = False,
        gap: float = 0.0,
    ):
        """(status, body bytes, outcome); status None if nothing was sent. `hang`: receive()
        waits for ever after the last chunk; `gap`: seconds before each chunk arrives."""
        chunks = list(chunks)
        sent: list[dict] = []
        index = 0

        async def receive():
            nonlocal index
            if disconnect_after is not None and index >= disconnect_after:
                return {"type": "http.disconnect"}
            if index >= len(chunks):
                await asyncio.sleep(3600)
            await asyncio.sleep(gap)
            chunk = chunks[index]
            index += 1
            return {"type": "http.request", "body": chunk, "more_body": hang or index < len(chunks)}

        async def send(message):
            sent.append(message)

        outcome = await handle_upload(
            self.scope(headers),
            receive,
            send,
            config=self.config,
            authenticator=self.authenticator,
            one=self.one,
            sessions=self.sessions,
            request_id="req-1",
            janitor=self.janitor,
        )
        if not sent:
            return None, b"", outcome
        body = b"".join(m.get("body", b"") for m in sent[1:])
        return sent[0]["status"], body, outcome

    def sync(self, chunks, headers=None, **kw):
        """call() in a fresh event loop, then let the janitor finish within it."""

        async def go():
            result = await self.call(chunks, headers, **kw)
            await asyncio.wait_for(self.janitor.wait(), 10)
            return result

        return asyncio.run(go())

    def images(self) -> dict[int, etree._Element]:
        proxy = xmlrpc.client.ServerProxy(self.sim.url)
        ok, xml, *_ = proxy.one.imagepool.info(self.sim.one_auth, -2, -1, -1)
        assert ok
        return {int(i.findtext("ID")): i for i in etree.fromstring(xml.encode()).iterfind("IMAGE")}

    def files(self) -> list[str]:
        return sorted(os.listdir(self.tmpdir)) if self.tmpdir.exists() else []


@pytest.fixture
def gw(sim, tmp_path):
    return Gateway(sim, tmp_path / "upload")


def fields(name: str | None = None, secret: str = DEMO_SECRET, **extra) -> dict[str, str]:
    out = {
        "Action": "UploadImage",
        "Version": "2008-12-01",
        "AWSAccessKeyId": "demo",
        "SignatureVersion": "2",
        "SignatureMethod": "HmacSHA256",
        "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **extra,
    }
    if name is not None:
        out["Name"] = name
    out["Signature"] = sign_v2(secret, "POST", HOST, "/", out)
    return out


def body(f: dict[str, str], content: bytes, piece: int = 1 << 16) -> list[bytes]:
    raw = field_parts(f) + FILE_HEAD + content + TAIL
    return [raw[i : i + piece] for i in range(0, len(raw), piece)]


def code_of(data: bytes) -> str:
    return etree.fromstring(data).findtext(".//Code")


def run(coro):
    return asyncio.run(coro)


async def until(predicate, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def length(f: dict[str, str], size: int) -> dict[str, str]:
    """The Content-Length header of body(f, <size bytes>)."""
    return {"content-length": str(len(field_parts(f)) + len(FILE_HEAD) + size + len(TAIL))}


async def stop(*tasks: asyncio.Future) -> None:
    """Cancel uploads left hanging (as a server stopping them does), then let batches on the
    writer thread finish."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(0.05)


def test_is_upload_request():
    scope = {
        "type": "http",
        "method": "POST",
        "headers": [(b"Content-Type", b"Multipart/Form-Data; boundary=x")],
    }
    assert is_upload_request(scope)
    assert not is_upload_request({**scope, "method": "GET"})
    form = [(b"content-type", b"application/x-www-form-urlencoded")]
    assert not is_upload_request({**scope, "headers": form})
    assert not is_upload_request({**scope, "headers": []})


def test_upload_allocates_as_the_user_and_answers_register_image(gw):
    content = os.urandom(200_000)

    async def go():
        result = await gw.call(body(fields("handler-1"), content))
        await gw.janitor.wait()
        return result

    status, data, outcome = run(go())
    assert status == 200, data
    assert outcome.user == "demo" and outcome.image_id
    assert b'xmlns="http://ec2.amazonaws.com/doc/2008-12-01/"' in data
    parsed = botocore_parse("RegisterImage", 200, data)
    image = gw.images()[int(parsed["ImageId"][4:])]
    assert image.findtext("UNAME") == "demo" and image.findtext("NAME") == "handler-1"
    assert image.findtext("TEMPLATE/EC2_UPLOAD_SHA256") == hashlib.sha256(content).hexdigest()
    assert image.findtext("DATASTORE_ID") == "1"
    assert gw.files() == []  # removed once the image went READY
    assert image.findtext("PATH").startswith(str(gw.tmpdir) + "/" + PREFIX)


def test_whole_body_in_one_message(gw):
    content = os.urandom(3 << 20)  # larger than the pre-file limit, in a single ASGI message
    status, data, _ = gw.sync([field_parts(fields("one-message")) + FILE_HEAD + content + TAIL])
    assert status == 200, data
    image = gw.images()[int(etree.fromstring(data).findtext(".//{*}imageId")[4:])]
    assert image.findtext("TEMPLATE/EC2_UPLOAD_SHA256") == hashlib.sha256(content).hexdigest()


def test_default_name_and_template_injection(gw):
    status, data, _ = gw.sync(body(fields(), b"abc"))
    assert status == 200
    name = gw.images()[int(etree.fromstring(data).findtext(".//{*}imageId")[4:])].findtext("NAME")
    assert name.startswith("ec2-") and len(name) == 40
    evil = "e[v]il = PATH=(x) ]] % @!"
    status, data, _ = gw.sync(body(fields(evil), b"abc"))
    assert status == 200, data
    image = gw.images()[int(etree.fromstring(data).findtext(".//{*}imageId")[4:])]
    assert image.findtext("NAME") == evil
    assert image.findtext("PATH").startswith(str(gw.tmpdir))
    # 128 bytes of UTF-8 are a name oned takes
    status, data, _ = gw.sync(body(fields("é" * 64), b"abc"))
    assert status == 200, data
    image = gw.images()[int(etree.fromstring(data).findtext(".//{*}imageId")[4:])]
    assert image.findtext("NAME") == "é" * 64
    # characters oned refuses in names are refused before the file is read
    status, data, _ = gw.sync(body(fields('x" PATH="/etc/shadow'), b"abc"))
    assert status == 400 and "Name" in data.decode()
    assert gw.files() == []


@pytest.mark.parametrize(
    "f, code",
    [
        (fields("n", secret="0" * 64), "SignatureDoesNotMatch"),
        ({k: v for k, v in fields("n").items() if k != "Signature"}, "InvalidRequest"),
        (fields("n", Action="RunInstances"), "InvalidAction"),
        (fields(" spaced "), "InvalidParameterValue"),
        (fields("x" * 129), "InvalidParameterValue"),
        (fields("é" * 65), "InvalidParameterValue"),  # 130 bytes: oned counts bytes
        (fields("n", Checksum="nothex"), "InvalidParameterValue"),
    ],
)
def test_refused_before_anything_is_stored(gw, f, code):
    status, data, _ = gw.sync(body(f, b"z" * 100_000))
    assert status in (400, 403) and code_of(data) == code, data
    assert gw.files() == []


def test_text_only_body_is_authenticated_then_missing_file(gw):
    raw = field_parts(fields("n")) + f"--{BOUNDARY}--\r\n".encode()
    status, data, _ = gw.sync([raw])
    assert status == 400 and code_of(data) == "MissingParameter"
    bad = field_parts(fields("n", secret="0" * 64)) + f"--{BOUNDARY}--\r\n".encode()
    status, data, _ = gw.sync([bad])
    assert status == 403


def test_field_limits(gw):
    long = field_parts({"Big": "a" * 9000}) + FILE_HEAD + b"x" + TAIL
    status, data, _ = gw.sync([long])
    assert status == 400 and "exceeds" in data.decode()
    many = field_parts({f"F{i}": "v" for i in range(70)}) + FILE_HEAD + b"x" + TAIL
    status, data, _ = gw.sync([many])
    assert status == 400 and "more than 64" in data.decode()
    dup = field_parts(fields("n")) + field_parts({"Name": "again"}) + FILE_HEAD + b"x" + TAIL
    status, data, _ = gw.sync([dup])
    assert status == 400 and "twice" in data.decode()
    preamble = [b"p" * (1 << 16)] * 20 + [field_parts(fields("n")) + FILE_HEAD + b"x" + TAIL]
    status, data, _ = gw.sync(preamble)
    assert status == 400 and "before the file part" in data.decode()
    assert gw.files() == []


def test_part_after_the_file_is_refused_and_the_file_removed(gw):
    raw = field_parts(fields("n")) + FILE_HEAD + b"x" * 1000 + b"\r\n"
    raw += field_parts({"Late": "1"}) + f"--{BOUNDARY}--\r\n".encode()
    status, data, _ = gw.sync([raw])
    assert status == 400 and "last part" in data.decode()
    assert gw.files() == []


def test_sigv4_cannot_sign_an_upload(gw):
    raw = field_parts({"Action": "UploadImage"}) + FILE_HEAD + b"x" + TAIL
    for signed in (b"", raw):  # over another body, or over this very one: said the same way
        request = AWSRequest(
            method="POST",
            url=f"http://{HOST}/",
            headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
            data=signed,
        )
        SigV4Auth(BotoCredentials("demo", DEMO_SECRET), "ec2", "opennebula").add_auth(request)
        headers = {k.lower(): v for k, v in request.headers.items()}
        status, data, _ = gw.sync([raw], headers)
        assert (status, code_of(data)) == (400, "InvalidRequest")
        assert "Signature Version 2" in data.decode()
    assert gw.files() == []


def test_disconnect_mid_file_leaves_nothing(gw):
    before = set(gw.images())
    chunks = body(fields("gone"), os.urandom(1 << 20), piece=1 << 14)

    async def go():
        result = await gw.call(chunks, disconnect_after=len(chunks) // 2)
        await asyncio.sleep(0.05)  # a batch may still be on the writer thread
        return result

    status, _, outcome = run(go())
    assert status is None and outcome.status == 0
    assert gw.files() == []
    assert set(gw.images()) == before


def test_cancelled_mid_file_leaves_nothing(gw):
    chunks = body(fields("cancelled"), os.urandom(1 << 20), piece=1 << 14)[:40]

    async def go():
        task = asyncio.ensure_future(gw.call(chunks, hang=True))  # receive() then hangs
        for _ in range(100):
            await asyncio.sleep(0.01)
            if gw.files():
                break
        assert gw.files(), "the upload should be streaming by now"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.05)

    run(go())
    assert gw.files() == []


def test_a_stalled_upload_times_out_and_leaves_nothing(sim, tmp_path):
    """No chunk for :body_timeout: seconds: RequestTimeout, before the file (nobody
    authenticated yet) as in the middle of it (the partial file removed)."""
    gw = Gateway(sim, tmp_path / "upload", body_timeout=0.5)
    before = set(gw.images())
    raw = body(fields("stalled"), os.urandom(1 << 18), piece=1 << 14)
    for chunks in (raw[:1], raw[:8]):  # inside the fields; inside the file
        started = time.monotonic()
        status, data, _ = gw.sync(chunks, hang=True)
        assert time.monotonic() - started < 5
        assert (status, code_of(data)) == (400, "RequestTimeout")
        assert gw.files() == [] and set(gw.images()) == before


def test_the_fields_before_the_file_have_one_deadline(sim, tmp_path):
    """Chunks that each come in time but drip the unauthenticated fields past :body_timeout:
    in all are refused: only an authenticated upload may take long."""
    gw = Gateway(sim, tmp_path / "upload", body_timeout=1)
    head = field_parts(fields("drip"))
    drips = [head[i : i + 40] for i in range(0, len(head), 40)]
    assert len(drips) * 0.3 > 2
    status, data, outcome = gw.sync(drips, hang=True, gap=0.3)
    assert (status, code_of(data)) == (400, "RequestTimeout") and outcome.user is None


def test_another_action_is_logged_quoted(gw):
    """An authenticated multipart request naming another action, with a newline in it, must
    not forge an access-log line."""
    forged = "X\n127.0.0.1 forged-id admin POST TerminateInstances 200 1.0ms"
    status, data, outcome = gw.sync(body(fields(Action=forged), b"x"))
    assert (status, code_of(data)) == (400, "InvalidAction")
    assert "\n" not in outcome.action and outcome.action == ascii(forged[:64])


def test_oversize_while_streaming(sim, tmp_path):
    gw = Gateway(sim, tmp_path / "upload", upload_max_size=100_000)
    status, data, _ = gw.sync(body(fields("big"), b"q" * 100_001))
    assert status == 413 and code_of(data) == "RequestEntityTooLarge"
    assert gw.files() == []
    status, _, _ = gw.sync(body(fields("fits"), b"q" * 100_000))
    assert status == 200


def test_allocate_failure_removes_the_file_at_once(gw):
    proxy = xmlrpc.client.ServerProxy(gw.sim.url)
    proxy.onesim.fault.set(
        gw.sim.one_auth,
        "one.image.allocate",
        0x4000,
        "[one.image.allocate] Error allocating a new image. Not enough space in datastore",
        0,
        1,
    )
    try:
        status, data, _ = gw.sync(body(fields("nospace"), b"x" * 5000))
    finally:
        proxy.onesim.fault.clear(gw.sim.one_auth)
    # the capacity error CreateImage answers (it was IncorrectState: no state was wrong)
    assert (status, code_of(data)) == (400, "ResourceLimitExceeded")
    assert "Not enough space" in data.decode()
    assert gw.files() == []


def test_unknown_datastore_is_a_server_error(sim, tmp_path):
    gw = Gateway(sim, tmp_path / "upload", datastore_id=77)
    status, data, _ = gw.sync(body(fields("ds"), b"x"))
    assert status == 500 and code_of(data) == "InternalError"
    assert gw.files() == []


def test_oned_failure_removes_the_file(sim, tmp_path):
    gw = Gateway(sim, tmp_path / "upload")
    proxy = xmlrpc.client.ServerProxy(sim.url)

    async def go():
        await gw.call(body(fields("warm"), b"x"))  # user pool cached
        await gw.janitor.wait()
        proxy.onesim.fault.set(sim.one_auth, "one.imagepool.info", -1, "down", 0, 1)
        try:
            return await gw.call(body(fields("down"), b"x"))
        finally:
            proxy.onesim.fault.clear(sim.one_auth)

    status, data, _ = run(go())
    assert status == 500 and code_of(data) == "InternalError", data
    assert gw.files() == []


def test_concurrent_identical_uploads_make_one_image(sim, tmp_path):
    gw = Gateway(sim, tmp_path / "upload", upload_max_per_user=4)  # the default is 2
    content = os.urandom(100_000)

    async def go():
        return await asyncio.gather(*(gw.call(body(fields("twin"), content)) for _ in range(4)))

    results = run(go())
    ids = {etree.fromstring(d).findtext(".//{*}imageId") for s, d, _ in results}
    assert all(s == 200 for s, _, _ in results) and len(ids) == 1
    twins = [i for i in gw.images().values() if i.findtext("NAME") == "twin"]
    assert len(twins) == 1


def test_reuse_rules():
    assert reuse(None, "n", "a" * 64) is None
    assert reuse(Existing(3, 4, "a" * 64), "n", "a" * 64) == 3  # still copying: same image
    with pytest.raises(Exception, match="different content"):
        reuse(Existing(3, 1, "b" * 64), "n", "a" * 64)
    for state, word in ((5, "ERROR"), (3, "DISABLED"), (7, "DELETE")):
        with pytest.raises(Ec2Error, match=word) as err:
            reuse(Existing(3, state, "a" * 64), "n", "a" * 64)
        assert err.value.code == "IncorrectState"


def test_a_retry_never_gets_an_image_disabled_meanwhile(gw):
    """The image an upload made, disabled in OpenNebula before the retry: RegisterImage would
    not find it, so the retry is refused (IncorrectState, naming it), stores nothing and
    makes no second image; enabled again, the retry answers it."""
    content = b"disabled meanwhile"
    status, data, _ = gw.sync(body(fields("disabled-meanwhile"), content))
    assert status == 200, data
    image_id = int(etree.fromstring(data).findtext(".//{*}imageId")[4:])
    proxy = xmlrpc.client.ServerProxy(gw.sim.url)
    assert proxy.one.image.enable(gw.sim.one_auth, image_id, False)[0]
    before = set(gw.images())
    status, data, _ = gw.sync(body(fields("disabled-meanwhile"), content))
    assert status == 400 and code_of(data) == "IncorrectState", data
    assert b"DISABLED" in data and f"ami-{image_id:08d}".encode() in data
    assert set(gw.images()) == before and gw.files() == []
    assert proxy.one.image.enable(gw.sim.one_auth, image_id, True)[0]
    status, data, _ = gw.sync(body(fields("disabled-meanwhile"), content))
    assert status == 200 and etree.fromstring(data).findtext(".//{*}imageId") == (
        f"ami-{image_id:08d}"
    )


# -- limits on uploads in progress ----------------------------------------------------------------


def test_uploads_per_user_and_in_all_are_capped(sim, tmp_path, caplog):
    """Uploads started and left unfinished: one user gets :upload_max_per_user: of them, all
    users together :upload_max_concurrent:; more are refused before a byte is stored with
    RequestLimitExceeded (503: the SDKs retry it later), logged as a warning (the limit at
    work, not a failure); a dropped upload frees its place."""
    gw = Gateway(sim, tmp_path / "upload", upload_max_per_user=1, upload_max_concurrent=2)
    proxy = xmlrpc.client.ServerProxy(sim.url)
    for user in ("uploader-1", "uploader-2"):
        proxy.one.user.allocate(sim.one_auth, user, "pw", "core", [1])
    secret = hashlib.sha256(b"pw").hexdigest()
    content = os.urandom(1 << 18)

    def held(f: dict[str, str]) -> asyncio.Future:
        return asyncio.ensure_future(gw.call(body(f, content, piece=1 << 14)[:8], hang=True))

    async def go():
        first = held(fields("held"))
        await until(lambda: len(gw.files()) == 1)
        status, data, _ = await gw.call(body(fields("second"), b"x"))
        assert botocore_parse("RegisterImage", status, data)["Error"] == {
            "Code": "RequestLimitExceeded",
            "Message": "You already have 1 uploads in progress, the most one user may send at "
            "once; try again when one has finished.",
        }
        assert status == 503
        other = held(fields("other", secret=secret, AWSAccessKeyId="uploader-1"))
        await until(lambda: len(gw.files()) == 2)
        status, data, _ = await gw.call(
            body(fields("third", secret=secret, AWSAccessKeyId="uploader-2"), b"x")
        )
        assert (status, code_of(data)) == (503, "RequestLimitExceeded")
        assert b"as many uploads as it takes" in data
        assert len(gw.files()) == 2
        await stop(first, other)
        assert gw.files() == []
        status, data, _ = await gw.call(body(fields("after"), b"x"))
        assert status == 200, data
        await gw.janitor.wait()

    with caplog.at_level(logging.WARNING, logger="econe"):
        run(go())
    assert gw.files() == []
    refusals = [r for r in caplog.records if "RequestLimitExceeded" in r.getMessage()]
    assert len(refusals) == 2 and {r.levelno for r in refusals} == {logging.WARNING}


def test_a_trickling_upload_is_cut_off_and_leaves_nothing(sim, tmp_path):
    """A file dripped a little at a time, each piece inside :body_timeout: (a byte every 40 s
    of 60 held a slot and its disk space for ever): it must come at :upload_min_rate: over
    each :body_timeout:, else RequestTimeout and the partial file removed."""
    gw = Gateway(sim, tmp_path / "upload", body_timeout=0.5, upload_min_rate=100_000)
    before = set(gw.images())
    chunks = [field_parts(fields("trickle")) + FILE_HEAD] + [b"t" * 100] * 50
    started = time.monotonic()
    status, data, _ = gw.sync(chunks, hang=True, gap=0.1)  # 1,000 bytes a second
    assert time.monotonic() - started < 2
    assert (status, code_of(data)) == (400, "RequestTimeout")
    assert b"slower than the server's minimum of 100000 bytes per second" in data
    assert gw.files() == [] and set(gw.images()) == before
    status, data, _ = gw.sync(body(fields("quick"), os.urandom(1 << 20)))
    assert status == 200, data


def test_no_room_in_tmpdir_refuses_or_stops_the_upload(sim, tmp_path, monkeypatch):
    """:tmpdir: keeps :upload_min_free: bytes free. An upload whose Content-Length does not fit,
    with what the uploads in progress still announce, is refused before a byte is stored; one
    during which the disk fills is stopped. InsufficientCapacity (503), no file left."""
    disk = {"free": 10 << 20}  # the file system as statvfs reports it
    monkeypatch.setattr(store, "_free", lambda _stat: disk["free"])
    gw = Gateway(sim, tmp_path / "upload", upload_min_free=1 << 20)
    content = b"\1" * (6 << 20)

    async def go():
        f = fields("too-big-for-the-disk")
        status, data, _ = await gw.call(body(f, content + content), length(f, 12 << 20))
        assert (status, code_of(data)) == (503, "InsufficientCapacity"), data
        assert b"not enough free space to receive this upload" in data and gw.files() == []
        # 6 MiB fit, but not twice: the first upload has hardly started
        f = fields("first")
        first = asyncio.ensure_future(
            gw.call(body(f, content, piece=1 << 14)[:4], length(f, len(content)), hang=True)
        )
        await until(gw.files)
        g = fields("second")
        status, data, _ = await gw.call(body(g, content), length(g, len(content)))
        assert (status, code_of(data)) == (503, "InsufficientCapacity"), data
        assert len(gw.files()) == 1
        await stop(first)
        assert gw.files() == []
        # the disk fills (another writer) while a file streams
        f = fields("filling")
        task = asyncio.ensure_future(gw.call(body(f, content), length(f, len(content)), gap=0.01))
        await until(gw.files)
        disk["free"] = 1 << 19
        status, data, _ = await task
        assert (status, code_of(data)) == (503, "InsufficientCapacity"), data
        assert b"ran out of space while receiving this upload" in data
        await asyncio.sleep(0.05)
        assert gw.files() == []
        disk["free"] = 10 << 20
        status, data, _ = await gw.call(body(f, content), length(f, len(content)))
        assert status == 200, data
        await gw.janitor.wait()

    run(go())
    assert gw.files() == []


# -- the janitor ---------------------------------------------------------------------------------


def test_janitor_removes_the_file_when_the_image_is_deleted(tmp_path):
    slow_sim = SimServer(str(tmp_path / "sim"), port=0, seed="demo", speed=60).start()
    try:
        gw = Gateway(slow_sim, tmp_path / "upload")
        proxy = xmlrpc.client.ServerProxy(slow_sim.url)

        async def go():
            status, data, _ = await gw.call(body(fields("to-delete"), b"x" * 10))
            assert status == 200, data
            ami = int(etree.fromstring(data).findtext(".//{*}imageId")[4:])
            await asyncio.sleep(0.3)
            assert len(gw.files()) == 1  # LOCKED: oned is still copying
            assert gw.images()[ami].findtext("STATE") == "4"
            # a LOCKED image goes only with force (oned, and onesim): `oneimage delete --force`
            assert not proxy.one.image.delete(slow_sim.one_auth, ami, False)[0]
            ok, *_ = proxy.one.image.delete(slow_sim.one_auth, ami, True)
            assert ok
            await asyncio.wait_for(gw.janitor.wait(), 5)

        run(go())
        assert gw.files() == []
    finally:
        slow_sim.stop()


def test_janitor_states_timeout_and_errors(tmp_path):
    async def go():
        janitor = UploadJanitor(timeout=0.5, poll_first=0.02, poll_max=0.05)
        files = {}
        for name in ("ready", "error", "gone", "timeout", "flaky"):
            files[name] = tmp_path / f"{PREFIX}{name}"
            files[name].write_bytes(b"x")
        states = {"ready": iter([4, 4, 1]), "error": iter([4, 5]), "gone": iter([None])}
        calls = {"flaky": 0}

        def probe_for(name):
            def probe():
                if name == "timeout":
                    return 4
                if name == "flaky":
                    calls["flaky"] += 1
                    if calls["flaky"] < 3:
                        raise OSError("oned down")
                    return 1
                return next(states[name])

            return probe

        for i, name in enumerate(files):
            janitor.watch(str(files[name]), i, probe_for(name))
        await asyncio.sleep(0.3)
        assert not files["ready"].exists() and not files["error"].exists()
        assert not files["gone"].exists() and not files["flaky"].exists()
        assert files["timeout"].exists()
        await janitor.wait()
        assert not files["timeout"].exists()

    run(go())


def test_janitor_cancelled_leaves_the_file_and_sweep_removes_stale_ones(tmp_path):
    async def go():
        janitor = UploadJanitor(timeout=100, poll_first=0.01)
        path = tmp_path / f"{PREFIX}copying"
        path.write_bytes(b"x")
        janitor.watch(str(path), 1, lambda: 4)
        await asyncio.sleep(0.05)
        janitor.close()
        await janitor.wait()
        assert path.exists()  # oned may still be copying it
        return janitor

    janitor = run(go())
    old = tmp_path / f"{PREFIX}old"
    old.write_bytes(b"x")
    other = tmp_path / "not-ours"
    other.write_bytes(b"x")
    now = time.time()
    os.utime(old, (now - 200, now - 200))
    os.utime(other, (now - 200, now - 200))
    assert janitor.sweep(tmp_path) == [str(old)]
    assert other.exists() and (tmp_path / f"{PREFIX}copying").exists()
    assert janitor.sweep(tmp_path / "missing") == []


def test_two_host_headers_are_refused(gw, monkeypatch):
    """As every request (econe.upload.wire.request_headers): no one host to check against."""
    plain = gw.scope

    def doubled(headers=None):
        scope = plain(headers)
        return {**scope, "headers": [*scope["headers"], (b"host", b"evil.example.org")]}

    monkeypatch.setattr(gw, "scope", doubled)
    status, data, outcome = gw.sync(body(fields("twohosts"), b"x"))
    assert (status, code_of(data)) == (400, "InvalidRequest")
    assert "more than one Host header" in data.decode()
    assert gw.files() == []
