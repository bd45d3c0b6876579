"""Contract fixtures: the full app (real engine and mappings) over a live onesim.

The app runs in-process; its virtual JSON routes are reachable as the demo user through the
explicit `json_principal` (tests only). Skipped until the engine and onesim exist.
"""

from __future__ import annotations

import copy
import importlib
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

from econe.config import Config
from econe.context import Principal

DEMO = Principal(name="demo", uid=2, gid=1, auth_driver="core", via="test")
# Keep each generated RunInstances small: the contract run exercises shapes, not capacity.
MAX_INSTANCES_PER_CALL = 2


@pytest.fixture(scope="session")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server_mod = importlib.import_module("onesim.server")
    state = tmp_path_factory.mktemp("onesim")
    server = server_mod.SimServer(str(state), port=0, seed="demo", speed=0).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def contract_engine(sim: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The engine of the contract app (real mappings over the demo cloud)."""
    engine_mod = importlib.import_module("econe.engine")
    from econe.one.client import OneClient
    from econe.one.session import ServerCipherSessions

    config = Config(
        one_xmlrpc=sim.url,
        ec2_auth=str(Path(sim.state_dir) / ".one" / "ec2_auth"),
        elasticips_vnet_id=1,
        tmpdir=str(tmp_path_factory.mktemp("upload")),
        # an address's success path runs these ("false", the default, fails it)
        associate_script="true",
        disassociate_script="true",
    )
    one = OneClient(config.one_xmlrpc, timeout=10)
    engine = engine_mod.Engine(config, one, ServerCipherSessions(config.ec2_auth))
    yield engine
    engine.close()
    one.close()


@pytest.fixture(scope="session")
def contract_objects(contract_engine: Any) -> dict[str, str]:
    """Demo objects made before the run, for the id parameters (contract_spec's `objects`):
    a shared one of each kind, and one of its own for each action that deletes its object,
    so the others' stay for the whole run."""
    import asyncio
    import itertools
    from unittest import mock

    from econe.context import RequestContext

    count = itertools.count()

    def call(action: str, **body: Any) -> dict:
        ctx = RequestContext(f"setup-{next(count)}", action, "2016-11-15", DEMO)
        return asyncio.run(contract_engine.run(action, body, ctx))

    def instance() -> str:
        out = call("RunInstances", ImageId=AMI, InstanceType="m1.small", MinCount=1, MaxCount=1)
        return out["Instances"][0]["InstanceId"]

    objects = {"ami": AMI, "instance": instance(), "own_instance": instance()}
    for key in ("volume", "own_volume"):
        objects[key] = call("CreateVolume", Size=1, AvailabilityZone="opennebula")["VolumeId"]
    for key in ("snapshot", "own_snapshot"):
        objects[key] = call("CreateSnapshot", VolumeId=objects["volume"])["SnapshotId"]
    for key in ("group", "own_group"):
        made = call("CreateSecurityGroup", GroupName=f"contract-{key}", GroupDescription="contract")
        objects[key] = made["GroupId"]
    import handlers.addresses

    for n, key in enumerate(("address", "own_address"), 1):
        # a known address, and a known allocation id instead of a random one
        with mock.patch.object(handlers.addresses, "_new_id", lambda p, n=n: f"{p}-{n:017x}"):
            made = call("AllocateAddress", Address=f"198.51.100.{n}")
        objects[key], objects[f"{key}_ip"] = made["AllocationId"], made["PublicIp"]
    for key in ("key", "own_key"):
        objects[key] = call("CreateKeyPair", KeyName=f"contract-{key}")["KeyName"]
    objects["device"] = "/dev/sdf"
    objects["own_ami"] = call("CreateImage", InstanceId=objects["instance"], Name="contract")[
        "ImageId"
    ]
    return objects


@pytest.fixture(scope="session")
def contract_app(
    contract_engine: Any, contract_objects: dict, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from econe.app import create_app

    config = contract_engine.config
    engine = contract_engine
    spec_path = tmp_path_factory.mktemp("spec") / "ec2-query.yaml"
    spec_path.write_text(yaml.safe_dump(contract_spec(OBJECTS), sort_keys=False))
    app = create_app(  # validates with the same (capped) spec schemathesis generates from
        config,
        engine=engine,
        authenticator=_NoWireAuth(),
        spec_path=spec_path,
        json_principal=DEMO,
        swagger_ui=False,
    )
    yield app


class _NoWireAuth:
    """The contract run uses the JSON routes only; EC2 wire requests are refused."""

    def authenticate(self, raw: Any) -> Principal:
        from econe.errors import Ec2Error

        raise Ec2Error("AuthFailure", "contract tests use the JSON routes")


AMI = "ami-00000000"  # the demo cloud's image
# What contract_objects makes in the fresh demo cloud (onesim numbers objects in order), known
# before the run so that the spec schemathesis generates from can name them.
OBJECTS = {
    "ami": AMI,
    "instance": "i-00000000",
    "own_instance": "i-00000001",
    "volume": "vol-00000001",
    "own_volume": "vol-00000002",
    "snapshot": "snap-00000003",
    "own_snapshot": "snap-00000004",
    "group": "sg-00000100",
    "own_group": "sg-00000101",
    "address": "eipalloc-00000000000000001",
    "address_ip": "198.51.100.1",
    "own_address": "eipalloc-00000000000000002",
    "own_address_ip": "198.51.100.2",
    "key": "contract-key",
    "own_key": "contract-own_key",
    "own_ami": "ami-00000005",
    "device": "/dev/sdf",
}

# The request members naming objects, pinned (`enum`) to contract_objects' keys so that
# generated cases reach the success paths, not only …Malformed. Per action, what differs:
# an action that deletes gets an object of its own; one that creates by name keeps
# generated names (a pinned one would be a duplicate after the first case).
_PINNED = {
    "ImageId": "ami",
    "InstanceId": "instance",
    "VolumeId": "volume",
    "SnapshotId": "snapshot",
    "GroupId": "group",
    "SecurityGroupId": "group",
    "AllocationId": "address",
    "PublicIp": "address_ip",
    "KeyName": "key",
    "ResourceId": ("ami", "instance", "volume", "snapshot", "group", "address"),
}
_PER_ACTION = {
    "AttachVolume": {"Device": "device"},  # a name the instance's disks leave free
    "DetachVolume": {"Device": "device"},
    "TerminateInstances": {"InstanceId": "own_instance"},
    "DeleteVolume": {"VolumeId": "own_volume"},
    "DeleteSnapshot": {"SnapshotId": "own_snapshot"},
    "DeleteSecurityGroup": {"GroupId": "own_group"},
    "DeregisterImage": {"ImageId": "own_ami"},
    "ReleaseAddress": {"AllocationId": "own_address", "PublicIp": "own_address_ip"},
    "DeleteKeyPair": {"KeyName": "own_key"},
    "CreateKeyPair": {"KeyName": None},
    "ImportKeyPair": {"KeyName": None},
}


def contract_spec(objects: dict[str, str] | None = None) -> dict[str, Any]:
    """The shipped spec, with RunInstances counts capped for the run; with `objects`
    (contract_objects), the request members naming objects pinned to them."""
    from econe.spec import load_spec

    raw = copy.deepcopy(load_spec().raw)
    schemas = raw["components"]["schemas"]
    props = schemas["RunInstancesRequest"]["properties"]
    for name in ("MinCount", "MaxCount"):
        props[name]["maximum"] = MAX_INSTANCES_PER_CALL
    # the demo cloud's image and instance type, so that positive cases can succeed
    props["ImageId"]["enum"] = [AMI]
    props["InstanceType"]["enum"] = ["m1.small"]
    if objects is None:
        return raw
    for name, schema in schemas.items():
        action = name.removesuffix("Request")
        if not name.endswith("Request") or "properties" not in schema:
            continue
        for member, prop in schema["properties"].items():
            key = {**_PINNED, **_PER_ACTION.get(action, {})}.get(member)
            if key is None:
                continue
            values = [objects[k] for k in ((key,) if isinstance(key, str) else key)]
            (prop["items"] if prop.get("type") == "array" else prop)["enum"] = values
    return raw
