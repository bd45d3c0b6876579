"""Who sent this EC2 request: signature, client certificate or proxy header -> Principal.

`:auth: ec2` (default): SigV4 header, presigned SigV4 or SigV2. The access key is the OpenNebula
user name and the secret is the PASSWORD string oned stores, for `core` and `public` users only
(the Ruby econe's rule). Users of other drivers may hold per-user keys in their template
(`EC2_ACCESS_KEYS`, see econe.auth.users). Disabled users are refused here because oned does not
check ENABLED for server_cipher sessions.
`:auth: x509`: the client certificate that a trusted TLS proxy passes in SSL_CLIENT_CERT.
`:auth: remote`: the user name that a trusted proxy passes in X-Auth-Username / REMOTE_USER.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from econe.auth import sigv2, sigv4, x509
from econe.auth.common import auth_failure, is_trusted_proxy, missing_authentication
from econe.auth.users import UserDirectory, UserPoolUnavailable, UserRecord
from econe.config import Config
from econe.context import Principal, RawRequest
from econe.errors import Ec2Error

log = logging.getLogger(__name__)

SECRET_DRIVERS = ("core", "public")

# Turns an EC2_ACCESS_KEYS entry into the secret to verify with; None = unusable entry.
# The default reads `SECRET`; a deployment that stores secrets encrypted plugs its own in.
SecretResolver = Callable[[dict[str, Any]], str | None]


def plain_secret(entry: dict[str, Any]) -> str | None:
    if str(entry.get("STATUS", "Active")).strip().lower() not in ("active", ""):
        return None
    secret = entry.get("SECRET")
    return secret if isinstance(secret, str) and secret else None


def _principal(user: UserRecord, via: str) -> Principal:
    return Principal(user.name, user.id, user.gid, user.auth_driver, via, user.template)


class Authenticator:
    def __init__(
        self,
        config: Config,
        users: UserDirectory,
        *,
        clock: Callable[[], float] = time.time,
        secret_resolver: SecretResolver = plain_secret,
    ):
        self.config = config
        self.users = users
        self._clock = clock
        self._resolve = secret_resolver

    def authenticate(self, req: RawRequest) -> Principal:
        """The principal, or Ec2Error (AuthFailure, SignatureDoesNotMatch, RequestExpired…)."""
        mode = self.config.auth
        try:
            if mode == "x509":
                return self._x509(req)
            if mode == "remote":
                return self._remote(req)
            return self._ec2(req)
        except UserPoolUnavailable as exc:
            log.error("%s", exc)
            raise Ec2Error(
                "Unavailable", "The service is unavailable: OpenNebula did not answer. Try again."
            ) from None

    # -- :auth: ec2

    def _secret(self, access_key: str) -> tuple[UserRecord, str]:
        """The user and EC2 secret for an access key, or AuthFailure (unknown key, or a user
        whose driver has no usable secret)."""
        user = self.users.get(access_key)
        if user is not None and user.auth_driver in SECRET_DRIVERS and user.password:
            return user, user.password
        found = self.users.find_by_access_key(access_key)
        if found is not None:
            secret = self._resolve(found[1])
            if secret:
                return found[0], secret
        if user is not None:
            log.info(
                "EC2 key %r refused: driver %s has no EC2 secret", access_key, user.auth_driver
            )
        else:
            log.info("EC2 key %r refused: no such user or access key", access_key)
        raise auth_failure()

    def _check_enabled(self, user: UserRecord) -> None:
        if not user.enabled:
            log.info("user %s refused: disabled (ENABLED=0)", user.name)
            raise auth_failure("The user is disabled.")

    def _ec2(self, req: RawRequest) -> Principal:
        now = self._clock()
        window = self.config.signature_window
        if sigv4.is_header_auth(req):
            cred = sigv4.parse_header(req)
            user, secret = self._secret(cred.access_key)
            sigv4.verify(req, cred, secret, now=now, window=window)
            via = "sigv4"
        elif sigv4.is_presigned(req):
            cred = sigv4.parse_presigned(req)
            user, secret = self._secret(cred.access_key)
            sigv4.verify(req, cred, secret, now=now, window=window)
            via = "presigned-v4"
        elif sigv2.is_sigv2(req.params):
            sig = sigv2.parse(req.params)
            user, secret = self._secret(sig.access_key)
            sigv2.verify(req, sig, secret, self.config, now=now)
            via = "sigv2"
        elif req.headers.get("authorization"):
            scheme = req.headers["authorization"].split(" ", 1)[0]
            raise auth_failure(f"Authorization scheme {scheme[:40]!r} is not supported.")
        else:
            raise missing_authentication()
        # Only after the signature holds, so a stranger cannot probe which users are disabled.
        self._check_enabled(user)
        return _principal(user, via)

    # -- :auth: x509 and :auth: remote (identity asserted by a trusted front proxy)

    def _from_proxy(self, req: RawRequest, what: str) -> None:
        if not is_trusted_proxy(req.client_addr, self.config.trusted_proxies):
            log.warning("%s from untrusted address %s ignored", what, req.client_addr)
            raise auth_failure(f"{what} is only accepted from a trusted proxy.")

    def _x509(self, req: RawRequest) -> Principal:
        header = req.headers.get("ssl-client-cert") or req.headers.get("ssl_client_cert")
        if not header or header.strip() == "(null)":
            raise missing_authentication()
        self._from_proxy(req, "A client certificate")
        cert = x509.load_client_cert(header)
        x509.check_validity(cert, self._clock())
        user = self.users.find_by_dn(x509.escaped_dn(cert.subject))
        if user is None:  # proxy certificates: the issuer is the user's own certificate
            user = self.users.find_by_dn(x509.escaped_dn(cert.issuer))
        if user is None or user.auth_driver != "x509":
            log.info("client certificate %s matches no x509 user", x509.escaped_dn(cert.subject))
            raise auth_failure("The client certificate matches no user.")
        self._check_enabled(user)
        return _principal(user, "x509")

    def _remote(self, req: RawRequest) -> Principal:
        name = (
            req.headers.get("x-auth-username")
            or req.headers.get("remote-user")
            or req.headers.get("remote_user")
        )
        if not name:
            raise missing_authentication()
        self._from_proxy(req, "A proxy-asserted user")
        user = self.users.get(name.strip())
        if user is None or user.auth_driver != "public" or user.password != user.name:
            log.info("remote user %r refused: needs driver public with PASSWORD = name", name)
            raise auth_failure()
        self._check_enabled(user)
        return _principal(user, "remote")
