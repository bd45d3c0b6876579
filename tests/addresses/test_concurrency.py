"""50 concurrent AllocateAddress through two gateway processes on one onesim, pool of 20:
exactly 20 succeed, no address twice, the rest AddressLimitExceeded, and every view agrees."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter

import pytest
from botocore.exceptions import ClientError
from lxml import etree

from tests.addresses.conftest import EIP_VNET, add_user, boto_client, sim_call, start_gateway
from tests.e2e.conftest import DEMO_SECRET, start_demo, stop_demo

POOL = 20
REQUESTS = 50


@pytest.fixture(scope="module")
def two_gateways(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eip-race")
    proc, demo = start_demo(tmp, speed="0")
    try:
        # the demo network has 16 addresses (one AR of SIZE 1 each): add 4 → exactly 20
        for i in range(17, 21):
            sim_call(
                demo, "one.vn.add_ar", EIP_VNET, f'AR=[TYPE="IP4", IP="198.51.100.{i}", SIZE="1"]'
            )
        second, url = start_gateway(tmp, demo, "second")
        try:
            yield demo, url
        finally:
            second.terminate()
            second.wait(timeout=15)
    finally:
        stop_demo(proc)


def test_fifty_concurrent_allocations_two_gateways_pool_of_twenty(two_gateways) -> None:
    demo, second_url = two_gateways
    racer_uid = add_user(demo, "racer", "racerpw")
    secrets = {
        "demo": hashlib.sha256(b"demo").hexdigest(),
        "racer": hashlib.sha256(b"racerpw").hexdigest(),
    }
    clients = [
        boto_client(url, user, secrets[user])
        for url in (demo.url, second_url)
        for user in ("demo", "racer")
    ]
    start = threading.Barrier(REQUESTS)
    results: list[tuple[str, str, str]] = []  # (user, outcome, ip or code)
    lock = threading.Lock()

    def allocate(n: int) -> None:
        client = clients[n % len(clients)]
        user = ("demo", "racer")[n % 2]
        start.wait()
        try:
            ip = client.allocate_address()["PublicIp"]
            outcome = (user, "ok", ip)
        except ClientError as exc:
            outcome = (user, "error", exc.response["Error"]["Code"])
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=allocate, args=(n,)) for n in range(REQUESTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == REQUESTS
    won = [r for r in results if r[1] == "ok"]
    lost = [r for r in results if r[1] == "error"]
    assert len(won) == POOL, Counter(r[2] for r in lost)
    assert len({r[2] for r in won}) == POOL  # no address handed out twice
    assert Counter(r[2] for r in lost) == {"AddressLimitExceeded": REQUESTS - POOL}

    # DescribeAddresses agrees, through either gateway, per user
    for user in ("demo", "racer"):
        expected = sorted(r[2] for r in won if r[0] == user)
        for url in (demo.url, second_url):
            listed = boto_client(url, user, secrets[user]).describe_addresses()["Addresses"]
            assert sorted(a["PublicIp"] for a in listed) == expected
    # and so does OpenNebula: 20 held leases, each AR recording exactly its owner
    vnet = etree.fromstring(sim_call(demo, "one.vn.info", EIP_VNET).encode())
    owners = {
        ar.findtext("IP"): ar.findtext("EC2_OWNER")
        for ar in vnet.iterfind("AR_POOL/AR")
        if ar.xpath("LEASES/LEASE[VM = '-1']")
    }
    uid = {"demo": "2", "racer": str(racer_uid)}
    assert owners == {r[2]: uid[r[0]] for r in won}


# -- associations racing each other (one gateway: requests of one process are serialised) ----


@pytest.fixture(scope="module")
def racing(tmp_path_factory):
    """A demo (onesim at speed 0) with two running instances; → (demo, ec2, [X, Y])."""
    tmp = tmp_path_factory.mktemp("eip-assoc-race")
    proc, demo = start_demo(tmp, speed="0")
    try:
        ec2 = boto_client(demo.url, "demo", DEMO_SECRET)
        ami = ec2.describe_images()["Images"][0]["ImageId"]
        made = ec2.run_instances(ImageId=ami, MinCount=2, MaxCount=2)["Instances"]
        yield demo, ec2, [i["InstanceId"] for i in made]
    finally:
        stop_demo(proc)


def _at_once(*calls) -> list[str]:
    """Run the calls in threads started together; each one's outcome: "ok" or the error code."""
    start = threading.Barrier(len(calls))
    outcomes: list[str] = [""] * len(calls)

    def go(n: int) -> None:
        start.wait()
        try:
            calls[n]()
            outcomes[n] = "ok"
        except ClientError as exc:
            outcomes[n] = exc.response["Error"]["Code"]

    threads = [threading.Thread(target=go, args=(n,)) for n in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return outcomes


def _on(ec2) -> dict[str, str | None]:
    return {a["PublicIp"]: a.get("InstanceId") for a in ec2.describe_addresses()["Addresses"]}


def _release_all(ec2) -> None:
    for a in ec2.describe_addresses()["Addresses"]:
        ec2.release_address(AllocationId=a["AllocationId"])


def test_an_instance_gets_one_address_however_many_race_for_it(racing) -> None:
    """As EC2, an instance has one public address: of ten associations at once, each moves
    the one before; the last stays, recorded in OpenNebula on its address alone. (A request
    finding two others waiting for the instance is refused with RequestLimitExceeded, which
    the SDKs retry; these clients do not.)"""
    demo, ec2, (x, _) = racing
    allocations = [ec2.allocate_address()["AllocationId"] for _ in range(10)]
    try:
        calls = [
            lambda a=a: boto_client(demo.url, "demo", DEMO_SECRET).associate_address(
                AllocationId=a, InstanceId=x
            )
            for a in allocations
        ]
        outcomes = _at_once(*calls)
        assert "ok" in outcomes and set(outcomes) <= {"ok", "RequestLimitExceeded"}, outcomes
        (ip,) = [ip for ip, vm in _on(ec2).items() if vm == x]
        (res,) = ec2.describe_instances(InstanceIds=[x])["Reservations"]
        assert res["Instances"][0]["PublicIpAddress"] == ip
        vnet = etree.fromstring(sim_call(demo, "one.vn.info", EIP_VNET).encode())
        recorded = [
            ar.findtext("IP") for ar in vnet.iterfind("AR_POOL/AR") if ar.findtext("EC2_INSTANCE")
        ]
        assert recorded == [ip]
    finally:
        _release_all(ec2)


def test_a_move_racing_a_replacement_ends_with_both(racing) -> None:
    """B is on X; at once A goes to X (taking B off it) and B moves to Y: either order ends
    with A on X and B on Y, as recorded (an association was lost before)."""
    demo, ec2, (x, y) = racing
    a, b = (ec2.allocate_address() for _ in "ab")
    try:
        for _ in range(6):
            ec2.associate_address(AllocationId=b["AllocationId"], InstanceId=x)
            first, second = (boto_client(demo.url, "demo", DEMO_SECRET) for _ in "xy")
            assert _at_once(
                lambda c=first: c.associate_address(AllocationId=a["AllocationId"], InstanceId=x),
                lambda c=second: c.associate_address(AllocationId=b["AllocationId"], InstanceId=y),
            ) == ["ok", "ok"]
            assert _on(ec2) == {a["PublicIp"]: x, b["PublicIp"]: y}
            for addr in (a, b):
                ec2.disassociate_address(PublicIp=addr["PublicIp"])
    finally:
        _release_all(ec2)


def test_an_address_released_meanwhile_is_not_written_back(racing) -> None:
    """B is on X; while A goes to X (taking B off it), B is released and another user takes
    it: B is that user's, not written back to its old owner."""
    demo, ec2, (x, _) = racing
    add_user(demo, "taker", "takerpw")
    taker = boto_client(demo.url, "taker", hashlib.sha256(b"takerpw").hexdigest())
    a = ec2.allocate_address()
    try:
        for _ in range(6):
            b = ec2.allocate_address()
            ec2.associate_address(AllocationId=b["AllocationId"], InstanceId=x)
            first, second = (boto_client(demo.url, "demo", DEMO_SECRET) for _ in "ab")

            def release_and_take(c=second, b=b) -> None:
                c.release_address(AllocationId=b["AllocationId"])
                taker.allocate_address(Address=b["PublicIp"])

            assert _at_once(
                lambda c=first: c.associate_address(AllocationId=a["AllocationId"], InstanceId=x),
                release_and_take,
            ) == ["ok", "ok"]
            assert b["PublicIp"] not in _on(ec2)
            assert list(_on(taker)) == [b["PublicIp"]]
            _release_all(taker)
    finally:
        _release_all(ec2)


def test_a_wrong_network_border_group_releases_nothing(racing) -> None:
    _, ec2, _ = racing
    a = ec2.allocate_address()
    try:
        with pytest.raises(ClientError) as exc:  # as EC2: the address stays allocated
            ec2.release_address(PublicIp=a["PublicIp"], NetworkBorderGroup="elsewhere")
        assert exc.value.response["Error"]["Code"] == "InvalidAddress.NotFound"
        assert a["PublicIp"] in _on(ec2)
    finally:
        _release_all(ec2)
