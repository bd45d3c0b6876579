"""Who may sign: unknown, disabled, ldap/x509/ssh/server users are refused; core and public work.

All the users are created in one batch before any request, and the suite first waits until a
core user of that batch is accepted: from then on econe's user cache holds the whole batch, so
a refusal below is about the user, not about a cache that has not seen it yet.
"""

from __future__ import annotations

import time

import pytest

from econe.config import Config
from tests.security.conftest import assert_accepted, make_user, new_name, wait_until_known
from tests.security.helpers import (
    STATUS,
    Reply,
    action_params,
    eventually,
    send,
    sha256_hex,
    sign_v2,
    sign_v4,
)

DESCRIBE = action_params("DescribeInstances")
CONFIRM_TTL = Config().user_confirm_ttl  # the servers here run with the default
SIGNERS = {"v4": sign_v4, "v2": sign_v2}


def auth_failure(reply: Reply) -> None:
    assert reply.code == "AuthFailure", f"expected AuthFailure, got {reply}"
    assert reply.status == STATUS["AuthFailure"], reply


@pytest.fixture(scope="module")
def batch(demo, admin, secrets_used):
    users = {
        "core": make_user(admin, secrets_used, "sec-core"),
        "public": make_user(admin, secrets_used, "sec-public", driver="public"),
        "ldap": make_user(
            admin,
            secrets_used,
            "sec-ldap",
            driver="ldap",
            password="uid=sec,ou=people,dc=example,dc=org",  # an LDAP DN is public knowledge
        ),
        "x509": make_user(
            admin, secrets_used, "sec-x509", driver="x509", password="/C=ES/O=ONE/CN=sec\\20user"
        ),
        "ssh": make_user(
            admin, secrets_used, "sec-ssh", driver="ssh", password="ssh-ed25519 AAAAC3Nza sec"
        ),
        "disabled-before": make_user(admin, secrets_used, "sec-off1"),
        "disabled-after": make_user(admin, secrets_used, "sec-off2"),
    }
    admin.enable(users["disabled-before"].uid, False)
    wait_until_known(demo, users["core"])  # the cache now holds the whole batch
    return users


@pytest.mark.parametrize("sig", ["v4", "v2"])
def test_core_user_signs_with_the_stored_hash(demo, batch, sig):
    user = batch["core"]
    assert_accepted(send(SIGNERS[sig](demo.url, DESCRIBE, user.name, user.secret)))


@pytest.mark.parametrize("sig", ["v4", "v2"])
def test_public_user_signs_with_the_password_as_stored(demo, batch, sig):
    user = batch["public"]
    assert user.secret == user.password
    assert_accepted(send(SIGNERS[sig](demo.url, DESCRIBE, user.name, user.secret)))


@pytest.mark.parametrize("sig", ["v4", "v2"])
def test_unknown_user(demo, batch, sig):
    reply = send(SIGNERS[sig](demo.url, DESCRIBE, new_name("nobody"), sha256_hex("x")))
    auth_failure(reply)


@pytest.mark.parametrize("driver", ["ldap", "x509", "ssh"])
@pytest.mark.parametrize("sig", ["v4", "v2"])
def test_non_signing_drivers_refused(demo, batch, driver, sig):
    """Their PASSWORD (an LDAP DN, a certificate DN, an SSH public key) is no secret."""
    user = batch[driver]
    for secret in (user.password, sha256_hex(user.password)):
        auth_failure(send(SIGNERS[sig](demo.url, DESCRIBE, user.name, secret)))


def test_server_users_refused(demo, batch):
    """serveradmin (server_cipher) must never sign EC2 requests, whatever key is tried."""
    ec2_auth = (demo.state_dir / ".one" / "ec2_auth").read_text().strip()
    name, password = ec2_auth.split(":", 1)
    for secret in (password, sha256_hex(password)):
        auth_failure(send(sign_v4(demo.url, DESCRIBE, name, secret)))


@pytest.mark.parametrize("sig", ["v4", "v2"])
def test_user_disabled_before_first_use(demo, batch, sig):
    user = batch["disabled-before"]
    auth_failure(send(SIGNERS[sig](demo.url, DESCRIBE, user.name, user.secret)))


def test_user_disabled_while_cached(demo, admin, batch):
    """Disabled after econe cached it as enabled: once `:user_confirm_ttl:` has passed, the
    client sees AuthFailure (not a 5xx, not someone else's data)."""
    user = batch["disabled-after"]
    assert_accepted(send(sign_v4(demo.url, DESCRIBE, user.name, user.secret)), "while enabled")
    admin.enable(user.uid, False)
    time.sleep(CONFIRM_TTL)
    try:
        for sig in ("v4", "v2"):
            auth_failure(send(SIGNERS[sig](demo.url, DESCRIBE, user.name, user.secret)))
    finally:
        admin.enable(user.uid, True)
    eventually(
        lambda: assert_accepted(send(sign_v4(demo.url, DESCRIBE, user.name, user.secret))),
        timeout=70,
        every=1,
    )


def test_disabled_user_runs_nothing(demo, admin, batch):
    """The demo user, disabled, signs a valid RunInstances: no VM."""
    from tests.e2e.conftest import DEMO_SECRET
    from tests.security.helpers import run_params

    demo_uid = 2
    before = admin.vm_ids()
    admin.enable(demo_uid, False)
    time.sleep(CONFIRM_TTL)
    try:
        auth_failure(send(sign_v4(demo.url, run_params(1), "demo", DEMO_SECRET)))
    finally:
        admin.enable(demo_uid, True)
    assert admin.vm_ids() == before

    def enabled_again():  # a cache refreshed while disabled may hold it for :user_cache_ttl:
        assert_accepted(
            send(sign_v4(demo.url, action_params("DescribeRegions"), "demo", DEMO_SECRET))
        )

    eventually(enabled_again, timeout=70, every=1)


def test_disabled_state_not_revealed_without_the_secret(demo, batch):
    """Someone without the secret learns the same for a disabled and an enabled user."""
    wrong = sha256_hex("guess")
    for key in ("disabled-before", "core"):
        reply = send(sign_v4(demo.url, DESCRIBE, batch[key].name, wrong))
        assert reply.code == "SignatureDoesNotMatch" and reply.status == 403, (key, reply)
