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
from tests.e2e.conftest import start_demo, stop_demo

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
