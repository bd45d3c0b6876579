"""Session authentication as oned 7.4 does it (``UserPool::authenticate``).

Drivers: ``core`` (SHA-256 hex stored, SHA-1 hex accepted and upgraded), login tokens, the
session cache, ``server_cipher`` (``serveradmin:<user>[:<egid>]:<token64>``) and ``public``
(refused for direct logins). Every failure is the same AUTHENTICATION error.
"""

from __future__ import annotations

import base64
import hashlib
import time

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from . import errors
from .perms import Caller

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


def authenticate(sim, session: str) -> Caller:
    """Return the caller for ``session`` or raise the AUTHENTICATION error."""
    if not isinstance(session, str) or ":" not in session:
        raise errors.auth_failed()
    now = time.time()
    cached = sim.sessions.get(session)
    username, token = session.split(":", 1)
    user = sim.user_by_name(username)
    if user is None:
        raise errors.auth_failed()
    driver = user["auth_driver"]
    if driver.startswith("server") and ":" in token:
        return _authenticate_server(sim, session, user, token, now)
    if driver == "public" or not user["enabled"]:
        raise errors.auth_failed()
    if cached and cached[2] > now and cached[0] == user["id"]:
        return sim.caller_for(user, cached[1])
    for tok in user.get("tokens", []):
        if tok["token"] == token and (tok["expire"] == -1 or tok["expire"] > now):
            return sim.caller_for(user, tok["egid"])
    if driver != "core":
        raise errors.auth_failed()
    stored = user["password"]
    if stored == sha256_hex(token):
        pass
    elif stored == sha1_hex(token):
        user["password"] = sha256_hex(token)  # "Update SHA1 to SHA256"
        sim.store.put("user", user)
    else:
        raise errors.auth_failed()
    sim.sessions[session] = (user["id"], -1, now + SESSION_EXPIRATION_TIME)
    return sim.caller_for(user)


def _authenticate_server(sim, session: str, srv: dict, rest: str, now: float) -> Caller:
    parts = rest.split(":")
    egid = -1
    if len(parts) >= 3 and parts[1].lstrip("-").isdigit():
        target_name, egid, token64 = parts[0], int(parts[1]), ":".join(parts[2:])
    else:
        target_name, token64 = parts[0], ":".join(parts[1:])
    target = sim.user_by_name(target_name)
    if target is None:
        raise errors.auth_failed()  # "User: nobody does not exist. Returned by server auth"
    cached = sim.sessions.get(session)
    if cached and cached[2] > now and cached[0] == target["id"]:
        return sim.caller_for(target, cached[1])
    if not srv["enabled"]:
        raise errors.auth_failed()
    try:
        plain = cipher_decrypt(srv["password"][:32], token64)
        s_user, _t, expire = plain.split(":")
        ok = s_user == srv["name"] and int(expire) > now
    except Exception:  # bad decrypt, bad padding, bad base64, bad format
        ok = False
    if not ok:
        raise errors.auth_failed()
    # oned quirk: the target user's ENABLED flag is not checked on this path
    sim.sessions[session] = (target["id"], egid, now + SESSION_EXPIRATION_TIME)
    return sim.caller_for(target, egid)
