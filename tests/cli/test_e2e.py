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
from contextlib import contextmanager
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
    sim_url: str  # onesim's XML-RPC endpoint (oned's port): a wrong EC2 endpoint
    state: Path  # the demo's state directory (.one/one_auth: oneadmin)

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


@contextmanager
def _running_server(tmp: Path, *options: str) -> Iterator[Server]:
    port, sim_port = free_port(), free_port()
    cmd = [
        str(BIN / "econe-server"), "run", "--simulator", "--port", str(port),
        "--sim-port", str(sim_port), "--state-dir", str(tmp / "state"), *options,
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
    yield Server(
        f"http://127.0.0.1:{port}", home, f"http://127.0.0.1:{sim_port}/RPC2", tmp / "state"
    )
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    with _running_server(tmp_path_factory.mktemp("econe-cli-e2e"), "--sim-speed", "0.05") as s:
        yield s


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[Server]:
    """The demo as the README's reader starts it: its own pace, 1 s a life-cycle step."""
    with _running_server(tmp_path_factory.mktemp("econe-cli-demo")) as s:
        yield s


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
    # without --name, registering keeps the image's name (as the Ruby econe-register)
    (registered,) = server.json("describe-images", ami)["Images"]
    assert registered["Name"] == "cli-e2e-upload"
    # same name, same file (this time without the checksum the CLI sends by default): the
    # same image, not a new one
    again = server.ok("upload", str(image), "--name", "cli-e2e-upload", "--no-checksum")
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


def _answering(body: bytes, status: int = 200):
    """A local HTTP server answering every POST with `body` (and `status`); → (url, stop)."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(status)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_address[1]}", httpd.shutdown


def test_an_answer_that_is_not_the_actions_own_is_a_failure(server):
    """HTTP 200 is not success: the Ruby econe-server sends errors with 200 and an error
    document, and a wrong endpoint (oned's port) answers 200 with an XML-RPC fault."""
    proc = server.econe("release-address", "192.0.2.1", "-U", server.sim_url)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == (
        f"econe: bad answer from {server.sim_url}: not an EC2 answer (<methodResponse>)\n"
    )
    error = (
        b"<Response><Errors><Error><Code>InvalidInstanceID.NotFound</Code>"
        b"<Message>The instance ID 'i-00000042' does not exist</Message></Error></Errors>"
        b"<RequestID>r-1</RequestID></Response>"
    )
    url, stop = _answering(error)
    try:
        proc = server.econe("terminate-instances", "i-00000042", "-U", url)
        assert proc.returncode == 1 and proc.stdout == ""
        assert proc.stderr == (
            "econe: InvalidInstanceID.NotFound: The instance ID 'i-00000042' does not exist\n"
        )
    finally:
        stop()
    url, stop = _answering(b"<html><body>" + b"x" * 5000 + b"</body></html>")
    try:
        proc = server.econe("describe-regions", "-U", url)
        assert (proc.returncode, proc.stderr) == (
            1,
            f"econe: bad answer from {url}: not an EC2 answer (<html>)\n",
        )
    finally:
        stop()


def test_upload_to_what_is_no_ec2_endpoint_says_so_as_other_commands(server, tmp_path):
    image = tmp_path / "tiny.img"
    image.write_bytes(b"x" * 1000)
    proc = server.econe("upload", str(image), "-U", server.sim_url)  # oned's XML-RPC port
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        1,
        "",
        f"econe: bad answer from {server.sim_url}: not an EC2 answer (<methodResponse>)\n",
    )  # it printed the answer as a Python dict
    url, stop = _answering(b"<html><body>hi</body></html>")
    try:
        proc = server.econe("upload", str(image), "-U", url)
        assert (proc.returncode, proc.stderr) == (
            1,
            f"econe: bad answer from {url}: not an EC2 answer (<html>)\n",
        )
    finally:
        stop()


def test_a_key_file_that_cannot_be_made_makes_no_key_pair(server, tmp_path):
    proc = server.econe("create-keypair", "cli-lost", "-o", str(tmp_path / "no" / "k.pem"))
    assert proc.returncode == 2 and "cannot create" in proc.stderr
    assert "cli-lost" not in server.ok("describe-keypairs")


def test_upload_honours_a_short_timeout(server, tmp_path):
    """--timeout bounds each wait of an upload too (it was raised to 300 s whatever given)."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts the connection, never answers
    image = tmp_path / "tiny.img"
    image.write_bytes(b"x" * 1000)
    try:
        started = time.monotonic()
        proc = server.econe(
            "upload", str(image), "--no-progress", "--timeout", "1",
            "-U", f"http://127.0.0.1:{silent.getsockname()[1]}",
        )  # fmt: skip
        assert proc.returncode == 3, proc.stderr
        assert time.monotonic() - started < 30
    finally:
        silent.close()


def test_odd_arguments_are_usage_or_server_errors(server):
    # a digit Python reads but no id has: sent as given, the server says it is malformed
    proc = server.econe("describe-instances", "\u00b2")
    assert (proc.returncode, proc.stderr.split(":")[1].strip()) == (
        1,
        "InvalidInstanceID.Malformed",
    )
    proc = subprocess.run(  # bytes that are no UTF-8 text, as a shell passes them
        [str(BIN / "econe"), "-K", "demo", "-S", DEMO_SECRET, "describe-instances", b"\xff"],
        capture_output=True,
        text=True,
        env=server.env(LC_ALL="C.UTF-8"),
        timeout=60,
    )
    assert proc.returncode == 2 and "not valid text" in proc.stderr, proc.stderr


def test_output_the_locale_cannot_encode_is_escaped_not_an_argument_error(server, tmp_path):
    image = tmp_path / "d.img"
    image.write_bytes(b"x" * 1000)
    ami = server.ok("upload", str(image), "--name", "d\u00e9bian-\u00fc").strip()
    server.ok("register", ami)
    proc = server.econe("describe-images", ami, LC_ALL="C", PYTHONIOENCODING="ascii")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.splitlines()[1].split()[-1] == "d\\xe9bian-\\xfc"


def test_legacy_commands_name_themselves(server):
    proc = subprocess.run(
        [str(BIN / "econe-run-instances"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and proc.stdout.startswith("usage: econe-run-instances ")
    proc = subprocess.run(
        [str(BIN / "econe-run-instances")], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "econe-run-instances: error:" in proc.stderr
    # an unknown option too (argparse had the top parser report it, as `econe`)
    proc = subprocess.run(
        [str(BIN / "econe-describe-instances"), "--bogus"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and proc.stderr.startswith("usage: econe-describe-instances ")
    assert proc.stderr.endswith(
        "econe-describe-instances: error: unrecognized arguments: --bogus\n"
    )


def test_a_public_driver_user_signs_with_the_password_as_given(server, tmp_path):
    """oned keeps a `public` user's password as given: --plain-secret takes ONE_AUTH's password
    itself as the secret (the default, its SHA-256, is a `core` user's)."""
    import xmlrpc.client

    oneadmin = (server.state / ".one" / "one_auth").read_text().strip()
    proxy = xmlrpc.client.ServerProxy(server.sim_url)
    ok, *_ = proxy.one.user.allocate(oneadmin, "cli-public", "Pl41n-secret", "public", [1])
    assert ok
    auth = tmp_path / "one_auth"
    auth.write_text("cli-public:Pl41n-secret\n")
    proc = server.econe("describe-regions", keys=False, ONE_AUTH=str(auth))
    assert proc.returncode == 1 and "SignatureDoesNotMatch" in proc.stderr  # hashed: wrong
    assert "opennebula" in server.ok(
        "--plain-secret", "describe-regions", keys=False, ONE_AUTH=str(auth)
    )


def _readme_walk_through() -> str:
    """The first shell block of the README's `econe` section."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## The `econe` command line client", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def test_the_readme_walk_through_runs_as_pasted(demo, tmp_path):
    """Each step waits for what the next needs (without --wait, stop-instances met pending
    instances and attach-volume a creating volume)."""
    script = _readme_walk_through()
    assert "http://127.0.0.1:4567" in script
    script = script.replace("http://127.0.0.1:4567", demo.url)
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=demo.env(PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}"),
        timeout=300,
    )
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stdout
    instances = [i for r in json.loads(proc.stdout[proc.stdout.index("{") :])["Reservations"]
                 for i in r["Instances"]]  # fmt: skip
    assert [i["State"]["Name"] for i in instances] == ["running", "running"]
    assert "web-v1" in demo.ok("describe-images")
    (volume,) = demo.json("describe-volumes")["Volumes"]
    assert (volume["State"], volume["Attachments"][0]["Device"]) == ("in-use", "/dev/vdb")


def test_wait_gives_up_after_its_timeout_with_exit_4(demo):
    proc = demo.econe("run-instances", "ami-00000000", "--wait-timeout", "0.3", "--no-headers")
    assert proc.returncode == 4
    # what was done is printed all the same: a script has the new instance's id
    _, _, instance, _, state = proc.stdout.split()
    assert state == "pending"
    assert proc.stderr == (
        f"econe: gave up waiting for running after 0.3 s (--wait-timeout): {instance} is pending\n"
    )
    out = demo.ok("terminate-instances", instance, "--wait", "--no-headers")
    assert out.split()[-1] == "terminated"
    assert _states(demo, [instance]) in ({instance: "terminated"}, {})
