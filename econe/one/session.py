"""Session strings that let econe call oned *as* the EC2 user (impersonation).

`ServerCipherSessions` mints `serveradmin:<user>:<token64>` for oned's server_cipher driver;
`X509Sessions` mints `srv:<user>:<b64>` for the server_x509 driver. Both share one expiry per
window (like the Ruby econe's CloudAuth) so that every token for a user is byte-identical until
the window moves: oned then finds it in its session cache instead of running the driver.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import padding, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from econe.keyseal import seal_key_from

TOKEN_LIFETIME = 1800  # seconds a minted token is valid
RENEW_BEFORE = 300  # move the shared expiry when less than this is left


class SessionConfigError(Exception):
    """The server credentials cannot be used; the message names the file and the fix."""


def _check_private_file(path: Path, what: str) -> bytes:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise SessionConfigError(
            f"{what} {path} does not exist; point :ec2_auth: (or ONE_CIPHER_AUTH) at the "
            "file oned wrote with the serveradmin credentials"
        ) from None
    except OSError as exc:
        raise SessionConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise SessionConfigError(f"{what} {path} is not a regular file")
    if info.st_mode & 0o077:
        raise SessionConfigError(
            f"{what} {path} is readable or writable by group or others "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {path}"
        )
    if info.st_uid != os.geteuid():  # another user could change the credentials econe uses
        raise SessionConfigError(
            f"{what} {path} belongs to uid {info.st_uid}, not to the user econe runs as "
            f"(uid {os.geteuid()}); run: chown {os.geteuid()} {path}"
        )
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SessionConfigError(f"cannot read {what} {path}: {exc.strerror}") from None


class _ExpiryWindow:
    """One expiry shared by all tokens until fewer than RENEW_BEFORE seconds remain."""

    def __init__(self, clock: Callable[[], float]):
        self._clock = clock
        self._expire = 0
        self._cache: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, user: str, mint: Callable[[str, int], str]) -> str:
        with self._lock:
            now = self._clock()
            if now > self._expire - RENEW_BEFORE:
                self._expire = int(now) + TOKEN_LIFETIME
                self._cache.clear()
            session = self._cache.get(user)
            if session is None:
                session = self._cache[user] = mint(user, self._expire)
            return session


def cipher_key(password: str, digest: str = "sha256") -> bytes:
    """The driver's AES key: the first 32 ASCII characters of the hex digest of the password."""
    return hashlib.new(digest, password.encode()).hexdigest()[:32].encode("ascii")


def encrypt_token(plaintext: str, key: bytes, iv: bytes) -> str:
    """AES-256-CBC, PKCS#7, base64 without newlines (what server_cipher_auth.rb produces)."""
    padder = padding.PKCS7(128).padder()
    data = padder.update(plaintext.encode()) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return base64.b64encode(enc.update(data) + enc.finalize()).decode("ascii")


class ServerCipherSessions:
    """Sessions for `:core_auth: cipher`, from the `serveradmin:<password>` file.

    OpenNebula 7.4's driver uses a SHA-256 key and IV = key[0,16]. Older drivers set no IV
    (sixteen zero bytes, `zero_iv=True`) and up to 5.8 hashed with SHA-1 (`digest="sha1"`).
    """

    def __init__(
        self,
        ec2_auth_path: str | os.PathLike,
        *,
        clock: Callable[[], float] = time.time,
        digest: str = "sha256",
        zero_iv: bool = False,
    ):
        self.path = Path(ec2_auth_path)
        raw = _check_private_file(self.path, "ec2_auth file")
        try:
            text = raw.decode("utf-8").rstrip()
        except UnicodeDecodeError:
            raise SessionConfigError(f"ec2_auth file {self.path} is not UTF-8 text") from None
        user, sep, password = text.partition(":")
        if not sep or not user or not password or "\n" in text:
            raise SessionConfigError(
                f"ec2_auth file {self.path} must hold one line `serveradmin:<password>`"
            )
        self.srv_user = user
        self._key = cipher_key(password, digest)
        self._iv = bytes(16) if zero_iv else self._key[:16]
        self._window = _ExpiryWindow(clock)
        self.seal_key = seal_key_from(raw.strip())  # seals per-user EC2 keys (econe.keyseal)

    def token(self, user: str, expire: int) -> str:
        return encrypt_token(f"{self.srv_user}:{user}:{expire}", self._key, self._iv)

    def _mint(self, user: str, expire: int) -> str:
        return f"{self.srv_user}:{user}:{self.token(user, expire)}"

    def session_for(self, user: str) -> str:
        """The XML-RPC session string acting as `user`."""
        return self._window.get(user, self._mint)

    def admin_session(self) -> str:
        """A session acting as the server user itself (user pool reads, elastic IPs)."""
        return self.session_for(self.srv_user)


def rsa_private_encrypt(key: rsa.RSAPrivateKey, data: bytes) -> bytes:
    """OpenSSL's RSA_private_encrypt with PKCS#1 v1.5 type-1 padding (what Ruby's
    `private_encrypt` does); `cryptography` has no such call, so use the raw primitive."""
    numbers = key.private_numbers()
    n, d = numbers.public_numbers.n, numbers.d
    size = (n.bit_length() + 7) // 8
    if len(data) > size - 11:
        raise ValueError(f"token of {len(data)} bytes is too long for a {size * 8}-bit key")
    block = b"\x00\x01" + b"\xff" * (size - 3 - len(data)) + b"\x00" + data
    return pow(int.from_bytes(block, "big"), d, n).to_bytes(size, "big")


class X509Sessions:
    """Sessions for `:core_auth: x509` (oned's server_x509 driver): the token plaintext
    `srv:target:expire` is RSA-private-encrypted with the server key, base64'd, then base64'd
    again; the session is `srv:target:<b64>`."""

    def __init__(
        self,
        cert_path: str | os.PathLike,
        key_path: str | os.PathLike,
        srv_user: str = "serveradmin",
        *,
        clock: Callable[[], float] = time.time,
    ):
        self.srv_user = srv_user
        self.cert_path = Path(cert_path)
        if not self.cert_path.is_file():
            raise SessionConfigError(f"server certificate {self.cert_path} does not exist")
        key_file = Path(key_path)
        pem = _check_private_file(key_file, "server key")
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise SessionConfigError(
                f"server key {key_file} is not an unencrypted PEM private key"
            ) from exc
        if not isinstance(key, rsa.RSAPrivateKey):
            raise SessionConfigError(f"server key {key_file} is not an RSA key")
        self._key = key
        self._window = _ExpiryWindow(clock)
        self.seal_key = seal_key_from(pem.strip())  # seals per-user EC2 keys (econe.keyseal)

    @classmethod
    def from_conf(
        cls, conf_path: str | os.PathLike, etc_location: str | os.PathLike | None = None
    ) -> X509Sessions:
        """Read `server_x509_auth.conf` (`:srv_user:`, `:one_cert:`, `:one_key:`); relative
        paths are taken from `etc_location` (default: the conf file's parent's parent)."""
        path = Path(conf_path)
        try:
            conf = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SessionConfigError(f"cannot read {path}: {exc}") from None
        if not isinstance(conf, dict):
            raise SessionConfigError(f"{path} is not a YAML mapping")
        conf = {str(k).strip(":"): v for k, v in conf.items()}
        base = Path(etc_location) if etc_location else path.resolve().parent.parent
        cert = base / str(conf.get("one_cert", "auth/cert.pem"))
        key = base / str(conf.get("one_key", "auth/key.pem"))
        return cls(cert, key, str(conf.get("srv_user", "serveradmin")))

    def token(self, user: str, expire: int) -> str:
        raw = rsa_private_encrypt(self._key, f"{self.srv_user}:{user}:{expire}".encode())
        inner = base64.b64encode(raw)
        return base64.b64encode(inner).decode("ascii")

    def _mint(self, user: str, expire: int) -> str:
        return f"{self.srv_user}:{user}:{self.token(user, expire)}"

    def session_for(self, user: str) -> str:
        return self._window.get(user, self._mint)

    def admin_session(self) -> str:
        return self.session_for(self.srv_user)


def sessions_from_config(config: Any) -> ServerCipherSessions | X509Sessions:
    """The sessions `:core_auth:` asks for: `cipher` (`:ec2_auth:`) or `x509`
    (`:server_x509_auth:`); SessionConfigError names what is missing or wrong."""
    if config.core_auth == "x509":  # unset: where the Ruby econe read it
        etc = Path(os.environ["ONE_LOCATION"], "etc") if os.environ.get("ONE_LOCATION") else None
        default = (etc or Path("/etc/one")) / "auth" / "server_x509_auth.conf"
        return X509Sessions.from_conf(config.server_x509_auth or default)
    return ServerCipherSessions(config.ec2_auth)
