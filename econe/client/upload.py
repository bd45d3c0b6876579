"""The non-AWS ``UploadImage`` action: a SigV2-signed multipart/form-data POST.

Wire format (econe.md §6.1): text fields ``Action=UploadImage``, ``Version``,
``AWSAccessKeyId``, ``SignatureVersion=2``, ``SignatureMethod=HmacSHA256``, ``Timestamp``,
optional ``Name`` and ``Checksum``, and ``Signature``; then the image as the ``file`` part
(``application/octet-stream``). The signature is the Base64 HMAC-SHA256 of::

    POST\\n<Host header: host[:port] as in the URL>\\n<URL path or />\\n<canonical query>

where the canonical query is every text field except ``Signature`` (``file`` is not a text
field), sorted by name, names and values percent-encoded with only ``A-Za-z0-9-_.~`` left
alone, joined with ``&``: botocore's SigV2 signer makes it.

The file is streamed from disk in fixed-size chunks with a precomputed Content-Length, so memory
use does not depend on the image size. The answer is ``RegisterImageResponse/imageId``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import os
import secrets
import socket
import ssl
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit
from xml.etree import ElementTree

from botocore.auth import SigV2Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from econe.client.credentials import Credentials
from econe.client.errors import (
    EndpointUnreachable,
    ServerError,
    UsageError,
    error_document,
    not_ec2_answer,
)

API_VERSION = "2016-11-15"
CHUNK_SIZE = 1024 * 1024


def endpoint_parts(url: str) -> tuple[str, str, str]:
    """(scheme, Host header value, path) of the endpoint URL."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return parts.scheme, host, parts.path or "/"


def upload_fields(
    creds: Credentials,
    name: str | None = None,
    checksum: str | None = None,
    now: dt.datetime | None = None,
) -> dict[str, str]:
    """The signed text fields of an UploadImage request, ``Signature`` included."""
    now = now or dt.datetime.now(dt.UTC)
    fields = {
        "Action": "UploadImage",
        "Version": API_VERSION,
        "AWSAccessKeyId": creds.access_key,
        "SignatureVersion": "2",
        "SignatureMethod": "HmacSHA256",
        "Timestamp": now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if name:
        fields["Name"] = name
    if checksum:
        fields["Checksum"] = checksum
    signer = SigV2Auth(BotoCredentials(creds.access_key, creds.secret_key))
    _, fields["Signature"] = signer.calc_signature(AWSRequest("POST", creds.url), fields)
    return fields


def _quote_filename(filename: str) -> str:
    cleaned = "".join(ch for ch in filename if ch >= " " and ch != "\x7f")
    return cleaned.replace("\\", "\\\\").replace('"', '\\"')


@dataclass
class MultipartBody:
    """A multipart/form-data body whose file part is read from disk while sending."""

    fields: Mapping[str, str]
    path: Path
    size: int
    boundary: str = ""

    def __post_init__(self) -> None:
        if not self.boundary:
            self.boundary = "econe-" + secrets.token_hex(16)
        parts = []
        for key, value in self.fields.items():
            parts.append(
                f'--{self.boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'
                f"{value}\r\n"
            )
        parts.append(
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{_quote_filename(self.path.name)}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        self.head = "".join(parts).encode("utf-8")
        self.tail = f"\r\n--{self.boundary}--\r\n".encode("ascii")

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    @property
    def length(self) -> int:
        return len(self.head) + self.size + len(self.tail)

    def file_chunks(self, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """The file's bytes; fails if the file's size changed since ``size`` was taken."""
        remaining = self.size
        with open(self.path, "rb") as handle:
            while remaining > 0:
                chunk = handle.read(min(chunk_size, remaining))
                if not chunk:
                    raise UsageError(f"{self.path} shrank while being uploaded")
                remaining -= len(chunk)
                yield chunk
            if handle.read(1):
                raise UsageError(f"{self.path} grew while being uploaded")


def image_size(path: Path) -> int:
    """The size of the image file at `path`, checked before anything is read or sent: a
    UsageError if it cannot be read or is not a regular file (a directory, a device, a pipe)."""
    try:
        info = os.stat(path)
        if stat.S_ISREG(info.st_mode):
            open(path, "rb").close()  # readable? (opening a pipe could block: checked first)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"{path} is not a regular file")
    return info.st_size


def file_sha256(path: Path, chunk_size: int = CHUNK_SIZE) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def parse_response(status: int, body: bytes, url: str) -> tuple[str, str | None]:
    """(image id, request id) from the answer; a ServerError for an EC2 error document, else
    the other commands' error for an answer that is not EC2's (a wrong endpoint's)."""
    error = error_document(body)
    if error is not None:
        raise error
    if status >= 300:  # the status as the code, as botocore reports it for the other commands
        raise ServerError(f"HTTP{status}", not_ec2_answer(url, body).message)
    try:
        found = {
            _local(el.tag): (el.text or "").strip() for el in ElementTree.fromstring(body).iter()
        }
    except ElementTree.ParseError:
        found = {}
    if not found.get("imageId"):
        raise not_ec2_answer(url, body)
    request_id = found.get("RequestID") or found.get("RequestId") or found.get("requestId")
    return found["imageId"], request_id


def _connection(url: str, timeout: float, verify: bool | str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    if parts.scheme == "https":
        # the bundle given; else the system's CAs (SSL_CERT_FILE…) and certifi's, which
        # boto3 trusts for the other commands
        context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
        if verify is True and _certifi_bundle():
            context.load_verify_locations(cafile=_certifi_bundle())
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=timeout, context=context
        )
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)


def _certifi_bundle() -> str | None:
    try:
        import certifi
    except ImportError:  # boto3 then uses its own default too: the system's
        return None
    return certifi.where()


def upload_image(
    creds: Credentials,
    path: Path,
    name: str | None = None,
    checksum: str | None = None,
    on_bytes: Callable[[int], None] | None = None,
    timeout: float = 300.0,
    verify: bool | str = True,
) -> tuple[str, str | None]:
    """Upload ``path``; return (new image id, request id)."""
    size = image_size(path)
    body = MultipartBody(upload_fields(creds, name, checksum), path, size)
    _, host, url_path = endpoint_parts(creds.url)
    conn = _connection(creds.url, timeout, verify)
    try:
        try:
            conn.putrequest("POST", url_path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", host)
            conn.putheader("Content-Type", body.content_type)
            conn.putheader("Content-Length", str(body.length))
            conn.putheader("User-Agent", "econe-cli")
            conn.endheaders()
        except (OSError, http.client.HTTPException) as exc:
            raise EndpointUnreachable(f"cannot reach {creds.url}: {_reason(exc)}") from None
        try:
            conn.send(body.head)
            for chunk in body.file_chunks():
                conn.send(chunk)
                if on_bytes:
                    on_bytes(len(chunk))
            conn.send(body.tail)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early (e.g. an auth error): read what it said
        except TimeoutError as exc:
            raise EndpointUnreachable(f"{creds.url} stopped reading: {_reason(exc)}") from None
        try:
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise EndpointUnreachable(f"no answer from {creds.url}: {_reason(exc)}") from None
        return parse_response(response.status, data, creds.url)
    finally:
        conn.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host ({exc.strerror})"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
