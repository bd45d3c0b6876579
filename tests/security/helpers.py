"""Tools for the attack suite: exact-bytes HTTP, EC2 signers with a chosen clock, oneadmin.

Everything here talks to processes on 127.0.0.0/8 only. Requests are sent with `http.client`
so that what goes on the wire is exactly what the test built (Host header, body bytes, query
string), which matters when the point of a test is a single altered byte.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.client
import ssl
import time
import xmlrpc.client
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from unittest import mock
from urllib.parse import quote, urlencode, urlsplit

import botocore.auth
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from lxml import etree

API_VERSION = "2016-11-15"
REGION = "opennebula"
FORM = "application/x-www-form-urlencoded; charset=utf-8"
DEMO_AMI = "ami-00000000"

# AWS's answers (CommonErrors and what EC2 sends on the wire); econe/errors.py uses the same.
STATUS = {
    "AuthFailure": 401,
    "SignatureDoesNotMatch": 403,
    "MissingAuthenticationToken": 403,
    "IncompleteSignature": 400,
    "RequestExpired": 400,
    "MissingParameter": 400,
    "InvalidParameterValue": 400,
}


# ------------------------------------------------------------------------------- HTTP


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def xml(self) -> etree._Element | None:
        try:
            return etree.fromstring(self.body)
        except etree.XMLSyntaxError:
            return None

    @property
    def code(self) -> str | None:
        root = self.xml
        if root is None:
            return None
        found = root.find(".//Errors/Error/Code")
        return found.text if found is not None else None

    @property
    def message(self) -> str:
        root = self.xml
        found = root.find(".//Errors/Error/Message") if root is not None else None
        return (found.text or "") if found is not None else ""

    def __str__(self) -> str:
        return f"HTTP {self.status} {self.body[:600]!r}"


@dataclass
class Wire:
    """One request exactly as it will be sent."""

    method: str
    url: str  # scheme://host:port/path?query — where to connect and what to ask for
    headers: dict[str, str] = field(default_factory=dict)  # may include Host to override it
    body: bytes = b""

    def copy(self, **changes) -> Wire:
        values = {
            "method": self.method,
            "url": self.url,
            "headers": dict(self.headers),
            "body": self.body,
        }
        values.update(changes)
        return Wire(**values)

    def with_header(self, name: str, value: str | None) -> Wire:
        headers = {k: v for k, v in self.headers.items() if k.lower() != name.lower()}
        if value is not None:
            headers[name] = value
        return self.copy(headers=headers)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


def send(
    wire: Wire,
    *,
    timeout: float = 20,
    ssl_context: ssl.SSLContext | None = None,
    source: str | None = None,
) -> Reply:
    """Send `wire` byte for byte (no retries, no redirects, no proxies from the environment)."""
    parts = urlsplit(wire.url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    assert parts.hostname in ("127.0.0.1", "localhost") or parts.hostname.startswith("127."), (
        "tests only talk to loopback"
    )
    source_address = (source, 0) if source else None
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname,
            port,
            timeout=timeout,
            context=ssl_context,
            source_address=source_address,
        )
    else:
        conn = http.client.HTTPConnection(
            parts.hostname, port, timeout=timeout, source_address=source_address
        )
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    # An attacker who changes the body fixes Content-Length too (it is not a signed header).
    headers = {k: v for k, v in wire.headers.items() if k.lower() != "content-length"}
    if wire.body or wire.method == "POST":
        headers["Content-Length"] = str(len(wire.body))
    try:
        # http.client adds Host (from the URL) unless the headers carry one.
        conn.request(wire.method, target, body=wire.body or None, headers=headers)
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


# --------------------------------------------------------------------------- signing


def action_params(action: str, **params: object) -> dict[str, str]:
    out = {"Action": action, "Version": API_VERSION}
    out.update({k: str(v) for k, v in params.items()})
    return out


def run_params(count: int = 1, **extra: object) -> dict[str, str]:
    """A RunInstances the demo user may run: it starts `count` VMs when it gets through."""
    fields: dict[str, object] = {
        "ImageId": DEMO_AMI,
        "MinCount": count,
        "MaxCount": count,
        "InstanceType": "m1.small",
    }
    fields.update(extra)
    return action_params("RunInstances", **fields)


@contextlib.contextmanager
def clock_at(when: datetime | None) -> Iterator[None]:
    """Make botocore's signers believe it is `when` (UTC)."""
    if when is None:
        yield
        return
    naive = when.astimezone(UTC).replace(tzinfo=None)
    with mock.patch.object(botocore.auth, "get_current_datetime", lambda *a, **k: naive):
        yield


def shifted(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def sign_v4(
    base_url: str,
    params: Mapping[str, str],
    user: str,
    secret: str,
    *,
    method: str = "POST",
    when: datetime | None = None,
    extra_headers: Mapping[str, str] | None = None,
    sign_host: str | None = None,
    region: str = REGION,
) -> Wire:
    """SigV4 (Authorization header) by botocore's own signer. POST: form body; GET: query.

    `sign_host` signs for another Host than the one connected to (sent as the Host header)."""
    parts = urlsplit(base_url)
    netloc = sign_host or parts.netloc
    url = f"{parts.scheme}://{netloc}/"
    headers = dict(extra_headers or {})
    if method == "POST":
        headers.setdefault("Content-Type", FORM)
        req = AWSRequest(method="POST", url=url, data=urlencode(params), headers=headers)
    else:
        req = AWSRequest(
            method="GET", url=url + "?" + urlencode(params, quote_via=quote), headers=headers
        )
    with clock_at(when):
        SigV4Auth(Credentials(user, secret), "ec2", region).add_auth(req)
    prepared = req.prepare()
    body = prepared.body or b""
    if isinstance(body, str):
        body = body.encode()
    out_headers = {
        k: (v.decode() if isinstance(v, bytes) else v) for k, v in prepared.headers.items()
    }
    target = urlsplit(prepared.url)
    wire_url = f"{parts.scheme}://{parts.netloc}{target.path or '/'}"
    if target.query:
        wire_url += "?" + target.query
    if sign_host:
        out_headers["Host"] = sign_host
    return Wire(method, wire_url, out_headers, body)


def presign_v4(
    base_url: str,
    params: Mapping[str, str],
    user: str,
    secret: str,
    *,
    expires: int = 60,
    when: datetime | None = None,
) -> str:
    """A presigned GET URL (X-Amz-* query parameters) by botocore's SigV4QueryAuth."""
    req = AWSRequest(method="GET", url=base_url.rstrip("/") + "/", params=dict(params))
    with clock_at(when):
        SigV4QueryAuth(Credentials(user, secret), "ec2", REGION, expires=expires).add_auth(req)
    return req.prepare().url


def _v2_canonical(params: Mapping[str, str]) -> str:
    return "&".join(
        f"{quote(k, safe='-_.~')}={quote(str(params[k]), safe='-_.~')}"
        for k in sorted(params)
        if k != "Signature"
    )


def v2_signature(
    secret: str, method: str, host: str, path: str, params: Mapping[str, str], algo: str
) -> str:
    digest = hashlib.sha1 if algo == "HmacSHA1" else hashlib.sha256
    sts = f"{method}\n{host}\n{path}\n{_v2_canonical(params)}"
    return base64.b64encode(hmac.new(secret.encode(), sts.encode(), digest).digest()).decode()


def sign_v2(
    base_url: str,
    params: Mapping[str, str],
    user: str,
    secret: str,
    *,
    method: str = "POST",
    when: datetime | None = None,
    expires: datetime | None = None,
    sign_host: str | None = None,
    algo: str = "HmacSHA256",
    signature_version: str = "2",
) -> Wire:
    """SigV2 as botocore/boto2/libcloud send it; `expires` uses `Expires` instead of
    `Timestamp`; `sign_host` signs for another host than the one connected to."""
    parts = urlsplit(base_url)
    full = dict(params)
    full.update(
        AWSAccessKeyId=user,
        SignatureVersion=signature_version,
        SignatureMethod=algo,
    )
    if expires is not None:
        full["Expires"] = expires.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    else:
        full["Timestamp"] = (
            (when or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        )
    full["Signature"] = v2_signature(secret, method, sign_host or parts.netloc, "/", full, algo)
    return v2_wire(base_url, full, method)


def v2_wire(base_url: str, params: Mapping[str, str], method: str = "POST") -> Wire:
    parts = urlsplit(base_url)
    encoded = urlencode(params, quote_via=quote)
    if method == "POST":
        return Wire(
            "POST", f"{parts.scheme}://{parts.netloc}/", {"Content-Type": FORM}, encoded.encode()
        )
    return Wire("GET", f"{parts.scheme}://{parts.netloc}/?{encoded}")


def form_body(params: Mapping[str, str]) -> bytes:
    return urlencode(params).encode()


# --------------------------------------------------------------------------- OpenNebula


class OneError(Exception):
    pass


class OneAdmin:
    """oneadmin's XML-RPC view of the cloud (onesim or a real oned)."""

    def __init__(self, url: str, session: str):
        self.url = url
        self.session = session
        self.proxy = xmlrpc.client.ServerProxy(url, allow_none=True)

    def call(self, method: str, *args: object) -> object:
        result = getattr(self.proxy, method)(self.session, *args)
        if not result[0]:
            raise OneError(f"{method}{args}: {result[1]}")
        return result[1]

    def vm_ids(self) -> set[int]:
        """Every VM ever created (all owners, every state including DONE)."""
        xml = self.call("one.vmpool.info", -2, -1, -1, -2)
        root = etree.fromstring(str(xml).encode())
        return {int(v.findtext("ID")) for v in root.findall("VM")}

    def vm_count(self) -> int:
        return len(self.vm_ids())

    def create_user(self, name: str, password: str, driver: str = "core", gids=(1,)) -> int:
        return int(self.call("one.user.allocate", name, password, driver, list(gids)))

    def enable(self, uid: int, flag: bool) -> None:
        self.call("one.user.enable", uid, flag)

    def user_xml(self, uid: int) -> etree._Element:
        return etree.fromstring(str(self.call("one.user.info", uid, False)).encode())


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def eventually(check: Callable[[], object], timeout: float = 8.0, every: float = 0.25) -> object:
    """Call `check` until it stops raising AssertionError (the user cache refreshes at most
    every 2 s on a miss); return its value."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(every)


def aws_cli(endpoint: str, region: str, command: str, *extra: str) -> dict:
    """`aws ec2 <command>` as the demo user (the AWS CLI of this venv, SigV4), parsed JSON."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(
        os.environ,
        AWS_ACCESS_KEY_ID="demo",
        AWS_SECRET_ACCESS_KEY=hashlib.sha256(b"demo").hexdigest(),
        AWS_DEFAULT_REGION=region,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    cmd = [str(Path(sys.executable).parent / "aws"), "ec2", command]
    cmd += ["--endpoint-url", endpoint, *extra, "--output", "json"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def aws_cli_image_ids(endpoint: str, region: str, *extra: str) -> set[str]:
    """`aws ec2 describe-images` as the demo user."""
    return {i["ImageId"] for i in aws_cli(endpoint, region, "describe-images", *extra)["Images"]}
