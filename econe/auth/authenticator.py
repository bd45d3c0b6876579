"""Who sent this EC2 request: signature, client certificate or proxy header -> Principal.

`:auth: ec2` (default): SigV4 header, presigned SigV4 or SigV2. The access key is the OpenNebula
user name and the secret is the PASSWORD string oned stores, for `core` and `public` users only
(the Ruby econe's rule). Users of other drivers may hold per-user keys in their template
(`EC2_ACCESS_KEYS`, see econe.auth.users). Disabled users are refused here because oned does not
check ENABLED for server_cipher sessions.
`:auth: x509`: the client certificate that a trusted TLS proxy passes in SSL_CLIENT_CERT.
`:auth: remote`: the user name that a trusted proxy passes in X-Auth-Username (or Remote-User).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from econe.auth import sigv2, sigv4, x509
from econe.auth.common import (
    auth_failure,
    from_trusted_proxy,
    missing_authentication,
    signature_mismatch,
    split_host,
)
from econe.auth.hosts import server_names
from econe.auth.users import UserDirectory, UserPoolUnavailable, UserRecord
from econe.config import Config
from econe.context import Principal, RawRequest, request_id_var
from econe.errors import Ec2Error
from econe.keyseal import is_sealed
from econe.one.client import NeedsOned, no_blocking

log = logging.getLogger(__name__)


def _say(level: int, message: str, *args: object) -> None:
    """Why a request is refused, with the request id its access line and answer carry."""
    log.log(level, "request %s: " + message, request_id_var.get(), *args)


SECRET_DRIVERS = ("core", "public")

# Turns an EC2_ACCESS_KEYS entry into the secret to verify with; None = unusable entry.
# The default reads `SECRET`; a deployment that stores secrets encrypted plugs its own in.
SecretResolver = Callable[[dict[str, Any]], str | None]


def plain_secret(entry: dict[str, Any]) -> str | None:
    if str(entry.get("STATUS", "Active")).strip().lower() not in ("active", ""):
        return None
    secret = entry.get("SECRET")
    return secret if isinstance(secret, str) and secret else None


def _first_present(req: RawRequest, *names: str) -> str | None:
    """The value of the first of `names` the request carries at all (even empty): the spelling
    the proxy sets is authoritative, a client's other spelling never fills in for it."""
    for name in names:
        if name in req.headers:
            return req.headers[name]
    return None


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
        seal_key: bytes | None = None,
    ):
        self.config = config
        self.users = users
        self._clock = clock
        self._resolve = secret_resolver
        self._seal_key = seal_key  # None: per-user EC2 keys are refused

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

    def _secret_for(self, user: UserRecord, access_key: str) -> str | None:
        """The EC2 secret `user` has for `access_key`: the stored PASSWORD when the key is the
        user name and the driver is core/public, else a matching EC2_ACCESS_KEYS entry."""
        if user.name == access_key and user.auth_driver in SECRET_DRIVERS and user.password:
            return user.password
        for entry in user.access_keys():
            if str(entry.get("ACCESS_KEY_ID", "")).strip() == access_key:
                if not is_sealed(self._seal_key, user.id, entry):
                    _say(
                        logging.WARNING,
                        "EC2 key %r of user %s has no valid seal",
                        access_key,
                        user.name,
                    )
                    return None
                return self._resolve(entry)
        return None

    def _lookup(self, access_key: str) -> tuple[UserRecord, str]:
        """The user and EC2 secret for an access key, or AuthFailure (unknown key, or a user
        whose driver has no usable secret)."""
        user, found = self.users.find_signer(access_key)
        if user is not None:
            secret = self._secret_for(user, access_key)
            if secret:
                return user, secret
        if found is not None:
            secret = self._secret_for(found[0], access_key)
            if secret:
                return found[0], secret
        if user is not None:
            _say(
                logging.INFO,
                "EC2 key %r refused: driver %s has no EC2 secret",
                access_key,
                user.auth_driver,
            )
        else:  # the key may be a secret sent in its place (swapped): only its first letters
            _say(
                logging.INFO,
                "EC2 key %r… (%d characters) refused: no such user or access key",
                access_key[:3],
                len(access_key),
            )
        raise auth_failure()

    def _newer_secret(self, user: UserRecord, access_key: str, secret: str) -> str | None:
        """The secret oned now has for the key, when it is not `secret` (None otherwise, and
        for a user gone meanwhile: the signature error stands)."""
        fresh = self.users.confirm(user)
        newer = self._secret_for(fresh, access_key) if fresh is not None else None
        return newer if newer and newer != secret else None

    def _confirm(self, user: UserRecord) -> UserRecord:
        """The user's current record (enabled, not deleted), or AuthFailure."""
        fresh = self.users.confirm(user)
        if fresh is None:
            _say(logging.INFO, "user %s refused: no longer exists", user.name)
            raise auth_failure()
        if not fresh.enabled:
            _say(logging.INFO, "user %s refused: disabled (ENABLED=0)", fresh.name)
            raise auth_failure("The user is disabled.")
        return fresh

    def _check_host(self, req: RawRequest) -> None:
        host = req.headers.get("host", "")
        if split_host(host)[0] not in server_names(req, self.config):
            raise signature_mismatch(
                f"The request was signed for host {host[:100]!r}, which this server does not "
                "answer as (see :host: and :ssl_server: in econe.conf)."
            )

    def _ec2(self, req: RawRequest) -> Principal:
        now = self._clock()
        window = self.config.signature_window
        check: Callable[[str], None]
        if sigv4.is_header_auth(req) or sigv4.is_presigned(req):
            presigned = not sigv4.is_header_auth(req)
            cred = sigv4.parse_presigned(req) if presigned else sigv4.parse_header(req)
            access_key, via = cred.access_key, "presigned-v4" if presigned else "sigv4"

            def check(secret: str) -> None:
                sigv4.verify(req, cred, secret, now=now, window=window)
                self._check_host(req)

        elif sigv2.is_sigv2(req.params):
            sig = sigv2.parse(req.params)
            access_key, via = sig.access_key, "sigv2"

            def check(secret: str) -> None:
                sigv2.verify(req, sig, secret, self.config, now=now)

        elif req.headers.get("authorization"):
            scheme = req.headers["authorization"].split(" ", 1)[0]
            raise auth_failure(f"Authorization scheme {scheme[:40]!r} is not supported.")
        else:
            raise missing_authentication()
        user, secret = self._lookup(access_key)
        if no_blocking.get() and not self.users.confirmed_recently(user):
            raise NeedsOned  # before the signature check, which the worker does anyway
        try:
            check(secret)
        except Ec2Error as exc:
            # The cached secret may be an old one: a user who has just changed their password
            # signs with the new one. Read the user again (at most once per :user_confirm_ttl:
            # per user, so wrong signatures cannot make econe hammer oned) and try that secret.
            newer = self._newer_secret(user, access_key, secret)
            if newer is None:  # the reason for the operator; never the signature itself
                _say(
                    logging.INFO,
                    "EC2 key %r of user %s refused (%s): %s",
                    access_key,
                    user.name,
                    via,
                    exc.code,
                )
                raise
            check(newer)
            secret = newer
        # Only once the signature holds (so a stranger cannot probe which users exist or are
        # disabled): re-read the user, which may have been disabled or re-keyed since cached.
        fresh = self._confirm(user)
        fresh_secret = self._secret_for(fresh, access_key)
        if not fresh_secret:
            raise auth_failure()
        if fresh_secret != secret:
            check(fresh_secret)
        return _principal(fresh, via)

    # -- :auth: x509 and :auth: remote (identity asserted by a trusted front proxy)

    def _from_proxy(self, req: RawRequest, what: str) -> None:
        if not from_trusted_proxy(req.client_addr, self.config):
            _say(logging.WARNING, "%s from untrusted address %s ignored", what, req.client_addr)
            raise auth_failure(f"{what} is only accepted from a trusted proxy.")

    def _x509(self, req: RawRequest) -> Principal:
        # SSL_CLIENT_CERT is what proxies set; a client-sent SSL-Client-Cert must never win,
        # not even when the proxy sent SSL_CLIENT_CERT empty (no certificate).
        header = _first_present(req, "ssl_client_cert", "ssl-client-cert")
        if not header or header.strip() == "(null)":
            raise missing_authentication()
        self._from_proxy(req, "A client certificate")
        cert = x509.load_client_cert(header)
        x509.check_validity(cert, self._clock())
        dn = x509.escaped_dn(cert.subject)
        user = self.users.find_by_dn(dn)
        if user is None and x509.is_proxy_certificate(cert):  # the issuer is the user's own
            dn = x509.escaped_dn(cert.issuer)
            user = self.users.find_by_dn(dn)
        if user is None or user.auth_driver != "x509":
            _say(
                logging.INFO,
                "client certificate %s matches no x509 user",
                x509.escaped_dn(cert.subject),
            )
            raise auth_failure("The client certificate matches no user.")
        fresh = self._confirm(user)
        if fresh.auth_driver != "x509" or dn not in fresh.password.split("|"):
            raise auth_failure("The client certificate matches no user.")
        return _principal(fresh, "x509")

    def _remote(self, req: RawRequest) -> Principal:
        name = _first_present(req, "x-auth-username", "remote-user")
        if not name:
            raise missing_authentication()
        self._from_proxy(req, "A proxy-asserted user")
        user = self.users.get(name.strip())
        if user is not None:
            user = self._confirm(user)
        if user is None or user.auth_driver != "public" or user.password != user.name:
            _say(
                logging.INFO,
                "remote user %r refused: needs driver public with PASSWORD = name",
                name,
            )
            raise auth_failure()
        return _principal(user, "remote")
