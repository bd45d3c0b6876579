"""RunInstances BlockDeviceMapping on a live onesim: the root device's VolumeSize sizes the
AMI's disk (both kinds of instance type); anything econe cannot do is refused, not ignored."""

from __future__ import annotations

import pytest

from econe.errors import Ec2Error
from econe.one.client import OneError
from tests.engine.conftest import AMI, Sim, run
from tests.engine.test_sim import launch, vm_number


def root_disk_size(sim: Sim, instance_id: str) -> str:
    return sim.vm(vm_number(instance_id)).findtext("TEMPLATE/DISK/SIZE")


def mapping(device: str = "/dev/sda", **ebs) -> list[dict]:
    return [{"DeviceName": device, "Ebs": ebs}]


@pytest.mark.parametrize("device", ["/dev/sda", "/dev/sda1"])  # EC2 habits write sda1
def test_the_root_volume_size_sizes_the_amis_disk(sim: Sim, engine, device: str) -> None:
    (image,) = run(engine, "DescribeImages", {"ImageId": [AMI]}, user="demo")["Images"]
    assert image["RootDeviceName"] == "/dev/sda"
    body = {"BlockDeviceMapping": mapping(device, VolumeSize=20, VolumeType="gp3")}
    (inst,) = launch(engine, **body)["Instances"]
    assert root_disk_size(sim, inst["InstanceId"]) == str(20 * 1024)
    run(engine, "TerminateInstances", {"InstanceId": [inst["InstanceId"]]}, user="demo")


def test_vm_template_types_too(sim: Sim) -> None:
    eng = sim.engine(instance_types={})  # only OpenNebula templates with EC2_INSTANCE_TYPE
    try:
        (inst,) = launch(eng, BlockDeviceMapping=mapping(VolumeSize=3))["Instances"]
        vm = sim.vm(vm_number(inst["InstanceId"]))
        assert vm.findtext("TEMPLATE/DISK/IMAGE_ID") == "0"
        assert vm.findtext("TEMPLATE/DISK/SIZE") == "3072"
    finally:
        eng.close()


def test_no_device_elsewhere_is_fine(sim: Sim, engine) -> None:
    body = {"BlockDeviceMapping": [{"DeviceName": "/dev/sdb", "NoDevice": ""}]}
    (inst,) = launch(engine, **body)["Instances"]
    run(engine, "TerminateInstances", {"InstanceId": [inst["InstanceId"]]}, user="demo")


@pytest.mark.parametrize(
    ("mappings", "words"),
    [
        (mapping("/dev/sdf", VolumeSize=10), "Only the root device"),
        ([{"DeviceName": "/dev/sdb", "VirtualName": "ephemeral0"}], "Only the root device"),
        (mapping(DeleteOnTermination=False), "deleted with the instance"),
        (mapping(SnapshotId="snap-00000001"), "not a snapshot"),
        ([{"DeviceName": "/dev/sda", "NoDevice": ""}], "cannot be removed"),
        (mapping(Encrypted=True), "Encrypted"),
        (mapping(VolumeSize=1) + mapping(VolumeSize=2), "device 'sda' is used in more than one"),
        (mapping(VolumeSize=2) + mapping("/dev/sda1", VolumeSize=2), "'sda1' is used in more"),
        ([{"DeviceName": "/dev/sdb", "NoDevice": ""}] * 2, "'sdb' is used in more than one"),
    ],
)
def test_what_econe_cannot_do_is_refused(sim: Sim, engine, mappings, words) -> None:
    before = sim.as_admin("one.vmpool.info", -2, -1, -1, -1).count("<VM>")
    with pytest.raises(Ec2Error) as err:
        launch(engine, BlockDeviceMapping=mappings)
    assert err.value.code == "InvalidBlockDeviceMapping" and words in err.value.message
    assert sim.as_admin("one.vmpool.info", -2, -1, -1, -1).count("<VM>") == before  # none made


def test_a_root_volume_smaller_than_the_image_is_refused(sim: Sim, engine) -> None:
    big = sim.client.call(
        "demo:demo", "one.image.allocate", 'NAME="big-os"\nTYPE="OS"\nSIZE="3000"', 1
    )
    ami = f"ami-{int(big):08d}"
    run(engine, "RegisterImage", {"ImageLocation": ami}, user="demo")
    with pytest.raises(Ec2Error) as err:
        launch(engine, ImageId=ami, BlockDeviceMapping=mapping(VolumeSize=2))
    assert err.value.code == "InvalidBlockDeviceMapping"
    assert "smaller than the image" in err.value.message and "3000 MB" in err.value.message


def test_a_persistent_ami_keeps_its_size(sim: Sim, engine) -> None:
    """oned resizes no persistent (nor CD-ROM) image: refused by econe first, and by onesim
    as oned does ("SIZE attribute is not supported for persistent image")."""
    pers = sim.client.call(
        "demo:demo",
        "one.image.allocate",
        'NAME="pers-os"\nTYPE="OS"\nSIZE="40"\nPERSISTENT="YES"',
        1,
    )
    ami = f"ami-{int(pers):08d}"
    run(engine, "RegisterImage", {"ImageLocation": ami}, user="demo")
    with pytest.raises(Ec2Error) as err:
        launch(engine, ImageId=ami, BlockDeviceMapping=mapping(VolumeSize=1))
    assert err.value.code == "InvalidBlockDeviceMapping" and "persistent" in err.value.message
    tmpl = f'NAME="x"\nMEMORY="64"\nCPU="1"\nDISK=[IMAGE_ID="{int(pers)}", SIZE="1024"]'
    with pytest.raises(OneError) as refused:
        sim.client.call("demo:demo", "one.vm.allocate", tmpl, False)
    assert f"SIZE attribute is not supported for persistent image [{int(pers)}]" in str(
        refused.value
    )
    # and no image is made smaller than it is (onesim as oned)
    small = (
        f'NAME="y"\nMEMORY="64"\nCPU="1"\nDISK=[IMAGE_ID="{AMI[4:].lstrip("0") or 0}", SIZE="1"]'
    )
    with pytest.raises(OneError) as refused:
        sim.client.call("demo:demo", "one.vm.allocate", small, False)
    assert "MB is less than the image [0] size of" in str(refused.value)
