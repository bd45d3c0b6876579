"""`econe-server` as a user runs it: the demo banner's aws line, the daemon commands."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import free_port, start_demo, stop_demo

BIN = Path(sys.executable).parent


def test_banner_aws_line_works(demo):
    line = next(ln.strip() for ln in demo.banner.splitlines() if "aws ec2 describe-instances" in ln)
    words = shlex.split(line)
    env_words = [w for w in words if "=" in w and w.split("=")[0].isupper()]
    cmd = [str(BIN / "aws")] + words[len(env_words) + 1 :]
    env = {"PATH": str(BIN), "HOME": str(demo.state_dir)}
    env.update(w.split("=", 1) for w in env_words)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Reservations" in json.loads(out.stdout)


def test_missing_ec2_auth_refuses_to_start(tmp_path):
    conf = tmp_path / "econe.conf"
    conf.write_text(f":ec2_auth: {tmp_path / 'nope'}\n:one_xmlrpc: http://127.0.0.1:1/RPC2\n")
    out = subprocess.run(
        [str(BIN / "econe-server"), "run", "--config", str(conf), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "ec2_auth" in out.stderr or str(tmp_path / "nope") in out.stderr


def test_open_ec2_auth_refuses_to_start(tmp_path):
    auth = tmp_path / "ec2_auth"
    auth.write_text("serveradmin:pw\n")
    auth.chmod(0o644)
    conf = tmp_path / "econe.conf"
    conf.write_text(f":ec2_auth: {auth}\n")
    out = subprocess.run(
        [str(BIN / "econe-server"), "run", "--config", str(conf), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "600" in out.stderr


def test_daemon_start_status_stop(tmp_path):
    port, sim_port = free_port(), free_port()
    common = ["--pid-file", str(tmp_path / "econe.pid"), "--log-file", str(tmp_path / "econe.log")]
    start = [
        str(BIN / "econe-server"),
        "start",
        "--simulator",
        "--port",
        str(port),
        "--sim-port",
        str(sim_port),
        "--state-dir",
        str(tmp_path / "state"),
        *common,
    ]
    out = subprocess.run(start, capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr + (tmp_path / "econe.log").read_text()
    try:
        status = subprocess.run(
            [str(BIN / "econe-server"), "status", *common], capture_output=True, text=True
        )
        assert status.returncode == 0 and "running" in status.stdout
    finally:
        stop = subprocess.run(
            [str(BIN / "econe-server"), "stop", *common], capture_output=True, text=True, timeout=60
        )
    assert stop.returncode == 0, stop.stderr
    status = subprocess.run(
        [str(BIN / "econe-server"), "status", *common], capture_output=True, text=True
    )
    assert status.returncode == 3


def test_state_survives_restart(tmp_path):
    proc, d = start_demo(tmp_path)
    try:
        ec2 = d.client()
        ami = ec2.describe_images()["Images"][0]["ImageId"]
        iid = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    finally:
        stop_demo(proc)
    proc, d = start_demo(tmp_path)
    try:
        got = d.client().describe_instances(InstanceIds=[iid])
        assert got["Reservations"][0]["Instances"][0]["InstanceId"] == iid
    finally:
        stop_demo(proc)


def test_a_stale_pid_file_naming_another_process_is_not_econe(tmp_path):
    """A pid file left behind, whose pid now belongs to another program: status, stop and
    start must not take that program for econe-server (nor kill it)."""
    other = subprocess.Popen(["sleep", "60"])
    pid_file = tmp_path / "econe.pid"
    pid_file.write_text(f"{other.pid}\n")
    common = ["--pid-file", str(pid_file), "--log-file", str(tmp_path / "econe.log")]
    try:
        status = subprocess.run([str(BIN / "econe-server"), "status", *common], capture_output=True)
        assert status.returncode == 3
        stop = subprocess.run([str(BIN / "econe-server"), "stop", *common], capture_output=True)
        assert stop.returncode == 1 and other.poll() is None  # still alive
    finally:
        other.kill()
        other.wait()


def test_start_on_a_busy_port_fails_and_says_so(demo, tmp_path):
    """The port is taken (here by the demo server): no `started`, no pid file."""
    pid_file = tmp_path / "econe.pid"
    out = subprocess.run(
        [str(BIN / "econe-server"), "start", "--simulator", "--port", str(demo.port),
         "--sim-port", str(free_port()), "--state-dir", str(tmp_path / "state"),
         "--pid-file", str(pid_file), "--log-file", str(tmp_path / "econe.log")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 1 and "busy" in out.stderr and "started" not in out.stdout
    assert not pid_file.exists()


def test_unusable_paths_and_ports_are_one_line_errors(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    taken = busy.getsockname()[1]
    runs = {
        "log file": ["run", "--simulator", "--sim-port", str(free_port()), "--port",
                     str(free_port()), "--state-dir", str(tmp_path / "s1"),
                     "--log-file", str(tmp_path / "no" / "such" / "dir" / "econe.log")],
        "simulator port": ["run", "--simulator", "--sim-port", str(taken), "--port",
                           str(free_port()), "--state-dir", str(tmp_path / "s2")],
        "pid file": ["start", "--pid-file", "/proc/econe.pid", "--log-file",
                     str(tmp_path / "econe.log")],
    }  # fmt: skip
    try:
        for what, args in runs.items():
            out = subprocess.run(
                [str(BIN / "econe-server"), *args], capture_output=True, text=True, timeout=60
            )
            assert out.returncode == 2, (what, out.stderr)
            assert "Traceback" not in out.stderr and out.stderr.startswith("econe-server: ")
    finally:
        busy.close()
