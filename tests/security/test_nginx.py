"""econe behind a real nginx TLS front, configured by the very files in docs/nginx/.

Each stack runs econe with `:trusted_proxies: [127.0.0.2]` and nginx connecting to it from
127.0.0.2 (`proxy_bind`), so this test process (127.0.0.1) is a client that reaches econe
directly, around the proxy. Identity headers it sends must be ignored; the same headers from
127.0.0.2 are honoured, which proves the refusals are about trust and not about the headers.
The demo user (uid 2) owns the demo AMI, so "did the request run as demo?" is "did a VM owned
by uid 2 appear?".
"""

from __future__ import annotations

import base64
import os
import re
import socket
import stat
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from lxml import etree

from tests.e2e.conftest import DEMO_SECRET
from tests.security.conftest import PROXY_SOURCE, REMOTE_USERS, assert_accepted
from tests.security.helpers import (
    DEMO_AMI,
    FORM,
    REGION,
    STATUS,
    Reply,
    Wire,
    action_params,
    aws_cli_image_ids,
    eventually,
    form_body,
    presign_v4,
    run_params,
    send,
    sign_v2,
    sign_v4,
)

BIN = Path(sys.executable).parent


def owners(admin, before: set[int]) -> list[int]:
    """UIDs of the VMs created since `before`."""
    out = []
    for vid in sorted(admin.vm_ids() - before):
        xml = etree.fromstring(str(admin.call("one.vm.info", vid, False)).encode())
        out.append(int(xml.findtext("UID")))
    return out


def auth_failure(reply: Reply) -> None:
    assert reply.code == "AuthFailure", f"expected AuthFailure, got {reply}"
    assert reply.status == STATUS["AuthFailure"], reply


def ec2_client(stack, user="demo", secret=DEMO_SECRET, client_cert=None, **cfg):
    ident = stack.pki.clients[client_cert] if client_cert else None
    return boto3.client(
        "ec2",
        endpoint_url=stack.front,
        region_name=REGION,
        aws_access_key_id=user,
        aws_secret_access_key=secret,
        verify=str(stack.pki.ca),
        config=BotoConfig(
            retries={"max_attempts": 1},
            client_cert=(str(ident.cert), str(ident.key)) if ident else None,
            **cfg,
        ),
    )


def front_wire(stack, params, headers=None) -> Wire:
    return Wire(
        "POST", stack.front + "/", {"Content-Type": FORM, **(headers or {})}, form_body(params)
    )


# ============================================================ :auth: ec2 behind TLS


@pytest.mark.parametrize("version", ["v4", "v2"])
def test_tls_boto3(tls_stack, version):
    ec2 = ec2_client(tls_stack, **({"signature_version": "v2"} if version == "v2" else {}))
    before = tls_stack.admin.vm_ids()
    res = ec2.run_instances(ImageId=DEMO_AMI, MinCount=1, MaxCount=1, InstanceType="m1.small")
    iid = res["Instances"][0]["InstanceId"]
    assert owners(tls_stack.admin, before) == [2]
    found = ec2.describe_instances(InstanceIds=[iid])["Reservations"]
    assert [i["InstanceId"] for r in found for i in r["Instances"]] == [iid]


def test_tls_aws_cli(tls_stack):
    ids = aws_cli_image_ids(tls_stack.front, REGION, "--ca-bundle", str(tls_stack.pki.ca))
    assert DEMO_AMI in ids


def test_tls_econe_cli_trusts_the_ca_it_is_given(tls_stack, tmp_path):
    """The bundled CLI behind TLS with a private CA (the seed's self-signed proxy): refused
    without it, trusted with --ca-bundle or AWS_CA_BUNDLE, for API calls and upload alike."""
    env = {"PATH": str(BIN), "HOME": str(tmp_path), "EC2_URL": tls_stack.front,
           "EC2_ACCESS_KEY": "demo", "EC2_SECRET_KEY": DEMO_SECRET}  # fmt: skip

    def econe(*argv, **more):
        return subprocess.run([str(BIN / "econe"), *argv], env={**env, **more},
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    refused = econe("describe-images")
    assert refused.returncode == 3 and "certificate" in refused.stderr.lower(), refused.stderr
    ca = str(tls_stack.pki.ca)
    assert DEMO_AMI in econe("--ca-bundle", ca, "describe-images").stdout
    assert DEMO_AMI in econe("describe-images", AWS_CA_BUNDLE=ca).stdout
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\0" * 4096)
    assert econe("upload", str(disk), "--name", "no-ca").returncode == 3
    up = econe("--ca-bundle", ca, "upload", str(disk), "--name", "via-private-ca")
    assert up.returncode == 0 and up.stdout.startswith("ami-"), up.stderr
    missing = econe("--ca-bundle", str(tmp_path / "none.pem"), "describe-images")
    assert missing.returncode == 2 and "is not a file" in missing.stderr
    (tmp_path / "not.pem").write_text("not a certificate\n")
    for command in ("describe-images", "upload"):
        bad = econe("--ca-bundle", str(tmp_path / "not.pem"), command, str(disk))
        assert bad.returncode == 2 and "holds no PEM certificate" in bad.stderr, bad.stderr
    # upload also trusts the system's CAs (SSL_CERT_FILE), as it always did
    up = econe("upload", str(disk), "--name", "via-system-cas", SSL_CERT_FILE=ca)
    assert up.returncode == 0 and up.stdout.startswith("ami-"), up.stderr


def test_tls_presigned_url(tls_stack):
    url = presign_v4(
        tls_stack.front, action_params("DescribeImages"), "demo", DEMO_SECRET, expires=30
    )
    reply = send(Wire("GET", url), ssl_context=tls_stack.tls())
    assert_accepted(reply, "presigned URL through nginx")
    assert DEMO_AMI.encode() in reply.body


def test_tls_wrong_secret(tls_stack):
    with pytest.raises(ClientError) as exc:
        ec2_client(tls_stack, secret="0" * 64).describe_instances()
    assert exc.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_tls_front_only_answers_its_own_name(tls_stack):
    """A request signed for another endpoint, replayed with its own Host header: nginx answers
    421 and econe never sees it."""
    before = tls_stack.admin.vm_ids()
    wire = sign_v4(tls_stack.front, run_params(1), "demo", DEMO_SECRET, sign_host="ec2.example.org")
    reply = send(wire, ssl_context=tls_stack.tls())
    assert reply.status == 421, reply
    assert tls_stack.admin.vm_ids() == before


FORGED_CLIENT_ADDRESS = {
    "X-Forwarded-For": PROXY_SOURCE,
    "X-Real-IP": PROXY_SOURCE,
    "Forwarded": f"for={PROXY_SOURCE}",
}
FORGERIES = pytest.mark.parametrize(
    "forged", [{}, FORGED_CLIENT_ADDRESS], ids=["plain", "forged-forwarded-for"]
)


def with_headers(wire: Wire, headers: dict[str, str]) -> Wire:
    for k, v in headers.items():
        wire = wire.with_header(k, v)
    return wire


@FORGERIES
def test_forwarded_host_only_from_the_proxy_v2(tls_stack, forged):
    """SigV2 signed for `ec2.example.org`, with X-Forwarded-Host saying so: honoured from the
    proxy's address, refused from anyone else, whatever X-Forwarded-For claims."""
    wire = sign_v2(tls_stack.econe, run_params(1), "demo", DEMO_SECRET, sign_host="ec2.example.org")
    wire = wire.with_header("X-Forwarded-Host", "ec2.example.org")
    before = tls_stack.admin.vm_ids()
    reply = send(with_headers(wire, forged))
    assert reply.code == "SignatureDoesNotMatch" and reply.status == 403, reply
    assert tls_stack.admin.vm_ids() == before
    assert_accepted(send(wire, source=PROXY_SOURCE), "the same request from the trusted proxy")
    assert owners(tls_stack.admin, before) == [2]


def test_forwarded_host_only_from_the_proxy_v4(tls_stack):
    wire = sign_v4(tls_stack.econe, run_params(1), "demo", DEMO_SECRET, sign_host="ec2.example.org")
    wire = wire.with_header("X-Forwarded-Host", "ec2.example.org")
    before = tls_stack.admin.vm_ids()
    reply = send(wire)
    assert reply.code in ("SignatureDoesNotMatch", "AuthFailure"), reply
    assert reply.status == STATUS[reply.code], reply
    assert tls_stack.admin.vm_ids() == before
    assert_accepted(send(wire, source=PROXY_SOURCE), "the same request from the trusted proxy")
    assert owners(tls_stack.admin, before) == [2]


def test_the_access_line_names_the_client_not_the_proxy(tls_stack):
    """Through nginx (which connects from 127.0.0.2) the line names the client nginx saw; an
    X-Forwarded-For sent straight to econe, around the proxy, is not believed."""
    ec2_client(tls_stack).describe_regions()
    direct = Wire("POST", tls_stack.econe + "/", {"Content-Type": FORM,
                  "X-Forwarded-For": "203.0.113.9"}, form_body({"Action": "DescribeRegions"}))  # fmt: skip
    send(direct)
    log = tls_stack.demo.log.read_text()
    assert re.search(r"\]: 127\.0\.0\.1 \S+ demo POST DescribeRegions 200 ", log)
    assert not re.search(r"\]: 127\.0\.0\.2 \S+ demo POST DescribeRegions ", log)
    assert "203.0.113.9" not in log


def test_tls_ignores_client_identity_headers(tls_stack):
    """In :auth: ec2 mode certificate or user-name headers are no credentials at all."""
    alice = tls_stack.pki.clients["alice"]
    before = tls_stack.admin.vm_ids()
    headers = {
        "SSL-Client-Cert": alice.nginx_header,
        "X-Auth-Username": "demo",
        "Remote-User": "demo",
    }
    for target, ctx in ((tls_stack.front, tls_stack.tls()), (tls_stack.econe, None)):
        reply = send(
            front_wire(tls_stack, run_params(1), headers).copy(url=target + "/"), ssl_context=ctx
        )
        assert reply.status in (401, 403) and reply.code, reply
        reply = send(
            front_wire(tls_stack, run_params(1), headers).copy(url=tls_stack.econe + "/"),
            source=PROXY_SOURCE,
        )
        assert reply.status in (401, 403) and reply.code, reply
    assert tls_stack.admin.vm_ids() == before


# ============================================================ :auth: x509


def alice_launches_as_demo(stack) -> None:
    """boto3 with alice's client certificate launches an instance, owned by demo (uid 2, the
    user of alice's DN), and finds it again."""
    ec2 = ec2_client(stack, user="unused", secret="unused-secret", client_cert="alice")
    before = stack.admin.vm_ids()

    def run():
        try:
            return ec2.run_instances(ImageId=DEMO_AMI, MinCount=1, MaxCount=1)
        except ClientError as exc:  # the user cache may not have seen the chauth yet
            raise AssertionError(str(exc)) from exc

    iid = eventually(run)["Instances"][0]["InstanceId"]
    assert owners(stack.admin, before) == [2], "ran as the user of alice's certificate"
    found = ec2.describe_instances(InstanceIds=[iid])["Reservations"]
    assert [i["InstanceId"] for r in found for i in r["Instances"]] == [iid]


def test_x509_boto3_with_client_certificate(x509_stack):
    alice_launches_as_demo(x509_stack)


def test_x509_unknown_certificate(x509_stack):
    ec2 = ec2_client(x509_stack, user="unused", secret="unused-secret", client_cert="mallory")
    before = x509_stack.admin.vm_ids()
    with pytest.raises(ClientError) as exc:
        ec2.run_instances(ImageId=DEMO_AMI, MinCount=1, MaxCount=1)
    assert exc.value.response["Error"]["Code"] == "AuthFailure"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 401
    assert x509_stack.admin.vm_ids() == before


@pytest.mark.parametrize("client", ["rogue", None], ids=["other-ca", "no-certificate"])
def test_x509_nginx_refuses_unverified_clients(x509_stack, client):
    before = x509_stack.admin.vm_ids()
    reply = send(front_wire(x509_stack, run_params(1)), ssl_context=x509_stack.tls(client))
    assert reply.status == 400 and reply.code is None, f"nginx itself refuses: {reply}"
    assert x509_stack.admin.vm_ids() == before


def test_x509_client_headers_cannot_replace_the_certificate(x509_stack):
    """bob (who owns nothing) connects with his certificate and claims alice's (demo's) in
    every header spelling: the request runs as bob or not at all, never as demo."""
    alice = x509_stack.pki.clients["alice"]
    before = x509_stack.admin.vm_ids()
    headers = {
        "SSL-Client-Cert": alice.nginx_header,
        "Ssl-Client-Cert": alice.apache_header,
        "SSL_CLIENT_CERT": alice.nginx_header,  # nginx drops names with underscores
        "X-Auth-Username": "demo",
    }
    reply = send(front_wire(x509_stack, run_params(1), headers), ssl_context=x509_stack.tls("bob"))
    assert reply.status != 200, reply
    assert x509_stack.admin.vm_ids() == before


@FORGERIES
def test_x509_forged_certificate_header_direct(x509_stack, forged):
    alice = x509_stack.pki.clients["alice"]
    before = x509_stack.admin.vm_ids()
    for value in (alice.nginx_header, alice.apache_header):
        wire = front_wire(x509_stack, run_params(1), {"SSL_CLIENT_CERT": value, **forged})
        auth_failure(send(wire.copy(url=x509_stack.econe + "/")))
    assert x509_stack.admin.vm_ids() == before


@pytest.mark.parametrize("form", ["nginx", "apache"])
def test_x509_certificate_header_from_the_proxy_address(x509_stack, form):
    """Control for the test above: the same header from 127.0.0.2 is believed."""
    alice = x509_stack.pki.clients["alice"]
    value = alice.nginx_header if form == "nginx" else alice.apache_header
    wire = front_wire(x509_stack, run_params(1), {"SSL_CLIENT_CERT": value})
    wire = wire.copy(url=x509_stack.econe + "/")
    before = x509_stack.admin.vm_ids()
    eventually(lambda: assert_accepted(send(wire, source=PROXY_SOURCE)))
    assert owners(x509_stack.admin, before) == [2]


def test_x509_proxy_header_wins_over_other_spellings(x509_stack):
    """A proxy that sets SSL_CLIENT_CERT but passes the client's own headers through (Apache's
    `RequestHeader set`, an nginx config without the clearing lines): the client's
    `SSL-Client-Cert` must not override the certificate the proxy verified."""
    pki = x509_stack.pki
    wire = front_wire(
        x509_stack,
        run_params(1),
        {
            "SSL_CLIENT_CERT": pki.clients["bob"].nginx_header,  # what the proxy verified
            "SSL-Client-Cert": pki.clients["alice"].nginx_header,
        },  # what the client added
    ).copy(url=x509_stack.econe + "/")
    before = x509_stack.admin.vm_ids()
    reply = send(wire, source=PROXY_SOURCE)
    assert x509_stack.admin.vm_ids() == before, f"ran as alice's user: {reply}"


# ============================================================ :auth: remote


def basic(user: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{REMOTE_USERS[user]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_remote_user_through_nginx(remote_stack):
    before = remote_stack.admin.vm_ids()
    wire = front_wire(remote_stack, run_params(1), basic("demo"))
    eventually(lambda: assert_accepted(send(wire, ssl_context=remote_stack.tls())))
    assert owners(remote_stack.admin, before) == [2]


def test_remote_wrong_password(remote_stack):
    before = remote_stack.admin.vm_ids()
    token = base64.b64encode(b"demo:wrong").decode()
    wire = front_wire(remote_stack, run_params(1), {"Authorization": f"Basic {token}"})
    reply = send(wire, ssl_context=remote_stack.tls())
    assert reply.status == 401 and reply.code is None, f"nginx itself refuses: {reply}"
    assert remote_stack.admin.vm_ids() == before


def test_remote_client_cannot_name_another_user(remote_stack):
    """eve (owns nothing) logs in and claims to be demo in every header spelling."""
    before = remote_stack.admin.vm_ids()
    headers = {
        **basic("eve"),
        "X-Auth-Username": "demo",
        "Remote-User": "demo",
        "REMOTE_USER": "demo",
    }
    reply = send(front_wire(remote_stack, run_params(1), headers), ssl_context=remote_stack.tls())
    assert reply.status != 200, reply
    assert remote_stack.admin.vm_ids() == before


@FORGERIES
@pytest.mark.parametrize("header", ["X-Auth-Username", "Remote-User"])
def test_remote_forged_user_header_direct(remote_stack, header, forged):
    before = remote_stack.admin.vm_ids()
    wire = front_wire(remote_stack, run_params(1), {header: "demo", **forged})
    auth_failure(send(wire.copy(url=remote_stack.econe + "/")))
    assert remote_stack.admin.vm_ids() == before


def test_remote_user_header_from_the_proxy_address(remote_stack):
    """Control: X-Auth-Username from 127.0.0.2 is believed."""
    before = remote_stack.admin.vm_ids()
    wire = front_wire(remote_stack, run_params(1), {"X-Auth-Username": "demo"})
    wire = wire.copy(url=remote_stack.econe + "/")
    eventually(lambda: assert_accepted(send(wire, source=PROXY_SOURCE)))
    assert owners(remote_stack.admin, before) == [2]


def test_x509_expired_certificate_from_the_proxy(x509_stack):
    """Even from the proxy's address, a certificate past its validity is refused."""
    expired = x509_stack.pki.clients["alice-expired"]
    before = x509_stack.admin.vm_ids()
    wire = front_wire(x509_stack, run_params(1), {"SSL_CLIENT_CERT": expired.nginx_header})
    auth_failure(send(wire.copy(url=x509_stack.econe + "/"), source=PROXY_SOURCE))
    reply = send(front_wire(x509_stack, run_params(1)), ssl_context=x509_stack.tls("alice-expired"))
    assert reply.status == 400 and reply.code is None, f"nginx refuses it first: {reply}"
    assert x509_stack.admin.vm_ids() == before


@pytest.mark.parametrize("name", ["oneadmin", "serveradmin", "no-such-user"])
def test_remote_only_public_users(remote_stack, name):
    """Even the proxy cannot make econe act as a core or server user."""
    before = remote_stack.admin.vm_ids()
    wire = front_wire(remote_stack, run_params(1), {"X-Auth-Username": name})
    auth_failure(send(wire.copy(url=remote_stack.econe + "/"), source=PROXY_SOURCE))
    assert remote_stack.admin.vm_ids() == before


def test_x509_through_a_unix_socket_only_nginx_can_open(x509_unix_stack):
    """econe on :unix_socket: behind the same econe-x509.conf: nginx's certificate header is
    believed without :trusted_proxies:, econe has no TCP port at all, and the socket file
    lets in no user but its owner and group (here root's: nobody is refused)."""
    stack = x509_unix_stack
    alice_launches_as_demo(stack)
    # the access line names the client nginx saw (this test, 127.0.0.1), not the socket's "-"
    assert re.search(
        r"\]: 127\.0\.0\.1 \S+ demo POST RunInstances 200 ", stack.demo.log.read_text()
    )

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", stack.demo.port), timeout=2).close()
    path = stack.demo.state_dir.parent.parent / "econe.sock"
    assert stat.S_ISSOCK(path.stat().st_mode) and stat.S_IMODE(path.stat().st_mode) == 0o660
    if os.geteuid() == 0:  # another user: only root can become one
        probe = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
             "-c", f"import socket; socket.socket(socket.AF_UNIX).connect({str(path)!r})"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert probe.returncode != 0 and "PermissionError" in probe.stderr, probe.stderr
