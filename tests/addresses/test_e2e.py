"""Elastic IPs end to end: boto3 against `econe-server run --simulator` (and extra gateways on
the same onesim), with the shipped recording script configured by the demo mode."""

from __future__ import annotations

import base64
import hashlib
import os
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from lxml import etree

from tests.addresses.conftest import add_user, boto_client, calls, script, start_gateway
from tests.e2e.conftest import start_demo, stop_demo, wait_state


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    saved = os.environ.pop("ECONE_EIP_LOG", None)  # the demo's default log location is tested
    try:
        proc, d = start_demo(tmp_path_factory.mktemp("eip-demo"), speed="0")
    finally:
        if saved is not None:
            os.environ["ECONE_EIP_LOG"] = saved
    yield d
    stop_demo(proc)


@pytest.fixture(scope="module")
def ec2(demo):
    return demo.client()


@pytest.fixture(scope="module")
def ami(ec2) -> str:
    return ec2.describe_images()["Images"][0]["ImageId"]


def recorded(demo) -> list[list[str]]:
    """Calls of the shipped recorder: $TMPDIR (= :tmpdir:, <state-dir>/upload in the demo)."""
    return calls(demo.state_dir / "upload" / "econe-elastic-ip-calls.jsonl")


def launch(ec2, ami: str, count: int = 1) -> list[dict]:
    res = ec2.run_instances(ImageId=ami, MinCount=count, MaxCount=count)
    ids = [i["InstanceId"] for i in res["Instances"]]
    res = wait_state(ec2, ids, "running")
    return [i for r in res["Reservations"] for i in r["Instances"]]


def client_error(excinfo) -> tuple[str, int, str]:
    resp = excinfo.value.response
    return (
        resp["Error"]["Code"],
        resp["ResponseMetadata"]["HTTPStatusCode"],
        resp["Error"]["Message"],
    )


def test_allocate_associate_move_disassociate_release(demo, ec2, ami) -> None:
    alloc = ec2.allocate_address(Domain="standard")
    ip, alloc_id = alloc["PublicIp"], alloc["AllocationId"]
    assert ip.startswith("198.51.100.") and alloc_id.startswith("eipalloc-")
    assert alloc["Domain"] == "standard"
    listed = ec2.describe_addresses()["Addresses"]
    assert [(a["PublicIp"], a["AllocationId"]) for a in listed] == [(ip, alloc_id)]

    vm1, vm2 = launch(ec2, ami, 2)
    n = len(recorded(demo))
    assoc = ec2.associate_address(PublicIp=ip, InstanceId=vm1["InstanceId"])["AssociationId"]
    [call] = recorded(demo)[n:]
    assert call[:3] == ["associate", ip, vm1["PrivateIpAddress"]]
    vnet = etree.fromstring(base64.b64decode(call[3], validate=True))
    assert vnet.tag == "VNET" and vnet.findtext("NAME") == "elastic-ips"
    # only the range holding the address: a whole pool of hundreds of ranges would not fit in
    # one argument (the system's limit is 128 KiB)
    assert [ar.findtext("IP") for ar in vnet.iterfind("AR_POOL/AR")] == [ip]
    address = ec2.describe_addresses(PublicIps=[ip])["Addresses"][0]
    assert address["InstanceId"] == vm1["InstanceId"]
    assert address["AssociationId"] == assoc
    assert address["PrivateIpAddress"] == vm1["PrivateIpAddress"]
    found = ec2.describe_addresses(Filters=[{"Name": "instance-id", "Values": [vm1["InstanceId"]]}])
    assert [a["PublicIp"] for a in found["Addresses"]] == [ip]

    with pytest.raises(ClientError) as err:
        ec2.associate_address(
            AllocationId=alloc_id, InstanceId=vm2["InstanceId"], AllowReassociation=False
        )
    assert client_error(err)[:2] == ("Resource.AlreadyAssociated", 400)
    n = len(recorded(demo))
    moved = ec2.associate_address(AllocationId=alloc_id, InstanceId=vm2["InstanceId"])
    assert [c[:3] for c in recorded(demo)[n:]] == [
        ["disassociate", ip],
        ["associate", ip, vm2["PrivateIpAddress"]],
    ]
    assert ec2.describe_addresses()["Addresses"][0]["InstanceId"] == vm2["InstanceId"]

    n = len(recorded(demo))
    ec2.disassociate_address(AssociationId=moved["AssociationId"])
    assert recorded(demo)[n:] == [["disassociate", ip]]
    assert "InstanceId" not in ec2.describe_addresses()["Addresses"][0]
    ec2.release_address(AllocationId=alloc_id)
    assert ec2.describe_addresses()["Addresses"] == []
    with pytest.raises(ClientError) as err:
        ec2.release_address(PublicIp=ip)
    assert client_error(err)[:2] == ("InvalidAddress.NotFound", 400)
    ec2.terminate_instances(InstanceIds=[vm1["InstanceId"], vm2["InstanceId"]])


def test_errors_as_aws(ec2) -> None:
    for call, kwargs, code in (
        (
            ec2.describe_addresses,
            {"Filters": [{"Name": "colour", "Values": ["x"]}]},
            "InvalidParameterValue",
        ),
        (
            ec2.describe_addresses,
            {"AllocationIds": ["eipalloc-00ff"]},
            "InvalidAllocationID.NotFound",
        ),
        (
            ec2.associate_address,
            {"PublicIp": "198.51.100.99", "InstanceId": "i-0"},
            "InvalidAddress.NotFound",
        ),
        (
            ec2.disassociate_address,
            {"AssociationId": "eipassoc-00ff"},
            "InvalidAssociationID.NotFound",
        ),
        (ec2.release_address, {"AllocationId": "eipalloc-00ff"}, "InvalidAllocationID.NotFound"),
    ):
        with pytest.raises(ClientError) as err:
            call(**kwargs)
        assert client_error(err)[:2] == (code, 400), (call, kwargs)
    ip = ec2.allocate_address()["PublicIp"]
    with pytest.raises(ClientError) as err:
        ec2.associate_address(PublicIp=ip, InstanceId="i-424242")
    assert client_error(err)[:2] == ("InvalidInstanceID.NotFound", 400)
    ec2.release_address(PublicIp=ip)


def test_users_are_isolated(demo, ec2, ami) -> None:
    add_user(demo, "eipeve", "evepw")
    eve = demo.client("eipeve", hashlib.sha256(b"evepw").hexdigest())
    mine = ec2.allocate_address()
    theirs = eve.allocate_address()
    assert mine["PublicIp"] != theirs["PublicIp"]
    assert [a["PublicIp"] for a in eve.describe_addresses()["Addresses"]] == [theirs["PublicIp"]]
    assert [a["PublicIp"] for a in ec2.describe_addresses()["Addresses"]] == [mine["PublicIp"]]
    [vm] = launch(ec2, ami)
    for call, kwargs, code in (
        (eve.describe_addresses, {"PublicIps": [mine["PublicIp"]]}, "InvalidAddress.NotFound"),
        (
            eve.release_address,
            {"AllocationId": mine["AllocationId"]},
            "InvalidAllocationID.NotFound",
        ),
        (eve.disassociate_address, {"PublicIp": mine["PublicIp"]}, "InvalidAddress.NotFound"),
        # eve's address, demo's instance: eve cannot see the instance
        (
            eve.associate_address,
            {"PublicIp": theirs["PublicIp"], "InstanceId": vm["InstanceId"]},
            "InvalidInstanceID.NotFound",
        ),
    ):
        with pytest.raises(ClientError) as err:
            call(**kwargs)
        assert client_error(err)[:2] == (code, 400), (call, kwargs)
    # the attribute Terraform's aws_eip reads (provider 5.46-5.92): no reverse DNS here
    (attr,) = ec2.describe_addresses_attribute(
        AllocationIds=[mine["AllocationId"]], Attribute="domain-name"
    )["Addresses"]
    assert attr == {"PublicIp": mine["PublicIp"], "AllocationId": mine["AllocationId"]}
    with pytest.raises(ClientError) as err:
        eve.describe_addresses_attribute(
            AllocationIds=[mine["AllocationId"]], Attribute="domain-name"
        )
    assert client_error(err)[:2] == ("InvalidAllocationID.NotFound", 400)
    eve.release_address(PublicIp=theirs["PublicIp"])
    ec2.release_address(PublicIp=mine["PublicIp"])
    ec2.terminate_instances(InstanceIds=[vm["InstanceId"]])


def test_failing_script_changes_nothing(demo, ec2, ami, tmp_path: Path) -> None:
    failing = script(
        tmp_path,
        "fail-eip",
        "print('stdout is not the message')\n"
        "print('NAT table full for ' + sys.argv[2] + ' <&>', file=sys.stderr)\nsys.exit(1)\n",
    )
    proc, url = start_gateway(
        tmp_path,
        demo,
        "failing",
        associate_script=f"{failing} associate",
        disassociate_script=f"{failing} disassociate",
    )
    try:
        gw = boto_client(url, "demo", hashlib.sha256(b"demo").hexdigest())
        ip = gw.allocate_address()["PublicIp"]
        vm1, vm2 = launch(ec2, ami, 2)
        with pytest.raises(ClientError) as err:
            gw.associate_address(PublicIp=ip, InstanceId=vm1["InstanceId"])
        code, status, message = client_error(err)
        assert (code, status) == ("InternalError", 500)
        assert f"NAT table full for {ip} <&>" in message and "exit status 1" in message
        assert "InstanceId" not in ec2.describe_addresses(PublicIps=[ip])["Addresses"][0]

        # associated through the demo gateway (working scripts); moving it through the failing
        # one leaves it on the old instance
        ec2.associate_address(PublicIp=ip, InstanceId=vm1["InstanceId"])
        with pytest.raises(ClientError) as err:
            gw.associate_address(PublicIp=ip, InstanceId=vm2["InstanceId"])
        assert "NAT table full" in client_error(err)[2]
        assert (
            ec2.describe_addresses(PublicIps=[ip])["Addresses"][0]["InstanceId"]
            == (vm1["InstanceId"])
        )
        for call in (gw.disassociate_address, gw.release_address):
            with pytest.raises(ClientError) as err:
                call(PublicIp=ip)
            assert client_error(err)[0] == "InternalError"
            assert (
                ec2.describe_addresses(PublicIps=[ip])["Addresses"][0]["InstanceId"]
                == (vm1["InstanceId"])
            )
        ec2.release_address(PublicIp=ip)
        ec2.terminate_instances(InstanceIds=[vm1["InstanceId"], vm2["InstanceId"]])
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_a_failed_record_puts_the_network_back(demo, ec2, ami) -> None:
    """The scripts ran, then OpenNebula refused to record the move: the old association is
    put back on the network too, so that both say the same."""
    import xmlrpc.client

    import boto3
    from botocore.config import Config as BotoConfig

    once = boto3.client(  # no retry: botocore retries a 500, and the retry would succeed
        "ec2",
        endpoint_url=demo.url,
        region_name="opennebula",
        aws_access_key_id="demo",
        aws_secret_access_key=hashlib.sha256(b"demo").hexdigest(),
        config=BotoConfig(retries={"total_max_attempts": 1}),
    )
    ip = ec2.allocate_address()["PublicIp"]
    vm1, vm2 = launch(ec2, ami, 2)
    ec2.associate_address(PublicIp=ip, InstanceId=vm1["InstanceId"])
    sim = xmlrpc.client.ServerProxy(demo.sim_url)
    n = len(recorded(demo))
    armed = sim.onesim.fault.set(
        demo.one_auth(), "one.vn.update_ar", 0x800, "simulated failure", 0, 1
    )
    assert armed[0], armed
    try:
        with pytest.raises(ClientError) as err:
            once.associate_address(PublicIp=ip, InstanceId=vm2["InstanceId"])
        assert client_error(err)[:2] == ("InternalError", 500)
    finally:
        sim.onesim.fault.clear(demo.one_auth())
    moves = [c[:3] for c in recorded(demo)[n:]]
    assert moves == [
        ["disassociate", ip],
        ["associate", ip, vm2["PrivateIpAddress"]],
        ["disassociate", ip],  # taken back
        ["associate", ip, vm1["PrivateIpAddress"]],  # and the old one put back
    ]
    assert ec2.describe_addresses(PublicIps=[ip])["Addresses"][0]["InstanceId"] == vm1["InstanceId"]
    ec2.release_address(PublicIp=ip)
    ec2.terminate_instances(InstanceIds=[vm1["InstanceId"], vm2["InstanceId"]])


def test_instances_show_and_lose_their_address(demo, ec2, ami) -> None:
    ip = ec2.allocate_address()["PublicIp"]
    [vm] = launch(ec2, ami)
    ec2.associate_address(PublicIp=ip, InstanceId=vm["InstanceId"])
    shown = ec2.describe_instances(InstanceIds=[vm["InstanceId"]])
    assert shown["Reservations"][0]["Instances"][0].get("PublicIpAddress") == ip
    by_ip = ec2.describe_instances(Filters=[{"Name": "ip-address", "Values": [ip]}])
    assert [i["InstanceId"] for r in by_ip["Reservations"] for i in r["Instances"]] == [
        vm["InstanceId"]
    ]
    n = len(recorded(demo))
    ec2.terminate_instances(InstanceIds=[vm["InstanceId"]])
    assert recorded(demo)[n:] == [["disassociate", ip]]
    address = ec2.describe_addresses(PublicIps=[ip])["Addresses"][0]
    assert "InstanceId" not in address and "AssociationId" not in address
    ec2.release_address(PublicIp=ip)


def test_recorder_rejects_bad_calls(tmp_path: Path) -> None:
    import subprocess

    from tests.addresses.conftest import RECORDER

    env = dict(os.environ, ECONE_EIP_LOG=str(tmp_path / "log"))
    bad = subprocess.run(
        [sys.executable, str(RECORDER), "associate", "1.2.3.4"], env=env, capture_output=True
    )
    assert bad.returncode == 2 and b"takes 3 arguments" in bad.stderr
    ok = subprocess.run(
        [sys.executable, str(RECORDER), "disassociate", "1.2.3.4"], env=env, capture_output=True
    )
    assert ok.returncode == 0 and calls(tmp_path / "log") == [["disassociate", "1.2.3.4"]]
    env["ECONE_EIP_FAIL"] = "simulated NAT failure"
    fail = subprocess.run(
        [sys.executable, str(RECORDER), "disassociate", "1.2.3.4"], env=env, capture_output=True
    )
    assert fail.returncode == 1 and fail.stderr.strip() == b"simulated NAT failure"
    assert len(calls(tmp_path / "log")) == 2


def test_tags(demo, ec2, ami) -> None:
    """Terraform's aws_eip with default_tags: tags at allocation, then as any resource's;
    kept through an association, gone with the address, another user's not reachable."""
    spec = [{"ResourceType": "elastic-ip", "Tags": [{"Key": "Name", "Value": 'w"e]b'}]}]
    made = ec2.allocate_address(Domain="vpc", TagSpecifications=spec)
    alloc = made["AllocationId"]
    [address] = ec2.describe_addresses(AllocationIds=[alloc])["Addresses"]
    assert address["Tags"] == spec[0]["Tags"]  # (AllocateAddress answers no tags, as EC2)
    ec2.create_tags(Resources=[alloc], Tags=[{"Key": "team", "Value": "a"}])
    [vm] = launch(ec2, ami)
    ec2.associate_address(AllocationId=alloc, InstanceId=vm["InstanceId"])
    [address] = ec2.describe_addresses(AllocationIds=[alloc])["Addresses"]
    assert address["InstanceId"] == vm["InstanceId"]
    assert sorted((t["Key"], t["Value"]) for t in address["Tags"]) == [
        ("Name", 'w"e]b'),
        ("team", "a"),
    ]
    found = ec2.describe_addresses(Filters=[{"Name": "tag:team", "Values": ["a"]}])["Addresses"]
    assert [a["AllocationId"] for a in found] == [alloc]
    listed = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [alloc]}])["Tags"]
    assert {(t["ResourceType"], t["Key"]) for t in listed} == {
        ("elastic-ip", "Name"),
        ("elastic-ip", "team"),
    }
    ec2.delete_tags(Resources=[alloc], Tags=[{"Key": "Name"}])
    [address] = ec2.describe_addresses(AllocationIds=[alloc])["Addresses"]
    assert address["Tags"] == [{"Key": "team", "Value": "a"}]
    assert address["InstanceId"] == vm["InstanceId"]  # the association is kept
    add_user(demo, "eiptag", "tagpw")
    other = demo.client("eiptag", hashlib.sha256(b"tagpw").hexdigest())
    with pytest.raises(ClientError) as err:
        other.create_tags(Resources=[alloc], Tags=[{"Key": "x", "Value": "y"}])
    assert client_error(err)[:2] == ("InvalidAllocationID.NotFound", 400)
    ec2.release_address(AllocationId=alloc)
    again = ec2.allocate_address(Address=made["PublicIp"])  # the next holder gets no tags
    [address] = ec2.describe_addresses(AllocationIds=[again["AllocationId"]])["Addresses"]
    assert address["Tags"] == []
    ec2.release_address(AllocationId=again["AllocationId"])


def test_concurrent_tag_changes_all_count(demo, ec2, ami) -> None:
    """Tags kept in one record: ten CreateTags at once on one address, and on one key pair
    while another key is imported, all count (and the association is untouched). A change of
    the address finding two others waiting is refused with RequestLimitExceeded, which the
    SDKs retry after a pause, as this client does."""
    from concurrent.futures import ThreadPoolExecutor

    import boto3
    from botocore.config import Config as BotoConfig

    def retrying():
        return boto3.client(
            "ec2",
            endpoint_url=demo.url,
            region_name="opennebula",
            aws_access_key_id="demo",
            aws_secret_access_key=hashlib.sha256(b"demo").hexdigest(),
            config=BotoConfig(retries={"mode": "standard", "max_attempts": 10}),
        )

    alloc = ec2.allocate_address()["AllocationId"]
    [vm] = launch(ec2, ami)
    ec2.associate_address(AllocationId=alloc, InstanceId=vm["InstanceId"])
    key = ec2.create_key_pair(KeyName="race-key")["KeyPairId"]

    def tag(args: tuple[str, int]) -> None:
        resource, n = args
        retrying().create_tags(Resources=[resource], Tags=[{"Key": f"k{n}", "Value": str(n)}])

    def import_key(n: int) -> None:
        line = (
            ed25519.Ed25519PrivateKey.generate()
            .public_key()
            .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        )
        demo.client().import_key_pair(KeyName=f"race-{n}", PublicKeyMaterial=line)

    with ThreadPoolExecutor(8) as pool:
        jobs = [pool.submit(tag, (r, n)) for r in (alloc, key) for n in range(10)]
        jobs += [pool.submit(import_key, n) for n in range(3)]
        for job in jobs:
            job.result()
    [address] = ec2.describe_addresses(AllocationIds=[alloc])["Addresses"]
    assert {t["Key"] for t in address["Tags"]} == {f"k{n}" for n in range(10)}
    assert address["InstanceId"] == vm["InstanceId"]
    pairs = {p["KeyName"]: p for p in ec2.describe_key_pairs()["KeyPairs"]}
    assert {t["Key"] for t in pairs["race-key"]["Tags"]} == {f"k{n}" for n in range(10)}
    assert {"race-0", "race-1", "race-2"} <= set(pairs)
    for name in ("race-key", "race-0", "race-1", "race-2"):
        ec2.delete_key_pair(KeyName=name)
    ec2.release_address(AllocationId=alloc)


def test_address_attributes_page(ec2) -> None:
    """DescribeAddressesAttribute pages as EC2 does (MaxResults 1 to 1000, NextToken)."""
    made = [ec2.allocate_address(Domain="vpc")["AllocationId"] for _ in range(2)]
    first = ec2.describe_addresses_attribute(Attribute="domain-name", MaxResults=1)
    assert len(first["Addresses"]) == 1 and first["NextToken"]
    rest = ec2.describe_addresses_attribute(
        Attribute="domain-name", MaxResults=1000, NextToken=first["NextToken"]
    )
    seen = [a["AllocationId"] for a in first["Addresses"] + rest["Addresses"]]
    assert set(made) <= set(seen) and len(seen) == len(set(seen)) and "NextToken" not in rest
    for alloc in made:
        ec2.release_address(AllocationId=alloc)


def test_tag_limit_holds_under_concurrent_changes(demo, ec2) -> None:
    """Two CreateTags at once, 30 tags each, on one address and on one key pair: one of each
    pair is TagLimitExceeded, nothing ends above 50, and the order of tags is kept."""
    from concurrent.futures import ThreadPoolExecutor

    from botocore.exceptions import ClientError as Error

    alloc = ec2.allocate_address()["AllocationId"]
    key = ec2.create_key_pair(KeyName="limit-key")["KeyPairId"]

    def tag(args: tuple[str, str]) -> str:
        resource, prefix = args
        tags = [{"Key": f"{prefix}{n}", "Value": "v"} for n in range(30)]
        try:
            demo.client().create_tags(Resources=[resource], Tags=tags)
            return "ok"
        except Error as exc:
            return exc.response["Error"]["Code"]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(tag, [(r, p) for r in (alloc, key) for p in ("a", "b")]))
    assert sorted(results) == ["TagLimitExceeded", "TagLimitExceeded", "ok", "ok"]
    [address] = ec2.describe_addresses(AllocationIds=[alloc])["Addresses"]
    [pair] = ec2.describe_key_pairs(KeyPairIds=[key])["KeyPairs"]
    assert len(address["Tags"]) == len(pair["Tags"]) == 30
    ec2.create_tags(Resources=[key], Tags=[{"Key": pair["Tags"][0]["Key"], "Value": "new"}])
    [again] = ec2.describe_key_pairs(KeyPairIds=[key])["KeyPairs"]
    assert [t["Key"] for t in again["Tags"]] == [t["Key"] for t in pair["Tags"]]  # in place
    ec2.delete_key_pair(KeyName="limit-key")
    ec2.release_address(AllocationId=alloc)
