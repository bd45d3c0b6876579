"""libcloud's EC2 driver as its users use it, set up as the README says (`:region:` a region
libcloud knows, the same `region=` in the driver): nodes, locations, volumes, key pairs.
libcloud sends forms boto3 does not: `KeyName=k` without a number, `Force=1`, lists numbered
from 0 (`ResourceId.0`)."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import libcloud_driver, start_demo, stop_demo

PUBLIC_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBbZ3GmXK8bIVqcyhtcPdOHn1zBDsQ9x7WhUSgXBlfNQ libcloud"
)


@pytest.fixture(scope="module")
def driver(tmp_path_factory):

    tmp = tmp_path_factory.mktemp("libcloud")
    conf = tmp / "econe.conf"
    conf.write_text(":region: us-east-1\n")
    proc, demo = start_demo(tmp, extra=["--config", str(conf)])
    try:
        yield libcloud_driver(demo.url)
    finally:
        stop_demo(proc)


def test_a_node_with_a_volume_and_a_key_pair(driver) -> None:
    (location,) = driver.list_locations()  # the zone of region us-east-1
    image = driver.list_images(ex_owner="self")[0]
    size = {s.id: s for s in driver.list_sizes()}["m1.small"]
    driver.import_key_pair_from_string("lc", PUBLIC_KEY)
    assert driver.get_key_pair("lc").name == "lc"  # KeyName=lc, not KeyName.1=lc
    node = driver.create_node(name="lc", image=image, size=size, ex_keyname="lc")
    # no public address without an elastic IP: wait on the private one
    ((node, _ips),) = driver.wait_until_running([node], ssh_interface="private_ips", timeout=120)
    volume = driver.create_volume(1, "lc-data")  # in list_locations()[0]
    assert volume.extra["zone"] == location.availability_zone.name
    wait_for(driver, volume, lambda v: v.state == "available")
    assert driver.attach_volume(node, volume, "/dev/sdf")
    wait_for(driver, volume, lambda v: v.extra["attachment_status"] == "attached")
    assert driver.detach_volume(volume, ex_force=True)  # Force=1
    # libcloud numbers these lists from 0: ResourceId.0, Tag.0.Key, Tag.1.Key
    assert driver.ex_create_tags(volume, {"a": "1", "b": "2"})
    assert driver.ex_describe_tags(volume) == {"Name": "lc-data", "a": "1", "b": "2"}
    assert driver.ex_delete_tags(volume, {"a": None})
    assert driver.ex_describe_tags(volume) == {"Name": "lc-data", "b": "2"}
    assert driver.destroy_node(node)


def wait_for(driver, volume, done) -> None:
    deadline = time.monotonic() + 60
    while not done(next(v for v in driver.list_volumes() if v.id == volume.id)):
        assert time.monotonic() < deadline
        time.sleep(0.2)
