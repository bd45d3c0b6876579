"""Values passed between the layers of one request."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Principal:
    """Who sent the EC2 request, as OpenNebula knows the user."""

    name: str
    uid: int
    gid: int
    auth_driver: str
    via: str  # "sigv4", "sigv2", "presigned-v4", "x509", "remote"
    template: dict[str, Any] = field(default_factory=dict, compare=False)


# The request being served, for log lines written on its way (set by the front; a worker
# thread gets it through contextvars.copy_context)
request_id_var: ContextVar[str] = ContextVar("econe_request_id", default="-")


@dataclass
class RawRequest:
    """The HTTP request as received, before any decoding beyond the parameters."""

    method: str
    path: str
    query_string: str
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ","
    body: bytes
    params: dict[str, str]  # query + form parameters merged (form wins)
    client_addr: str | None = None


@dataclass
class RequestContext:
    """What an action needs besides its validated input."""

    request_id: str
    action: str
    version: str
    principal: Principal
