"""Elastic IPs changed through two gateway processes on one onesim, with scripts slow enough
(`PAUSE` seconds) for requests to overlap: what each user sees, and what the network would
hold. The scripts record every effect, in order, in one log; `network()` replays it as the
iptables samples act (associate adds a DNAT target, disassociate removes them all)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from pathlib import Path

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from tests.addresses.conftest import add_user, script, start_gateway
from tests.e2e.conftest import DEMO_SECRET, start_demo, stop_demo

BOB_SECRET = hashlib.sha256(b"bobpw").hexdigest()


class Cloud:
    def __init__(self, demo, urls: list[str], log: Path, pause: Path):
        self.demo, self.urls, self.log, self.pause = demo, urls, log, pause

    def ec2(self, gateway: int = 0, user: str = "demo") -> object:
        """A client that does not retry (the SDKs retry 503s: a retried move would win)."""
        return boto3.client(
            "ec2",
            endpoint_url=self.urls[gateway],
            region_name="opennebula",
            aws_access_key_id=user,
            aws_secret_access_key=DEMO_SECRET if user == "demo" else BOB_SECRET,
            config=BotoConfig(retries={"total_max_attempts": 1}),
        )

    def slow(self, seconds: float) -> None:
        self.pause.write_text(str(seconds))

    def network(self) -> dict[str, set[str]]:
        """Elastic IP → the private addresses the network sends it to, by the scripts' log."""
        net: dict[str, set[str]] = {}
        for line in self.log.read_text().splitlines():
            argv = json.loads(line)
            if argv[0] == "associate":
                net.setdefault(argv[1], set()).add(argv[2])
            else:
                net[argv[1]] = set()
        return {ip: targets for ip, targets in net.items() if targets}

    def recorded(self, user: str = "demo") -> dict[str, dict]:
        return {a["PublicIp"]: a for a in self.ec2(0, user).describe_addresses()["Addresses"]}

    def assert_network_as_recorded(self) -> None:
        """What OpenNebula records is what the network does, for every user's addresses."""
        wanted = {
            ip: {a["PrivateIpAddress"]}
            for user in ("demo", "eipbob")
            for ip, a in self.recorded(user).items()
            if a.get("InstanceId")
        }
        assert self.network() == wanted


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eip-gateways")
    proc, demo = start_demo(tmp, speed="0")
    log, pause = tmp / "effects.jsonl", tmp / "pause"
    pause.write_text("0")
    slow = script(
        tmp,
        "slow-eip",
        "import fcntl, time\n"
        f"time.sleep(float(open({str(pause)!r}).read()))\n"
        f"with open({str(log)!r}, 'a') as f:\n"
        "    fcntl.flock(f, fcntl.LOCK_EX)\n"
        "    f.write(json.dumps(sys.argv[1:4]) + '\\n')\n",
    )
    gateways = []
    try:
        add_user(demo, "eipbob", "bobpw")
        for name in ("first", "second"):
            gateways.append(
                start_gateway(
                    tmp,
                    demo,
                    name,
                    associate_script=f"{slow} associate",
                    disassociate_script=f"{slow} disassociate",
                    script_timeout=10,
                )
            )
        c = Cloud(demo, [url for _, url in gateways], log, pause)
        ec2 = c.ec2()
        ami = ec2.describe_images()["Images"][0]["ImageId"]
        made = ec2.run_instances(ImageId=ami, MinCount=2, MaxCount=2)["Instances"]
        c.instances = [i["InstanceId"] for i in made]
        yield c
    finally:
        for gw, _ in gateways:
            gw.terminate()
            gw.wait(timeout=15)
        stop_demo(proc)


@pytest.fixture
def clean(cloud):
    """Every address released and the scripts quick again after each test."""
    yield cloud
    cloud.slow(0)
    for user in ("demo", "eipbob"):
        for a in cloud.ec2(0, user).describe_addresses()["Addresses"]:
            cloud.ec2(0, user).release_address(AllocationId=a["AllocationId"])


def outcome(call, *args, **kwargs) -> str:
    try:
        call(*args, **kwargs)
        return "ok"
    except ClientError as exc:
        return exc.response["Error"]["Code"]


def in_threads(*jobs) -> list[str]:
    """Each job (delay, callable) started after its delay; their outcomes."""
    out = [""] * len(jobs)

    def go(n: int) -> None:
        delay, job = jobs[n]
        time.sleep(delay)
        out[n] = job()

    threads = [threading.Thread(target=go, args=(n,)) for n in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return out


def test_requests_piling_up_on_one_address_leave_the_others_fast(clean) -> None:
    """Twenty moves of one address at once, with a 1 s script: a request finding two others
    waiting for the address (or the instance) is refused at once (RequestLimitExceeded, which
    the SDKs retry after a pause); they no longer hold all of the gateway's worker threads,
    and another user's request is answered at its usual speed (it took 8.5 s)."""
    cloud = clean
    ip = cloud.ec2().allocate_address()["PublicIp"]
    bob = cloud.ec2(0, "eipbob")
    bob.describe_addresses()
    cloud.slow(1)
    moves = [
        (
            0,
            lambda n=n: outcome(
                cloud.ec2().associate_address, PublicIp=ip, InstanceId=cloud.instances[n % 2]
            ),
        )
        for n in range(20)
    ]

    def meanwhile() -> str:
        began = time.monotonic()
        bob.describe_addresses()
        return f"{time.monotonic() - began:.2f}"

    *moved, took = in_threads(*moves, (1.5, meanwhile))
    assert float(took) < 0.5, took
    counts = Counter(moved)
    assert set(counts) == {"ok", "RequestLimitExceeded"}, counts
    cloud.slow(0)
    cloud.assert_network_as_recorded()


def private_ips(cloud) -> dict[str, str]:
    ec2 = cloud.ec2()
    res = ec2.describe_instances(InstanceIds=cloud.instances)["Reservations"]
    return {i["InstanceId"]: i["PrivateIpAddress"] for r in res for i in r["Instances"]}


def test_a_late_association_never_takes_another_users_address(clean) -> None:
    """While demo's association runs its (2 s) script on the first gateway, demo releases the
    address through the second and bob allocates it: the association must not write demo's
    record back over bob's (it did: bob's address became demo's). It finds the address changed,
    takes its script back and answers InvalidAddress.NotFound."""
    cloud = clean
    made = cloud.ec2().allocate_address()
    ip = made["PublicIp"]
    cloud.slow(2)
    got = {}

    def take() -> str:
        got.update(cloud.ec2(1, "eipbob").allocate_address(Address=ip))
        return "ok"

    results = in_threads(
        (
            0,
            lambda: outcome(
                cloud.ec2(0).associate_address, PublicIp=ip, InstanceId=cloud.instances[0]
            ),
        ),
        (0.4, lambda: outcome(cloud.ec2(1).release_address, AllocationId=made["AllocationId"])),
        (0.8, take),
    )
    assert results == ["InvalidAddress.NotFound", "ok", "ok"]
    assert ip not in cloud.recorded("demo")
    bobs = cloud.recorded("eipbob")[ip]
    assert bobs["AllocationId"] == got["AllocationId"] and "InstanceId" not in bobs
    cloud.slow(0)
    cloud.assert_network_as_recorded()  # the association's script taken back


def test_two_gateways_moving_one_address_agree_on_one(clean) -> None:
    """Two associations of one address at once, through two gateways: one wins, the other
    finds the address changed when it comes to write, answers Unavailable (retried by the SDKs)
    and puts the network back as recorded. Both used to succeed, both scripts kept."""
    cloud = clean
    ip = cloud.ec2().allocate_address()["PublicIp"]
    cloud.slow(1)
    results = in_threads(
        (
            0,
            lambda: outcome(
                cloud.ec2(0).associate_address, PublicIp=ip, InstanceId=cloud.instances[0]
            ),
        ),
        (
            0.3,
            lambda: outcome(
                cloud.ec2(1).associate_address, PublicIp=ip, InstanceId=cloud.instances[1]
            ),
        ),
    )
    assert sorted(results) == ["Unavailable", "ok"]
    winner = cloud.instances[results.index("ok")]
    assert cloud.recorded()[ip]["InstanceId"] == winner
    cloud.slow(0)
    assert cloud.network() == {ip: {private_ips(cloud)[winner]}}
    cloud.assert_network_as_recorded()


def test_two_gateways_giving_one_instance_two_addresses_leave_it_one_at_most(clean) -> None:
    """Two addresses associated with one instance at once, through two gateways (each saw no
    address on it): the instance keeps one at most (both stayed recorded); the one that sees
    the other's takes its own back and answers Unavailable."""
    cloud = clean
    x, y = (cloud.ec2().allocate_address()["PublicIp"] for _ in "xy")
    cloud.slow(1)
    vm = cloud.instances[0]
    results = in_threads(
        (0, lambda: outcome(cloud.ec2(0).associate_address, PublicIp=x, InstanceId=vm)),
        (0, lambda: outcome(cloud.ec2(1).associate_address, PublicIp=y, InstanceId=vm)),
    )
    assert results.count("ok") <= 1 and set(results) <= {"ok", "Unavailable"}, results
    on_vm = [ip for ip, a in cloud.recorded().items() if a.get("InstanceId") == vm]
    assert len(on_vm) == results.count("ok")
    (res,) = cloud.ec2().describe_instances(InstanceIds=[vm])["Reservations"]
    assert res["Instances"][0].get("PublicIpAddress") == (on_vm[0] if on_vm else None)
    cloud.slow(0)
    cloud.assert_network_as_recorded()
