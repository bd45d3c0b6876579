"""OpenNebula failures -> EC2 errors (docs/architecture.md §6).

The client sees oned's own message (minus the `[one.x.y] ` method prefix), never a traceback
or any other internals.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from econe.errors import Ec2Error
from econe.one.client import (
    ACTION,
    ALLOCATE,
    AUTHENTICATION,
    AUTHORIZATION,
    INTERNAL,
    LOCKED,
    NO_EXISTS,
    OneError,
    OneUnavailable,
)

_METHOD_PREFIX = re.compile(r"^\[[\w.]+\]\s*")
_QUOTA = re.compile(r"\bquota\b", re.IGNORECASE)
# oned's words when a VM's NIC finds no free address in its network (INTERNAL or ALLOCATE)
_NO_LEASE = re.compile(r"Cannot get IP/MAC lease", re.IGNORECASE)

# How AWS words "does not exist" per NotFound code; others get the generic "The ID '…'".
_NOUN = {
    "InvalidInstanceID.NotFound": "instance ID",
    "InvalidAMIID.NotFound": "image id",
    "InvalidVolume.NotFound": "volume",
    "InvalidSnapshot.NotFound": "snapshot",
    "InvalidKeyPair.NotFound": "key pair",
    "InvalidAddress.NotFound": "address",
    "InvalidAllocationID.NotFound": "allocation ID",
    "InvalidGroup.NotFound": "security group",
}


def is_quota(err: OneError) -> bool:
    """oned reports a quota refusal as AUTHORIZATION, ACTION, ALLOCATE or INTERNAL (by path),
    always with the word in the message."""
    return err.code in (AUTHORIZATION, ACTION, ALLOCATE, INTERNAL) and bool(
        _QUOTA.search(err.message or "")
    )


def one_message(err: OneError) -> str:
    """oned's message without the leading `[method.name]`."""
    return _METHOD_PREFIX.sub("", err.message).strip() or "OpenNebula refused the request"


def out_of_space(message: str) -> bool:
    """Whether oned's message refuses an image or disk copy a datastore has no room for (an
    ACTION error, as a wrong state is): a capacity error for EC2, whichever action meets it."""
    return "enough space" in message


def ec2_error_from_one(
    err: OneError | OneUnavailable,
    not_found_code: str | None = None,
    resource: str | None = None,
    *,
    action_code: str = "IncorrectState",
    quota_code: str = "InstanceLimitExceeded",
    overrides: Mapping[int, str] | None = None,
) -> Ec2Error:
    """Map one failed oned call to the EC2 error the client sees.

    `not_found_code`/`resource`: what NO_EXISTS means for this call (e.g.
    `InvalidInstanceID.NotFound`, `i-00000005`). `action_code`: the code for a wrong-state
    ACTION failure (`IncorrectInstanceState` for instance actions). `quota_code`: quota
    failures, which oned reports as AUTHORIZATION or ACTION with "quota" in the message
    (`VolumeLimitExceeded` for volumes). `overrides`: oned code -> EC2 code, checked first.
    """
    if isinstance(err, OneUnavailable):
        return Ec2Error(
            "Unavailable", "The service is unavailable: OpenNebula did not answer. Try again."
        )
    message = one_message(err)
    if overrides and err.code in overrides:
        return Ec2Error(overrides[err.code], message)
    if err.code == NO_EXISTS:
        if not_found_code is None:
            # A NotFound nobody expected (a configured datastore, a vanished template...) is a
            # server-side problem, not the client's.
            return Ec2Error("InternalError", message)
        noun = _NOUN.get(not_found_code, "ID")
        what = resource if resource is not None else str(err.resp_id)
        return Ec2Error(not_found_code, f"The {noun} '{what}' does not exist")
    if _NO_LEASE.search(message):  # the cloud is out of addresses: AWS's capacity error
        return Ec2Error("InsufficientInstanceCapacity", f"Insufficient capacity. {message}")
    if is_quota(err):
        return Ec2Error(quota_code, message)
    if err.code == AUTHORIZATION:
        return Ec2Error(
            "UnauthorizedOperation", f"You are not authorized to perform this operation. {message}"
        )
    if err.code == AUTHENTICATION:
        return Ec2Error("AuthFailure", "OpenNebula could not authenticate the request's user.")
    if err.code in (ACTION, LOCKED):
        return Ec2Error(action_code, message)
    if err.code == ALLOCATE:
        return Ec2Error("InvalidParameterValue", message)
    return Ec2Error("InternalError", message)
