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


def _answer(s: socket.socket) -> str:
    """Everything the server sends until it closes the connection."""
    answer = b""
    while chunk := s.recv(65536):
        answer += chunk
    return answer.decode("latin-1")


def test_slow_or_huge_heads_and_idle_connections_are_bounded(tmp_path):
    """:header_timeout: and :max_connections:, and the 128 KiB head: a client sending nothing
    or a header line now and then, one sending a 200 KB header, and idle connections beyond
    the cap no longer hold the server's connections or memory; each is answered as EC2 XML
    (a silent one is just closed) and the server serves the next client."""
    conf = tmp_path / "econe.conf"
    conf.write_text(":header_timeout: 1\n:max_connections: 3\n")
    proc, demo = start_demo(tmp_path, extra=["--config", str(conf)])

    def connect() -> socket.socket:
        return socket.create_connection(("127.0.0.1", demo.port), timeout=15)

    try:
        started = time.monotonic()
        with connect() as idle:
            assert _answer(idle) == ""  # closed, nothing asked
        with connect() as trickle:
            trickle.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            answer = _answer(trickle)
        assert time.monotonic() - started < 10
        assert answer.startswith("HTTP/1.1 400") and "<Code>RequestTimeout</Code>" in answer
        with connect() as big:
            big.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 200_000)
            answer = _answer(big)
        assert answer.startswith("HTTP/1.1 400") and "<Code>InvalidRequest</Code>" in answer
        assert "headers are longer than 131072 bytes" in answer
        held = [connect() for _ in range(3)]
        try:
            time.sleep(0.3)
            with connect() as one_more:
                answer = _answer(one_more)
            assert answer.startswith("HTTP/1.1 503") and "too many connections" in answer
        finally:
            for s in held:
                s.close()
        time.sleep(0.3)
        assert demo.client().describe_regions()["Regions"]
    finally:
        stop_demo(proc)


def test_a_pipelined_head_waits_for_the_answer_before_its_clock_runs():
    """A client may send its next request while a slow answer (longer than :header_timeout:)
    is being made, in the same read or a later one: that answer arrives, then the next one;
    the next head's deadline starts only once the answer is out."""
    import asyncio
    import threading

    import uvicorn

    from econe import connections
    from tests.e2e.conftest import free_port

    async def app(scope, receive, send):
        if scope["path"] == "/slow":
            await asyncio.sleep(1.5)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, lifespan="off", log_config=None,
            http=connections.protocol_class(0.5, 10),
        )
    )  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        for first, later in (
            (b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\nGET /next HTTP/1.1\r\nHo", b""),
            (b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n", b"GET /next HTTP/1.1\r\nHo"),
        ):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(first)
                time.sleep(0.2)
                if later:
                    s.sendall(later)
                answer = b""
                while b"/slow" not in answer:
                    chunk = s.recv(65536)
                    assert chunk, answer
                    answer += chunk
                assert answer.startswith(b"HTTP/1.1 200")
                s.sendall(b"st: h\r\n\r\n")
                while b"/next" not in answer:
                    chunk = s.recv(65536)
                    assert chunk, answer
                    answer += chunk
                assert answer.count(b"HTTP/1.1 200") == 2
    finally:
        server.should_exit = True
        thread.join(10)
