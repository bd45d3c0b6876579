"""The request and answer shapes of UploadImage: which requests are uploads, limits, field
checks, the RegisterImageResponse document and raw ASGI responses."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from econe.errors import Ec2Error, xml_text
from econe.mapping.ids import format_id

ACTION = "UploadImage"
DEFAULT_VERSION = "2016-11-15"
MAX_FIELD_BYTES = 8 * 1024  # one text field's value
MAX_FIELDS = 64
PRE_FILE_LIMIT = 1024 * 1024  # body bytes before the file part: fields, part headers, preamble
MAX_NAME = 128  # bytes of UTF-8, as oned counts them (a std::string's length)
XML_CONTENT_TYPE = b"text/xml;charset=UTF-8"
VERSION_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
ONED_NAME_FORBIDS = "&|:\\\";/'#{}$<>"


class ClientGone(Exception):
    """The client closed the connection before the whole body arrived."""


@dataclass
class UploadOutcome:
    """What the front may log about the request (its access-log line)."""

    request_id: str
    action: str = ACTION
    user: str | None = None
    status: int = 0
    image_id: str | None = None


def media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


MAX_HEADERS = 200  # real clients send about ten; proxies add a few


def request_headers(scope: dict[str, Any]) -> dict[str, str]:
    """The request's headers, lower-case names; repeated ones joined with commas (once, at the
    end: joining at each repeat took quadratic time), except Host: a request with two is
    refused (RFC 9112), as it names no one host to check. More than MAX_HEADERS is refused."""
    raw = scope.get("headers", [])
    if len(raw) > MAX_HEADERS:
        raise Ec2Error("InvalidRequest", f"The request has more than {MAX_HEADERS} headers.")
    out: dict[str, str] = {}
    repeated: dict[str, list[str]] = {}
    for raw_name, raw_value in raw:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        if name not in out:
            out[name] = value
        elif name == "host":
            raise Ec2Error("InvalidRequest", "The request has more than one Host header.")
        else:
            repeated.setdefault(name, [out[name]]).append(value)
    for name, values in repeated.items():
        out[name] = ",".join(values)
    return out


def is_upload_request(scope: dict[str, Any]) -> bool:
    """A POST with a multipart/form-data body: the front must hand it to `handle_upload`."""
    if scope.get("type") != "http" or scope.get("method", "").upper() != "POST":
        return False
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-type":
            return media_type(value.decode("latin-1")) == "multipart/form-data"
    return False


def too_large(limit: int) -> Ec2Error:
    return Ec2Error(
        "RequestEntityTooLarge",
        f"The uploaded file exceeds the upload size limit of {limit} bytes.",
        status=413,
    )


def bad_body(why: str) -> Ec2Error:
    return Ec2Error("InvalidRequest", f"Malformed multipart/form-data body: {why}.")


def response_xml(image_id: int, version: str, request_id: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<RegisterImageResponse xmlns="http://ec2.amazonaws.com/doc/{xml_text(version)}/">'
        f"<requestId>{xml_text(request_id)}</requestId>"
        f"<imageId>{format_id('ami', image_id)}</imageId></RegisterImageResponse>"
    )


def check_name(value: str | None) -> str:
    """The image NAME: `Name`, or `ec2-<uuid>`. Checked before the file is read, with
    oned's own name rules (PoolObjectSQL::name_is_valid) so that allocate will not refuse it
    after the whole file was sent: oned counts the bytes, so 'é' counts two."""
    if value is None or value == "":
        return f"ec2-{uuid.uuid4()}"
    bad = sorted(set(value) & set(ONED_NAME_FORBIDS))
    too_long = len(value.encode()) > MAX_NAME  # the fields are strict UTF-8
    if too_long or not value.isprintable() or value != value.strip() or bad:
        why = f" (not allowed: {' '.join(bad)})" if bad else ""
        raise Ec2Error(
            "InvalidParameterValue",
            f"Value ({value[:MAX_NAME]}) for parameter Name is invalid: use 1 to {MAX_NAME} "
            f"bytes (UTF-8) of printable characters without leading or trailing spaces{why}.",
        )
    return value


async def send_xml(send: Any, status: int, body: str, close: bool = False) -> None:
    data = body.encode("utf-8")
    headers = [(b"content-type", XML_CONTENT_TYPE), (b"content-length", str(len(data)).encode())]
    if close:  # the rest of a large body is not worth draining: the server closes instead
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data, "more_body": False})
