"""The `econe` CLI end to end, run as a user runs it, against `econe-server run --simulator`.

The fixture starts the real server (demo cloud: access key `demo`, secret = sha256("demo")) on
free ports and FAILS (never skips) when it cannot: these tests must run wherever the suite runs.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cli.conftest import DEMO_SECRET, free_port

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
START_TIMEOUT = 60.0


@dataclass
class Server:
    url: str
    home: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("EC2_", "AWS_")) and k != "ONE_AUTH"
        }
        env.update(HOME=str(self.home), EC2_URL=self.url)
        env.update(extra)
        return env

    def econe(self, *argv: str, keys: bool = True, **env: str) -> subprocess.CompletedProcess:
        creds = ["-K", "demo", "-S", DEMO_SECRET] if keys else []
        return subprocess.run(
            [str(BIN / "econe"), *creds, *argv],
            capture_output=True,
            text=True,
            env=self.env(**env),
            timeout=120,
        )

    def ok(self, *argv: str, **kw) -> str:
        proc = self.econe(*argv, **kw)
        assert proc.returncode == 0, f"econe {' '.join(argv)}: {proc.returncode}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr
        return proc.stdout

    def json(self, *argv: str) -> dict:
        return json.loads(self.ok("--json", *argv))


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("econe-cli-e2e")
    port, sim_port = free_port(), free_port()
    cmd = [
        str(BIN / "econe-server"), "run", "--simulator", "--port", str(port),
        "--sim-port", str(sim_port), "--state-dir", str(tmp / "state"), "--sim-speed", "0.05",
    ]  # fmt: skip
    log_path = tmp / "server.log"
    log = open(log_path, "wb")
    try:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, cwd=tmp,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )  # fmt: skip
    except OSError as exc:
        pytest.fail(f"cannot run {cmd[0]} ({exc}); is econe installed (pip install -e .)?")
    deadline = time.monotonic() + START_TIMEOUT
    while not _port_open(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            pytest.fail(
                f"econe-server did not start (exit {proc.returncode}): {' '.join(cmd)}\n"
                f"--- server output ---\n{log_path.read_text(errors='replace')[-4000:]}",
                pytrace=False,
            )
        time.sleep(0.1)
    home = tmp / "home"
    home.mkdir()
    yield Server(f"http://127.0.0.1:{port}", home)
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def _states(server: Server, ids: list[str]) -> dict[str, str]:
    data = server.json("describe-instances", *ids)
    return {
        i["InstanceId"]: i["State"]["Name"] for r in data["Reservations"] for i in r["Instances"]
    }


def _wait(server: Server, ids: list[str], wanted: set[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        states = _states(server, ids)
        if all(states.get(i) in wanted for i in ids):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{ids} did not reach {wanted}: {states}")
        time.sleep(0.2)


def _first_ami(server: Server) -> str:
    images = server.json("describe-images")["Images"]
    assert images, "the demo cloud has an AMI"
    return images[0]["ImageId"]


def test_describe_regions_and_zones(server):
    out = server.ok("describe-regions")
    assert out.splitlines()[0].split() == ["RegionName", "Endpoint"]
    assert "opennebula" in out
    zones = server.json("describe-availability-zones")["AvailabilityZones"]
    assert zones and all(z.get("ZoneName") for z in zones)


def test_describe_images_table(server):
    out = server.ok("describe-images")
    header, *rows = out.splitlines()
    assert header.split()[:3] == ["Owner", "ImageId", "Status"]
    assert rows and all(" ami-" in f" {row}" for row in rows)


def test_instance_life_cycle(server):
    ami = _first_ami(server)
    out = server.ok("run-instances", ami, "-t", "m1.small", "-d", "#cloud-config\n")
    header, row = out.splitlines()
    assert header.split()[:4] == ["Owner", "ImageId", "InstanceId", "InstanceType"]
    instance = row.split()[2]
    assert instance.startswith("i-")
    listed = server.ok("describe-instances", instance)
    assert instance in listed and "m1.small" in listed
    assert instance in server.ok("describe-instances")
    _wait(server, [instance], {"running"})

    out = server.ok("stop-instances", instance)
    assert out.splitlines()[1].split()[:2] == [instance, "running"]
    _wait(server, [instance], {"stopped"})
    server.ok("start-instances", instance)
    _wait(server, [instance], {"running"})
    assert instance in server.ok("reboot-instances", instance)
    _wait(server, [instance], {"running"})
    out = server.ok("terminate-instances", instance)
    assert out.splitlines()[1].split()[0] == instance
    _wait(server, [instance], {"shutting-down", "terminated"})


def test_create_image_from_an_instance(server):
    ami = _first_ami(server)
    instance = server.json("run-instances", ami)["Instances"][0]["InstanceId"]
    _wait(server, [instance], {"running"})
    out = server.ok("create-image", instance, "--name", "cli-saved", "--description", "d")
    new = out.strip()
    assert new.startswith("ami-") and new != ami
    assert "cli-saved" in server.ok("describe-images", new)
    proc = server.econe("create-image", instance, "--name", "cli-saved")
    assert proc.returncode == 1
    assert proc.stderr.startswith("econe: InvalidAMIName.Duplicate: ")
    server.ok("terminate-instances", instance)


def test_run_several_and_terminate_comma_separated(server):
    ami = _first_ami(server)
    data = server.json("run-instances", ami, "-n", "2")
    ids = [i["InstanceId"] for i in data["Instances"]]
    assert len(ids) == 2
    _wait(server, ids, {"running"})
    out = server.ok("terminate-instances", ",".join(ids))
    assert {line.split()[0] for line in out.splitlines()[1:]} == set(ids)


def test_unknown_instance_is_exit_1_with_the_ec2_code(server):
    proc = server.econe("describe-instances", "i-09999999")
    assert proc.returncode == 1
    assert proc.stderr.startswith("econe: InvalidInstanceID.NotFound: ")
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_bad_secret_is_exit_1(server):
    proc = server.econe("-K", "demo", "-S", "0" * 64, "describe-instances", keys=False)
    assert proc.returncode == 1
    assert proc.stderr.split(":")[1].strip() in {"AuthFailure", "SignatureDoesNotMatch"}


def test_one_auth_file_gives_the_sha256_secret(server, tmp_path):
    auth = tmp_path / "one_auth"
    auth.write_text("demo:demo\n")
    out = server.ok("describe-regions", keys=False, ONE_AUTH=str(auth))
    assert "opennebula" in out
    # the Ruby tools' SHA-1 derivation is wrong for OpenNebula >= 5.10
    proc = server.econe("--sha1-secret", "describe-regions", keys=False, ONE_AUTH=str(auth))
    assert proc.returncode == 1


def test_unreachable_endpoint_is_exit_3(server):
    proc = server.econe("-U", f"http://127.0.0.1:{free_port()}", "describe-instances")
    assert proc.returncode == 3
    assert proc.stderr.startswith("econe: cannot reach endpoint")


def test_keypair_create_describe_delete(server, tmp_path):
    key_file = tmp_path / "cli-e2e.pem"
    out = server.ok("create-keypair", "cli-e2e", "-o", str(key_file))
    assert "cli-e2e" in out
    assert "PRIVATE KEY" in key_file.read_text()
    assert "cli-e2e" in server.ok("describe-keypairs")
    server.ok("delete-keypair", "cli-e2e")
    assert "cli-e2e" not in server.ok("describe-keypairs")


def test_volume_create_describe_delete(server):
    volume = server.json("create-volume", "-s", "1")["VolumeId"]
    assert volume in server.ok("describe-volumes")
    server.ok("delete-volume", volume)


def test_upload_and_register(server, tmp_path):
    image = tmp_path / "tiny.img"
    image.write_bytes(os.urandom(300_000))
    out = server.ok("upload", str(image), "--name", "cli-e2e-upload", "--no-progress")
    ami = out.strip()
    assert ami.startswith("ami-")
    assert server.ok("register", ami).strip() == ami
    assert ami in server.ok("describe-images")
    # same name, same file (this time with its checksum): the same image, not a new one
    again = server.ok("upload", str(image), "--name", "cli-e2e-upload", "--checksum")
    assert again.strip() == ami


def test_upload_progress_bar_when_asked(server, tmp_path):
    image = tmp_path / "progress.img"
    image.write_bytes(os.urandom(3 * 1024 * 1024))
    proc = server.econe("upload", str(image), "--progress")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ami-")
    last = proc.stderr.rstrip("\n").split("\r")[-1]
    assert "100%" in last and "3.0 MiB / 3.0 MiB" in last and "/s" in last


def test_elastic_ip_round_trip(server):
    ami = _first_ami(server)
    instance = server.json("run-instances", ami)["Instances"][0]["InstanceId"]
    _wait(server, [instance], {"running"})
    ip = server.json("allocate-address")["PublicIp"]
    assert ip in server.ok("describe-addresses")
    server.ok("associate-address", ip, instance)
    row = [line.split() for line in server.ok("describe-addresses", ip).splitlines()[1:]]
    assert row == [[ip, instance, "standard"]]
    server.ok("disassociate-address", ip)
    server.ok("release-address", ip)
    assert ip not in server.ok("describe-addresses")
    server.ok("terminate-instances", instance)
