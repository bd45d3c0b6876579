"""The generated spec: committed = regenerated, valid OpenAPI 3.0, the shapes the front needs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from openapi_spec_validator import validate

from econe.spec import default_spec_path, load_spec

ROOT = Path(__file__).resolve().parents[2]
SUPPORTED = """DescribeImages RegisterImage DeregisterImage CreateImage RunInstances DescribeInstances
DescribeInstanceStatus DescribeInstanceAttribute DescribeInstanceTypes
ModifyInstanceAttribute
TerminateInstances StartInstances StopInstances RebootInstances DescribeRegions
DescribeAvailabilityZones DescribeAccountAttributes AllocateAddress DescribeAddresses DescribeAddressesAttribute
AssociateAddress DisassociateAddress ReleaseAddress CreateKeyPair DescribeKeyPairs DeleteKeyPair
ImportKeyPair CreateTags DeleteTags DescribeTags CreateVolume DescribeVolumes DeleteVolume
AttachVolume DetachVolume CreateSnapshot DescribeSnapshots DeleteSnapshot UploadImage
CreateSecurityGroup DescribeSecurityGroups DeleteSecurityGroup AuthorizeSecurityGroupIngress
AuthorizeSecurityGroupEgress RevokeSecurityGroupIngress RevokeSecurityGroupEgress""".split()


def _gen_spec():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import gen_spec
    finally:
        sys.path.pop(0)
    return gen_spec


def test_committed_spec_equals_a_fresh_generation():
    gen_spec = _gen_spec()
    committed = load_spec().raw.get("x-econe-generated-from", "")
    wanted = f"botocore {gen_spec.botocore_version()} "
    if not committed.startswith(wanted):
        pytest.fail(f"spec generated from {committed!r}, installed {wanted!r}: regenerate it")
    fresh = gen_spec.dump(gen_spec.generate())
    assert default_spec_path().read_text() == fresh, (
        "spec/ec2-query.yaml is stale: run tools/gen_spec.py"
    )


def test_spec_is_valid_openapi_3_0():
    raw = yaml.load(default_spec_path().read_text(), Loader=yaml.CSafeLoader)
    assert raw["openapi"].startswith("3.0.")
    validate(raw)


def test_actions_and_operations():
    spec = load_spec()
    assert sorted(spec.actions) == sorted(SUPPORTED)
    for name, item in spec.raw["paths"].items():
        op = item["post"]
        assert name == "/" + op["operationId"]
        assert op["requestBody"]["required"] is True
        for status in ("400", "401", "403", "503"):
            assert status in op["responses"]
        assert list(op["responses"]["200"]["content"]) == ["text/xml"]


def test_request_schemas_use_wire_names_and_are_closed():
    spec = load_spec()
    di = spec.action("DescribeInstances").request_schema
    assert di["additionalProperties"] is False
    assert {"InstanceId", "Filter", "DryRun", "MaxResults", "NextToken"} <= set(di["properties"])
    assert di["properties"]["Filter"]["items"]["properties"]["Value"]["type"] == "array"
    assert di["properties"]["Filter"]["items"]["required"] == ["Name"]
    run = spec.action("RunInstances").request_schema
    assert {"ClientToken", "UserData", "MinCount", "MaxCount", "ImageId"} <= set(run["properties"])
    assert run["properties"]["MaxCount"]["minimum"] == 1  # above 100: 100 (handlers/instances)
    assert run["properties"]["UserData"]["format"] == "byte"
    assert "ImageId" in run["required"]
    attrs = spec.action("DescribeAccountAttributes").request_schema
    assert "AttributeName" in attrs["properties"]  # locationName attributeName, capitalised
    assert "PublicKeyMaterial" in spec.action("ImportKeyPair").request_schema["properties"]
    assert "Name" not in spec.action("RegisterImage").request_schema.get("required", [])


def _walk(schema, seen=None):
    seen = set() if seen is None else seen
    if id(schema) in seen:
        return
    seen.add(id(schema))
    yield schema
    for sub in schema.get("properties", {}).values():
        yield from _walk(sub, seen)
    if "items" in schema:
        yield from _walk(schema["items"], seen)
    for sub in schema.get("allOf", []):
        yield from _walk(sub, seen)


def test_every_request_count_is_bounded():
    for act in load_spec().actions.values():
        for node in _walk(act.request_schema):
            if node.get("type") == "integer":
                assert "maximum" in node and "minimum" in node, act.name
            if node.get("type") == "array":
                assert "maxItems" in node, act.name


def test_output_schemas_carry_member_and_xml_names():
    out = load_spec().action("DescribeInstances").output_schema
    res = out["properties"]["Reservations"]
    assert res["x-member"] == "Reservations"
    assert res["xml"] == {"name": "reservationSet", "wrapped": True}
    inst = res["items"]["properties"]["Instances"]["items"]
    state = inst["properties"]["State"]
    assert state["xml"]["name"] == "instanceState" and state["x-member"] == "State"
    assert inst["properties"]["LaunchTime"]["format"] == "date-time"


def test_add_flag_generates_an_extra_action(tmp_path):
    out = tmp_path / "ec2-query.yaml"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "gen_spec.py"),
            "--add",
            "DescribeSubnets",
            "--out",
            str(out),
        ],
        check=True,
    )
    spec = load_spec(out)
    assert "DescribeSubnets" in spec.actions
    assert set(spec.actions) - {"DescribeSubnets"} == set(SUPPORTED)
    check = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "gen_spec.py"),
            "--add",
            "DescribeSubnets",
            "--out",
            str(out),
            "--check",
        ],
    )
    assert check.returncode == 0


def test_validators_check_formats():
    run = load_spec().action("RunInstances")
    good = {"ImageId": "ami-1", "MinCount": 1, "MaxCount": 1, "UserData": "aGVsbG8="}
    assert not list(run.validator.iter_errors(good))
    bad = dict(good, UserData="!!!")
    assert [e.validator for e in run.validator.iter_errors(bad)] == ["format"]


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"requests": {"RunInstance": {"unsupported": ["UserData"]}}}, "'RunInstance' is not"),
        ({"shapes": {"Filtre": {"required_add": ["Name"]}}}, "'Filtre' is not a shape"),
        ({"request": {}}, "unknown key 'request'"),
        ({"defaults": {"arrays": {"maxItems": 1000}}}, "defaults: unknown key 'arrays'"),
        ({"shapes": {"Filter": {"require_add": ["Name"]}}}, "shapes: Filter: unknown key"),
        ({"requests": {"RunInstances": {"unsuported": ["UserData"]}}}, "unknown key 'unsuported'"),
    ],
)
def test_a_misspelt_overlay_name_stops_the_generator(patch, message):
    """It would otherwise regenerate without the restriction meant, exit 0."""
    gen_spec = _gen_spec()
    overlay = {**yaml.safe_load(gen_spec.OVERLAY.read_text()), **patch}
    model = gen_spec.load_model()
    with pytest.raises(SystemExit) as err:
        gen_spec.check_overlay(overlay, model, overlay["actions"])
    assert message in str(err.value)
    with pytest.raises(SystemExit, match="'DescribeNothing' is not an action"):
        gen_spec.check_overlay(overlay, model, [*overlay["actions"], "DescribeNothing"])
