"""oned failures -> EC2 errors."""

from __future__ import annotations

import pytest

from econe.one.client import (
    ACTION,
    ALLOCATE,
    AUTHENTICATION,
    AUTHORIZATION,
    INTERNAL,
    LOCKED,
    NO_EXISTS,
    RPC_API,
    OneError,
    OneUnavailable,
)
from econe.one.errors import ec2_error_from_one


def _err(code, message, resp_id=-1, method="one.vm.info"):
    return OneError(code, message, method, resp_id)


def test_no_exists_names_the_id():
    err = ec2_error_from_one(
        _err(NO_EXISTS, "[one.vm.info] Error getting virtual machine [5].", 5),
        "InvalidInstanceID.NotFound",
        "i-00000005",
    )
    assert (err.code, err.status) == ("InvalidInstanceID.NotFound", 400)
    assert err.message == "The instance ID 'i-00000005' does not exist"


def test_no_exists_without_resource_uses_resp_id():
    err = ec2_error_from_one(_err(NO_EXISTS, "x", 7), "InvalidFoo.NotFound")
    assert err.message == "The ID '7' does not exist"


def test_unexpected_no_exists_is_internal():
    err = ec2_error_from_one(_err(NO_EXISTS, "[one.datastore.info] Error getting datastore [1]."))
    assert (err.code, err.status) == ("InternalError", 500)
    assert err.message == "Error getting datastore [1]."


def test_authorization():
    err = ec2_error_from_one(
        _err(
            AUTHORIZATION,
            "[one.vm.action] User [2] not authorized to perform action on virtual machine.",
        )
    )
    assert (err.code, err.status) == ("UnauthorizedOperation", 403)
    assert "[one.vm.action]" not in err.message


def test_authentication():
    err = ec2_error_from_one(_err(AUTHENTICATION, "User couldn't be authenticated"))
    assert (err.code, err.status) == ("AuthFailure", 401)


@pytest.mark.parametrize("code", [ACTION, LOCKED])
def test_action_and_locked(code):
    err = ec2_error_from_one(_err(code, "Error performing action: wrong state PENDING."))
    assert (err.code, err.status) == ("IncorrectState", 400)
    err = ec2_error_from_one(_err(code, "wrong state"), action_code="IncorrectInstanceState")
    assert err.code == "IncorrectInstanceState"


@pytest.mark.parametrize("code", [AUTHORIZATION, ACTION, ALLOCATE])
def test_quota(code):
    msg = "[one.vm.allocate] User [2] : user [2] limit of 1 reached for VMS quota in VM."
    assert ec2_error_from_one(_err(code, msg)).code == "InstanceLimitExceeded"
    assert ec2_error_from_one(_err(code, msg), quota_code="VolumeLimitExceeded").code == (
        "VolumeLimitExceeded"
    )


def test_allocate_without_quota():
    err = ec2_error_from_one(_err(ALLOCATE, "Error allocating a new image. Bad template"))
    assert (err.code, err.status) == ("InvalidParameterValue", 400)


@pytest.mark.parametrize("code", [RPC_API, INTERNAL, -501, 0x10000])
def test_internal(code):
    err = ec2_error_from_one(_err(code, "[one.x] something broke"))
    assert (err.code, err.status) == ("InternalError", 500)
    assert err.message == "something broke"


def test_overrides_first():
    err = ec2_error_from_one(
        _err(ALLOCATE, "NAME is already taken"), overrides={ALLOCATE: "InvalidKeyPair.Duplicate"}
    )
    assert err.code == "InvalidKeyPair.Duplicate"


def test_unavailable():
    err = ec2_error_from_one(OneUnavailable("cannot reach oned at http://x: refused"))
    assert (err.code, err.status) == ("Unavailable", 503)
    assert "http://x" not in err.message


def test_network_out_of_addresses_is_a_capacity_error():
    from econe.one.client import INTERNAL, OneError
    from econe.one.errors import ec2_error_from_one

    err = OneError(
        INTERNAL,
        "[one.vm.allocate] Cannot get IP/MAC lease from virtual network 0.",
        "one.vm.allocate",
    )
    mapped = ec2_error_from_one(err, "InvalidAMIID.NotFound")
    assert (mapped.code, mapped.status) == ("InsufficientInstanceCapacity", 500)
    assert "virtual network 0" in mapped.message
