"""One OpenNebula XML-RPC call with the mapping's error table applied.

Error tables map OpenNebula error names (NO_EXISTS, AUTHORIZATION, ACTION, …, or QUOTA for a
quota refusal) to an EC2 code, or to `{code: …, message: "Jinja2 template"}`; the message scope
has the call scope plus `error` (oned's message without its `[method]` prefix). Codes not listed
fall back to econe.one.errors.ec2_error_from_one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from econe.errors import Ec2Error
from econe.one import client as one
from econe.one.client import OneError, OneUnavailable
from econe.one.errors import ec2_error_from_one, is_quota, one_message

log = logging.getLogger("econe.engine")

ONE_CODES = {
    getattr(one, name): name
    for name in (
        "AUTHENTICATION",
        "AUTHORIZATION",
        "NO_EXISTS",
        "ACTION",
        "RPC_API",
        "INTERNAL",
        "ALLOCATE",
        "LOCKED",
        "REPLICATION",
    )
}
ERROR_NAMES = set(ONE_CODES.values()) | {"QUOTA"}


def error_name(err: OneError) -> str:
    """The error table's name for a failure: oned's code name, or QUOTA for a quota refusal."""
    return "QUOTA" if is_quota(err) else ONE_CODES.get(err.code, "INTERNAL")


ErrorTable = dict[str, tuple[str, Callable[[dict], Any] | None]]


def map_error(
    err: Exception, table: ErrorTable, scope: dict, not_found: str | None, resource: str
) -> Ec2Error:
    name = error_name(err)
    hit = table.get(name)
    if hit is None:
        return ec2_error_from_one(err, not_found, resource or None)
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
