"""One OpenNebula XML-RPC call with the mapping's error table applied.

Error tables map OpenNebula error names (NO_EXISTS, AUTHORIZATION, ACTION, …, or QUOTA for a
quota refusal) to an EC2 code, or to `{code: …, message: "Jinja2 template"}`; the message scope
has the call scope plus `error` (oned's message without its `[method]` prefix). Codes not listed
fall back to econe.one.errors.ec2_error_from_one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from econe.errors import Ec2Error

log = logging.getLogger("econe.engine")

ONE_CODES = {
    0x100: "AUTHENTICATION",
    0x200: "AUTHORIZATION",
    0x400: "NO_EXISTS",
    0x800: "ACTION",
    0x1000: "RPC_API",
    0x2000: "INTERNAL",
    0x4000: "ALLOCATE",
    0x8000: "LOCKED",
    0x10000: "REPLICATION",
}
ERROR_NAMES = set(ONE_CODES.values()) | {"QUOTA"}
_PREFIX = re.compile(r"^\[[^\]]*\]\s*")
_QUOTA = re.compile(r"quota", re.I)

try:  # shared modules written in parallel; imported lazily so the engine loads without them
    from econe.one.client import OneError, OneUnavailable
except ImportError:  # pragma: no cover - until econe/one lands

    class OneError(Exception):  # type: ignore[no-redef]
        code = 0
        message = ""

    class OneUnavailable(Exception):  # type: ignore[no-redef]
        pass


def one_message(err: Exception) -> str:
    return _PREFIX.sub("", str(getattr(err, "message", "") or err))


def error_name(err: Exception) -> str:
    code = getattr(err, "code", 0)
    name = ONE_CODES.get(code, "INTERNAL")
    if name in ("AUTHORIZATION", "ACTION", "ALLOCATE", "INTERNAL") and _QUOTA.search(
        one_message(err)
    ):
        return "QUOTA"
    return name


def default_error(err: Exception, not_found: str | None, resource: str) -> Ec2Error:
    try:
        from econe.one.errors import ec2_error_from_one
    except ImportError:  # pragma: no cover
        ec2_error_from_one = None
    if ec2_error_from_one is not None:
        mapped = ec2_error_from_one(err, not_found, resource or None)
        if isinstance(mapped, Ec2Error):
            return mapped
    name = error_name(err)
    code = {
        "AUTHENTICATION": "AuthFailure",
        "AUTHORIZATION": "UnauthorizedOperation",
        "NO_EXISTS": not_found or "InvalidParameterValue",
        "ACTION": "IncorrectState",
        "LOCKED": "IncorrectState",
        "QUOTA": "InstanceLimitExceeded",
    }.get(name, "InternalError")
    return Ec2Error(code, one_message(err))


ErrorTable = dict[str, tuple[str, Callable[[dict], Any] | None]]


def map_error(
    err: Exception, table: ErrorTable, scope: dict, not_found: str | None, resource: str
) -> Ec2Error:
    name = error_name(err)
    hit = table.get(name)
    if hit is None:
        return default_error(err, not_found, resource)
    code, message = hit
    text = message({**scope, "error": one_message(err)}) if message else one_message(err)
    return Ec2Error(code, str(text))


def call_one(
    client: Any,
    session: str,
    method: str,
    args: list[Any],
    table: ErrorTable | None = None,
    scope: dict | None = None,
    not_found: str | None = None,
    resource: str = "",
    xml: bool = False,
    pool: tuple[str, str] | None = None,
) -> Any:
    """`client.call(session, method, *args)` with errors mapped to Ec2Error. With `xml`, a
    client that has `call_xml` (OneClient) returns an XML document already parsed; with
    `pool=(ROOT, ITEM)` too, as a list of roots holding the items (see OneClient.call_xml)."""
    call_xml = getattr(client, "call_xml", None) if xml else None
    try:
        if call_xml is None:
            return client.call(session, method, *args)
        if pool is None:
            return call_xml(session, method, *args)
        return call_xml(session, method, *args, pool=pool)
    except OneUnavailable as exc:
        raise Ec2Error("Unavailable", "OpenNebula is not reachable; try again later") from exc
    except OneError as exc:
        # ids only: templates carry user data and other values that must not reach the log
        shown = tuple(a if isinstance(a, int) else "…" for a in args)
        log.debug("%s%r failed: %s", method, shown, exc)
        raise map_error(exc, table or {}, scope or {}, not_found, resource) from exc
