"""Session authentication as oned 7.4 does it (``UserPool::authenticate``).

Drivers: ``core`` (SHA-256 hex stored, SHA-1 hex accepted and upgraded), login tokens, the
session cache, ``server_cipher`` (``serveradmin:<user>[:<egid>]:<token64>``) and ``public``
(refused for direct logins). Every failure is the same AUTHENTICATION error.
"""

from __future__ import annotations

import base64
import hashlib
import time
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.asymmetric import padding as rsa_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from . import errors
from .perms import Caller

if TYPE_CHECKING:
    from .core import Sim

SESSION_EXPIRATION_TIME = 900


def sha256_hex(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def sha1_hex(s: str) -> str:
    return hashlib.sha1(s.encode()).hexdigest()


def _cipher(key: bytes, iv: bytes) -> Cipher:
    return Cipher(algorithms.AES(key), modes.CBC(iv))


def cipher_encrypt(key: str, plaintext: str, iv: bytes | None = None) -> str:
    """AES-256-CBC + PKCS#7, base64 without newlines. IV defaults to key[0:16] (7.4 driver)."""
    k = key.encode()
    padder = padding.PKCS7(128).padder()
    data = padder.update(plaintext.encode()) + padder.finalize()
    enc = _cipher(k, k[:16] if iv is None else iv).encryptor()
    return base64.b64encode(enc.update(data) + enc.finalize()).decode()


def cipher_decrypt(key: str, token64: str, iv: bytes | None = None) -> str:
    k = key.encode()
    raw = base64.b64decode(token64, validate=False)
    dec = _cipher(k, k[:16] if iv is None else iv).decryptor()
    data = dec.update(raw) + dec.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return (unpadder.update(data) + unpadder.finalize()).decode()


def server_cipher_token(server_password: str, server_user: str, target: str, expire: int) -> str:
    """What a client (the EC2 gateway) sends: key = sha256_hex(plain password)[0:32]."""
    key = sha256_hex(server_password)[:32]
    return cipher_encrypt(key, f"{server_user}:{target}:{expire}")


def authenticate(sim: Sim, session: str) -> Caller:
    """Return the caller for ``session`` or raise the AUTHENTICATION error."""
    if not isinstance(session, str) or ":" not in session:
        raise errors.auth_failed()
    now = time.time()
    cached = sim.sessions.get(session)
    username, token = session.split(":", 1)
    user = sim.user_by_name(username)
    if user is None:
        raise errors.auth_failed()
    if not user["enabled"]:
        raise errors.auth_failed()
    driver = user["auth_driver"]
    if driver.startswith("server"):  # fnmatch("server*"): every session goes this way
        return _authenticate_server(sim, session, user, token, now)
    # UserPool::authenticate_internal: SHA1 upgrade, login tokens, session cache, driver
    if user["password"] == sha1_hex(token):
        user["password"] = sha256_hex(token)  # "Update SHA1 to SHA256"
        sim.store.put("user", user)
    for tok in user.get("tokens", []):
        if tok["token"] == token:
            valid = tok["expire"] == -1 or tok["expire"] > now
            if valid and tok["egid"] != -1 and tok["egid"] not in user["groups"]:
                valid = False  # "Token sets an EGID no longer part of user group list"
            if not valid:
                user["tokens"] = [t for t in user["tokens"] if t is not tok]
                sim.store.put("user", user)
                raise errors.auth_failed()  # an expired login token is not a password
            return sim.caller_for(user, tok["egid"])
    if cached and cached[2] > now and cached[0] == user["id"]:
        return sim.caller_for(user, cached[1])
    if driver != "core":
        raise errors.auth_failed()
    if user["password"] != sha256_hex(token):
        raise errors.auth_failed()
    sim.sessions[session] = (user["id"], -1, now + SESSION_EXPIRATION_TIME)
    return sim.caller_for(user)


def _authenticate_server(sim: Sim, session: str, srv: dict, rest: str, now: float) -> Caller:
    """``UserPool::authenticate_server``: ``<target>:[<egid>:]<token64>``."""
    if ":" not in rest:
        raise errors.auth_failed()  # wrong_server_token
    target_name, second = rest.split(":", 1)
    egid = -1
    if ":" in second:
        egid_s, second = second.split(":", 1)
        try:
            egid = int(egid_s)
        except ValueError:
            raise errors.auth_failed() from None
    target = sim.user_by_name(target_name)
    if target is None:
        raise errors.auth_failed()  # "User: nobody does not exist. Returned by server auth"
    cached = sim.sessions.get(session)
    if not (cached and cached[2] > now and cached[0] == target["id"]):
        try:
            plain = _server_plaintext(sim, srv, second)
            s_user, _t, expire = plain.split(":")
            ok = s_user == srv["name"] and int(expire) > now
        except Exception:  # bad decrypt, bad padding, bad base64, bad format
            ok = False
        if not ok:
            raise errors.auth_failed()
        sim.sessions[session] = (target["id"], egid, now + SESSION_EXPIRATION_TIME)
    # oned quirks kept: the target's ENABLED flag is not checked, and the EGID given by the
    # server user replaces the target's groups without a membership check
    caller = sim.caller_for(target)
    if egid != -1:
        caller.gid, caller.groups = egid, [egid]
    return caller


def _server_plaintext(sim: Sim, srv: dict, token64: str) -> str:
    """The server user's token: AES with its stored password (server_cipher), or RSA with the
    server certificate given to onesim (server_x509: the user's password must be that
    certificate's escaped DN; the token is base64(base64(RSA private-encrypt(text))))."""
    if srv["auth_driver"] != "server_x509":
        return cipher_decrypt(srv["password"][:32], token64)
    cert = sim.server_x509_cert
    if cert is None or x509_dn(cert.subject) not in srv["password"].split("|"):
        raise ValueError("no server certificate, or not this server user's")
    raw = base64.b64decode(base64.b64decode(token64, validate=True), validate=True)
    key = cert.public_key()
    return key.recover_data_from_signature(raw, rsa_padding.PKCS1v15(), None).decode()


def x509_dn(name: x509.Name) -> str:
    """OpenSSL's one-line DN (``/C=ES/O=ONE/CN=server``), whitespace escaped as ``\\<hex>``
    the way OpenNebula's x509 drivers store DNs as passwords."""
    dn = "".join(
        "/" + "+".join(f"{a.rfc4514_attribute_name}={a.value}" for a in rdn) for rdn in name.rdns
    )
    return "".join("\\" + format(ord(c), "x") if c.isspace() else c for c in dn)
