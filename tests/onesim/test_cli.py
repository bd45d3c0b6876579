"""The ``onesim`` console script."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import xmlrpc.client
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_serves_and_persists(tmp_path: Path) -> None:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "onesim.cli",
        "--state-dir",
        str(tmp_path / "st"),
        "--port",
        str(port),
        "--speed",
        "0",
    ]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert f"http://127.0.0.1:{port}/RPC2" in line
        auth = (tmp_path / "st" / ".one" / "one_auth").read_text().strip()
        proxy = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{port}/RPC2")
        for _ in range(50):
            try:
                assert proxy.one.system.version(auth) == [True, "7.4.0", 0]
                break
            except ConnectionError:
                time.sleep(0.1)
        r = proxy.one.template.instantiate("demo:demo", 0, "cli", False, "", False)
        assert r == [True, 0, 0]
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0
    assert os.path.exists(tmp_path / "st" / "onesim.db")


def test_cli_takes_oned_conf_connection_limits(tmp_path: Path) -> None:
    import http.client

    port = free_port()
    cmd = [sys.executable, "-m", "onesim.cli", "--state-dir", str(tmp_path / "st")]
    cmd += ["--port", str(port), "--keepalive-timeout", "7", "--keepalive-max-conn", "2"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        p.stdout.readline()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        body = xmlrpc.client.dumps(("demo:demo",), "one.system.version")
        answers = []
        for _ in range(2):
            conn.request("POST", "/RPC2", body, {"Connection": "keep-alive"})
            answers.append(conn.getresponse())
            answers[-1].read()
        assert answers[0].getheader("Keep-Alive") == "timeout=7, max=2"
        assert answers[1].getheader("Connection") == "close"  # the second of at most two
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0
