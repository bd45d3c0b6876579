"""SigV4 (header and presigned) verified against botocore's own signers."""

from __future__ import annotations

import dataclasses
import hashlib
import time

import pytest

from econe.errors import Ec2Error

from .conftest import ALICE_SECRET, DESCRIBE, ODD, _code, presign_v4, sign_v4


@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize("params", [DESCRIBE, ODD], ids=["plain", "odd-chars"])
def test_botocore_sigv4_verifies(auth, method, params):
    principal = auth.authenticate(sign_v4(params, method=method))
    assert (principal.name, principal.uid, principal.gid) == ("alice", 2, 1)
    assert (principal.auth_driver, principal.via) == ("core", "sigv4")


@pytest.mark.parametrize("region,service", [("0", "127"), ("us-east-1", "ec2"), ("x", "y")])
def test_declared_scope_is_used(auth, region, service):
    assert auth.authenticate(sign_v4(DESCRIBE, region=region, service=service)).name == "alice"


def test_host_with_port_as_received(auth):
    # SigV4 signs the Host header as received (port included); loopback names are one host
    raw = sign_v4(DESCRIBE, url="http://127.0.0.1:8080/")
    assert raw.headers["host"] == "127.0.0.1:8080"
    assert auth.authenticate(raw).name == "alice"


@pytest.mark.parametrize("sign", [sign_v4, presign_v4])
def test_signed_for_a_host_we_do_not_serve(auth, sign):
    """A request captured on another endpoint (same user and secret) is not replayable here."""
    raw = sign(DESCRIBE, url="http://ec2.example.org:4567/")
    with pytest.raises(Ec2Error) as exc:
        auth.authenticate(raw)
    assert (exc.value.code, exc.value.status) == ("SignatureDoesNotMatch", 403)
    assert "ec2.example.org" in exc.value.message


def test_ssl_server_name(pool):
    from econe.auth.authenticator import Authenticator
    from econe.auth.users import UserDirectory
    from econe.config import Config

    config = Config(host="10.0.0.5", port=4567, ssl_server="https://cloud.example.org/")
    auth = Authenticator(config, UserDirectory(pool))
    assert auth.authenticate(sign_v4(DESCRIBE, url="https://cloud.example.org/")).name == "alice"
    assert _code(auth, sign_v4(DESCRIBE, url="http://127.0.0.1:4567/"))[0] == (
        "SignatureDoesNotMatch"
    )
    assert auth.authenticate(sign_v4(DESCRIBE, url="http://10.0.0.5:4567/")).name == "alice"


@pytest.mark.parametrize("peer,ok", [("10.9.3.4", True), ("203.0.113.7", False)])
def test_forwarded_host_only_from_trusted_proxy(auth, peer, ok):
    raw = sign_v4(DESCRIBE, url="https://ec2.example.org/", client_addr=peer)
    raw.headers["x-forwarded-host"] = "ec2.example.org"
    if ok:
        assert auth.authenticate(raw).name == "alice"
    else:
        assert _code(auth, raw) == ("SignatureDoesNotMatch", 403)


def test_public_user(auth):
    raw = sign_v4(DESCRIBE, key="pub", secret="pub secret/with=odd~chars")
    assert auth.authenticate(raw).auth_driver == "public"


def test_tampered_body(auth):
    raw = sign_v4(DESCRIBE)
    raw = dataclasses.replace(raw, body=raw.body.replace(b"DescribeInstances", b"RunInstances"))
    assert _code(auth, raw) == ("SignatureDoesNotMatch", 403)


def test_tampered_query_param(auth):
    raw = sign_v4(ODD, method="GET")
    raw = dataclasses.replace(raw, query_string=raw.query_string.replace("Value.2=", "Value.2=x"))
    assert _code(auth, raw) == ("SignatureDoesNotMatch", 403)


def test_tampered_signed_header(auth):
    raw = sign_v4(DESCRIBE)
    raw.headers["content-type"] = "application/x-www-form-urlencoded"
    assert _code(auth, raw) == ("SignatureDoesNotMatch", 403)


def test_unsigned_header_may_change(auth):
    raw = sign_v4(DESCRIBE)
    raw.headers["user-agent"] = "something else"
    assert auth.authenticate(raw).name == "alice"


def test_wrong_host(auth):
    raw = sign_v4(DESCRIBE)
    raw.headers["host"] = "localhost:4568"
    assert _code(auth, raw) == ("SignatureDoesNotMatch", 403)


def test_wrong_secret(auth):
    assert _code(auth, sign_v4(DESCRIBE, secret="nope")) == ("SignatureDoesNotMatch", 403)


def test_unknown_user(auth):
    assert _code(auth, sign_v4(DESCRIBE, key="nobody")) == ("AuthFailure", 401)


def test_ldap_user_refused(auth):
    assert _code(auth, sign_v4(DESCRIBE, key="lara", secret="-")) == ("AuthFailure", 401)


def test_server_user_refused(auth):
    assert _code(auth, sign_v4(DESCRIBE, key="serveradmin", secret="x" * 64))[0] == "AuthFailure"


def test_disabled_user_refused(auth):
    raw = sign_v4(DESCRIBE, key="dis", secret=hashlib.sha256(b"dispw").hexdigest())
    assert _code(auth, raw) == ("AuthFailure", 401)


def test_disabled_user_with_bad_signature_looks_like_bad_signature(auth):
    raw = sign_v4(DESCRIBE, key="dis", secret="wrong")
    assert _code(auth, raw) == ("SignatureDoesNotMatch", 403)


def test_no_spaces_after_commas(auth):
    raw = sign_v4(DESCRIBE)
    raw.headers["authorization"] = raw.headers["authorization"].replace(", ", ",")
    assert auth.authenticate(raw).name == "alice"


def test_malformed_authorization(auth):
    raw = sign_v4(DESCRIBE)
    raw.headers["authorization"] = "AWS4-HMAC-SHA256 Credential=alice/20260101/x/ec2/aws4_request"
    assert _code(auth, raw) == ("IncompleteSignature", 400)
    raw.headers["authorization"] = (
        "AWS4-HMAC-SHA256 Credential=alice/20260101, SignedHeaders=host, Signature=" + "0" * 64
    )
    assert _code(auth, raw) == ("IncompleteSignature", 400)


def test_host_must_be_signed(auth):
    raw = sign_v4(DESCRIBE)
    raw.headers["authorization"] = raw.headers["authorization"].replace(
        "SignedHeaders=content-type;host;x-amz-date", "SignedHeaders=content-type;x-amz-date"
    )
    assert _code(auth, raw) == ("IncompleteSignature", 400)


def test_signed_headers_named_twice_or_by_the_thousand_are_refused(auth):
    """Each name puts its header's value into the hashed string: repeats would make a small
    unauthenticated request cost gigabytes before the signature is checked."""
    for names in ("host;x-big;x-big", ";".join(["host"] + [f"x-{n}" for n in range(64)])):
        raw = sign_v4(DESCRIBE)
        raw.headers["x-big"] = "x" * 100_000
        raw.headers["authorization"] = raw.headers["authorization"].replace(
            "SignedHeaders=content-type;host;x-amz-date", f"SignedHeaders={names}"
        )
        assert _code(auth, raw) == ("IncompleteSignature", 400)


def test_missing_x_amz_date(auth):
    raw = sign_v4(DESCRIBE)
    del raw.headers["x-amz-date"]
    assert _code(auth, raw) == ("IncompleteSignature", 400)


@pytest.mark.parametrize(
    "date",
    [
        "2026-01-01T00:00:00Z",
        "20260101T000000",
        "20261301T000000Z",
        "20250229T000000Z",
        "\u0662\u0660\u0662\u0666\u0661\u0661\u0662\u0663T184254Z",  # Arabic-Indic digits
    ],
)
def test_malformed_or_impossible_x_amz_date(auth, date):
    raw = sign_v4(DESCRIBE)
    raw.headers["x-amz-date"] = date
    with pytest.raises(Ec2Error) as exc:
        auth.authenticate(raw)
    assert (exc.value.code, exc.value.status) == ("IncompleteSignature", 400)
    assert "YYYYMMDDTHHMMSSZ" in exc.value.message


@pytest.mark.parametrize("skew", [-901, 901, -86400])
def test_timestamp_outside_window(config, pool, skew):
    from econe.auth.authenticator import Authenticator
    from econe.auth.users import UserDirectory

    auth = Authenticator(config, UserDirectory(pool), clock=lambda: time.time() - skew)
    assert _code(auth, sign_v4(DESCRIBE)) == ("RequestExpired", 400)


@pytest.mark.parametrize("skew", [-899, 899])
def test_timestamp_inside_window(config, pool, skew):
    from econe.auth.authenticator import Authenticator
    from econe.auth.users import UserDirectory

    auth = Authenticator(config, UserDirectory(pool), clock=lambda: time.time() - skew)
    assert auth.authenticate(sign_v4(DESCRIBE)).name == "alice"


def test_payload_hash_header(auth):
    body_hash = hashlib.sha256(b"Action=DescribeInstances&Version=2016-11-15").hexdigest()
    raw = sign_v4(DESCRIBE, headers={"X-Amz-Content-SHA256": body_hash})
    assert "x-amz-content-sha256" in raw.headers["authorization"]
    assert auth.authenticate(raw).name == "alice"


def test_payload_hash_header_must_match_body(auth):
    raw = sign_v4(DESCRIBE, headers={"X-Amz-Content-SHA256": "0" * 64})
    assert _code(auth, raw) == ("SignatureDoesNotMatch", 403)


def test_unsigned_payload_only_without_body(auth):
    raw = sign_v4(DESCRIBE, headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    assert raw.body
    assert _code(auth, raw) == ("SignatureDoesNotMatch", 403)
    raw = sign_v4(DESCRIBE, method="GET", headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    assert auth.authenticate(raw).name == "alice"


JS_SDK_HEADERS = {
    "amz-sdk-invocation-id": "0f9c2f3e-6f2c-4a4e-8b1d-0d4f2f1f6e11",
    "amz-sdk-request": "attempt=1; max=3",
    "x-amz-user-agent": "aws-sdk-js/3.1169.0",
}


def test_js_sdk_like_eight_signed_headers(auth):
    body = b"Action=DescribeInstances&Version=2016-11-15"
    headers = dict(JS_SDK_HEADERS)
    headers["X-Amz-Content-SHA256"] = hashlib.sha256(body).hexdigest()
    headers["Content-Length"] = str(len(body))
    raw = sign_v4(DESCRIBE, headers=headers)
    signed = raw.headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert len(signed) == 8
    assert auth.authenticate(raw).name == "alice"
    raw.headers["amz-sdk-request"] = "attempt=2; max=3"
    assert _code(auth, raw)[0] == "SignatureDoesNotMatch"


def test_header_whitespace_is_collapsed(auth):
    raw = sign_v4(DESCRIBE, headers={"X-Amz-User-Agent": "a   b"})
    raw.headers["x-amz-user-agent"] = "  a b  "
    assert auth.authenticate(raw).name == "alice"


def test_scope_date_must_match_x_amz_date(auth):
    raw = sign_v4(DESCRIBE)
    auth_header = raw.headers["authorization"]
    date = raw.headers["x-amz-date"][:8]
    raw.headers["authorization"] = auth_header.replace(f"/{date}/", "/20000101/")
    assert _code(auth, raw) == ("SignatureDoesNotMatch", 403)


# ------------------------------------------------------------------ presigned


def test_presigned_verifies(auth):
    principal = auth.authenticate(presign_v4(ODD))
    assert (principal.name, principal.via) == ("alice", "presigned-v4")


def test_presigned_tampered(auth):
    raw = presign_v4(DESCRIBE)
    raw = dataclasses.replace(raw, query_string=raw.query_string.replace("Describe", "Run"))
    assert _code(auth, raw) == ("SignatureDoesNotMatch", 403)


def test_presigned_after_expiry(config, pool):
    from econe.auth.authenticator import Authenticator
    from econe.auth.users import UserDirectory

    raw = presign_v4(DESCRIBE, expires=60)
    later = Authenticator(config, UserDirectory(pool), clock=lambda: time.time() + 61)
    assert _code(later, raw) == ("RequestExpired", 400)
    sooner = Authenticator(config, UserDirectory(pool), clock=lambda: time.time() + 50)
    assert sooner.authenticate(raw).name == "alice"


def test_presigned_in_the_future(config, pool):
    from econe.auth.authenticator import Authenticator
    from econe.auth.users import UserDirectory

    auth = Authenticator(config, UserDirectory(pool), clock=lambda: time.time() - 3600)
    assert _code(auth, presign_v4(DESCRIBE)) == ("RequestExpired", 400)


def test_presigned_bad_expires(auth):
    raw = presign_v4(DESCRIBE, expires=60)
    raw = dataclasses.replace(
        raw, query_string=raw.query_string.replace("X-Amz-Expires=60", "X-Amz-Expires=0")
    )
    assert _code(auth, raw) == ("InvalidParameterValue", 400)


def test_presigned_wrong_secret(auth):
    assert _code(auth, presign_v4(DESCRIBE, secret="x")) == ("SignatureDoesNotMatch", 403)


def test_signature_not_in_repr():
    from econe.auth import sigv4

    raw = sign_v4(DESCRIBE)
    cred = sigv4.parse_header(raw)
    assert cred.signature not in repr(cred)
    assert ALICE_SECRET not in repr(cred)


def test_non_ascii_payload_hash_header_is_a_mismatch_not_a_crash(auth):
    raw = sign_v4(DESCRIBE)
    raw.headers["x-amz-content-sha256"] = "é" * 64
    assert _code(auth, raw) == ("SignatureDoesNotMatch", 403)


def test_non_hex_signature(auth):
    raw = sign_v4(DESCRIBE)
    header = raw.headers["authorization"]
    raw.headers["authorization"] = header[:-64] + "é" * 64
    assert _code(auth, raw)[0] in ("SignatureDoesNotMatch", "IncompleteSignature")


@pytest.mark.parametrize(
    "host", ["h:" + "9" * 4301, "h:99999999", "h:65536", "[::1]:" + "1" * 5000]
)
def test_an_impossible_host_port_is_no_port(host):
    from econe.auth.common import split_host

    assert split_host(host)[1] is None
    assert split_host("h:65535") == ("h", 65535) and split_host("[::1]:80") == ("[::1]", 80)
