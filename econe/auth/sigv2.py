"""AWS Signature Version 2 (HmacSHA256 and HmacSHA1), GET or POST.

String to sign: `METHOD\\nhost\\npath\\n` + every parameter except `Signature` (and a multipart
`file` field), sorted byte-wise, RFC 3986-encoded. The host is the one the client signed: the
Host header as received, also tried with and without the port (the econe CLI signs without it),
but it must be a name this server answers as (`:host:`, `:ssl_server:`, or `X-Forwarded-Host`
from a trusted proxy), so a request signed for another endpoint cannot be replayed here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from econe.auth.common import (
    from_trusted_proxy,
    incomplete_signature,
    parse_iso8601,
    request_expired,
    rfc3986,
    signature_mismatch,
    split_host,
)
from econe.auth.hosts import known_ports, server_names, ssl_server_url
from econe.config import Config
from econe.context import RawRequest
from econe.errors import Ec2Error, missing_parameter

_DIGESTS = {"HmacSHA256": hashlib.sha256, "HmacSHA1": hashlib.sha1}
_UNSIGNED_PARAMS = frozenset({"Signature"})  # every other parameter is signed


@dataclass(frozen=True)
class SigV2Params:
    access_key: str
    signature: str
    method: str
    timestamp: str | None
    expires: str | None

    def __repr__(self) -> str:  # keep the signature out of any log line
        return f"SigV2Params({self.access_key!r}, {self.method!r})"


MAX_EXPIRES = 7 * 24 * 3600  # as presigned SigV4 URLs


def is_sigv2(params: Mapping[str, str]) -> bool:
    return "Signature" in params or "AWSAccessKeyId" in params


def parse(params: Mapping[str, str]) -> SigV2Params:
    for name in ("AWSAccessKeyId", "Signature"):
        if not params.get(name):
            raise missing_parameter(name)
    version = params.get("SignatureVersion", "2")
    if version != "2":
        raise incomplete_signature(f"SignatureVersion {version} is not supported; use 2 or 4.")
    method = params.get("SignatureMethod", "HmacSHA1")  # absent means SHA-1, as AWS and econe
    if method not in _DIGESTS:
        raise Ec2Error(
            "InvalidParameterValue",
            f"Value ({method}) for parameter SignatureMethod is invalid: "
            "use HmacSHA256 or HmacSHA1.",
        )
    if not params.get("Timestamp") and not params.get("Expires"):
        raise missing_parameter("Timestamp")
    return SigV2Params(
        params["AWSAccessKeyId"],
        params["Signature"],
        method,
        params.get("Timestamp"),
        params.get("Expires"),
    )


def canonical_query(params: Mapping[str, str]) -> str:
    return "&".join(
        f"{rfc3986(k)}={rfc3986(params[k])}" for k in sorted(params) if k not in _UNSIGNED_PARAMS
    )


def string_to_sign(method: str, host: str, path: str, params: Mapping[str, str]) -> str:
    return f"{method.upper()}\n{host}\n{path or '/'}\n{canonical_query(params)}"


def signature(secret: str, sts: str, method: str = "HmacSHA256") -> str:
    digest = hmac.new(secret.encode("utf-8"), sts.encode("utf-8"), _DIGESTS[method]).digest()
    return base64.b64encode(digest).decode("ascii")


def _host_forms(value: str, ports: Iterable[int]) -> list[str]:
    """`name:port` as given, then the bare name, then the name with each known port."""
    value = value.strip()
    name, port = split_host(value)
    shown = value[: value.rfind(":")] if port is not None else value
    forms = [value, shown] + [f"{shown}:{p}" for p in ports if p != port]
    return list(dict.fromkeys(f for f in forms if f))


def signed_host_candidates(req: RawRequest, config: Config) -> tuple[list[str], list[str]]:
    """(hosts this server answers as, hosts the client may have signed but we do not serve)."""
    names = server_names(req, config)
    ports = known_ports(config)
    sources = [req.headers.get("host", ""), config.host]
    url = ssl_server_url(config)
    if url is not None and url.hostname:
        sources.append(url.netloc)
    forwarded = req.headers.get("x-forwarded-host")
    if forwarded and from_trusted_proxy(req.client_addr, config):
        sources.extend(forwarded.split(","))
    allowed, foreign = [], []
    for source in sources:
        for form in _host_forms(source, ports):
            (allowed if split_host(form)[0] in names else foreign).append(form)
    return list(dict.fromkeys(allowed)), list(dict.fromkeys(foreign))


def verify(
    req: RawRequest,
    sig: SigV2Params,
    secret: str,
    config: Config,
    *,
    now: float,
    params: Mapping[str, str] | None = None,
) -> None:
    """Raise SignatureDoesNotMatch / RequestExpired / InvalidParameterValue; return if valid."""
    params = req.params if params is None else params
    paths = [quote(req.path or "/", safe="/~"), req.path or "/"]  # path is decoded (ASGI)
    if config.ssl_server:  # behind a proxy that strips a path prefix, the client signed the URL's
        paths.append(urlsplit(config.ssl_server).path or "/")
    allowed, foreign = signed_host_candidates(req, config)
    given = sig.signature.strip().encode()

    def matches(hosts: list[str]) -> bool:
        found = False
        for host in hosts:
            for path in dict.fromkeys(paths):
                sts = string_to_sign(req.method, host, path, params)
                found |= hmac.compare_digest(signature(secret, sts, sig.method).encode(), given)
        return found

    if not matches(allowed):
        if foreign and matches(foreign):
            raise signature_mismatch(
                f"The request was signed for host {req.headers.get('host', '')!r}, which this "
                "server does not answer as (see :host: and :ssl_server: in econe.conf)."
            )
        raise signature_mismatch()
    window = config.signature_window
    if sig.timestamp:
        try:
            stamp = parse_iso8601(sig.timestamp)
        except ValueError:
            raise Ec2Error(
                "InvalidParameterValue",
                f"Value ({sig.timestamp}) for parameter Timestamp is invalid: use ISO 8601.",
            ) from None
        if abs(now - stamp) > window:
            raise request_expired(f"Timestamp {sig.timestamp} is not within {window} seconds.")
    if sig.expires:
        try:
            until = parse_iso8601(sig.expires)
        except ValueError:
            raise Ec2Error(
                "InvalidParameterValue",
                f"Value ({sig.expires}) for parameter Expires is invalid: use ISO 8601.",
            ) from None
        if now >= until:
            raise request_expired(f"The request expired at {sig.expires}.")
        if until - now > MAX_EXPIRES:  # a far-future Expires would make a lasting credential
            raise request_expired(f"Expires {sig.expires} is more than 7 days ahead.")
