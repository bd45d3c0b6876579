"""ClientToken idempotency shared by RunInstances and CreateVolume.

What a token created is found again in OpenNebula itself (the token is stored on the VMs or the
image), so a retry reaches another gateway process too. Beside the token, the resource keeps a
digest of the request's other parameters: a retry with the same token but other parameters is
refused with `IdempotentParameterMismatch`, as on EC2, instead of answering with what the first
request made.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from typing import Any

from econe.errors import Ec2Error, invalid_value

TOKEN = "EC2_CLIENT_TOKEN"
DIGEST = "EC2_REQUEST_DIGEST"

# EC2's rule (at most 64 ASCII characters), without the blanks OpenNebula would trim from the
# ends of the stored value: a retry must find the token exactly as it was sent.
_TOKEN = re.compile(r"[!-~](?:[ -~]{0,62}[!-~])?")


def client_token(body: dict[str, Any]) -> str | None:
    """The request's ClientToken, or None; InvalidParameterValue for one OpenNebula would not
    keep as sent."""
    token = body.get("ClientToken")
    if token is None or token == "":
        return None
    if not _TOKEN.fullmatch(str(token)):
        raise invalid_value(
            "ClientToken",
            token,
            "A client token has 1 to 64 ASCII characters and does not start or end with a blank.",
        )
    return str(token)


# Parameters that do not change what a request makes.
_NOT_COMPARED = ("ClientToken", "DryRun")


def request_digest(body: dict[str, Any]) -> str:
    """A digest of the request's parameters, the token left out."""
    compared = {k: v for k, v in body.items() if k not in _NOT_COMPARED}
    text = json.dumps(compared, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def check_same_request(digests: list[str | None], body: dict[str, Any]) -> None:
    """Refuse a retry whose parameters differ from those of the request that used the token
    first (resources made before econe kept a digest are not compared)."""
    mine = request_digest(body)
    if any(d and d != mine for d in digests):
        raise Ec2Error(
            "IdempotentParameterMismatch",
            "Arguments on this idempotent request are inconsistent with arguments used in "
            "previous request(s).",
        )


# (what, uid, token) → when an attempt of this process gave up waiting for oned (Unavailable):
# oned may still carry out the call it did not answer, so a retry must not create again.
_GAVE_UP: dict[tuple[Hashable, ...], float] = {}


@contextmanager
def creating(rt: Any, what: str, token: str) -> Iterator[None]:
    """The attempt that creates what `token` names; one that ends Unavailable is
    remembered for `in_flight`."""
    try:
        yield
    except Ec2Error as exc:
        if exc.code == "Unavailable":
            _GAVE_UP[(what, rt.principal.uid, token)] = time.time()
        raise


def in_flight(rt: Any, what: str, token: str, newest: float = 0) -> None:
    """Unavailable (503: SDKs retry) while an earlier attempt with this token may still be
    under way in oned: one this process gave up waiting for, or whose newest object was made
    (`newest`, epoch), less than twice :one_timeout: ago. Later, what it left is final."""
    now, window = time.time(), 2 * rt.config.one_timeout + 1
    for key, since in list(_GAVE_UP.items()):  # forget what is over
        if now - since >= window:
            _GAVE_UP.pop(key, None)
    since = max(newest, _GAVE_UP.get((what, rt.principal.uid, token), 0))
    if now - since < window:
        raise still_in_progress(what, token)


def still_in_progress(what: str, token: str) -> Ec2Error:
    return Ec2Error("Unavailable", f"The {what} with client token {token} is still in progress")
