"""The positive side of the suite: real clients sign, and econe lets them in.

boto3 (SigV4 and SigV2), the AWS CLI, a presigned URL fetched with plain HTTP, and libcloud's
EC2 driver (SigV2 GET and SigV4), each running and then finding an instance, so that the
refusals in the other modules cannot come from a server that refuses everything.
"""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import DEMO_SECRET, libcloud_driver
from tests.security.helpers import DEMO_AMI, action_params, aws_cli_image_ids, presign_v4

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("version", ["v4", "v2"])
def test_boto3(demo, admin, version):
    ec2 = demo.client(**({"signature_version": "v2"} if version == "v2" else {}))
    before = admin.vm_ids()
    res = ec2.run_instances(ImageId=DEMO_AMI, MinCount=1, MaxCount=1, InstanceType="m1.small")
    iid = res["Instances"][0]["InstanceId"]
    assert len(admin.vm_ids() - before) == 1
    found = ec2.describe_instances(InstanceIds=[iid])["Reservations"]
    assert [i["InstanceId"] for r in found for i in r["Instances"]] == [iid]


def test_aws_cli(demo):
    assert DEMO_AMI in aws_cli_image_ids(demo.url, "opennebula")


def test_presigned_url_with_urllib(demo):
    url = presign_v4(demo.url, action_params("DescribeImages"), "demo", DEMO_SECRET, expires=60)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=20) as resp:
        assert resp.status == 200
        assert DEMO_AMI.encode() in resp.read()


@pytest.mark.parametrize("signature_version", ["2", "4"])
def test_libcloud(demo, admin, signature_version):

    driver = libcloud_driver(demo.url, signature_version=signature_version)
    images = driver.list_images(ex_image_ids=[DEMO_AMI])
    assert [i.id for i in images] == [DEMO_AMI], "libcloud parses nothing without the xmlns slash"
    before = admin.vm_ids()
    sizes = {s.id: s for s in driver.list_sizes()}
    size = sizes.get("m1.small") or next(iter(sizes.values()))
    node = driver.create_node(name="sec-libcloud", image=images[0], size=size)
    assert len(admin.vm_ids() - before) == 1
    assert node.id in {n.id for n in driver.list_nodes()}
