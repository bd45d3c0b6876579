"""Which host names this server answers as, for checking the host a client signed.

A signature binds a request to a host; refusing hosts we do not serve stops a request captured
on another endpoint (with the same user and secret) from being replayed here.
Names: `:host:` (unless it is a wildcard bind address), the host of `:ssl_server:`, and the
`X-Forwarded-Host` values sent by a trusted proxy. Loopback names stand for one another.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from econe.auth.common import from_trusted_proxy, split_host
from econe.config import Config
from econe.context import RawRequest

WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::", "[::]", "*"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


def _is_loopback(name: str) -> bool:
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def is_wildcard(config: Config) -> bool:
    return config.host.strip().lower() in WILDCARD_BINDS


def ssl_server_url(config: Config):
    if not config.ssl_server:
        return None
    text = config.ssl_server
    return urlsplit(text if "//" in text else "//" + text)


def server_names(req: RawRequest, config: Config) -> set[str]:
    """Lower-cased host names (no ports) a signed request may name."""
    names: set[str] = set()
    if is_wildcard(config):
        # Bound to every address with no name configured: nothing to check against.
        names.add(split_host(req.headers.get("host", ""))[0])
    else:
        names.add(split_host(config.host)[0])
    url = ssl_server_url(config)
    if url is not None and url.hostname:
        names.add(url.hostname.lower())
    forwarded = req.headers.get("x-forwarded-host")
    if forwarded and from_trusted_proxy(req.client_addr, config):
        names.update(split_host(item)[0] for item in forwarded.split(","))
    if any(_is_loopback(n) for n in names):
        # A development server on 127.0.0.1 is reached as localhost just as often.
        names |= LOOPBACK_NAMES
    # IPv6 with and without brackets: a Host header has them, :host: and URLs' hostname not
    names |= {f"[{n}]" for n in names if ":" in n and not n.startswith("[")}
    names.discard("")
    return names


def known_ports(config: Config) -> list[int]:
    ports = [config.port]
    url = ssl_server_url(config)
    if url is not None and url.hostname:
        ports.append(url.port or (80 if url.scheme == "http" else 443))
    return ports
