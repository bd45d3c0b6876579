"""CreateImage on a live onesim: the instance's root disk saved as a new AMI, the states it can
be saved from, name rules, user isolation, and nothing left behind by a failure."""

from __future__ import annotations

import pytest
from lxml import etree

from econe.errors import Ec2Error
from tests.engine.conftest import Sim, run
from tests.engine.test_sim import launch, vm_number


def image_names(sim: Sim) -> list[str]:
    """The images in OpenNebula, but those deleted and on their way out (DELETE)."""
    pool = etree.fromstring(sim.as_admin("one.imagepool.info", -2, -1, -1).encode())
    return [i.findtext("NAME") for i in pool.iterfind("IMAGE") if i.findtext("STATE") != "7"]


def code_of(engine, body: dict, user: str = "demo") -> str:
    with pytest.raises(Ec2Error) as err:
        run(engine, "CreateImage", body, user=user)
    return err.value.code


@pytest.fixture
def instance(engine) -> str:
    (inst,) = launch(engine)["Instances"]
    yield inst["InstanceId"]
    run(engine, "TerminateInstances", {"InstanceId": [inst["InstanceId"]]}, user="demo")


def test_an_instance_becomes_an_ami_its_owner_can_launch(sim: Sim, engine, instance) -> None:
    body = {
        "InstanceId": instance,
        "Name": "web [v1] (built)",
        "Description": "our web tier",
        "NoReboot": False,
        "TagSpecification": [
            {"ResourceType": "image", "Tag": [{"Key": "tier", "Value": "web"}]},
            {"ResourceType": "snapshot", "Tag": [{"Key": "of", "Value": "snapshots"}]},
        ],
    }
    ami = run(engine, "CreateImage", body, user="demo")["ImageId"]
    image = etree.fromstring(sim.as_admin("one.image.info", int(ami[4:])).encode())
    assert image.findtext("NAME") == "web [v1] (built)" and image.findtext("UNAME") == "demo"
    assert image.findtext("TEMPLATE/EC2_AMI") == "YES"
    assert image.findtext("TEMPLATE/SAVED_VM_ID") == str(vm_number(instance))
    (described,) = run(engine, "DescribeImages", {"ImageId": [ami]}, user="demo")["Images"]
    assert described["Name"] == "web [v1] (built)" and described["State"] == "available"
    assert described["Description"] == "our web tier"
    assert described["Tags"] == [{"Key": "tier", "Value": "web"}]
    vm = sim.vm(vm_number(instance))
    assert (vm.findtext("STATE"), vm.findtext("LCM_STATE")) == ("3", "3")  # still running
    (child,) = launch(engine, ImageId=ami)["Instances"]
    assert child["ImageId"] == ami
    run(engine, "TerminateInstances", {"InstanceId": [child["InstanceId"]]}, user="demo")
    assert code_of(engine, {"InstanceId": instance, "Name": "web [v1] (built)"}) == (
        "InvalidAMIName.Duplicate"
    )


def test_a_stopped_instance_can_be_saved_a_pending_one_cannot(sim: Sim, engine) -> None:
    (inst,) = launch(engine)["Instances"]
    iid = inst["InstanceId"]
    run(engine, "StopInstances", {"InstanceId": [iid]}, user="demo")
    assert run(engine, "CreateImage", {"InstanceId": iid, "Name": "from-stopped"}, user="demo")
    run(engine, "TerminateInstances", {"InstanceId": [iid]}, user="demo")
    # still shown by DescribeInstances (terminated), as Start/StopInstances answer it
    assert code_of(engine, {"InstanceId": iid, "Name": "from-terminated"}) == (
        "IncorrectInstanceState"
    )
    sim.server.sim.speed = 0.5  # seconds per life-cycle step: the next one stays pending
    try:
        (slow,) = launch(engine)["Instances"]
        assert code_of(engine, {"InstanceId": slow["InstanceId"], "Name": "too-early"}) == (
            "IncorrectInstanceState"
        )
    finally:
        sim.server.sim.speed = 0
    assert "too-early" not in image_names(sim)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"Name": "x" * 2}, "InvalidAMIName.Malformed"),
        ({"Name": "semi;colon"}, "InvalidAMIName.Malformed"),
        ({"Name": "a/b"}, "InvalidAMIName.Malformed"),  # EC2 allows it, OpenNebula does not
        ({"Name": "fine", "InstanceId": "i-99999999"}, "InvalidInstanceID.NotFound"),
        ({"Name": "fine", "InstanceId": "ami-00000000"}, "InvalidInstanceID.Malformed"),
        (
            {"Name": "fine", "TagSpecification": [{"ResourceType": "instance", "Tag": []}]},
            "InvalidParameterValue",
        ),
    ],
)
def test_bad_requests_make_nothing(sim: Sim, engine, instance, body, code) -> None:
    before = image_names(sim)
    assert code_of(engine, {"InstanceId": instance, **body}) == code
    assert image_names(sim) == before


def test_other_users_instances_do_not_exist(sim: Sim, engine, instance) -> None:
    sim.as_admin("one.user.allocate", "imagethief", "pw", "core", [1])
    assert code_of(engine, {"InstanceId": instance, "Name": "stolen"}, user="imagethief") == (
        "InvalidInstanceID.NotFound"
    )
    assert "stolen" not in image_names(sim)


def test_a_deregistered_amis_name_can_be_used_again(sim: Sim, engine, instance) -> None:
    body = {"InstanceId": instance, "Name": "nightly"}
    first = run(engine, "CreateImage", body, user="demo")["ImageId"]
    run(engine, "DeregisterImage", {"ImageId": first}, user="demo")
    second = run(engine, "CreateImage", body, user="demo")["ImageId"]
    assert second != first
    (image,) = run(engine, "DescribeImages", {"ImageId": [second]}, user="demo")["Images"]
    assert image["Name"] == "nightly"
    assert sim.as_admin("one.image.info", int(second[4:])).count("<NAME>nightly (2)</NAME>") == 1
    assert code_of(engine, body) == "InvalidAMIName.Duplicate"
    # registering the old one again would make two AMIs of one name: refused, as EC2 does
    with pytest.raises(Ec2Error) as err:
        run(engine, "RegisterImage", {"ImageLocation": first}, user="demo")
    assert err.value.code == "InvalidAMIName.Duplicate"
    # by name, RegisterImage finds the AMI of that name, not the deregistered image
    again = run(engine, "RegisterImage", {"Name": "nightly"}, user="demo")
    assert again["ImageId"] == second
    # a plain OpenNebula image of the user's with that name is no AMI either
    sim.client.call(
        "demo:demo", "one.image.allocate", 'NAME="plain"\nTYPE="DATABLOCK"\nSIZE="1"', 1
    )
    ami = run(engine, "CreateImage", {**body, "Name": "plain"}, user="demo")["ImageId"]
    assert run(engine, "DescribeImages", {"ImageId": [ami]}, user="demo")["Images"][0]["Name"] == (
        "plain"
    )


def test_only_a_name_an_ami_shows_is_taken(sim: Sim, engine, instance) -> None:
    """An AMI registered under another name than its OpenNebula image's leaves that NAME free
    for CreateImage (the new image is then `NAME (2)`); the name the AMI shows is taken."""
    number = int(
        sim.client.call(
            "demo:demo", "one.image.allocate", 'NAME="up1"\nTYPE="DATABLOCK"\nSIZE="1"', 1
        )
    )
    body = {"ImageLocation": f"ami-{number}", "Name": "shown-up1"}
    run(engine, "RegisterImage", body, user="demo")
    ami = run(engine, "CreateImage", {"InstanceId": instance, "Name": "up1"}, user="demo")
    (image,) = run(engine, "DescribeImages", {"ImageId": [ami["ImageId"]]}, user="demo")["Images"]
    assert image["Name"] == "up1"
    assert "<NAME>up1 (2)</NAME>" in sim.as_admin("one.image.info", int(ami["ImageId"][4:]))
    assert code_of(engine, {"InstanceId": instance, "Name": "shown-up1"}) == (
        "InvalidAMIName.Duplicate"
    )
    assert code_of(engine, {"InstanceId": instance, "Name": "up1"}) == "InvalidAMIName.Duplicate"


def test_failures_leave_no_image_behind(sim: Sim, engine, instance) -> None:
    vm_id = vm_number(instance)
    sim.as_admin(
        "onesim.fault.set", "one.vm.disksaveas", 0x800, "Not enough space in datastore", 0, 1
    )
    assert code_of(engine, {"InstanceId": instance, "Name": "no-room"}) == "ResourceLimitExceeded"
    (other,) = launch(engine)["Instances"]
    sim.server.sim.speed = 60  # the copy stays in progress: the image is LOCKED
    try:
        sim.as_admin("onesim.fault.set", "one.image.update", 0x2000, "disk full", 0, 1)
        assert code_of(engine, {"InstanceId": instance, "Name": "half-made"}) == "InternalError"
        assert "half-made" not in image_names(sim)  # deleted with force, as the server admin
        vm = sim.vm(vm_id)  # and the VM is not left saving
        assert (vm.findtext("STATE"), vm.findtext("LCM_STATE")) == ("3", "3")
        # the same request again works
        assert run(
            engine, "CreateImage", {"InstanceId": instance, "Name": "half-made"}, user="demo"
        )
        # an AMI still being copied holds its name
        body = {"InstanceId": other["InstanceId"], "Name": "half-made"}
        assert code_of(engine, body) == "InvalidAMIName.Duplicate"
    finally:
        sim.server.sim.speed = 0
        run(engine, "TerminateInstances", {"InstanceId": [other["InstanceId"]]}, user="demo")


def test_two_requests_for_a_reused_name_cannot_both_win(sim: Sim, engine, instance) -> None:
    """The second name (`race (2)`) is what oned's per-user uniqueness decides on: while one
    request is saving into it, another request for `race` is a duplicate."""
    first = run(engine, "CreateImage", {"InstanceId": instance, "Name": "race"}, user="demo")
    run(engine, "DeregisterImage", {"ImageId": first["ImageId"]}, user="demo")
    (other,) = launch(engine)["Instances"]
    sim.server.sim.speed = 60  # the other request's copy stays in progress
    try:
        vm = vm_number(other["InstanceId"])
        sim.client.call("demo:demo", "one.vm.disksaveas", vm, 0, "race (2)", "", -1)
        assert code_of(engine, {"InstanceId": instance, "Name": "race"}) == (
            "InvalidAMIName.Duplicate"
        )
    finally:
        sim.server.sim.speed = 0
        run(engine, "TerminateInstances", {"InstanceId": [other["InstanceId"]]}, user="demo")


def test_register_takes_ec2_architectures_and_never_a_hidden_image(sim: Sim, engine) -> None:
    """Architecture is one of EC2's (stored as OpenNebula names it, shown as EC2 does); a
    DISABLED image, which DescribeImages hides, is not found here either (it was registered
    and then could not be seen or deregistered)."""
    made = run(engine, "CreateVolume", {"Size": 1}, user="demo")  # any image of demo's
    number = int(made["VolumeId"].split("-")[1])
    sim.client.call("demo:demo", "one.image.update", number, 'EBS_VOLUME="NO"', 1)
    ami = f"ami-{number:08d}"
    body = {"ImageLocation": ami, "Name": "arch-test", "Architecture": "arm64"}
    assert run(engine, "RegisterImage", body, user="demo") == {"ImageId": ami}
    held = etree.fromstring(sim.client.call("demo:demo", "one.image.info", number, False))
    assert held.findtext("TEMPLATE/ARCH") == "aarch64"  # OpenNebula's name for it
    (shown,) = run(engine, "DescribeImages", {"ImageId": [ami]}, user="demo")["Images"]
    assert shown["Architecture"] == "arm64"
    for bad in ("foo; bar", "x86_64_mac"):
        with pytest.raises(Ec2Error) as err:
            run(engine, "RegisterImage", {**body, "Architecture": bad}, user="demo")
        assert err.value.code == "InvalidParameterValue" and "Architecture" in err.value.message
    run(engine, "DeregisterImage", {"ImageId": ami}, user="demo")
    sim.as_admin("one.image.enable", number, False)
    with pytest.raises(Ec2Error) as err:
        run(engine, "RegisterImage", {"ImageLocation": ami, "Name": "hidden"}, user="demo")
    assert err.value.code == "InvalidAMIID.NotFound"
    sim.as_admin("one.image.enable", number, True)
    sim.client.call("demo:demo", "one.image.delete", number, False)
