"""Small pieces shared by the signature verifiers and the authenticator."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from econe.errors import Ec2Error

# AWS's own wording, so that SDK users recognise the errors.
_SIG_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method."
)


def rfc3986(text: str) -> str:
    """Percent-encode everything but the RFC 3986 unreserved set, UTF-8, upper-case hex."""
    return quote(text.encode("utf-8", "surrogateescape"), safe="-_.~")


def auth_failure(detail: str = "") -> Ec2Error:
    message = "AWS was not able to validate the provided access credentials"
    return Ec2Error("AuthFailure", f"{message}. {detail}".strip() if detail else message, 401)


def signature_mismatch(detail: str = "") -> Ec2Error:
    return Ec2Error("SignatureDoesNotMatch", f"{_SIG_MISMATCH} {detail}".strip(), 403)


def incomplete_signature(detail: str) -> Ec2Error:
    return Ec2Error("IncompleteSignature", detail, 400)


def request_expired(detail: str) -> Ec2Error:
    return Ec2Error("RequestExpired", f"Request has expired. {detail}".strip(), 400)


def missing_authentication() -> Ec2Error:
    # AWS documents MissingAuthenticationToken with HTTP 403 among its common errors.
    return Ec2Error(
        "MissingAuthenticationToken",
        "The request must contain either a valid (registered) AWS access key ID or X.509 "
        "certificate.",
        403,
    )


def parse_iso8601(text: str) -> float:
    """`2012-04-09T14:45:01Z`, with fractions or an offset; no zone means UTC."""
    value = datetime.fromisoformat(text.strip().replace("z", "Z"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


_AMZ_DATE = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})T([0-9]{2})([0-9]{2})([0-9]{2})Z")


def parse_amz_date(text: str) -> float:
    """SigV4's basic ISO 8601 form `20261123T184254Z` (strptime took a tenth of the signature
    check); ValueError for anything else, or an impossible date."""
    hit = _AMZ_DATE.fullmatch(text.strip())
    if hit is None:
        raise ValueError(f"not a basic ISO 8601 date: {text[:40]!r}")
    return datetime(*map(int, hit.groups()), tzinfo=UTC).timestamp()


@lru_cache(maxsize=64)
def _networks(
    proxies: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    nets = []
    for item in proxies:
        try:
            nets.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            continue  # a config typo must not trust anything extra
    return tuple(nets)


def from_trusted_proxy(addr: str | None, config: Any) -> bool:
    """Whether the request came from a proxy whose forwarding and identity headers econe
    believes: one of `:trusted_proxies:`, or anyone at all when econe listens on
    `:unix_socket:` (only there then; the socket file's permissions say who may connect)."""
    return bool(config.unix_socket) or is_trusted_proxy(addr, config.trusted_proxies)


def is_trusted_proxy(addr: str | None, proxies: Iterable[str]) -> bool:
    """Is the peer address one of the configured proxies (IPs or CIDRs)?"""
    if not addr:
        return False
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in _networks(tuple(proxies)))


def split_host(value: str) -> tuple[str, int | None]:
    """`Host` header value -> (hostname lower-cased, port or None); IPv6 in brackets."""
    value = value.strip()
    if value.startswith("["):
        end = value.find("]")
        host, rest = value[: end + 1], value[end + 1 :]
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host, port = value, ""
    if not (port.isascii() and port.isdigit() and len(port) <= 5 and int(port) <= 65535):
        return host.lower(), None  # none, or not a port at all
    return host.lower(), int(port)
