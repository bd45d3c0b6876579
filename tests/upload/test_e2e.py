"""UploadImage end to end: a real gateway process on onesim, real sockets, real clients."""

from __future__ import annotations

import hashlib
import os
import select
import socket
import time
from pathlib import Path

import pytest

from econe.client.upload import upload_image
from tests.cli.conftest import run_cli
from tests.e2e.conftest import DEMO_SECRET, stop_demo, wait_state

from .conftest import (
    BOUNDARY,
    FILE_HEAD,
    TAIL,
    creds,
    field_parts,
    file_chunks,
    memory_kib,
    one_images,
    post_stream,
    read_answer,
    signed_fields,
    start_upload_server,
    upload,
    upload_dir,
    wait_until,
)

GIB = 1 << 30


def test_one_gib_sparse_upload_streams_in_constant_memory(server, tmp_path):
    proc, demo = server
    image = tmp_path / "big.img"
    with open(image, "wb") as fh:
        fh.truncate(GIB)
        fh.seek(GIB // 2)
        fh.write(b"econe was here")  # one non-zero block in the middle
    before_images = set(one_images(demo))
    # warm up the gateway (imports, user pool, sessions) before the baseline
    assert upload(demo.url, b"warm-up").image_id
    before = memory_kib(proc.pid)
    digest = hashlib.sha256()
    fields = signed_fields(demo.url, name="big-sparse")
    head = field_parts(fields)
    length = len(head) + len(FILE_HEAD) + GIB + len(TAIL)
    started = time.monotonic()
    answer = post_stream(
        demo.url, [head, FILE_HEAD, *file_chunks(image, digest), TAIL], length, timeout=120
    )
    elapsed = time.monotonic() - started
    after = memory_kib(proc.pid)
    assert answer is not None and answer.status == 200, answer and answer.body
    ami = answer.image_id
    assert ami and ami.startswith("ami-")
    grew = after["VmHWM"] - before["VmHWM"]
    print(f"1 GiB in {elapsed:.1f} s; VmHWM {before['VmHWM']} -> {after['VmHWM']} KiB")
    assert grew < 64 * 1024, f"gateway peak memory grew by {grew} KiB during a 1 GiB upload"

    images = one_images(demo)
    new = images[int(ami[4:])]
    assert int(ami[4:]) not in before_images
    assert new.findtext("NAME") == "big-sparse"
    assert new.findtext("TEMPLATE/EC2_UPLOAD_SHA256") == digest.hexdigest()
    assert new.findtext("TYPE") == "0"  # OS
    path = Path(new.findtext("PATH"))
    assert path.parent == upload_dir(demo)
    assert new.findtext("SIZE") == "1024"  # MB, as onesim read it from the temp file
    # the temp file is removed once OpenNebula has copied it (image READY)
    wait_until(lambda: not path.exists(), 20, "the temp file to be removed")
    assert one_images(demo)[int(ami[4:])].findtext("STATE") == "1"

    ec2 = demo.client()
    assert ec2.register_image(ImageLocation=ami, Name="big-sparse")["ImageId"] == ami
    found = ec2.describe_images(ImageIds=[ami])["Images"]
    assert found and found[0]["Name"] == "big-sparse"
    run = ec2.run_instances(ImageId=ami, InstanceType="m1.small", MinCount=1, MaxCount=1)
    instance = run["Instances"][0]["InstanceId"]
    wait_state(ec2, [instance], "running")
    ec2.terminate_instances(InstanceIds=[instance])


def test_temp_file_is_sparse_while_oned_copies(tmp_path):
    """Run with a slow simulator so the file is still there to look at."""
    from tests.e2e.conftest import stop_demo

    from .conftest import start_upload_server

    proc, demo = start_upload_server(tmp_path, speed="3")
    try:
        content = b"\0" * (8 << 20) + b"tail"
        answer = upload(demo.url, content, name="sparse")
        assert answer.status == 200, answer.body
        (path,) = list(upload_dir(demo).iterdir())
        st = path.stat()
        assert st.st_size == len(content)
        assert st.st_blocks * 512 < 1 << 20  # holes, not 8 MiB of zeros
        assert path.read_bytes()[-4:] == b"tail"
        wait_until(lambda: not path.exists(), 60, "the temp file to go once the image is READY")
    finally:
        stop_demo(proc)


def test_interrupted_upload_leaves_no_file_and_no_image(demo):
    before, files = set(one_images(demo)), set(upload_dir(demo).iterdir())
    content = os.urandom(1 << 20) * 32  # 32 MiB
    assert upload(demo.url, content, name="cut", stop_after=16 << 20) is None
    # the temp file existed meanwhile; it must be gone soon after the disconnect
    wait_until(lambda: set(upload_dir(demo).iterdir()) <= files, 10, "no new temp file")
    time.sleep(0.3)
    assert set(one_images(demo)) == before
    assert "cut" not in {i.findtext("NAME") for i in one_images(demo).values()}


def test_retry_returns_the_same_image(demo):
    content = os.urandom(300_000)
    first = upload(demo.url, content, name="retry-me")
    second = upload(demo.url, content, name="retry-me")
    assert first.status == second.status == 200, (first.body, second.body)
    assert first.image_id == second.image_id
    other = upload(demo.url, content + b"!", name="retry-me")
    assert other.status == 400 and other.code == "InvalidAMIName.Duplicate"
    unnamed = {upload(demo.url, content).image_id for _ in range(2)}
    assert len(unnamed) == 2  # without a Name every upload is a new image
    wait_until(lambda: not list(upload_dir(demo).iterdir()), 20, "temp files to go")


def test_checksum_field_is_verified(demo):
    content = b"checked content"
    good = hashlib.sha256(content).hexdigest()
    ok = upload(demo.url, content, name="checked", checksum=good)
    assert ok.status == 200
    bad = upload(demo.url, content, name="checked-bad", checksum="0" * 64)
    assert bad.status == 400 and bad.code == "InvalidParameterValue"
    assert good in bad.text("Message")


def test_bad_signature_stores_nothing(demo):
    before, files = set(one_images(demo)), set(upload_dir(demo).iterdir())
    answer = upload(demo.url, b"x" * (4 << 20), secret="0" * 64)
    assert answer.status == 403 and answer.code == "SignatureDoesNotMatch"
    assert set(upload_dir(demo).iterdir()) <= files
    assert set(one_images(demo)) == before


def test_file_before_the_fields_is_refused_clearly(demo):
    files = set(upload_dir(demo).iterdir())
    answer = upload(demo.url, b"data", file_first=True)
    assert answer.status == 400 and answer.code == "InvalidRequest"
    assert "before the file part" in answer.text("Message")
    assert set(upload_dir(demo).iterdir()) <= files


def test_other_actions_are_not_taken_as_multipart(demo):
    answer = upload(demo.url, b"data", action="DescribeImages")
    assert answer.status == 400 and answer.code == "InvalidAction"


def test_econe_cli_upload_then_register(demo, tmp_path):
    image = tmp_path / "cli.img"
    image.write_bytes(os.urandom(2 << 20))
    ami, request_id = upload_image(creds(demo), image, name="from-cli")
    assert ami.startswith("ami-") and request_id
    again, _ = upload_image(creds(demo), image, name="from-cli")
    assert again == ami
    ec2 = demo.client()
    assert ec2.register_image(ImageLocation=ami, Name="from-cli")["ImageId"] == ami


@pytest.fixture(scope="module")
def small_server(tmp_path_factory):
    from tests.e2e.conftest import stop_demo

    from .conftest import start_upload_server

    proc, demo = start_upload_server(tmp_path_factory.mktemp("small"), upload_max_size=1 << 20)
    yield demo
    stop_demo(proc)


def test_oversize_upload_is_refused_while_streaming(small_server):
    demo = small_server
    # declared too large: refused before reading the body
    answer = upload(demo.url, b"y" * (3 << 20), name="too-big")
    assert answer.status == 413 and answer.code == "RequestEntityTooLarge"
    # chunked (no declared length): refused once the file passes the limit
    from .conftest import BOUNDARY

    fields = field_parts(signed_fields(demo.url, name="too-big-chunked"))
    host = demo.url.split("//", 1)[1]
    import socket

    from .conftest import read_answer

    with socket.create_connection(tuple(host.rsplit(":", 1)[0:1]) + (demo.port,)) as sock:
        sock.sendall(
            (
                f"POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n"
                f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n"
            ).encode()
        )
        try:
            for piece in [fields, FILE_HEAD] + [b"z" * 65536] * 64:
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_answer(sock)
    assert answer.status == 413 and answer.code == "RequestEntityTooLarge"
    wait_until(lambda: not list(upload_dir(demo).iterdir()), 5, "no temp file")
    assert "too-big" not in {i.findtext("NAME") for i in one_images(demo).values()}


def test_only_the_checksum_ties_a_signed_upload_to_its_content(demo):
    """The signature covers the text fields, not the file: a captured upload signed with a
    Checksum cannot carry other content, one signed without it can (docs/security.md), and
    the econe CLI's uploads carry it (tests/cli)."""
    content, other = b"the real image", b"someone else's image"
    sha = hashlib.sha256(content).hexdigest()
    captured = signed_fields(demo.url, checksum=sha)
    assert upload(demo.url, content, fields=captured).status == 200
    before = set(one_images(demo))
    replayed = upload(demo.url, other, fields=captured)
    assert replayed.status == 400 and replayed.code == "InvalidParameterValue"
    assert set(one_images(demo)) == before
    unprotected = signed_fields(demo.url)
    assert upload(demo.url, content, fields=unprotected).status == 200
    swapped = upload(demo.url, other, fields=unprotected)
    assert swapped.status == 200  # stored as the user's image: why the CLI sends Checksum
    image = one_images(demo)[int(swapped.image_id[4:])]
    assert image.findtext("TEMPLATE/EC2_UPLOAD_SHA256") == hashlib.sha256(other).hexdigest()


# -- uploads left unfinished, a full disk -------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    conf = ":upload_max_per_user: 2\n:body_timeout: 2\n:upload_min_rate: 100000\n"
    proc, demo = start_upload_server(tmp_path_factory.mktemp("guarded"), conf=conf)
    yield demo
    stop_demo(proc)


def start_held_upload(url: str, name: str) -> socket.socket:
    """A signed upload announcing 90 MB, of which it sends 1 MiB."""
    head = field_parts(signed_fields(url, name=name)) + FILE_HEAD
    host = url.split("//", 1)[1]
    hostname, port = host.rsplit(":", 1)
    sock = socket.create_connection((hostname, int(port)))
    sock.sendall(
        (
            f"POST / HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {len(head) + 90_000_000 + len(TAIL)}\r\n\r\n"
        ).encode()
        + head
        + os.urandom(1 << 20)
    )
    return sock


def cli_upload(demo, path: Path, *argv: str):
    return run_cli(["-K", "demo", "-S", DEMO_SECRET, "-U", demo.url, "upload", str(path), *argv])


def test_unfinished_uploads_hold_no_slot_or_disk_for_long(guarded, tmp_path):
    """A user starts uploads and drips a byte every second, inside :body_timeout: (the attack
    that kept 719 MB in :tmpdir:): a third upload is refused at once (RequestLimitExceeded,
    as `econe upload` prints it), the dripping ones are cut off by :upload_min_rate: within
    two :body_timeout: periods, their files removed, and uploads work again."""
    demo = guarded
    socks = [start_held_upload(demo.url, f"drip-{i}") for i in range(2)]
    try:
        wait_until(lambda: len(list(upload_dir(demo).iterdir())) == 2, 10, "two temp files")
        image = tmp_path / "third.img"
        image.write_bytes(os.urandom(1 << 20))
        refused = cli_upload(demo, image, "--no-progress")
        assert refused.code == 1 and "RequestLimitExceeded: You already have 2 uploads" in (
            refused.err
        ), refused.err
        answers, dripping, started = [], list(socks), time.monotonic()
        while dripping and time.monotonic() - started < 15:
            for sock in dripping:
                try:
                    sock.sendall(b"d")
                except (BrokenPipeError, ConnectionResetError):
                    pass
            for sock in select.select(dripping, [], [], 1.0)[0]:
                answers.append(read_answer(sock))
                dripping.remove(sock)
        assert time.monotonic() - started < 8
        assert [(a.status, a.code) for a in answers] == [(400, "RequestTimeout")] * 2
        assert "minimum of 100000 bytes per second" in answers[0].text("Message")
    finally:
        for sock in socks:
            sock.close()
    wait_until(lambda: not list(upload_dir(demo).iterdir()), 5, "no temp file")
    assert "drip-0" not in {i.findtext("NAME") for i in one_images(demo).values()}
    ami, _ = upload_image(creds(demo), image, name="after-the-drip")
    assert ami.startswith("ami-")


def test_a_disk_without_room_refuses_uploads_clearly(tmp_path):
    """:upload_min_free: more than the disk has: every upload is refused before a byte is
    stored, with InsufficientCapacity (503), which `econe upload` prints."""
    proc, demo = start_upload_server(tmp_path, conf=f":upload_min_free: {1 << 60}\n")
    try:
        image = tmp_path / "disk.img"
        image.write_bytes(os.urandom(1 << 20))
        refused = cli_upload(demo, image, "--no-progress")
        assert refused.code == 1, refused.err
        assert "InsufficientCapacity: The server has not enough free space" in refused.err
        answer = upload(demo.url, b"x" * 1000, name="no-room")
        assert (answer.status, answer.code) == (503, "InsufficientCapacity")
        assert list(upload_dir(demo).iterdir()) == []
    finally:
        stop_demo(proc)
