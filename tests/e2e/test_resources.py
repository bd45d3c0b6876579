"""Key pairs, tags, volumes, snapshots and early termination end to end: boto3 against
`econe-server run --simulator`."""

from __future__ import annotations

import hashlib
import time
import xmlrpc.client

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from lxml import etree

from tests.e2e.conftest import start_demo, stop_demo, wait_state


def error_code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


def vm_xml(demo, instance_id: str) -> etree._Element:
    proxy = xmlrpc.client.ServerProxy(demo.sim_url)
    ok, body, *_ = proxy.one.vm.info(demo.one_auth(), int(instance_id.split("-")[1]))
    assert ok, body
    return etree.fromstring(body.encode())


def wait_for(check, timeout: float = 20, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def wait_idle(demo, instance_id: str) -> None:
    """RUNNING with no hotplug under way (EC2 shows HOTPLUG* as running; oned refuses another
    disk operation until it ends)."""
    wait_for(
        lambda: vm_xml(demo, instance_id).findtext("LCM_STATE") == "3",
        what=f"{instance_id} idle",
    )


@pytest.fixture(scope="module")
def ami(ec2) -> str:
    return ec2.describe_images()["Images"][0]["ImageId"]


def test_key_pairs(ec2, demo, ami):
    created = ec2.create_key_pair(KeyName="e2e-rsa")
    assert created["KeyMaterial"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert created["KeyPairId"].startswith("key-") and created["KeyFingerprint"].count(":") == 19
    ed = ec2.create_key_pair(KeyName="e2e-ed", KeyType="ed25519")
    assert "OPENSSH PRIVATE KEY" in ed["KeyMaterial"]
    own = ed25519.Ed25519PrivateKey.generate()
    line = (
        own.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    imported = ec2.import_key_pair(KeyName="e2e-imported", PublicKeyMaterial=line.encode())
    assert imported["KeyName"] == "e2e-imported"
    pairs = {p["KeyName"]: p for p in ec2.describe_key_pairs()["KeyPairs"]}
    assert {"e2e-rsa", "e2e-ed", "e2e-imported"} <= set(pairs)
    assert pairs["e2e-ed"]["KeyType"] == "ed25519"
    assert pairs["e2e-imported"]["KeyFingerprint"] == imported["KeyFingerprint"]
    with pytest.raises(ClientError) as err:
        ec2.create_key_pair(KeyName="e2e-rsa")
    assert error_code(err) == "InvalidKeyPair.Duplicate"
    with pytest.raises(ClientError) as err:
        ec2.describe_key_pairs(KeyNames=["e2e-none"])
    assert error_code(err) == "InvalidKeyPair.NotFound"
    with pytest.raises(ClientError) as err:
        ec2.import_key_pair(KeyName="e2e-bad", PublicKeyMaterial=b"ssh-rsa nope")
    assert error_code(err) == "InvalidKey.Format"
    # tags (Terraform's aws_key_pair with default_tags): at creation, then as any resource's
    spec = [{"ResourceType": "key-pair", "Tags": [{"Key": "Name", "Value": 'k"k]'}]}]
    made = ec2.create_key_pair(KeyName="e2e-tagged", TagSpecifications=spec)
    assert made["Tags"] == [{"Key": "Name", "Value": 'k"k]'}]
    other = ed25519.Ed25519PrivateKey.generate().public_key()
    other_line = other.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    imported_tagged = ec2.import_key_pair(
        KeyName="e2e-tagged2", PublicKeyMaterial=other_line, TagSpecifications=spec
    )
    assert imported_tagged["Tags"] == spec[0]["Tags"]
    kid = made["KeyPairId"]
    ec2.create_tags(Resources=[kid], Tags=[{"Key": "team", "Value": "a"}])
    [pair] = ec2.describe_key_pairs(KeyPairIds=[kid])["KeyPairs"]
    assert sorted((t["Key"], t["Value"]) for t in pair["Tags"]) == [("Name", 'k"k]'), ("team", "a")]
    found = ec2.describe_key_pairs(Filters=[{"Name": "tag:team", "Values": ["a"]}])["KeyPairs"]
    assert [p["KeyName"] for p in found] == ["e2e-tagged"]
    listed = ec2.describe_tags(Filters=[{"Name": "resource-type", "Values": ["key-pair"]}])["Tags"]
    assert {(t["ResourceId"], t["Key"]) for t in listed} >= {(kid, "Name"), (kid, "team")}
    ec2.delete_tags(Resources=[kid, imported_tagged["KeyPairId"]], Tags=[{"Key": "Name"}])
    [pair] = ec2.describe_key_pairs(KeyPairIds=[kid])["KeyPairs"]
    assert pair["Tags"] == [{"Key": "team", "Value": "a"}]
    [pair2] = ec2.describe_key_pairs(KeyNames=["e2e-tagged2"])["KeyPairs"]
    assert pair2["Tags"] == []
    with pytest.raises(ClientError) as err:
        ec2.create_tags(Resources=["key-0123456789abcdef0"], Tags=[{"Key": "a", "Value": "b"}])
    assert error_code(err) == "InvalidKeyPair.NotFound"
    assert {"e2e-tagged", "e2e-tagged2", "e2e-rsa"} <= {
        p["KeyName"] for p in ec2.describe_key_pairs()["KeyPairs"]
    }  # the other keys are kept
    ec2.delete_key_pair(KeyName="e2e-tagged")
    ec2.delete_key_pair(KeyName="e2e-tagged2")

    # a launch with the imported key: cloud-init gets it in CONTEXT
    iid = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, KeyName="e2e-imported")[
        "Instances"
    ][0]["InstanceId"]
    ctx = vm_xml(demo, iid).find("TEMPLATE/CONTEXT")
    assert ctx.findtext("SSH_PUBLIC_KEY") == line
    shown = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert shown["KeyName"] == "e2e-imported"

    for name in ("e2e-rsa", "e2e-ed", "e2e-imported"):
        ec2.delete_key_pair(KeyName=name)
    ec2.delete_key_pair(KeyName="e2e-rsa")  # idempotent
    assert not {"e2e-rsa", "e2e-ed", "e2e-imported"} & {
        p["KeyName"] for p in ec2.describe_key_pairs()["KeyPairs"]
    }
    ec2.terminate_instances(InstanceIds=[iid])


def test_a_key_pair_id_is_checked_alike_by_every_action(ec2):
    """As EC2: an id that is no key pair id (`key-` and 17 hex digits) is
    InvalidKeyPair.Malformed to the key pair actions and InvalidID to CreateTags/DeleteTags
    (as any id they cannot read); a well-formed one that is not there is
    InvalidKeyPair.NotFound to all."""

    def calls(key_id: str) -> list:
        return [
            (ec2.describe_key_pairs, {"KeyPairIds": [key_id]}, "InvalidKeyPair.Malformed"),
            (ec2.delete_key_pair, {"KeyPairId": key_id}, "InvalidKeyPair.Malformed"),
            (ec2.create_tags, {"Resources": [key_id], "Tags": [{"Key": "a"}]}, "InvalidID"),
            (ec2.delete_tags, {"Resources": [key_id]}, "InvalidID"),
        ]

    for bad in ("key-123", "key-0123456789ABCDEF0", "key-0123456789abcdef01"):
        for call, kwargs, code in calls(bad):
            with pytest.raises(ClientError) as err:
                call(**kwargs)
            assert error_code(err) == code, bad
            assert bad in err.value.response["Error"]["Message"]
    for call, kwargs, _ in calls("key-0123456789abcdef0"):
        with pytest.raises(ClientError) as err:
            call(**kwargs)
        assert error_code(err) == "InvalidKeyPair.NotFound", call


def test_tags_on_an_instance(ec2, ami):
    iid = ec2.run_instances(
        ImageId=ami,
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "team", "Value": "a"}]}],
    )["Instances"][0]["InstanceId"]
    ec2.create_tags(Resources=[iid], Tags=[{"Key": "Name", "Value": 'web "1"'}])
    inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert sorted((t["Key"], t["Value"]) for t in inst["Tags"]) == [
        ("Name", 'web "1"'),
        ("team", "a"),
    ]
    found = ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": ['web "1"']}])
    assert [i["InstanceId"] for r in found["Reservations"] for i in r["Instances"]] == [iid]
    tags = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [iid]}])["Tags"]
    assert {(t["Key"], t["ResourceType"]) for t in tags} == {
        ("Name", "instance"),
        ("team", "instance"),
    }
    ec2.delete_tags(Resources=[iid], Tags=[{"Key": "team"}])
    inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert [t["Key"] for t in inst["Tags"]] == ["Name"]
    with pytest.raises(ClientError) as err:
        ec2.create_tags(Resources=["subnet-1234"], Tags=[{"Key": "a", "Value": "b"}])
    assert error_code(err) == "InvalidID"
    with pytest.raises(ClientError) as err:
        ec2.create_tags(Resources=["i-99999999"], Tags=[{"Key": "a", "Value": "b"}])
    assert error_code(err) == "InvalidInstanceID.NotFound"
    ec2.terminate_instances(InstanceIds=[iid])


def test_volume_life_cycle(ec2, demo, ami):
    iid = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    vol = ec2.create_volume(
        Size=1,
        AvailabilityZone="opennebula",
        TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "Name", "Value": "data"}]}],
    )
    vid = vol["VolumeId"]
    assert vol["Size"] == 1 and vid.startswith("vol-")

    def volume():
        return ec2.describe_volumes(VolumeIds=[vid])["Volumes"][0]

    wait_for(lambda: volume()["State"] == "available", what="volume available")
    assert volume()["Tags"] == [{"Key": "Name", "Value": "data"}]
    wait_state(ec2, [iid], "running")
    att = ec2.attach_volume(VolumeId=vid, InstanceId=iid, Device="/dev/sdf")
    assert att["State"] == "attaching" and att["Device"] == "/dev/sdf"
    wait_for(lambda: volume()["State"] == "in-use", what="volume in use")
    # as Terraform's aws_volume_attachment waits: until oned has finished the hotplug
    wait_for(lambda: volume()["Attachments"][0]["State"] == "attached", what="attached")
    (attachment,) = volume()["Attachments"]
    assert attachment["InstanceId"] == iid and attachment["Device"] == "/dev/sdf"
    assert attachment["AttachTime"] == att["AttachTime"]
    (inst,) = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"]
    assert inst["RootDeviceName"] == "/dev/sda"
    assert inst["BlockDeviceMappings"] == [
        {
            "DeviceName": "/dev/sdf",
            "Ebs": {
                "VolumeId": vid,
                "Status": "attached",
                "AttachTime": att["AttachTime"],
                "DeleteOnTermination": False,
            },
        }
    ]
    with pytest.raises(ClientError) as err:
        ec2.delete_volume(VolumeId=vid)
    assert error_code(err) == "VolumeInUse"

    wait_idle(demo, iid)
    snap = ec2.create_snapshot(VolumeId=vid, Description="e2e")
    sid = snap["SnapshotId"]
    assert snap["VolumeId"] == vid and sid.startswith("snap-")
    wait_for(
        lambda: ec2.describe_snapshots(SnapshotIds=[sid])["Snapshots"][0]["State"] == "completed",
        what="snapshot completed",
    )
    mine = ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
    assert sid in {s["SnapshotId"] for s in mine}

    wait_idle(demo, iid)
    det = ec2.detach_volume(VolumeId=vid)
    assert det["State"] == "detaching" and det["InstanceId"] == iid
    wait_for(lambda: volume()["State"] == "available", what="volume detached")
    assert volume()["Attachments"] == []
    (inst,) = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"]
    assert inst["BlockDeviceMappings"] == []

    restored = ec2.create_volume(SnapshotId=sid, AvailabilityZone="opennebula")["VolumeId"]
    wait_for(
        lambda: ec2.describe_volumes(VolumeIds=[restored])["Volumes"][0]["State"] == "available",
        what="restored volume",
    )
    ec2.delete_snapshot(SnapshotId=sid)
    for v in (vid, restored):
        ec2.delete_volume(VolumeId=v)
    with pytest.raises(ClientError) as err:
        ec2.delete_volume(VolumeId="vol-00000000")  # the AMI's image: not a volume
    assert error_code(err) == "InvalidVolume.NotFound"
    assert ec2.describe_images(ImageIds=[ami])["Images"]
    ec2.terminate_instances(InstanceIds=[iid])


def test_aws_cli_lists_volumes_and_snapshots_with_its_default_page_size(ec2, demo):
    """The AWS CLI asks describe-volumes and describe-snapshots for pages of 1000, more than a
    DescribeVolumes page holds (500): EC2 answers a full page; so does econe."""
    from tests.security.helpers import aws_cli

    vol = ec2.create_volume(Size=1, AvailabilityZone="opennebula")["VolumeId"]
    try:
        listed = aws_cli(demo.url, "opennebula", "describe-volumes")["Volumes"]
        assert vol in {v["VolumeId"] for v in listed}
        aws_cli(demo.url, "opennebula", "describe-snapshots", "--owner-ids", "self")
    finally:
        ec2.delete_volume(VolumeId=vol)


def test_terminate_right_after_run(tmp_path):
    proc, demo = start_demo(tmp_path, speed="0.5")
    try:
        ec2 = demo.client()
        ami = ec2.describe_images()["Images"][0]["ImageId"]
        ids = [
            i["InstanceId"]
            for i in ec2.run_instances(ImageId=ami, MinCount=2, MaxCount=2)["Instances"]
        ]
        time.sleep(0.7)  # PENDING → PROLOG: oned refuses terminate now
        gone = ec2.terminate_instances(InstanceIds=ids)["TerminatingInstances"]
        assert {g["CurrentState"]["Name"] for g in gone} <= {"shutting-down", "terminated"}
        wait_state(ec2, ids, "terminated", timeout=20)
        proxy = xmlrpc.client.ServerProxy(demo.sim_url)
        ok, pool, *_ = proxy.one.vmpool.info(demo.one_auth(), -2, -1, -1, -1)
        assert ok and etree.fromstring(pool.encode()).find("VM") is None  # none left
    finally:
        stop_demo(proc)


def test_a_shared_ami_stays_its_owners(ec2, demo, ami):
    """demo shares the AMI with the group, with MANAGE, in OpenNebula: mallory (same group)
    sees it and may launch it, but neither deregisters it nor registers it again under her name and
    tags (UnauthorizedOperation, dry run or not); shared with the group it is not Public."""
    number = int(ami.split("-")[1])
    proxy = xmlrpc.client.ServerProxy(demo.sim_url)
    ok, err, *_ = proxy.one.image.chmod(demo.one_auth(), number, -1, -1, -1, 1, 1, -1, -1, -1, -1)
    assert ok, err
    demo.add_user("mallory", "mallorypw")
    mallory = demo.client(user="mallory", secret=hashlib.sha256(b"mallorypw").hexdigest())
    try:
        (seen,) = mallory.describe_images(ExecutableUsers=["self"])["Images"]
        assert (seen["ImageId"], seen["OwnerId"], seen["Public"]) == (ami, "demo", False)
        assert ec2.describe_images(ExecutableUsers=["all"])["Images"] == []
        tags = [{"ResourceType": "image", "Tags": [{"Key": "owner", "Value": "mallory"}]}]
        for dry_run in (True, False):
            with pytest.raises(ClientError) as err:
                mallory.deregister_image(ImageId=ami, DryRun=dry_run)
            assert error_code(err) == "UnauthorizedOperation"
            assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
            with pytest.raises(ClientError) as err:
                mallory.register_image(
                    ImageLocation=ami, Name="mallorys", TagSpecifications=tags, DryRun=dry_run
                )
            assert error_code(err) == "UnauthorizedOperation"
        (image,) = ec2.describe_images(ImageIds=[ami])["Images"]
        assert image["Name"] != "mallorys" and image["Tags"] == []
    finally:
        ok, err, *_ = proxy.one.image.chmod(
            demo.one_auth(), number, -1, -1, -1, 0, 0, -1, -1, -1, -1
        )
        assert ok, err


def test_describe_images_pages_as_ec2(ec2):
    """MaxResults 5 to 1000, as EC2 takes it for DescribeImages: 4 is refused by name."""
    assert ec2.describe_images(MaxResults=5)["Images"]
    with pytest.raises(ClientError) as err:
        ec2.describe_images(MaxResults=4)
    assert error_code(err) == "InvalidParameterValue" and "MaxResults" in str(err.value)
    pages = ec2.get_paginator("describe_images").paginate(PaginationConfig={"PageSize": 5})
    assert [i["ImageId"] for page in pages for i in page["Images"]]
