"""`econe-server` as a user runs it: the demo banner's aws line, the daemon commands."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

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


def _server(*argv: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "econe-server"), *argv], capture_output=True, text=True, timeout=timeout
    )


def test_a_pid_file_naming_a_process_that_mentions_econe_server_is_stale(tmp_path):
    """`tail -f …/econe-server.log` has econe-server in its command line: still not the
    daemon, so status says none runs, stop kills nothing and exits 1."""
    log = tmp_path / "econe-server.log"
    log.write_text("")
    other = subprocess.Popen(["tail", "-f", str(log)], stdout=subprocess.DEVNULL)
    pid_file = tmp_path / "econe.pid"
    pid_file.write_text(f"{other.pid}\n")
    try:
        assert _server("status", "--pid-file", str(pid_file)).returncode == 3
        assert _server("stop", "--pid-file", str(pid_file)).returncode == 1
        assert other.poll() is None  # still alive
    finally:
        other.kill()
        other.wait()


def test_restart_with_a_broken_config_keeps_the_server_and_sighup_reopens_the_log(tmp_path):
    """restart checks the configuration first: a broken one leaves the running server up.
    SIGHUP (logrotate's postrotate) makes the daemon write to a new file of the log's name."""
    port, sim_port = free_port(), free_port()
    pid_file, log = tmp_path / "econe.pid", tmp_path / "econe.log"
    common = ["--pid-file", str(pid_file), "--log-file", str(log)]
    serve = ["--simulator", "--port", str(port), "--sim-port", str(sim_port)]
    serve += ["--state-dir", str(tmp_path / "state"), *common]
    started = _server("start", *serve)
    assert started.returncode == 0, started.stderr + log.read_text()
    try:
        bad = tmp_path / "bad.conf"
        bad.write_text(":debug_level: 9\n")
        out = _server("restart", "--config", str(bad), *serve)
        assert out.returncode == 2 and ":debug_level: must be 0" in out.stderr
        assert _server("status", *common).returncode == 0  # still running
        # an address it cannot listen on: a name that resolves to nothing, a port taken
        out = _server("restart", "--host", "nosuch.invalid", *serve)
        assert out.returncode == 2 and "cannot listen on 'nosuch.invalid'" in out.stderr
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            moved = [*serve[:2], str(taken.getsockname()[1]), *serve[3:]]
            out = _server("restart", *moved)
        assert out.returncode == 1 and "is busy" in out.stderr and "stopped" not in out.stdout
        assert _server("status", *common).returncode == 0  # still running
        rotated = tmp_path / "econe.log.1"
        log.rename(rotated)
        pid = int(pid_file.read_text().split()[0])
        import os
        import signal
        import time

        os.kill(pid, signal.SIGHUP)
        deadline = time.monotonic() + 20
        while True:  # a request now and then: the daemon wakes, writes the new file
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"GET /?Action=DescribeRegions HTTP/1.1\r\nHost: x\r\n\r\n")
                s.recv(1024)
            text = log.read_text() if log.exists() else ""
            if "opened again (SIGHUP)" in text and " GET " in text:
                break
            assert time.monotonic() < deadline, f"no new log file after SIGHUP: {text!r}"
            time.sleep(0.2)
        assert "opened again" not in rotated.read_text()  # the old file is left as it was
        assert _server("status", *common).returncode == 0
        # the same place spelt otherwise is the running server's own, not a busy one
        out = _server("restart", "--host", "localhost", *serve[:-4], *common)
        assert out.returncode == 0 and "stopped" in out.stdout, out.stderr
        assert pid_file.read_text().strip().isdigit()  # the pid alone: kill -HUP $(cat …)
    finally:
        assert _server("stop", *common).returncode == 0


def test_start_says_why_credentials_refuse(tmp_path):
    """start checks the server credentials as run does, before any daemon: the reason on the
    terminal, exit 2 (not "see the log")."""
    auth = tmp_path / "ec2_auth"
    auth.write_text("serveradmin:pw\n")
    auth.chmod(0o640)
    conf = tmp_path / "econe.conf"
    conf.write_text(f":ec2_auth: {auth}\n:port: {free_port()}\n")
    out = _server(
        "start", "--config", str(conf), "--pid-file", str(tmp_path / "p"),
        "--log-file", str(tmp_path / "l"),
    )  # fmt: skip
    assert out.returncode == 2 and "chmod 600" in out.stderr
    assert not (tmp_path / "p").exists()


def test_instance_type_templates_are_checked_at_start(tmp_path):
    """A type whose template is missing or not Jinja2 stops run and start with one line naming
    the type, the file and the line; one that fails only without user data is a warning."""
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "t.j2").write_text("CPU = 1\nMEMORY = 64\nNAME = {{ user_data.upper( }}\n")
    (templates / "k.j2").write_text("CPU = 1\nMEMORY = 64\nNAME = {{ key_name.upper() }}\n")
    conf = tmp_path / "econe.conf"
    types = {"broken": ":template: t.j2", "gone": ":template: nowhere.j2"}
    for name, line in types.items():
        conf.write_text(
            f":template_location: {templates}\n:instance_types:\n  :{name}:\n    {line}\n"
        )
        for command in (["run", "--simulator"], ["start", "--simulator"]):
            out = _server(
                *command, "--config", str(conf), "--port", str(free_port()), "--sim-port",
                str(free_port()), "--state-dir", str(tmp_path / "state"), "--pid-file",
                str(tmp_path / "p"), "--log-file", str(tmp_path / "log"),
            )  # fmt: skip
            assert out.returncode == 2, (name, command, out.stderr)
            assert out.stderr.startswith(f"econe-server: :instance_types: {name}: ")
            assert ("t.j2, line 3" if name == "broken" else "nowhere.j2 not found") in out.stderr
            assert "Traceback" not in out.stderr and not (tmp_path / "p").exists()
    conf.write_text(
        f":template_location: {templates}\n:instance_types:\n  :keyed:\n    :template: k.j2\n"
    )
    out = _server(
        "start", "--simulator", "--config", str(conf), "--port", str(free_port()), "--sim-port",
        str(free_port()), "--state-dir", str(tmp_path / "state"), "--pid-file",
        str(tmp_path / "p"), "--log-file", str(tmp_path / "log"),
    )  # fmt: skip
    try:
        assert out.returncode == 0, out.stderr
        assert "warning: :instance_types: keyed: " in out.stderr
        assert "fails for a launch without user data" in out.stderr
    finally:
        _server("stop", "--pid-file", str(tmp_path / "p"))


@pytest.mark.parametrize("auth, what", [("x509", "client certificate"), ("remote", "user name")])
def test_x509_or_remote_without_a_trusted_proxy_says_so_at_start(tmp_path, auth, what):
    """Every request would be refused (the identity comes from a proxy): the log says why."""
    import time

    conf = tmp_path / "econe.conf"
    conf.write_text(f":auth: {auth}\n")
    port, sim_port = free_port(), free_port()
    proc = subprocess.Popen(
        [str(BIN / "econe-server"), "run", "--simulator", "--config", str(conf), "--port",
         str(port), "--sim-port", str(sim_port), "--state-dir", str(tmp_path / "state")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert f":auth: {auth} takes the {what} from a proxy" in err
    assert "every request will be refused" in err


def test_daemon_on_a_unix_socket(tmp_path):
    """:unix_socket: — start listens there (mode 0660) and says so, a second start finds it
    busy, stop removes the socket file; a socket left by a killed econe is taken over, and any
    other file at that path stops the start."""
    sock = tmp_path / "econe.sock"
    conf = tmp_path / "econe.conf"
    conf.write_text(f":unix_socket: {sock}\n")
    common = ["--pid-file", str(tmp_path / "econe.pid"), "--log-file", str(tmp_path / "econe.log")]
    start = ["start", "--simulator", "--config", str(conf), "--sim-port", str(free_port()),
             "--state-dir", str(tmp_path / "state"), *common]  # fmt: skip
    out = _server(*start)
    assert out.returncode == 0, out.stderr + (tmp_path / "econe.log").read_text()
    try:
        assert f"listening on unix socket {sock}" in out.stdout
        assert oct(sock.stat().st_mode & 0o777) == oct(0o660)
        with socket.socket(socket.AF_UNIX) as s:  # an unsigned request: econe answers it
            s.settimeout(30)
            s.connect(str(sock))
            s.sendall(b"GET /?Action=DescribeRegions HTTP/1.0\r\nHost: localhost\r\n\r\n")
            answer = b"".join(iter(lambda: s.recv(65536), b""))
        assert b"<Code>MissingAuthenticationToken</Code>" in answer, answer
        again = _server(*start[:-4], "--pid-file", str(tmp_path / "other.pid"),
                        "--log-file", str(tmp_path / "other.log"))  # fmt: skip
        assert again.returncode == 1 and f"unix socket {sock} is busy" in again.stderr
    finally:
        stop = _server("stop", *common)
    assert stop.returncode == 0 and not sock.exists()

    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock))  # what a killed econe leaves: a socket file nobody listens on
    stale.close()
    (tmp_path / "again").mkdir()
    proc, _ = start_demo(tmp_path / "again", extra=["--config", str(conf)], unix_socket=sock)
    stop_demo(proc)
    assert not sock.exists()

    sock.write_text("not a socket")
    out = _server("run", "--simulator", "--config", str(conf), "--sim-port", str(free_port()),
                  "--state-dir", str(tmp_path / "state"))  # fmt: skip
    assert out.returncode == 2 and f"{sock} exists and is not a socket" in out.stderr
    assert sock.read_text() == "not a socket"


def test_start_logs_to_the_configs_log_file(tmp_path):
    """:log_file: is where `start` logs when no --log-file is given (not /var/log/one)."""
    log = tmp_path / "from-config.log"
    conf = tmp_path / "econe.conf"
    conf.write_text(f":log_file: {log}\n")
    pid = ["--pid-file", str(tmp_path / "econe.pid")]
    out = _server("start", "--simulator", "--config", str(conf), "--port", str(free_port()),
                  "--sim-port", str(free_port()), "--state-dir", str(tmp_path / "state"), *pid)  # fmt: skip
    try:
        assert out.returncode == 0, out.stderr
        assert f"log {log}" in out.stdout and "Application startup complete" in log.read_text()
    finally:
        assert _server("stop", *pid).returncode == 0


def test_server_credentials_oned_refuses_stop_the_start(tmp_path):
    """A wrong serveradmin password in ec2_auth: run and start say so and do not serve (every
    request would have been a retryable 503); oned not answering yet is only a warning."""
    from onesim.server import SimServer

    sim = SimServer(str(tmp_path / "sim"), host="127.0.0.1", port=free_port(), seed="demo")
    sim.start()
    try:
        auth = tmp_path / "ec2_auth"
        auth.write_text("serveradmin:not-the-password\n")
        auth.chmod(0o600)
        conf = tmp_path / "econe.conf"
        conf.write_text(f":one_xmlrpc: {sim.url}\n:ec2_auth: {auth}\n:port: {free_port()}\n")
        for command in (["run"], ["start", "--pid-file", str(tmp_path / "p"),
                                  "--log-file", str(tmp_path / "l")]):  # fmt: skip
            out = _server(*command, "--config", str(conf))
            assert out.returncode == 2, out.stderr
            assert f"refuses the server credentials of {auth}" in out.stderr
        assert not (tmp_path / "p").exists()
    finally:
        sim.stop()


def test_bind_unix_replaces_only_a_dead_socket(tmp_path):
    """A live socket at the path (another econe) is left alone and is 'busy'; a symlink is
    refused and its target untouched; a dead one is replaced by a socket with the mode."""
    from econe import listen
    from econe.config import ConfigError, load_config

    path = tmp_path / "econe.sock"
    cfg = load_config(None, unix_socket=str(path))
    live = socket.socket(socket.AF_UNIX)
    live.bind(str(path))
    live.listen()
    with pytest.raises(ConfigError, match="is busy"):
        listen.bind_unix(cfg)
    assert path.exists()
    live.close()  # now a socket file nobody listens on
    sock, inode = listen.bind_unix(cfg)
    try:
        assert path.lstat().st_ino == inode and oct(path.stat().st_mode & 0o777) == "0o660"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["econe.sock"]  # no private dir left
    finally:
        sock.close()
        listen.remove_unix(cfg, inode)
    victim = tmp_path / "victim"
    victim.write_text("x")
    victim.chmod(0o600)
    path.symlink_to(victim)
    with pytest.raises(ConfigError, match="exists and is not a socket"):
        listen.bind_unix(cfg)
    assert oct(victim.stat().st_mode & 0o777) == "0o600" and path.is_symlink()


def test_a_hang_up_stops_run_cleanly_without_a_log_file(tmp_path):
    """SIGHUP reopens the log file when there is one; without, it stops run as SIGTERM does
    (exit 0, socket file removed), as a closed terminal should."""
    import signal
    import time

    sock = tmp_path / "econe.sock"
    conf = tmp_path / "econe.conf"
    conf.write_text(f":unix_socket: {sock}\n")
    (tmp_path / "d").mkdir()
    proc, _ = start_demo(tmp_path / "d", extra=["--config", str(conf)], unix_socket=sock)
    try:
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=30) == 0
    finally:
        stop_demo(proc)
    deadline = time.monotonic() + 5
    while sock.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not sock.exists()
