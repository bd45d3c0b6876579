"""Helpers: a user pool, botocore-signed requests turned into RawRequests."""

from __future__ import annotations

import hashlib
from urllib.parse import unquote, urlsplit
from xml.sax.saxutils import escape

import pytest
from botocore.auth import SigV2Auth, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from econe.auth.authenticator import Authenticator
from econe.auth.users import UserDirectory
from econe.config import Config
from econe.context import RawRequest
from econe.errors import Ec2Error
from econe.keyseal import seal
from econe.query import parse_params

ALICE_SECRET = hashlib.sha256(b"alicepw").hexdigest()
ENDPOINT = "http://localhost:4567/"


def user_xml(uid, name, driver="core", password="", enabled=True, gid=1, template=""):
    return (
        f"<USER><ID>{uid}</ID><GID>{gid}</GID><GROUPS><ID>{gid}</ID></GROUPS>"
        f"<GNAME>users</GNAME><NAME>{escape(name)}</NAME><PASSWORD>{escape(password)}</PASSWORD>"
        f"<AUTH_DRIVER>{driver}</AUTH_DRIVER><ENABLED>{1 if enabled else 0}</ENABLED>"
        f"<TEMPLATE>{template}</TEMPLATE><DATASTORE_QUOTA/><VM_QUOTA/></USER>"
    )


X509_DN = "/C=ES/O=OpenNebula/CN=Carol\\20Smith"

SEAL_KEY = b"k" * 32  # what the server credentials would derive (econe.keyseal)
KIM1_SEAL = seal(SEAL_KEY, 7, {"ACCESS_KEY_ID": "AKIAKIM1", "SECRET": "kim-secret-1"})
KIM2_SEAL = seal(
    SEAL_KEY, 7, {"ACCESS_KEY_ID": "AKIAKIM2", "SECRET": "kim-secret-2", "STATUS": "Inactive"}
)

USERS = [
    user_xml(0, "oneadmin", password=hashlib.sha256(b"adminpw").hexdigest(), gid=0),
    user_xml(1, "serveradmin", driver="server_cipher", password="x" * 64, gid=0),
    user_xml(2, "alice", password=ALICE_SECRET),
    user_xml(3, "pub", driver="public", password="pub secret/with=odd~chars"),
    user_xml(4, "lara", driver="ldap", password="-"),
    user_xml(5, "dis", password=hashlib.sha256(b"dispw").hexdigest(), enabled=False),
    user_xml(6, "carol", driver="x509", password=f"/CN=other|{X509_DN}"),
    user_xml(
        7,
        "kim",
        driver="ldap",
        password="-",
        template=(
            "<EC2_ACCESS_KEYS><ACCESS_KEY_ID>AKIAKIM1</ACCESS_KEY_ID>"
            "<SECRET>kim-secret-1</SECRET>"
            f"<SEAL>{KIM1_SEAL}</SEAL></EC2_ACCESS_KEYS>"
            "<EC2_ACCESS_KEYS><ACCESS_KEY_ID>AKIAKIM2</ACCESS_KEY_ID>"
            "<SECRET>kim-secret-2</SECRET><STATUS>Inactive</STATUS>"
            f"<SEAL>{KIM2_SEAL}</SEAL></EC2_ACCESS_KEYS>"
            "<SSH_PUBLIC_KEY>ssh-ed25519 AAAA</SSH_PUBLIC_KEY>"
        ),
    ),
    user_xml(8, "rem", driver="public", password="rem"),
]


def pool_xml(users=None) -> str:
    body = "".join(USERS if users is None else users)
    return f"<USER_POOL>{body}<DEFAULT_USER_QUOTAS/></USER_POOL>"


class Pool:
    """A fetch_pool callable that counts its calls."""

    def __init__(self, users=None):
        self.users = list(USERS if users is None else users)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return pool_xml(self.users)


def raw_from_botocore(prepared, client_addr="127.0.0.1", extra_headers=None) -> RawRequest:
    """What econe's front builds from the wire (ASGI: decoded path, raw query, Host header)."""
    url = urlsplit(prepared.url)
    headers = {k.lower(): str(v) for k, v in prepared.headers.items()}
    default = {"http": 80, "https": 443}[url.scheme]
    host = f"[{url.hostname}]" if ":" in (url.hostname or "") else url.hostname  # IPv6
    headers.setdefault("host", host if url.port in (None, default) else f"{host}:{url.port}")
    headers.update({k.lower(): v for k, v in (extra_headers or {}).items()})
    body = prepared.body or b""
    if isinstance(body, str):
        body = body.encode()
    method = prepared.method
    return RawRequest(
        method=method,
        path=unquote(url.path) or "/",
        query_string=url.query,
        headers=headers,
        body=body,
        params=parse_params(method, url.query, body, headers.get("content-type")),
        client_addr=client_addr,
    )


def _aws_request(method, params, url, headers):
    if method == "GET":
        return AWSRequest(method="GET", url=url, params=dict(params), headers=dict(headers or {}))
    hdrs = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    hdrs.update(headers or {})
    return AWSRequest(method="POST", url=url, data=dict(params), headers=hdrs)


def sign_v4(
    params,
    *,
    key="alice",
    secret=ALICE_SECRET,
    method="POST",
    url=ENDPOINT,
    region="opennebula",
    service="ec2",
    headers=None,
    **raw_kw,
):
    req = _aws_request(method, params, url, headers)
    SigV4Auth(Credentials(key, secret), service, region).add_auth(req)
    return raw_from_botocore(req.prepare(), **raw_kw)


def presign_v4(
    params,
    *,
    key="alice",
    secret=ALICE_SECRET,
    expires=60,
    url=ENDPOINT,
    region="opennebula",
    **raw_kw,
):
    req = AWSRequest(method="GET", url=url, params=dict(params))
    SigV4QueryAuth(Credentials(key, secret), "ec2", region, expires=expires).add_auth(req)
    return raw_from_botocore(req.prepare(), **raw_kw)


def sign_v2(
    params, *, key="alice", secret=ALICE_SECRET, method="POST", url=ENDPOINT, headers=None, **raw_kw
):
    req = _aws_request(method, params, url, headers)
    SigV2Auth(Credentials(key, secret)).add_auth(req)
    return raw_from_botocore(req.prepare(), **raw_kw)


@pytest.fixture
def pool():
    return Pool()


@pytest.fixture
def config():
    return Config(host="localhost", port=4567, trusted_proxies=["127.0.0.1", "10.9.0.0/16"])


@pytest.fixture
def auth(config, pool):
    return Authenticator(
        config, UserDirectory(pool, ttl=60, min_refresh_interval=2), seal_key=SEAL_KEY
    )


DESCRIBE = {"Action": "DescribeInstances", "Version": "2016-11-15"}
ODD = {
    "Action": "DescribeInstances",
    "Version": "2016-11-15",
    "Filter.1.Name": "tag:a b/c=d~e*f",
    "Filter.1.Value.1": "é ü / = ~ * + &",
    "Filter.1.Value.2": "",
}


def _code(auth, raw):
    with pytest.raises(Ec2Error) as exc:
        auth.authenticate(raw)
    return exc.value.code, exc.value.status
