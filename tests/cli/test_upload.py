"""UploadImage: SigV2 signing of the multipart text fields, streaming body, answers."""

from __future__ import annotations

import base64
import datetime as dt
import email.parser
import email.policy
import hashlib
import hmac
import http.server
import threading
import tracemalloc
from urllib.parse import quote

import pytest
from botocore.auth import SigV2Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from econe.client.credentials import Credentials
from econe.client.errors import EndpointUnreachable, ServerError, UsageError
from econe.client.upload import (
    MultipartBody,
    endpoint_parts,
    parse_response,
    upload_fields,
    upload_image,
)
from tests.cli.conftest import CREDS, DEMO_SECRET, free_port, run_cli

NOW = dt.datetime(2026, 11, 23, 21, 5, 9, tzinfo=dt.UTC)


def test_upload_fields_string_to_sign_written_out_by_hand():
    creds = Credentials("demo", DEMO_SECRET, "http://cloud.example.org:4567/ec2", "test")
    fields = upload_fields(creds, name="my disk/ü~", checksum="ab12", now=NOW)
    expected = (
        "POST\ncloud.example.org:4567\n/ec2\n"
        "AWSAccessKeyId=demo&Action=UploadImage&Checksum=ab12&Name=my%20disk%2F%C3%BC~"
        "&SignatureMethod=HmacSHA256&SignatureVersion=2&Timestamp=2026-11-23T21%3A05%3A09Z"
        "&Version=2016-11-15"
    )
    mac = hmac.new(DEMO_SECRET.encode(), expected.encode(), hashlib.sha256).digest()
    assert fields["Signature"] == base64.b64encode(mac).decode()


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:4567",
        "http://localhost:4567/",
        "https://Cloud.Example.org/ec2/",
        "http://[::1]:8080/x",
    ],
)
def test_signature_agrees_with_botocore_sigv2(url):
    creds = Credentials("demo", DEMO_SECRET, url, "test")
    fields = upload_fields(creds, name="a b+c=d&e", now=NOW)
    request = AWSRequest(method="POST", url=url, data={})
    params = {k: v for k, v in fields.items() if k != "Signature"}
    _, botocore_signature = SigV2Auth(BotoCredentials("demo", DEMO_SECRET)).calc_signature(
        request, dict(params)
    )
    assert fields["Signature"] == botocore_signature


def test_no_name_no_checksum_fields():
    creds = Credentials("demo", DEMO_SECRET, "http://localhost:4567", "test")
    fields = upload_fields(creds, now=NOW)
    assert set(fields) == {
        "Action",
        "Version",
        "AWSAccessKeyId",
        "SignatureVersion",
        "SignatureMethod",
        "Timestamp",
        "Signature",
    }


def test_endpoint_parts():
    assert endpoint_parts("http://localhost:4567") == ("http", "localhost:4567", "/")
    assert endpoint_parts("https://u:p@host/p/") == ("https", "host", "/p/")


def _parse_multipart(content_type: str, body: bytes):
    raw = f"Content-Type: {content_type}\r\n\r\n".encode() + body
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    parts = {}
    for part in message.iter_parts():
        parts[part.get_param("name", header="content-disposition")] = part
    return parts


def test_multipart_body_is_well_formed_and_streams_in_chunks(tmp_path):
    image = tmp_path / 'disk "1".img'
    data = bytes(range(256)) * 1000  # 256000 bytes, includes CR/LF and boundary-like bytes
    image.write_bytes(data)
    body = MultipartBody({"Action": "UploadImage", "Name": "ü"}, image, len(data))
    chunks = list(body.file_chunks(chunk_size=65536))
    assert [len(c) for c in chunks] == [65536, 65536, 65536, 59392]
    wire = body.head + b"".join(chunks) + body.tail
    assert len(wire) == body.length
    parts = _parse_multipart(body.content_type, wire)
    assert parts["Action"].get_content() == "UploadImage"
    assert parts["Name"].get_payload(decode=True).decode() == "ü"
    assert parts["file"].get_payload(decode=True) == data
    assert parts["file"].get_content_type() == "application/octet-stream"


def test_file_changing_size_is_detected(tmp_path):
    image = tmp_path / "disk.img"
    image.write_bytes(b"x" * 10)
    with pytest.raises(UsageError, match="grew"):
        list(MultipartBody({}, image, 5).file_chunks())
    with pytest.raises(UsageError, match="shrank"):
        list(MultipartBody({}, image, 20).file_chunks())


def test_parse_answers():
    ok = (
        b'<RegisterImageResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
        b"<requestId>r-1</requestId><imageId>ami-00000007</imageId></RegisterImageResponse>"
    )
    url = "http://ec2.test:4567"
    assert parse_response(200, ok, url) == ("ami-00000007", "r-1")
    error = (
        b"<Response><Errors><Error><Code>SignatureDoesNotMatch</Code><Message>bad</Message>"
        b"</Error></Errors><RequestID>r-2</RequestID></Response>"
    )
    with pytest.raises(ServerError) as info:
        parse_response(403, error, url)
    assert (info.value.code, info.value.error_message, info.value.request_id) == (
        "SignatureDoesNotMatch",
        "bad",
        "r-2",
    )
    with pytest.raises(ServerError) as info:
        parse_response(502, b"<html>Bad gateway", url)
    assert info.value.message == f"HTTP502: bad answer from {url}: not an EC2 answer (<html>)"


class _FakeEc2(http.server.BaseHTTPRequestHandler):
    """Checks the upload as a server would and answers like econe's UploadImage."""

    received: list[dict] = []
    answer_status = 200

    def do_POST(self):  # noqa: N802
        length = int(self.headers["Content-Length"])
        body = self.rfile.read(length)
        parts = _parse_multipart(self.headers["Content-Type"], body)
        fields = {k: p.get_payload(decode=True).decode() for k, p in parts.items() if k != "file"}
        image = parts["file"].get_payload(decode=True)
        signed = {k: v for k, v in fields.items() if k != "Signature"}
        # the canonical query recomputed here, independently of econe's canonical_query
        items = sorted(signed.items())
        text = f"POST\n{self.headers['Host']}\n{self.path}\n" + "&".join(
            f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in items
        )
        mac = hmac.new(DEMO_SECRET.encode(), text.encode(), hashlib.sha256).digest()
        good = base64.b64encode(mac).decode() == fields["Signature"]
        self.received.append(
            {
                "fields": fields,
                "size": len(image),
                "sha": hashlib.sha256(image).hexdigest(),
                "good": good,
            }
        )
        if good:
            status, xml = (
                self.answer_status,
                (
                    "<RegisterImageResponse><requestId>req-9</requestId>"
                    "<imageId>ami-00000042</imageId></RegisterImageResponse>"
                ),
            )
        else:
            status, xml = (
                403,
                (
                    "<Response><Errors><Error><Code>SignatureDoesNotMatch</Code><Message>no</Message>"
                    "</Error></Errors><RequestID>req-x</RequestID></Response>"
                ),
            )
        payload = xml.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_server():
    _FakeEc2.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeEc2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_upload_round_trip(tmp_path, fake_server):
    image = tmp_path / "disk.img"
    data = b"\x00\xffimage" * 300_000  # ~2 MiB: several chunks
    image.write_bytes(data)
    seen = []
    creds = Credentials("demo", DEMO_SECRET, fake_server + "/", "test")
    result = upload_image(creds, image, name="disk", on_bytes=seen.append)
    assert result == ("ami-00000042", "req-9")
    got = _FakeEc2.received[-1]
    assert got["good"] and got["size"] == len(data)
    assert got["fields"]["Name"] == "disk" and got["fields"]["Action"] == "UploadImage"
    assert sum(seen) == len(data) and max(seen) <= 1024 * 1024


def test_cli_upload_prints_the_ami_and_sends_checksum(tmp_path, fake_server):
    """The file's SHA-256 goes in the signed Checksum field by default: the signature then
    covers the content too; --checksum (the old opt-in) is still taken."""
    image = tmp_path / "disk.img"
    image.write_bytes(b"abc" * 1000)
    cli = ["-K", "demo", "-S", DEMO_SECRET, "-U", fake_server, "upload", str(image)]
    for extra in ([], ["--checksum"]):
        result = run_cli([*cli, *extra, "--name", "n1", "--progress"])
        assert (result.code, result.out) == (0, "ami-00000042\n")
        assert "100%" in result.err
        fields = _FakeEc2.received[-1]["fields"]
        assert fields["Checksum"] == hashlib.sha256(b"abc" * 1000).hexdigest()
        assert _FakeEc2.received[-1]["good"]
    result = run_cli([*cli, "--no-checksum"])
    assert result.code == 0 and "Checksum" not in _FakeEc2.received[-1]["fields"]


def test_cli_upload_json_and_no_progress(tmp_path, fake_server):
    image = tmp_path / "disk.img"
    image.write_bytes(b"abc")
    result = run_cli(
        ["-U", fake_server, "-K", "demo", "-S", DEMO_SECRET, "--json", "upload", str(image)]
    )
    assert result.code == 0 and '"ImageId": "ami-00000042"' in result.out
    assert result.err == ""  # stderr is not a terminal: no progress bar


def test_cli_upload_wrong_secret_is_an_ec2_error(tmp_path, fake_server):
    image = tmp_path / "disk.img"
    image.write_bytes(b"abc")
    result = run_cli(["-U", fake_server, "-K", "demo", "-S", "wrong", "upload", str(image)])
    assert result.code == 1
    assert result.err == "econe: SignatureDoesNotMatch: no\n"


def test_cli_upload_missing_file_is_a_usage_error(tmp_path):
    result = run_cli([*CREDS, "upload", str(tmp_path / "nope.img")])
    assert result.code == 2 and "cannot read" in result.err


@pytest.mark.parametrize("path", ["dir", "/dev/null"])
def test_cli_upload_of_what_is_no_regular_file_is_a_usage_error(tmp_path, path):
    target = tmp_path if path == "dir" else path  # a directory was an internal error, exit 1
    result = run_cli([*CREDS, "upload", str(target)])
    assert (result.code, result.err) == (2, f"econe: {target} is not a regular file\n")


def test_upload_unreachable(tmp_path):
    image = tmp_path / "disk.img"
    image.write_bytes(b"abc")
    creds = Credentials("demo", DEMO_SECRET, f"http://127.0.0.1:{free_port()}", "test")
    with pytest.raises(EndpointUnreachable):
        upload_image(creds, image)
    result = run_cli(["-U", creds.url, "-K", "demo", "-S", "x", "upload", str(image)])
    assert result.code == 3 and result.err.startswith("econe: cannot reach")


class _Sink(http.server.BaseHTTPRequestHandler):
    """Reads the body in small pieces and throws it away."""

    def do_POST(self):  # noqa: N802
        left = int(self.headers["Content-Length"])
        while left:
            left -= len(self.rfile.read(min(left, 65536)))
        payload = b"<RegisterImageResponse><imageId>ami-00000001</imageId></RegisterImageResponse>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def test_upload_memory_does_not_grow_with_the_file(tmp_path):
    image = tmp_path / "big.img"
    with open(image, "wb") as handle:  # sparse: 64 MiB on the wire, nothing on disk
        handle.truncate(64 * 1024 * 1024)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        creds = Credentials(
            "demo", DEMO_SECRET, f"http://127.0.0.1:{server.server_address[1]}", "t"
        )
        tracemalloc.start()
        try:
            assert upload_image(creds, image)[0] == "ami-00000001"
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        server.shutdown()
        server.server_close()
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes for a 64 MiB upload"
