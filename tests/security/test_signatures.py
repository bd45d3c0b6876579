"""Forged, altered, replayed and stale EC2 signatures against `econe-server run --simulator`.

Every attack is a RunInstances of the demo user (who may use the demo AMI), so a request that
got through would leave a VM behind: each test counts oneadmin's VMs before and after. Where
a request is altered after signing, the unaltered original is sent afterwards and must work,
so a refusal can only come from the alteration.
"""

from __future__ import annotations

import hashlib
import time

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.security.conftest import assert_accepted
from tests.security.helpers import (
    FORM,
    REGION,
    STATUS,
    Reply,
    Wire,
    action_params,
    form_body,
    presign_v4,
    run_params,
    send,
    shifted,
    sign_v2,
    sign_v4,
    v2_wire,
)

USER = "demo"


@pytest.fixture
def vms(admin):
    """Asserts how many VMs a test created: `vms.check(0)`."""

    class Counter:
        def __init__(self):
            self.start = admin.vm_ids()

        def check(self, created: int, what: str = "") -> None:
            now = admin.vm_ids()
            assert len(now - self.start) == created, (
                f"{what}: expected {created} new VM(s) in OpenNebula, found {sorted(now - self.start)}"
            )

    return Counter()


def refused(reply: Reply, *codes: str) -> None:
    """`reply` is an EC2 error document with one of `codes` and AWS's HTTP status for it."""
    assert reply.code in codes, f"expected {' or '.join(codes)}, got {reply}"
    assert reply.status == STATUS[reply.code], (
        f"{reply.code} must be HTTP {STATUS[reply.code]}: {reply}"
    )
    assert reply.headers.get("content-type", "").startswith(("text/xml", "application/xml")), reply


def record(secrets_used, wire: Wire, what: str) -> Wire:
    auth = wire.header("Authorization")
    if auth and "Signature=" in auth:
        secrets_used.add(auth.rsplit("Signature=", 1)[1], f"SigV4 signature ({what})")
    body = wire.body.decode()
    for part in (body + "&" + wire.url.partition("?")[2]).split("&"):
        if part.startswith(("Signature=", "X-Amz-Signature=")):
            from urllib.parse import unquote

            value = unquote(part.split("=", 1)[1])
            secrets_used.add(value, f"signature ({what})")
            secrets_used.add(part.split("=", 1)[1], f"signature, url-encoded ({what})")
    return wire


# ------------------------------------------------------------------ no or broken credentials


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_no_authentication_at_all(demo, vms, method):
    reply = send(v2_wire(demo.url, run_params(), method))
    refused(reply, "MissingAuthenticationToken", "AuthFailure", "MissingParameter")
    vms.check(0, "unsigned RunInstances")


@pytest.mark.parametrize(
    "extra",
    [
        {},  # the Ruby econe <= 3.8.3 let this through (bug #1777): both signatures empty
        {"SignatureVersion": "2"},
        {"SignatureVersion": "2", "SignatureMethod": "HmacSHA256", "Signature": ""},
        {"SignatureVersion": "2", "SignatureMethod": "HmacSHA256", "Signature": "AAAA"},
    ],
    ids=["key-only", "no-signature", "empty-signature", "junk-signature"],
)
def test_access_key_without_valid_signature(demo, vms, extra):
    params = run_params(AWSAccessKeyId=USER, Timestamp=shifted(0).strftime("%Y-%m-%dT%H:%M:%SZ"))
    params.update(extra)
    reply = send(v2_wire(demo.url, params))
    refused(
        reply,
        "MissingAuthenticationToken",
        "AuthFailure",
        "MissingParameter",
        "IncompleteSignature",
        "SignatureDoesNotMatch",
    )
    vms.check(0)


@pytest.mark.parametrize("version", ["0", "1", "3"])
def test_other_signature_versions_refused(demo, demo_secret, vms, version):
    """SigV1 (case-insensitive concatenation, HMAC-SHA1) is broken by design; never accept it."""
    wire = sign_v2(
        demo.url, run_params(), USER, demo_secret, signature_version=version, algo="HmacSHA1"
    )
    reply = send(wire)
    assert 400 <= reply.status < 500 and reply.code, reply
    vms.check(0)


def test_authorization_header_of_another_scheme(demo, vms):
    wire = Wire(
        "POST",
        demo.url + "/",
        {"Content-Type": FORM, "Authorization": "Basic ZGVtbzpkZW1v"},
        form_body(run_params()),
    )
    reply = send(wire)
    refused(reply, "MissingAuthenticationToken", "AuthFailure", "IncompleteSignature")
    vms.check(0)


@pytest.mark.parametrize("sig", ["v4", "v2"])
def test_wrong_secret(demo, vms, secrets_used, sig):
    wrong = hashlib.sha256(b"not the password").hexdigest()
    signer = sign_v4 if sig == "v4" else sign_v2
    reply = send(record(secrets_used, signer(demo.url, run_params(), USER, wrong), "wrong secret"))
    refused(reply, "SignatureDoesNotMatch")
    vms.check(0)


def test_clear_password_is_not_the_secret(demo, vms):
    """The secret of a core user is the sha256 oned stores, not the password itself."""
    reply = send(sign_v4(demo.url, run_params(), USER, "demo"))
    refused(reply, "SignatureDoesNotMatch")
    vms.check(0)


# ------------------------------------------------------------------ altered after signing (v4)


def test_v4_tampered_body(demo, demo_secret, vms, secrets_used):
    wire = record(secrets_used, sign_v4(demo.url, run_params(1), USER, demo_secret), "v4 body")
    evil = wire.copy(body=form_body(run_params(3)))
    refused(send(evil), "SignatureDoesNotMatch")
    vms.check(0, "tampered body")
    assert_accepted(send(wire), "the original request")
    vms.check(1, "original request")


def test_v4_appended_parameter(demo, demo_secret, vms, secrets_used):
    wire = record(secrets_used, sign_v4(demo.url, run_params(1), USER, demo_secret), "v4 append")
    evil = wire.copy(body=wire.body + b"&UserData=ZXZpbA%3D%3D")
    refused(send(evil), "SignatureDoesNotMatch")
    evil = wire.copy(url=wire.url + "?MaxCount=3&MinCount=3")
    refused(send(evil), "SignatureDoesNotMatch")
    vms.check(0)


def test_v4_tampered_query(demo, demo_secret, vms, secrets_used):
    wire = record(
        secrets_used, sign_v4(demo.url, run_params(1), USER, demo_secret, method="GET"), "v4 GET"
    )
    assert "MaxCount=1" in wire.url
    evil = wire.copy(
        url=wire.url.replace("MaxCount=1", "MaxCount=3").replace("MinCount=1", "MinCount=3")
    )
    refused(send(evil), "SignatureDoesNotMatch")
    vms.check(0)
    assert_accepted(send(wire), "the original GET")
    vms.check(1)


@pytest.mark.parametrize("header", ["X-Amz-Date", "Content-Type"])
def test_v4_tampered_signed_header(demo, demo_secret, vms, secrets_used, header):
    wire = record(secrets_used, sign_v4(demo.url, run_params(1), USER, demo_secret), "v4 header")
    original = wire.header(header)
    if header == "X-Amz-Date":
        changed = original[:-3] + f"{(int(original[-3:-1]) + 1) % 60:02d}Z"
    else:
        changed = "application/x-www-form-urlencoded"  # charset dropped: same body, other bytes
    refused(send(wire.with_header(header, changed)), "SignatureDoesNotMatch")
    vms.check(0)
    # An extra header that was not signed changes nothing.
    assert_accepted(send(wire.with_header("X-Unsigned-Extra", "1")), "unsigned extra header")
    vms.check(1)


def test_v4_content_sha256_header_is_not_trusted(demo, demo_secret, vms, secrets_used):
    """The Ruby econe took X-Amz-Content-Sha256 as the body hash without checking it."""
    body = form_body(run_params(1))
    declared = hashlib.sha256(body).hexdigest()
    wire = sign_v4(
        demo.url, run_params(1), USER, demo_secret, extra_headers={"X-Amz-Content-SHA256": declared}
    )
    record(secrets_used, wire, "v4 content sha")
    assert wire.body == body
    evil = wire.copy(body=form_body(run_params(3)))
    reply = send(evil)
    assert reply.status in (400, 403) and reply.code, reply
    vms.check(0)
    assert_accepted(send(wire), "the original with a correct X-Amz-Content-SHA256")
    vms.check(1)


def test_v4_unsigned_payload_cannot_carry_a_body(demo, demo_secret, vms, secrets_used):
    wire = sign_v4(
        demo.url,
        run_params(1),
        USER,
        demo_secret,
        extra_headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"},
    )
    record(secrets_used, wire, "v4 unsigned payload")
    reply = send(wire.copy(body=form_body(run_params(3))))
    assert reply.status in (400, 403) and reply.code, reply
    vms.check(0)


class _NoHostSigV4(SigV4Auth):
    def headers_to_sign(self, request):
        headers = super().headers_to_sign(request)
        del headers["host"]
        return headers


def test_v4_host_must_be_signed(demo, demo_secret, vms, secrets_used):
    req = AWSRequest(
        method="POST",
        url=demo.url + "/",
        data=form_body(run_params(1)).decode(),
        headers={"Content-Type": FORM},
    )
    _NoHostSigV4(Credentials(USER, demo_secret), "ec2", REGION).add_auth(req)
    prepared = req.prepare()
    assert "host" not in prepared.headers["Authorization"].split("SignedHeaders=")[1].split(",")[0]
    wire = Wire("POST", demo.url + "/", dict(prepared.headers.items()), prepared.body.encode())
    record(secrets_used, wire, "v4 no host")
    reply = send(wire)
    refused(reply, "IncompleteSignature", "SignatureDoesNotMatch", "AuthFailure")
    vms.check(0)


# ------------------------------------------------------------------ altered after signing (v2)


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_v2_tampered_parameter(demo, demo_secret, vms, secrets_used, method):
    wire = record(
        secrets_used, sign_v2(demo.url, run_params(1), USER, demo_secret, method=method), "v2"
    )
    if method == "POST":
        evil = wire.copy(
            body=wire.body.replace(b"MaxCount=1", b"MaxCount=3").replace(
                b"MinCount=1", b"MinCount=3"
            )
        )
        assert evil.body != wire.body
    else:
        evil = wire.copy(
            url=wire.url.replace("MaxCount=1", "MaxCount=3").replace("MinCount=1", "MinCount=3")
        )
        assert evil.url != wire.url
    refused(send(evil), "SignatureDoesNotMatch")
    vms.check(0)
    assert_accepted(send(wire), "the original v2 request")
    vms.check(1)


def test_v2_added_parameter(demo, demo_secret, vms, secrets_used):
    wire = record(secrets_used, sign_v2(demo.url, run_params(1), USER, demo_secret), "v2 add")
    refused(send(wire.copy(body=wire.body + b"&UserData=ZXZpbA%3D%3D")), "SignatureDoesNotMatch")
    vms.check(0)


def test_v2_parameter_smuggled_into_query(demo, demo_secret, vms, secrets_used):
    """A signed POST body plus parameters in the URL: refused, or exactly the signed request.
    Here the body gives each of them again (so what is signed still matches): the request is
    refused once authenticated for naming a parameter twice."""
    wire = record(secrets_used, sign_v2(demo.url, run_params(1), USER, demo_secret), "v2 smuggle")
    reply = send(wire.copy(url=wire.url + "?MaxCount=3&MinCount=3&InstanceType=m1.large"))
    if reply.status == 200:
        vms.check(1, "the query parameters must not change what was signed")
    else:
        refused(reply, "SignatureDoesNotMatch", "InvalidParameterValue")
        vms.check(0)


def test_v2_duplicate_parameter_in_body(demo, demo_secret, vms, secrets_used):
    wire = record(secrets_used, sign_v2(demo.url, run_params(1), USER, demo_secret), "v2 dup")
    reply = send(wire.copy(body=wire.body + b"&MaxCount=3&MinCount=3"))
    if reply.status == 200:
        vms.check(1, "a repeated parameter must not change what was signed")
    else:
        assert 400 <= reply.status < 500 and reply.code, reply
        vms.check(0)


def test_v2_hmac_sha1_still_verified(demo, demo_secret, vms, secrets_used):
    wire = record(
        secrets_used,
        sign_v2(demo.url, run_params(1), USER, demo_secret, algo="HmacSHA1"),
        "v2 sha1",
    )
    evil = wire.copy(
        body=wire.body.replace(b"MaxCount=1", b"MaxCount=3").replace(b"MinCount=1", b"MinCount=3")
    )
    refused(send(evil), "SignatureDoesNotMatch")
    vms.check(0)
    assert_accepted(send(wire), "HmacSHA1 (the Ruby econe's default)")
    vms.check(1)


# ------------------------------------------------------------------ wrong host


def test_v2_signed_for_another_host(demo, demo_secret, vms, secrets_used):
    port = demo.url.rsplit(":", 1)[1]
    for host in (f"ec2.example.org:{port}", "ec2.example.org", f"127.0.0.1:{int(port) + 1}"):
        wire = sign_v2(demo.url, run_params(1), USER, demo_secret, sign_host=host)
        refused(send(record(secrets_used, wire, "v2 host")), "SignatureDoesNotMatch")
    vms.check(0)


def test_v4_signed_for_another_host(demo, demo_secret, vms, secrets_used):
    """Signed for, and sent with, `Host: ec2.example.org`: a request captured on another
    endpoint must not be replayable here (the Host header is the client's to choose)."""
    port = demo.url.rsplit(":", 1)[1]
    for host in (f"ec2.example.org:{port}", "ec2.example.org"):
        wire = sign_v4(demo.url, run_params(1), USER, demo_secret, sign_host=host)
        assert wire.header("Host") == host
        refused(send(record(secrets_used, wire, "v4 host")), "SignatureDoesNotMatch", "AuthFailure")
    vms.check(0)


# ------------------------------------------------------------------ stale and future requests


@pytest.mark.parametrize("skew", [-20 * 60, 20 * 60], ids=["past", "future"])
def test_v2_timestamp_out_of_window(demo, demo_secret, vms, secrets_used, skew):
    wire = sign_v2(demo.url, run_params(1), USER, demo_secret, when=shifted(skew))
    refused(send(record(secrets_used, wire, "v2 ts")), "RequestExpired")
    vms.check(0)


def test_v2_timestamp_inside_window(demo, demo_secret, vms):
    assert_accepted(
        send(sign_v2(demo.url, run_params(1), USER, demo_secret, when=shifted(-5 * 60)))
    )
    vms.check(1)


def test_v2_expires_in_the_past(demo, demo_secret, vms, secrets_used):
    wire = sign_v2(demo.url, run_params(1), USER, demo_secret, expires=shifted(-60))
    refused(send(record(secrets_used, wire, "v2 expires")), "RequestExpired")
    vms.check(0)
    ok = sign_v2(demo.url, run_params(1), USER, demo_secret, expires=shifted(5 * 60))
    assert_accepted(send(ok), "Expires in 5 minutes")
    vms.check(1)


@pytest.mark.parametrize("skew", [-20 * 60, 20 * 60], ids=["past", "future"])
def test_v4_date_out_of_window(demo, demo_secret, vms, secrets_used, skew):
    wire = sign_v4(demo.url, run_params(1), USER, demo_secret, when=shifted(skew))
    refused(send(record(secrets_used, wire, "v4 date")), "RequestExpired")
    vms.check(0)


def test_v4_date_inside_window(demo, demo_secret, vms):
    assert_accepted(send(sign_v4(demo.url, run_params(1), USER, demo_secret, when=shifted(5 * 60))))
    vms.check(1)


# ------------------------------------------------------------------ presigned URLs


def test_presigned_url_works_then_expires(demo, demo_secret, vms, secrets_used):
    url = presign_v4(demo.url, run_params(1), USER, demo_secret, expires=3)
    secrets_used.add(url.rsplit("X-Amz-Signature=", 1)[1], "presigned signature")
    first = send(Wire("GET", url))
    assert_accepted(first, "presigned RunInstances fetched with a plain GET")
    assert b"RunInstancesResponse" in first.body
    vms.check(1)
    time.sleep(4.2)
    refused(send(Wire("GET", url)), "RequestExpired")
    vms.check(1, "an expired presigned URL")


def test_presigned_url_tampered(demo, demo_secret, vms, secrets_used):
    url = presign_v4(demo.url, run_params(1), USER, demo_secret, expires=60)
    secrets_used.add(url.rsplit("X-Amz-Signature=", 1)[1], "presigned signature")
    evil = url.replace("MaxCount=1", "MaxCount=3").replace("MinCount=1", "MinCount=3")
    assert evil != url
    refused(send(Wire("GET", evil)), "SignatureDoesNotMatch")
    refused(send(Wire("GET", url + "&UserData=ZXZpbA%3D%3D")), "SignatureDoesNotMatch")
    # the signed query moved into a POST body is another request
    base, query = url.split("?", 1)
    reply = send(Wire("POST", base, {"Content-Type": FORM}, query.encode()))
    assert reply.status in (400, 401, 403) and reply.code, reply
    vms.check(0)


def test_presigned_url_signed_in_the_past(demo, demo_secret, vms, secrets_used):
    url = presign_v4(demo.url, run_params(1), USER, demo_secret, expires=600, when=shifted(-3600))
    secrets_used.add(url.rsplit("X-Amz-Signature=", 1)[1], "presigned signature")
    refused(send(Wire("GET", url)), "RequestExpired")
    vms.check(0)


def test_presigned_describe(demo, demo_secret):
    url = presign_v4(demo.url, action_params("DescribeInstances"), USER, demo_secret, expires=30)
    reply = send(Wire("GET", url))
    assert_accepted(reply)
    assert b"DescribeInstancesResponse" in reply.body


def test_presigned_url_longer_than_seven_days(demo, demo_secret, vms, secrets_used):
    url = presign_v4(demo.url, run_params(1), USER, demo_secret, expires=8 * 24 * 3600)
    secrets_used.add(url.rsplit("X-Amz-Signature=", 1)[1], "presigned signature")
    reply = send(Wire("GET", url))
    assert reply.status == 400 and reply.code, reply
    vms.check(0)


# ------------------------------------------------------------------ around the front


@pytest.mark.parametrize(
    "path",
    ["/RunInstances", "/RunInstances?Action=RunInstances", "//RunInstances", "/%52unInstances"],
)
def test_virtual_routes_need_a_signature(demo, vms, path):
    """The per-action JSON routes behind the Query front are not a way around it."""
    body = b'{"ImageId": "ami-00000000", "MinCount": 1, "MaxCount": 1, "InstanceType": "m1.small"}'
    reply = send(Wire("POST", demo.url + path, {"Content-Type": "application/json"}, body))
    assert 400 <= reply.status < 500 and reply.code, reply
    vms.check(0)


def test_signed_for_one_path_sent_to_another(demo, demo_secret, vms, secrets_used):
    wire = record(secrets_used, sign_v4(demo.url, run_params(1), USER, demo_secret), "v4 path")
    refused(send(wire.copy(url=demo.url + "/RunInstances")), "SignatureDoesNotMatch")
    v2 = record(secrets_used, sign_v2(demo.url, run_params(1), USER, demo_secret), "v2 path")
    refused(send(v2.copy(url=demo.url + "/RunInstances")), "SignatureDoesNotMatch")
    vms.check(0)


def test_oversized_body_refused_before_authentication(demo, vms):
    body = form_body(run_params(1)) + b"&UserData=" + b"A" * (4 * 1024 * 1024)
    reply = send(Wire("POST", demo.url + "/", {"Content-Type": FORM}, body))
    assert reply.status == 413 and reply.code, reply
    vms.check(0)
