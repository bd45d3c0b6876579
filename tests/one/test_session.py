"""server_cipher and server_x509 session tokens; ec2_auth file checks."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import padding, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from econe.one.session import (
    RENEW_BEFORE,
    TOKEN_LIFETIME,
    ServerCipherSessions,
    SessionConfigError,
    X509Sessions,
    cipher_key,
    encrypt_token,
)

PLAINTEXT = "serveradmin:alice:1700000000"


def _auth_file(tmp_path, text="serveradmin:serverpass\n", mode=0o600):
    path = tmp_path / "ec2_auth"
    path.write_text(text)
    path.chmod(mode)
    return path


class Clock:
    def __init__(self, now=1_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


def _decrypt(token64: str, password: str, iv: bytes | None = None) -> str:
    """Decrypt as the 7.4 driver does, written independently of econe.one.session."""
    key = hashlib.sha256(password.encode()).hexdigest()[:32].encode()
    dec = Cipher(algorithms.AES(key), modes.CBC(iv if iv is not None else key[:16])).decryptor()
    data = dec.update(base64.b64decode(token64)) + dec.finalize()
    unpad = padding.PKCS7(128).unpadder()
    return (unpad.update(data) + unpad.finalize()).decode()


# Vectors from econe.md §2.8 (openssl enc, zero IV) and, for 7.4's IV = key[0,16], computed with
# `openssl enc -aes-256-cbc -K hex(6f8adc5c68f6e9de2c658d9cdffae8eb) -iv hex(6f8adc5c68f6e9de)`.
def test_documented_zero_iv_vectors():
    sha1_key = cipher_key("serverpass", "sha1")
    sha256_key = cipher_key("serverpass")
    assert sha1_key == b"cd2234c6b7755b8dd230bdbc84544c38"
    assert sha256_key == b"6f8adc5c68f6e9de2c658d9cdffae8eb"
    zero = bytes(16)
    assert (
        encrypt_token(PLAINTEXT, sha1_key, zero) == "G3+JSKfDcEB99T3IxPsGPkWNQdkEZ1RLeBD0XMSGVB8="
    )
    assert (
        encrypt_token(PLAINTEXT, sha256_key, zero) == "QWm0q1iikHujcFSFvjT2bu8qzuYKpM5mMcK/OUZeFTY="
    )


def test_opennebula_74_vector(tmp_path):
    sessions = ServerCipherSessions(_auth_file(tmp_path))
    assert sessions.token("alice", 1700000000) == "HaCz0krpRsl77d91R4j9eQFsxBhpbD4NeYVRSE8Fr80="


def test_legacy_options_reproduce_old_vectors(tmp_path):
    old = ServerCipherSessions(_auth_file(tmp_path), digest="sha1", zero_iv=True)
    assert old.token("alice", 1700000000) == "G3+JSKfDcEB99T3IxPsGPkWNQdkEZ1RLeBD0XMSGVB8="


def test_session_round_trip_and_shape(tmp_path):
    clock = Clock()
    sessions = ServerCipherSessions(_auth_file(tmp_path), clock=clock)
    session = sessions.session_for("bob")
    srv, user, token = session.split(":", 2)
    assert (srv, user) == ("serveradmin", "bob")
    assert "\n" not in token
    assert _decrypt(token, "serverpass") == f"serveradmin:bob:{int(clock.now) + TOKEN_LIFETIME}"
    assert sessions.admin_session().startswith("serveradmin:serveradmin:")


def test_shared_expiry_window(tmp_path):
    clock = Clock()
    sessions = ServerCipherSessions(_auth_file(tmp_path), clock=clock)
    first = sessions.session_for("bob")
    alice = sessions.session_for("alice")
    clock.now += TOKEN_LIFETIME - RENEW_BEFORE - 1  # still more than 300 s left
    assert sessions.session_for("bob") == first
    expire = int(
        _decrypt(sessions.session_for("alice").split(":", 2)[2], "serverpass").rsplit(":", 1)[1]
    )
    assert sessions.session_for("alice") == alice
    clock.now += 2  # now fewer than 300 s left: a new window, new tokens
    renewed = sessions.session_for("bob")
    assert renewed != first
    new_expire = int(_decrypt(renewed.split(":", 2)[2], "serverpass").rsplit(":", 1)[1])
    assert new_expire == int(clock.now) + TOKEN_LIFETIME > expire


def test_password_with_colons_and_trailing_whitespace(tmp_path):
    sessions = ServerCipherSessions(_auth_file(tmp_path, "serveradmin:a:b c \n\n"), clock=Clock())
    token = sessions.session_for("x").split(":", 2)[2]
    assert _decrypt(token, "a:b c").startswith("serveradmin:x:")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o602])
def test_refuses_group_or_world_access(tmp_path, mode):
    path = _auth_file(tmp_path, mode=mode)
    with pytest.raises(SessionConfigError) as exc:
        ServerCipherSessions(path)
    assert str(path) in str(exc.value)
    assert f"chmod 600 {path}" in str(exc.value)


def test_refuses_credentials_another_user_owns(tmp_path, monkeypatch):
    """Owned by someone else, the file could be changed under econe: refused with the fix."""
    path = _auth_file(tmp_path)
    owner = path.stat().st_uid
    monkeypatch.setattr("os.geteuid", lambda: owner + 1)  # econe running as another user
    with pytest.raises(SessionConfigError) as exc:
        ServerCipherSessions(path)
    assert f"belongs to uid {owner}, not to the user econe runs as (uid {owner + 1})" in str(
        exc.value
    )
    assert f"chown {owner + 1} {path}" in str(exc.value)


def test_accepts_0400(tmp_path):
    ServerCipherSessions(_auth_file(tmp_path, mode=0o400))


def test_missing_file(tmp_path):
    with pytest.raises(SessionConfigError) as exc:
        ServerCipherSessions(tmp_path / "nope")
    assert "does not exist" in str(exc.value)
    assert "ONE_CIPHER_AUTH" in str(exc.value)


def test_unreadable_file(tmp_path):
    # A directory cannot be read as a file, even by root (mode 000 would not stop root).
    path = tmp_path / "ec2_auth"
    path.mkdir(mode=0o700)
    with pytest.raises(SessionConfigError) as exc:
        ServerCipherSessions(path)
    assert str(path) in str(exc.value)


@pytest.mark.parametrize("text", ["", "serveradmin", "serveradmin:", ":pw", "a:b\nc:d"])
def test_malformed_file(tmp_path, text):
    with pytest.raises(SessionConfigError) as exc:
        ServerCipherSessions(_auth_file(tmp_path, text))
    assert "serveradmin:<password>" in str(exc.value)


# ------------------------------------------------------------------ x509 core auth


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _x509(tmp_path, key, mode=0o600):
    key_path = tmp_path / "key.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(mode)
    cert_path = tmp_path / "cert.pem"
    cert_path.write_text("certificate placeholder: only the key signs tokens")
    return cert_path, key_path


def _public_decrypt(token: str, key) -> str:
    """Undo RSA private-encrypt with the public key and strip PKCS#1 v1.5 type-1 padding."""
    raw = base64.b64decode(base64.b64decode(token))
    pub = key.public_key().public_numbers()
    block = pow(int.from_bytes(raw, "big"), pub.e, pub.n).to_bytes(len(raw), "big")
    assert block[:2] == b"\x00\x01"
    sep = block.index(b"\x00", 2)
    assert set(block[2:sep]) == {0xFF} and sep >= 10
    return block[sep + 1 :].decode()


def test_x509_token_round_trip(tmp_path, rsa_key):
    cert, key = _x509(tmp_path, rsa_key)
    clock = Clock()
    sessions = X509Sessions(cert, key, "serveradmin", clock=clock)
    session = sessions.session_for("carol")
    srv, user, token = session.split(":", 2)
    assert (srv, user) == ("serveradmin", "carol")
    assert _public_decrypt(token, rsa_key) == f"serveradmin:carol:{int(clock.now) + TOKEN_LIFETIME}"
    assert sessions.session_for("carol") == session  # deterministic within the window


def test_x509_matches_openssl_pkcs1_signature_primitive(tmp_path, rsa_key):
    """PKCS#1 v1.5 type-1 'private encrypt' of raw data == a 'prehashed' sign without DigestInfo;
    cross-check one token against cryptography's own recover path."""
    from cryptography.hazmat.primitives.asymmetric import padding as apad

    cert, key = _x509(tmp_path, rsa_key)
    token = X509Sessions(cert, key, clock=Clock()).token("dave", 1700000000)
    raw = base64.b64decode(base64.b64decode(token))
    recovered = rsa_key.public_key().recover_data_from_signature(raw, apad.PKCS1v15(), None)
    assert recovered == b"serveradmin:dave:1700000000"


def test_x509_from_conf(tmp_path, rsa_key):
    (tmp_path / "auth").mkdir()
    _x509(tmp_path / "auth", rsa_key)
    conf = tmp_path / "auth" / "server_x509_auth.conf"
    conf.write_text(":srv_user: serveradmin\n:one_cert: auth/cert.pem\n:one_key: auth/key.pem\n")
    sessions = X509Sessions.from_conf(conf, etc_location=tmp_path)
    assert sessions.admin_session().startswith("serveradmin:serveradmin:")


def test_x509_key_permissions(tmp_path, rsa_key):
    cert, key = _x509(tmp_path, rsa_key, mode=0o644)
    with pytest.raises(SessionConfigError) as exc:
        X509Sessions(cert, key)
    assert "chmod 600" in str(exc.value)


def test_x509_conf_defaults_to_where_the_ruby_econe_read_it(tmp_path, rsa_key, monkeypatch):
    """`:core_auth: x509` without :server_x509_auth:: $ONE_LOCATION/etc/auth/server_x509_auth.conf
    (else /etc/one/auth/…), as the seed's econe; a missing file is named in the error."""
    from econe.config import Config
    from econe.one.session import sessions_from_config

    etc = tmp_path / "etc"
    (etc / "auth").mkdir(parents=True)
    monkeypatch.setenv("ONE_LOCATION", str(tmp_path))
    cfg = Config(core_auth="x509")
    with pytest.raises(SessionConfigError) as exc:
        sessions_from_config(cfg)
    assert str(etc / "auth" / "server_x509_auth.conf") in str(exc.value)
    _x509(etc / "auth", rsa_key)
    (etc / "auth" / "server_x509_auth.conf").write_text(":srv_user: serveradmin\n")
    assert sessions_from_config(cfg).admin_session().startswith("serveradmin:serveradmin:")
