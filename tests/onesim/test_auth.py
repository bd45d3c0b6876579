"""Authentication paths: core (SHA-256, SHA-1 upgrade), disabled and public users, login tokens,
server_cipher (7.4 IV, expiry, forged keys, egid form), the session cache."""

from __future__ import annotations

import base64
import time

import pytest

from onesim.auth import cipher_decrypt, cipher_encrypt, server_cipher_token, sha1_hex, sha256_hex

from .conftest import One

AUTH_MSG = "[one.user.info] User couldn't be authenticated, aborting call."


def denied(r: list) -> bool:
    return r == [False, AUTH_MSG, 256, -1, -1]


def sc(sim, user: str, expire: int, egid: int | None = None) -> str:
    pw = sim.ec2_auth.split(":", 1)[1]
    tok = server_cipher_token(pw, "serveradmin", user, expire)
    return f"serveradmin:{user}:{tok}" if egid is None else f"serveradmin:{user}:{egid}:{tok}"


# ---------------------------------------------------------------- test vectors (econe.md §2.8)


def test_reference_vectors_zero_iv() -> None:
    """The reference's vectors were made with a zero IV (pre-7.x driver)."""
    plain = "serveradmin:alice:1700000000"
    zero = bytes(16)
    k256 = sha256_hex("serverpass")[:32]
    assert k256 == "6f8adc5c68f6e9de2c658d9cdffae8eb"
    assert cipher_encrypt(k256, plain, iv=zero) == "QWm0q1iikHujcFSFvjT2bu8qzuYKpM5mMcK/OUZeFTY="
    k1 = sha1_hex("serverpass")[:32]
    assert k1 == "cd2234c6b7755b8dd230bdbc84544c38"
    assert cipher_encrypt(k1, plain, iv=zero) == "G3+JSKfDcEB99T3IxPsGPkWNQdkEZ1RLeBD0XMSGVB8="
    assert cipher_decrypt(k256, "QWm0q1iikHujcFSFvjT2bu8qzuYKpM5mMcK/OUZeFTY=", iv=zero) == plain


def test_74_driver_uses_key_prefix_as_iv() -> None:
    k = sha256_hex("serverpass")[:32]
    tok = server_cipher_token("serverpass", "serveradmin", "alice", 1700000000)
    assert tok == cipher_encrypt(k, "serveradmin:alice:1700000000", iv=k[:16].encode())
    assert tok != "QWm0q1iikHujcFSFvjT2bu8qzuYKpM5mMcK/OUZeFTY="
    assert cipher_decrypt(k, tok) == "serveradmin:alice:1700000000"


# ---------------------------------------------------------------- live paths


def test_core_password(one: One) -> None:
    r = one("one.user.info", "demo:demo", -1)
    assert r[0] and "<NAME>demo</NAME>" in r[1]
    assert f"<PASSWORD><![CDATA[{sha256_hex('demo')}]]></PASSWORD>" in r[1]
    assert denied(one("one.user.info", "demo:wrong", -1))
    assert denied(one("one.user.info", "nobody:demo", -1))
    assert denied(one("one.user.info", "demonocolon", -1))


def test_sha1_password_is_accepted_and_upgraded(sim, one: One) -> None:
    u = sim.sim.store.get("user", 2)
    u["password"] = sha1_hex("demo")
    assert one("one.user.info", "demo:demo", -1)[0]
    assert sim.sim.store.get("user", 2)["password"] == sha256_hex("demo")


def test_disabled_user_quirk(sim, one: One) -> None:
    A = sim.one_auth
    assert one("one.user.enable", A, 2, False) == [True, 2, 0]
    assert denied(one("one.user.info", "demo:demo", -1))
    r = one("one.user.info", sc(sim, "demo", int(time.time()) + 600), -1)
    assert r[0] and "<ENABLED>0</ENABLED>" in r[1]


def test_public_user_refused_directly(sim, one: One) -> None:
    A = sim.one_auth
    uid = one("one.user.allocate", A, "pub", "secret", "public", [])[1]
    r = one("one.user.info", A, uid)
    assert "<PASSWORD><![CDATA[secret]]></PASSWORD>" in r[1]
    assert denied(one("one.user.info", "pub:secret", -1))
    assert one("one.user.info", sc(sim, "pub", int(time.time()) + 600), -1)[0]


def test_server_cipher(sim, one: One) -> None:
    now = int(time.time())
    r = one("one.user.info", sc(sim, "demo", now + 600), -1)
    assert r[0] and "<ID>2</ID>" in r[1]
    assert denied(one("one.user.info", sc(sim, "demo", now - 5), -1))
    assert denied(one("one.user.info", sc(sim, "nobody", now + 600), -1))
    forged = server_cipher_token("guess", "serveradmin", "demo", now + 600)
    assert denied(one("one.user.info", f"serveradmin:demo:{forged}", -1))
    # a zero-IV token (pre-7.x client) does not decrypt to the right text under 7.4
    key = sha256_hex(sim.ec2_auth.split(":", 1)[1])[:32]
    old = cipher_encrypt(key, f"serveradmin:demo:{now + 600}", iv=bytes(16))
    assert denied(one("one.user.info", f"serveradmin:demo:{old}", -1))
    assert denied(one("one.user.info", "serveradmin:demo:not-base64!", -1))
    # plain password of a server_cipher user is not a valid direct login
    assert denied(one("one.user.info", sim.ec2_auth, -1))
    # serveradmin acting as itself is an admin (group oneadmin)
    assert one("one.vmpool.info", sc(sim, "serveradmin", now + 600), -2, -1, -1, -2)[0]
    # token text names another server user
    pw = sim.ec2_auth.split(":", 1)[1]
    bad = cipher_encrypt(sha256_hex(pw)[:32], f"oneadmin:demo:{now + 600}")
    assert denied(one("one.user.info", f"serveradmin:demo:{bad}", -1))


def test_server_cipher_egid(sim, one: One) -> None:
    r = one("one.user.info", sc(sim, "demo", int(time.time()) + 600, 1), -1)
    assert r[0] and "<ID>2</ID>" in r[1]


def test_login_tokens(sim, one: One) -> None:
    r = one("one.user.login", "demo:demo", "demo", "", 3600)
    assert r[0] and len(r[1]) == 64
    tok = r[1]
    assert one("one.user.info", f"demo:{tok}", -1)[0]
    info = one("one.user.info", "demo:demo", -1)[1]
    assert f"<TOKEN>{tok}</TOKEN>" in info and "<EGID>-1</EGID>" in info
    assert one("one.user.login", "demo:demo", "demo", "", -5) == [
        False,
        "[one.user.login] Wrong valid period for token",
        4096,
        -1,
        -1,
    ]
    assert one("one.user.login", "demo:demo", "oneadmin", "", 60) == [
        False,
        "[one.user.login] User [2] : Not authorized to perform MANAGE USER [0].",
        512,
        -1,
        -1,
    ]
    forever = one("one.user.login", "demo:demo", "demo", "", -1)[1]
    assert "<EXPIRATION_TIME>-1</EXPIRATION_TIME>" in one("one.user.info", "demo:demo", -1)[1]
    assert one("one.user.info", f"demo:{forever}", -1)[0]
    # revoke one token
    assert one("one.user.login", "demo:demo", "demo", tok, 0)[0]
    assert denied(one("one.user.info", f"demo:{tok}", -1))
    assert one("one.user.info", f"demo:{forever}", -1)[0]
    # cap of 10 tokens
    for _ in range(9):
        assert one("one.user.login", "demo:demo", "demo", "", 60)[0]
    r = one("one.user.login", "demo:demo", "demo", "", 60)
    assert r[:3] == [False, "[one.user.login] Max number of tokens limit reached.", 4096]
    # revoke all
    assert one("one.user.login", "demo:demo", "demo", "", 0)[0]
    assert "<LOGIN_TOKEN>" not in one("one.user.info", "demo:demo", -1)[1]
    assert denied(one("one.user.info", f"demo:{forever}", -1))


def test_login_token_expiry_and_egid(sim, one: One) -> None:
    tok = one("one.user.login", sim.one_auth, "demo", "", 60, 1)[1]
    assert "<EGID>1</EGID>" in one("one.user.info", sim.one_auth, 2)[1]
    assert one("one.user.info", f"demo:{tok}", -1)[0]
    for t in sim.sim.store.get("user", 2)["tokens"]:
        t["expire"] = int(time.time()) - 1
    assert denied(one("one.user.info", f"demo:{tok}", -1))


def test_passwd_drops_cached_sessions(sim, one: One) -> None:
    assert one("one.user.info", "demo:demo", -1)[0]
    assert one("one.user.passwd", "demo:demo", 2, "new") == [True, 2, 0]
    assert denied(one("one.user.info", "demo:demo", -1))
    assert one("one.user.info", "demo:new", -1)[0]


def test_session_cache_is_used(sim, one: One) -> None:
    assert one("one.user.info", "demo:demo", -1)[0]
    assert "demo:demo" in sim.sim.sessions


@pytest.mark.parametrize("session", ["", ":", "demo:", ":demo"])
def test_odd_sessions(one: One, session: str) -> None:
    assert denied(one("one.user.info", session, -1))


def test_b64_helper_roundtrip() -> None:
    k = "0123456789abcdef0123456789abcdef"
    t = cipher_encrypt(k, "x:y:1")
    assert base64.b64decode(t) and cipher_decrypt(k, t) == "x:y:1"


def test_public_user_with_login_token(sim, one: One) -> None:
    """Login tokens are checked before the driver, so a public user may use one."""
    A = sim.one_auth
    one("one.user.allocate", A, "pub2", "secret", "public", [])
    # a full token needs a session with the user's own groups (oneadmin's are {0})
    assert one("one.user.login", A, "pub2", "", 600) == [
        False,
        "[one.user.login] Cannot create a full token with a specific group token",
        4096,
        -1,
        -1,
    ]
    tok = one("one.user.login", sc(sim, "pub2", int(time.time()) + 600), "pub2", "", 600)[1]
    assert one("one.user.info", f"pub2:{tok}", -1)[0]
    assert denied(one("one.user.info", "pub2:secret", -1))


def test_server_cipher_session_forms(sim, one: One) -> None:
    now = int(time.time())
    pw = sim.ec2_auth.split(":", 1)[1]
    tok = server_cipher_token(pw, "serveradmin", "demo", now + 600)
    assert denied(one("one.user.info", f"serveradmin:demo:x1:{tok}", -1))  # egid not a number
    assert denied(one("one.user.info", "serveradmin:demo", -1))  # no token at all
    r = one("one.vm.allocate", f"serveradmin:demo:1:{tok}", 'MEMORY="8"\nCPU="1"', True)
    assert r[0]
    assert "<GID>1</GID>" in one("one.vm.info", "demo:demo", r[1])[1]
