"""Platform and PlatformDetails: EC2 always sends PlatformDetails; a Windows AMI's instances
show Platform windows (the image's TEMPLATE/PLATFORM, kept on the VM at launch)."""

from __future__ import annotations

from tests.engine.conftest import AMI, Sim, run
from tests.engine.test_sim import ids, launch


def shown(engine, **body) -> list[dict]:
    found = run(engine, "DescribeInstances", body, user="demo")["Reservations"]
    return [i for r in found for i in r["Instances"]]


def test_platform_comes_from_the_ami(sim: Sim, engine) -> None:
    (linux,) = ids(launch(engine))
    (image,) = run(engine, "DescribeImages", {"ImageId": [AMI]}, user="demo")["Images"]
    assert image["PlatformDetails"] == "Linux/UNIX" and "Platform" not in image
    sim.as_admin("one.image.update", 0, 'PLATFORM="windows"', 1)
    (image,) = run(engine, "DescribeImages", {"ImageId": [AMI]}, user="demo")["Images"]
    assert (image["Platform"], image["PlatformDetails"]) == ("windows", "Windows")
    (windows,) = ids(launch(engine))
    (inst,) = shown(engine, InstanceId=[windows])
    assert (inst["Platform"], inst["PlatformDetails"]) == ("windows", "Windows")
    (inst,) = shown(engine, InstanceId=[linux])
    assert inst["PlatformDetails"] == "Linux/UNIX" and "Platform" not in inst
    for name, value, found in (
        ("platform-details", "Windows", [windows]),
        ("platform-details", "Linux/UNIX", [linux]),
        ("platform", "windows", [windows]),
    ):
        body = {"Filter": [{"Name": name, "Value": [value]}]}
        assert [i["InstanceId"] for i in shown(engine, **body)] == found, name
