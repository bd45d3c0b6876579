"""Secrets never reach a log: runs last (file name), after every other security test.

Greps the econe server logs (DEBUG level, the shipped default) of every server this session
started, and nginx's access logs written with the documented log_format, for every password,
EC2 secret, signature, presigned-URL signature, client key and server credential the suite
used. The demo banner, which prints the demo user's key on purpose, is left out.
"""

from __future__ import annotations

from urllib.parse import quote

from tests.security.helpers import (
    Wire,
    action_params,
    presign_v4,
    run_params,
    send,
    sha256_hex,
    sign_v2,
    sign_v4,
)


def _exercise(demo, demo_secret, secrets_used) -> None:
    """Requests of its own, so that the check means something when run alone."""
    wrong = sha256_hex("wrong-secret-for-log-test")
    secrets_used.add(wrong, "wrong secret")
    for wire in (
        sign_v4(demo.url, action_params("DescribeInstances"), "demo", demo_secret),
        sign_v4(demo.url, run_params(1, InstanceType="no.such.type"), "demo", demo_secret),
        sign_v4(demo.url, action_params("DescribeInstances"), "demo", wrong),
        sign_v2(demo.url, action_params("DescribeInstances"), "demo", demo_secret),
        sign_v2(demo.url, action_params("DescribeInstances"), "demo", wrong),
        sign_v2(demo.url, action_params("DescribeInstances"), "nosuchuser", wrong),
    ):
        auth = wire.header("Authorization") or ""
        secrets_used.add(auth.rsplit("Signature=", 1)[-1] if auth else None, "v4 signature")
        for pair in wire.body.decode().split("&"):
            if pair.startswith("Signature="):
                secrets_used.add(pair[len("Signature=") :], "v2 signature (encoded)")
        send(wire)
    url = presign_v4(demo.url, action_params("DescribeImages"), "demo", demo_secret, expires=30)
    secrets_used.add(url.rsplit("X-Amz-Signature=", 1)[1], "presigned signature")
    send(Wire("GET", url))
    junk = "AWS4-HMAC-SHA256 Credential=demo/20260101/x/ec2/aws4_request, SignedHeaders=host, "
    token = "f00dfeed" * 8
    secrets_used.add(token, "junk signature")
    send(Wire("POST", demo.url + "/", {"Authorization": junk + "Signature=" + token}, b""))


def test_no_secret_in_any_log(demo, demo_secret, secrets_used):
    _exercise(demo, demo_secret, secrets_used)
    assert secrets_used.logs, "no server log registered"
    leaks = []
    for path, banner in secrets_used.logs:
        text = path.read_text(errors="replace") if path.exists() else ""
        if banner and text.startswith(banner):
            text = text[len(banner) :]
        for value, what in secrets_used.values.items():
            for form in {value, quote(value, safe=""), quote(value, safe="/")}:
                if form in text:
                    line = next(x for x in text.splitlines() if form in x)
                    leaks.append(f"{what} in {path.name}: {line[:300]}")
                    break
    assert not leaks, "secrets found in logs:\n" + "\n".join(leaks)
    assert len(secrets_used.values) >= 10
