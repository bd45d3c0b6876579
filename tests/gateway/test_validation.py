"""jsonschema errors → EC2 codes naming wire parameters."""

from __future__ import annotations

import pytest

from econe.errors import Ec2Error
from econe.spec import load_spec
from econe.validation import compiled_validator, validate_body, wire_path


def check(action: str, body) -> Ec2Error:
    act = load_spec().action(action)
    with pytest.raises(Ec2Error) as info:
        validate_body(act.validator, body)
    return info.value


def test_wire_path():
    assert wire_path(["Filter", 0, "Value", 1]) == "Filter.1.Value.2"
    assert wire_path([]) == ""


def test_wire_path_names_list_items_by_the_index_they_were_sent_with():
    """`Filter.1` and `Filter.3` sent: the second item is Filter.3 (see query.unflatten)."""
    sent = {("Filter",): [1, 3], ("Filter", 1, "Value"): [2]}
    assert wire_path(["Filter", 1, "Name"], sent) == "Filter.3.Name"
    assert wire_path(["Filter", 1, "Value", 0], sent) == "Filter.3.Value.2"
    assert wire_path(["Filter", 0, "Value", 0], sent) == "Filter.1.Value.1"
    assert wire_path(["InstanceId", 0], {("InstanceId",): [0, 1]}) == "InstanceId.0"


def test_codes_and_names():
    e = check("DescribeInstances", {"Filter": [{"Name": "a"}, {"Value": ["x"]}]})
    assert (e.code, e.message) == (
        "MissingParameter",
        "The request must contain the parameter Filter.2.Name",
    )
    e = check("DescribeInstances", {"Filter": [{"Name": "a", "Bogus": "1"}]})
    assert e.code == "UnknownParameter" and "Filter.1.Bogus" in e.message
    e = check("TerminateInstances", {"InstanceId": ["i-1", 5]})
    assert e.code == "InvalidParameterValue" and "parameter InstanceId.2 " in e.message
    e = check("RunInstances", {"ImageId": "a", "MinCount": 0, "MaxCount": 1})
    assert e.code == "InvalidParameterValue" and "MinCount" in e.message
    e = check("DescribeInstances", [])
    assert e.code == "InvalidRequest"


def test_unknown_reported_before_missing_and_invalid():
    e = check("RunInstances", {"Zzz": 1, "MinCount": "x"})
    assert e.code == "UnknownParameter"
    e = check("RunInstances", {"MinCount": "x", "MaxCount": 1})
    assert e.code == "MissingParameter" and "ImageId" in e.message


def test_long_values_are_cut_in_messages():
    e = check(
        "RunInstances", {"ImageId": "a", "MinCount": 1, "MaxCount": 1, "UserData": "!" * 10000}
    )
    assert len(e.message) < 400


def test_compiled_validators_are_cached():
    schema = load_spec().action("DescribeInstances").request_schema
    assert compiled_validator(schema) is compiled_validator(schema)
