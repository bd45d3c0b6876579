"""`econe admin-keys`: per-user EC2 keys for users who cannot sign with their password.

End to end: the `econe admin-keys` command as an operator runs it
talks to onesim as oneadmin; the key is then used with boto3 against econe, and revoked.
The server runs with `:user_cache_ttl: 2` so that a revocation shows within seconds.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from econe import admin_keys as ak
from tests.e2e.conftest import stop_demo
from tests.security.conftest import make_user, start_logged
from tests.security.helpers import action_params, eventually, send, sign_v2, sign_v4

SEAL_KEY = b"s" * 32


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, secrets_used):
    tmp = tmp_path_factory.mktemp("keys")
    conf = tmp / "econe.conf"
    conf.write_text(":user_cache_ttl: 2\n")
    (tmp / "econe").mkdir()
    proc, demo, admin = start_logged(tmp / "econe", secrets_used, extra=["--config", str(conf)])
    yield demo, admin
    stop_demo(proc)


def admin_keys(demo, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ONE_AUTH=str(demo.state_dir / ".one" / "one_auth"))
    conf = demo.state_dir / "admin-keys.conf"  # the server's credentials seal the keys
    conf.write_text(f":ec2_auth: {demo.state_dir / '.one' / 'ec2_auth'}\n")
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "econe"),
            "admin-keys",
            "--config",
            str(conf),
            "--one-xmlrpc",
            demo.sim_url,
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def created(result: subprocess.CompletedProcess) -> tuple[str, str]:
    assert result.returncode == 0, result.stderr
    key_id = re.search(r"access key id:\s+(\S+)", result.stdout).group(1)
    secret = re.search(r"secret access key:\s+(\S+)", result.stdout).group(1)
    return key_id, secret


def works(client):
    """A callable for `eventually`: describe_instances succeeds (ClientError -> retry)."""

    def check():
        try:
            return client.describe_instances()
        except ClientError as exc:
            raise AssertionError(str(exc)) from exc

    return check


def code_of(call) -> str:
    try:
        call()
    except ClientError as exc:
        return exc.response["Error"]["Code"]
    return "OK"


def test_ldap_user_key_lifecycle(keyed, secrets_used):
    demo, admin = keyed
    ldap = make_user(
        admin,
        secrets_used,
        "sec-ldapkey",
        driver="ldap",
        password="uid=keyed,ou=people,dc=example,dc=org",
    )
    key_id, secret = created(admin_keys(demo, "create", ldap.name))
    secrets_used.add(secret, "admin-keys secret")
    assert key_id.startswith("AKON") and len(key_id) == 20 and len(secret) >= 40

    # stored as the authenticator reads it; the secret shown once, never listed
    vectors = admin.user_xml(ldap.uid).findall("TEMPLATE/EC2_ACCESS_KEYS")
    assert [(v.findtext("ACCESS_KEY_ID"), v.findtext("STATUS")) for v in vectors] == [
        (key_id, "Active")
    ]
    listing = admin_keys(demo, "list", ldap.name)
    assert listing.returncode == 0 and key_id in listing.stdout and secret not in listing.stdout
    everyone = admin_keys(demo, "list")
    assert key_id in everyone.stdout and secret not in everyone.stdout

    ec2 = demo.client(key_id, secret)
    v2 = demo.client(key_id, secret, signature_version="v2")
    eventually(works(ec2))
    v2.describe_instances()
    assert code_of(lambda: demo.client(key_id, "x" * 40).describe_instances()) == (
        "SignatureDoesNotMatch"
    )
    # the user name with the key's secret is not a credential
    assert code_of(lambda: demo.client(ldap.name, secret).describe_instances()) == "AuthFailure"

    # a second key; revoking the first leaves the second working
    key2, secret2 = created(admin_keys(demo, "create", ldap.name))
    secrets_used.add(secret2, "admin-keys secret")
    revoked = admin_keys(demo, "revoke", ldap.name, key_id)
    assert revoked.returncode == 0, revoked.stderr
    vectors = admin.user_xml(ldap.uid).findall("TEMPLATE/EC2_ACCESS_KEYS")
    states = {
        v.findtext("ACCESS_KEY_ID"): (v.findtext("STATUS"), v.findtext("SECRET")) for v in vectors
    }
    assert states[key_id] == ("Inactive", None), "a revoked key keeps no secret"
    assert states[key2] == ("Active", secret2)

    def refused():
        assert code_of(lambda: ec2.describe_instances()) == "AuthFailure"

    eventually(refused, timeout=15)
    reply = send(sign_v2(demo.url, action_params("DescribeInstances"), key_id, secret))
    assert reply.code == "AuthFailure" and reply.status == 401, reply
    eventually(works(demo.client(key2, secret2)))


def test_key_of_a_disabled_user_refused(keyed, secrets_used):
    demo, admin = keyed
    user = make_user(admin, secrets_used, "sec-sshkey", driver="ssh", password="ssh-ed25519 AAAAk")
    key_id, secret = created(admin_keys(demo, "create", user.name))
    secrets_used.add(secret, "admin-keys secret")
    eventually(works(demo.client(key_id, secret)))
    admin.enable(user.uid, False)

    def refused():
        reply = send(sign_v4(demo.url, action_params("DescribeInstances"), key_id, secret))
        assert reply.code == "AuthFailure", reply

    eventually(refused, timeout=15)


def test_config_names_the_oned_to_talk_to(keyed, tmp_path):
    """--config without --one-xmlrpc: the oned of that econe.conf (not localhost:2633)."""
    demo, _ = keyed
    conf = tmp_path / "econe.conf"
    conf.write_text(
        f":one_xmlrpc: {demo.sim_url}\n:ec2_auth: {demo.state_dir / '.one' / 'ec2_auth'}\n"
    )
    out = subprocess.run(
        [str(Path(sys.executable).parent / "econe"), "admin-keys", "--config", str(conf), "list"],
        capture_output=True, text=True, timeout=60,
        env=dict(os.environ, ONE_AUTH=str(demo.state_dir / ".one" / "one_auth"),
                 ONE_XMLRPC="http://127.0.0.1:1/RPC2"),
    )  # fmt: skip
    assert out.returncode == 0 and out.stdout.startswith("USER"), out.stderr
    conf.write_text(f":ec2_auth: {demo.state_dir / '.one' / 'ec2_auth'}\n")  # no :one_xmlrpc:
    out = subprocess.run(
        [str(Path(sys.executable).parent / "econe"), "admin-keys", "--config", str(conf), "list"],
        capture_output=True, text=True, timeout=60,
        env=dict(os.environ, ONE_AUTH=str(demo.state_dir / ".one" / "one_auth"),
                 ONE_XMLRPC=demo.sim_url),
    )  # fmt: skip
    assert out.returncode == 0 and out.stdout.startswith("USER"), out.stderr


def test_cli_errors(keyed):
    demo, _ = keyed
    missing = admin_keys(demo, "create", "no-such-user-here")
    assert missing.returncode == 1 and "no OpenNebula user" in missing.stderr
    bad = admin_keys(demo, "revoke", "oneadmin", "AKONNOTAKEYATALL0000")
    assert bad.returncode == 1 and "has no access key" in bad.stderr
    env = dict(os.environ, ONE_AUTH="/nonexistent/one_auth")
    out = subprocess.run(
        [
            str(Path(sys.executable).parent / "econe"),
            "admin-keys",
            "--one-xmlrpc",
            demo.sim_url,
            "list",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    # the econe CLI's exit codes: 2 usage (credentials, URL), 3 unreachable, 1 refused
    assert out.returncode == 2, out.stderr
    assert out.stderr == (
        "econe admin-keys: cannot read oneadmin credentials from /nonexistent/one_auth: "
        "No such file or directory\n"
    )
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    out = subprocess.run(
        [str(Path(sys.executable).parent / "econe"), "admin-keys", "--one-xmlrpc",
         f"http://127.0.0.1:{port}/RPC2", "--one-auth", "a:b", "list"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 3 and "cannot reach oned" in out.stderr, out.stderr
    for url in ("localhost:2633", "http://127.0.0.1:99x/RPC2"):  # no scheme; a bad port
        out = subprocess.run(
            [str(Path(sys.executable).parent / "econe"), "admin-keys", "--one-xmlrpc", url,
             "--one-auth", "a:b", "list"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 2 and out.stderr.startswith("econe admin-keys:"), out.stderr
        assert "Traceback" not in out.stderr
    wrong = admin_keys(demo, "--one-auth", "oneadmin:wrong", "list")
    assert wrong.returncode == 1 and wrong.stderr.startswith("econe admin-keys:")


# ------------------------------------------------------------------ the format, without servers


class FakeOne:
    """oned's user template merge (every name given replaces all attributes of that name)."""

    def __init__(self, users: dict[int, str]):
        import onesim.template as T

        self.T = T
        self.names = users
        self.templates: dict[int, list] = {uid: [] for uid in users}

    def _user_xml(self, uid: int) -> str:
        body = self.T.render_body(self.templates[uid]) if self.templates[uid] else ""
        return (
            f"<USER><ID>{uid}</ID><GID>1</GID><GROUPS><ID>1</ID></GROUPS><NAME>{self.names[uid]}"
            f"</NAME><PASSWORD>x</PASSWORD><AUTH_DRIVER>ldap</AUTH_DRIVER><ENABLED>1</ENABLED>"
            f"<TEMPLATE>{body}</TEMPLATE></USER>"
        )

    def user_pool(self):
        return ak._xml(
            "<USER_POOL>" + "".join(self._user_xml(u) for u in self.names) + "</USER_POOL>"
        )

    def user(self, uid: int):
        return ak._xml(self._user_xml(uid))

    def merge_template(self, uid: int, template: str) -> None:
        self.T.merge(self.templates[uid], self.T.parse(template))


def test_format_is_what_the_authenticator_reads():
    from econe.auth.authenticator import plain_secret
    from econe.auth.users import parse_user_pool

    one = FakeOne({1: "serveradmin", 7: "jane", 8: "joe"})
    k1 = ak.create_key(one, "jane", SEAL_KEY, now=1_700_000_000)
    k2 = ak.create_key(one, "jane", SEAL_KEY)
    k3 = ak.create_key(one, "joe", SEAL_KEY)
    assert len({k1.access_key_id, k2.access_key_id, k3.access_key_id}) == 3
    users = {u.name: u for u in parse_user_pool(ak.etree.tostring(one.user_pool()))}
    found = {e["ACCESS_KEY_ID"]: plain_secret(e) for e in users["jane"].access_keys()}
    assert found == {k1.access_key_id: k1.secret, k2.access_key_id: k2.secret}
    assert [e["CREATED"] for e in users["jane"].access_keys()][0] == "1700000000"

    ak.revoke_key(one, "jane", k1.access_key_id, "serveradmin")
    users = {u.name: u for u in parse_user_pool(ak.etree.tostring(one.user_pool()))}
    # listed where jane cannot write: her putting the old entry back revives nothing
    assert users["serveradmin"].template["EC2_REVOKED_ACCESS_KEYS"] == k1.access_key_id
    found = {e["ACCESS_KEY_ID"]: plain_secret(e) for e in users["jane"].access_keys()}
    assert found == {k1.access_key_id: None, k2.access_key_id: k2.secret}
    listed = {
        (k.user, k.access_key_id, k.status) for k in ak.list_keys(one) if k.user != "serveradmin"
    }
    assert listed == {
        ("jane", k1.access_key_id, "Inactive"),
        ("jane", k2.access_key_id, "Active"),
        ("joe", k3.access_key_id, "Active"),
    }
    # revoking the last active key of a user still writes (merge cannot delete a vector)
    ak.revoke_key(one, "joe", k3.access_key_id, "serveradmin")
    assert [k.status for k in ak.list_keys(one, "joe")] == ["Inactive"]
    ak.revoke_key(one, "joe", k3.access_key_id, "serveradmin")  # again: listed once
    server = one.user(1).findtext("TEMPLATE/EC2_REVOKED_ACCESS_KEYS")
    assert server.split() == [k1.access_key_id, k3.access_key_id]


def test_new_key_ids_avoid_user_names_and_existing_ids(monkeypatch):
    one = FakeOne({1: "AKONAAAAAAAAAAAAAAAA", 2: "jane"})
    ids = iter(["AKONAAAAAAAAAAAAAAAA", "AKONBBBBBBBBBBBBBBBB"])
    monkeypatch.setattr(ak, "new_access_key_id", lambda: next(ids))
    assert ak.create_key(one, "jane", SEAL_KEY).access_key_id == "AKONBBBBBBBBBBBBBBBB"


def test_unsafe_template_values_are_not_rewritten():
    one = FakeOne({2: "jane"})
    one.templates[2] = [
        ["EC2_ACCESS_KEYS", [["ACCESS_KEY_ID", "AKONX"], ["NOTE", 'a "quoted" note']]]
    ]
    with pytest.raises(ak.AdminKeysError, match="fix it by hand"):
        ak.create_key(one, "jane", SEAL_KEY)


def test_secret_quality():
    secrets_seen = {ak.new_secret() for _ in range(50)}
    assert len(secrets_seen) == 50 and all(len(x) == 40 for x in secrets_seen)
    assert all(re.fullmatch(r"AKON[A-Z2-7]{16}", ak.new_access_key_id()) for _ in range(50))


def test_created_keys_are_sealed_for_their_owner_only():
    from econe.auth.users import parse_user_pool
    from econe.keyseal import is_sealed

    one = FakeOne({7: "jane", 8: "joe"})
    ak.create_key(one, "jane", SEAL_KEY)
    jane = {u.name: u for u in parse_user_pool(ak.etree.tostring(one.user_pool()))}["jane"]
    (entry,) = jane.access_keys()
    assert is_sealed(SEAL_KEY, jane.id, entry)
    assert not is_sealed(SEAL_KEY, 8, entry)  # copied onto joe's template: worthless
    assert not is_sealed(b"x" * 32, jane.id, entry)  # another server's key
    assert not is_sealed(SEAL_KEY, jane.id, {**entry, "SECRET": "mine"})  # secret swapped


def test_a_key_a_user_writes_into_their_own_template_is_refused(keyed):
    """Users may update their own template: a hand-made EC2_ACCESS_KEYS entry gets nothing."""
    import xmlrpc.client

    demo, _admin = keyed
    proxy = xmlrpc.client.ServerProxy(demo.sim_url)
    ok, _, *_ = proxy.one.user.update(
        "demo:demo",
        2,  # demo
        'EC2_ACCESS_KEYS=[ACCESS_KEY_ID="AKONFORGEDFORGED0000", SECRET="forged", STATUS="Active"]',
        1,
    )
    assert ok
    forged = demo.client(user="AKONFORGEDFORGED0000", secret="forged")
    assert code_of(forged.describe_instances) == "AuthFailure"


def test_a_revoked_key_put_back_by_its_owner_stays_revoked(keyed, secrets_used):
    """demo keeps her key's sealed entry and, once it is revoked, writes it back into her own
    template: the revocation is listed in the server user's template, out of her reach."""
    import xmlrpc.client

    demo, admin = keyed
    key_id, secret = created(admin_keys(demo, "create", "demo"))
    secrets_used.add(secret, "admin-keys secret")
    ec2 = demo.client(key_id, secret)
    eventually(works(ec2))
    (old,) = [
        v
        for v in admin.user_xml(2).findall("TEMPLATE/EC2_ACCESS_KEYS")
        if v.findtext("ACCESS_KEY_ID") == key_id
    ]
    assert admin_keys(demo, "revoke", "demo", key_id).returncode == 0
    entry = ", ".join(f'{c.tag}="{c.text}"' for c in old)
    ok, *_ = xmlrpc.client.ServerProxy(demo.sim_url).one.user.update(
        "demo:demo", 2, f"EC2_ACCESS_KEYS=[{entry}]", 1
    )
    assert ok
    restored = admin.user_xml(2).find("TEMPLATE/EC2_ACCESS_KEYS")
    assert (restored.findtext("STATUS"), restored.findtext("SECRET")) == ("Active", secret)
    time.sleep(3)  # past the fixture's 2 s user cache: the directory has read the pool again
    assert code_of(ec2.describe_instances) == "AuthFailure"
