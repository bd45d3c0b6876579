"""A client that never finishes its body gets RequestTimeout instead of holding the server."""

from __future__ import annotations

import socket
import time

from tests.e2e.conftest import start_demo, stop_demo


def test_a_dripping_body_times_out(tmp_path):
    conf = tmp_path / "econe.conf"
    conf.write_text(":body_timeout: 1\n")
    proc, demo = start_demo(tmp_path, extra=["--config", str(conf)])
    try:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", demo.port), timeout=15) as s:
            s.sendall(
                b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
                b"Action=Desc"
            )
            answer = b""
            while b"</Response>" not in answer:  # headers and body may come in two segments
                chunk = s.recv(65536)
                if not chunk:
                    break
                answer += chunk
            answer = answer.decode("latin-1")
        assert time.monotonic() - started < 10
        assert answer.startswith("HTTP/1.1 400")
        assert "<Code>RequestTimeout</Code>" in answer
    finally:
        stop_demo(proc)
