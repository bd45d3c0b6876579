"""SigV2 verified against botocore's SigV2Auth and the econe.md §2.2 worked example."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest

from econe.auth import sigv2
from econe.auth.authenticator import Authenticator
from econe.auth.users import UserDirectory
from econe.config import Config
from econe.context import RawRequest
from econe.errors import Ec2Error
from econe.query import parse_params

from .conftest import DESCRIBE, ODD, Pool, _code, sign_v2, user_xml

# ------------------------------------------------------------------ econe.md §2.2

EXAMPLE_SECRET = "a5771e9d7527c46cfa8c3e1d16649757adc4e3d8"
EXAMPLE = {
    "Action": "DescribeInstances",
    "AWSAccessKeyId": "alice",
    "SignatureMethod": "HmacSHA256",
    "SignatureVersion": "2",
    "Timestamp": "2012-04-09T14:45:01Z",
    "Version": "2010-08-31",
}
WITH_PORT = "2cgSPj8xHqG/DHeGvzgds1GNlVjlNB15Otoz5/pZZDs="
WITHOUT_PORT = "uTSjtFaasI/OZjsBNevaQxq6SO9arFb+ISBvcm6Id1g="


def test_worked_example_strings():
    assert sigv2.canonical_query(EXAMPLE) == (
        "AWSAccessKeyId=alice&Action=DescribeInstances&SignatureMethod=HmacSHA256"
        "&SignatureVersion=2&Timestamp=2012-04-09T14%3A45%3A01Z&Version=2010-08-31"
    )
    sts = sigv2.string_to_sign("POST", "ec2.example.org:4567", "/", EXAMPLE)
    assert sigv2.signature(EXAMPLE_SECRET, sts) == WITH_PORT
    sts = sigv2.string_to_sign("POST", "ec2.example.org", "/", EXAMPLE)
    assert sigv2.signature(EXAMPLE_SECRET, sts) == WITHOUT_PORT


@pytest.mark.parametrize("signature", [WITH_PORT, WITHOUT_PORT])
@pytest.mark.parametrize("host_header", ["ec2.example.org:4567", "ec2.example.org"])
def test_worked_example_verifies(signature, host_header):
    params = {**EXAMPLE, "Signature": signature}
    body = urlencode(params).encode()
    raw = RawRequest(
        "POST",
        "/",
        "",
        {"host": host_header, "content-type": "application/x-www-form-urlencoded"},
        body,
        parse_params("POST", "", body, "application/x-www-form-urlencoded"),
        "192.0.2.1",
    )
    config = Config(host="ec2.example.org", port=4567)
    users = UserDirectory(Pool([user_xml(2, "alice", password=EXAMPLE_SECRET)]))
    signed_at = datetime(2012, 4, 9, 14, 45, 1, tzinfo=UTC).timestamp()
    auth = Authenticator(config, users, clock=lambda: signed_at + 30)
    principal = auth.authenticate(raw)
    assert (principal.name, principal.via) == ("alice", "sigv2")
    # the same request a day later is a replay
    late = Authenticator(config, users, clock=lambda: signed_at + 86400)
    assert _code(late, raw) == ("RequestExpired", 400)


# ------------------------------------------------------------------ botocore SigV2Auth


@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize("params", [DESCRIBE, ODD], ids=["plain", "odd-chars"])
def test_botocore_sigv2_verifies(auth, method, params):
    raw = sign_v2(params, method=method)
    principal = auth.authenticate(raw)
    assert (principal.name, principal.via) == ("alice", "sigv2")


def test_hmac_sha1_and_absent_method(auth, config):
    from econe.auth.common import rfc3986  # noqa: F401 - the canonical form under test

    from .conftest import ALICE_SECRET

    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for method in ("HmacSHA1", None):
        params = {
            **DESCRIBE,
            "AWSAccessKeyId": "alice",
            "SignatureVersion": "2",
            "Timestamp": stamp,
        }
        if method:
            params["SignatureMethod"] = method
        sts = sigv2.string_to_sign("GET", "localhost:4567", "/", params)
        params["Signature"] = sigv2.signature(ALICE_SECRET, sts, "HmacSHA1")
        query = urlencode(params)
        raw = RawRequest(
            "GET",
            "/",
            query,
            {"host": "localhost:4567"},
            b"",
            parse_params("GET", query, b"", None),
            "127.0.0.1",
        )
        assert auth.authenticate(raw).name == "alice"


def test_unknown_signature_method(auth):
    raw = sign_v2(DESCRIBE, method="GET")
    raw.params["SignatureMethod"] = "HmacMD5"
    assert _code(auth, raw) == ("InvalidParameterValue", 400)


def test_signature_version_1_refused(auth):
    raw = sign_v2(DESCRIBE)
    raw.params["SignatureVersion"] = "1"
    assert _code(auth, raw)[0] == "IncompleteSignature"


def test_tampered_param(auth):
    raw = sign_v2(ODD)
    raw.params["Filter.1.Value.2"] = "x"
    assert _code(auth, raw) == ("SignatureDoesNotMatch", 403)


@pytest.mark.parametrize("name", ["DryRun", "file"])  # `file` too: only Signature is unsigned
def test_added_param(auth, name):
    raw = sign_v2(DESCRIBE)
    raw.params[name] = "true"
    assert _code(auth, raw) == ("SignatureDoesNotMatch", 403)


def test_method_is_signed(auth):
    raw = dataclasses.replace(sign_v2(DESCRIBE, method="GET"), method="POST")
    assert _code(auth, raw) == ("SignatureDoesNotMatch", 403)


def test_wrong_secret_and_unknown_user(auth):
    assert _code(auth, sign_v2(DESCRIBE, secret="bad")) == ("SignatureDoesNotMatch", 403)
    assert _code(auth, sign_v2(DESCRIBE, key="ghost")) == ("AuthFailure", 401)


def test_missing_signature_or_timestamp(auth):
    raw = sign_v2(DESCRIBE)
    del raw.params["Signature"]
    assert _code(auth, raw) == ("MissingParameter", 400)
    raw = sign_v2(DESCRIBE)
    del raw.params["Timestamp"]
    assert _code(auth, raw) == ("MissingParameter", 400)


def test_expires_instead_of_timestamp(auth, config, pool):
    from .conftest import ALICE_SECRET

    def signed(expires):
        params = {
            **DESCRIBE,
            "AWSAccessKeyId": "alice",
            "SignatureVersion": "2",
            "SignatureMethod": "HmacSHA256",
            "Expires": expires,
        }
        sts = sigv2.string_to_sign("GET", "localhost:4567", "/", params)
        params["Signature"] = sigv2.signature(ALICE_SECRET, sts)
        query = urlencode(params)
        return RawRequest(
            "GET",
            "/",
            query,
            {"host": "localhost:4567"},
            b"",
            parse_params("GET", query, b"", None),
            "127.0.0.1",
        )

    future = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 600))
    past = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
    assert auth.authenticate(signed(future)).name == "alice"
    assert _code(auth, signed(past)) == ("RequestExpired", 400)
    assert _code(auth, signed("tomorrow")) == ("InvalidParameterValue", 400)
    # a far-future Expires would make a captured URL a lasting credential
    assert _code(auth, signed("2099-01-01T00:00:00Z")) == ("RequestExpired", 400)


@pytest.mark.parametrize("skew", [-1000, 1000])
def test_timestamp_window(config, pool, skew):
    auth = Authenticator(config, UserDirectory(pool), clock=lambda: time.time() + skew)
    assert _code(auth, sign_v2(DESCRIBE)) == ("RequestExpired", 400)


def test_public_user(auth):
    raw = sign_v2(DESCRIBE, key="pub", secret="pub secret/with=odd~chars", method="GET")
    assert auth.authenticate(raw).name == "pub"


def test_disabled_user(auth):
    import hashlib

    raw = sign_v2(DESCRIBE, key="dis", secret=hashlib.sha256(b"dispw").hexdigest())
    assert _code(auth, raw) == ("AuthFailure", 401)


# ------------------------------------------------------------------ which host was signed


def test_host_signed_without_port_is_accepted(auth):
    # the econe CLI (amazon-ec2 gem) signs the host without the port but sends it in Host
    raw = sign_v2(DESCRIBE, url="http://localhost/")
    raw.headers["host"] = "localhost:4567"
    assert auth.authenticate(raw).name == "alice"


def test_host_signed_with_configured_port_behind_proxy(auth):
    raw = sign_v2(DESCRIBE, url="http://localhost:4567/")
    raw.headers["host"] = "localhost"  # a proxy on port 80 forwarded it
    assert auth.authenticate(raw).name == "alice"


def test_wrong_host_for_sigv2(auth):
    raw = sign_v2(DESCRIBE, url="http://evil.example.com:4567/")
    with pytest.raises(Ec2Error) as exc:
        auth.authenticate(raw)
    assert exc.value.code == "SignatureDoesNotMatch"
    assert "evil.example.com" in exc.value.message  # says why, for the operator


def test_ssl_server_host(pool):
    config = Config(host="127.0.0.1", port=4567, ssl_server="https://cloud.example.org:8443/")
    auth = Authenticator(config, UserDirectory(pool))
    raw = sign_v2(DESCRIBE, url="https://cloud.example.org:8443/")
    assert auth.authenticate(raw).name == "alice"
    raw = sign_v2(DESCRIBE, url="https://other.example.org:8443/")
    assert _code(auth, raw)[0] == "SignatureDoesNotMatch"


def test_ssl_server_path_prefix(pool):
    config = Config(host="127.0.0.1", port=4567, ssl_server="https://cloud.example.org/ec2/")
    auth = Authenticator(config, UserDirectory(pool))
    raw = sign_v2(DESCRIBE, url="https://cloud.example.org/ec2/")
    raw = dataclasses.replace(raw, path="/")  # the proxy stripped the prefix
    assert auth.authenticate(raw).name == "alice"


def test_x_forwarded_host_from_trusted_proxy(auth):
    raw = sign_v2(DESCRIBE, url="https://public.example.org/", client_addr="10.9.1.2")
    raw.headers["host"] = "localhost:4567"
    raw.headers["x-forwarded-host"] = "public.example.org"
    assert auth.authenticate(raw).name == "alice"


def test_x_forwarded_host_from_untrusted_client(auth):
    raw = sign_v2(DESCRIBE, url="https://public.example.org/", client_addr="203.0.113.9")
    raw.headers["host"] = "localhost:4567"
    raw.headers["x-forwarded-host"] = "public.example.org"
    assert _code(auth, raw)[0] == "SignatureDoesNotMatch"


def test_wildcard_bind_trusts_host_header(pool):
    auth = Authenticator(Config(host="0.0.0.0", port=4567), UserDirectory(pool))
    assert auth.authenticate(sign_v2(DESCRIBE, url="http://anything.example:4567/")).name == "alice"


def test_unicode_digit_port_in_host_header(auth):
    """No crash; the configured `localhost:4567` the client signed still verifies."""
    raw = sign_v2(DESCRIBE)
    raw.headers["host"] = "localhost:４５６７"
    assert auth.authenticate(raw).name == "alice"
    raw = sign_v2(DESCRIBE, url="http://ec2.example.org:4567/")
    raw.headers["host"] = "ec2.example.org:４５６７"
    assert _code(auth, raw)[0] == "SignatureDoesNotMatch"
