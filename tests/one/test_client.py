"""OneClient against real XML-RPC servers on loopback (no mocks)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from econe.one.client import (
    ACTION,
    AUTHENTICATION,
    AUTHORIZATION,
    NO_EXISTS,
    OneClient,
    OneError,
    OneUnavailable,
)


def test_success_returns_the_value(oned):
    url, calls = oned
    client = OneClient(url, timeout=5)
    assert client.call("alice:pw", "one.vm.info", 5) == "<VM><ID>5</ID></VM>"
    assert calls[-1] == ("one.vm.info", "alice:pw", 5, False)


def test_failure_array_raises_one_error(oned):
    client = OneClient(oned[0], timeout=5)
    with pytest.raises(OneError) as exc:
        client.call("alice:pw", "one.vm.info", 9)
    err = exc.value
    assert (err.code, err.resp_id, err.method) == (NO_EXISTS, 9, "one.vm.info")
    assert "Error getting virtual machine [9]" in err.message


def test_authentication_failure(oned):
    with pytest.raises(OneError) as exc:
        OneClient(oned[0], timeout=5).call("alice:wrong", "one.vm.info", 5)
    assert exc.value.code == AUTHENTICATION


def test_four_and_three_element_failures(oned):
    client = OneClient(oned[0], timeout=5)
    with pytest.raises(OneError) as exc:
        client.call("s", "one.vm.action", "poweroff", 3)
    assert (exc.value.code, exc.value.resp_id) == (ACTION, 3)
    with pytest.raises(OneError) as exc:
        client.call("s", "one.old.call")
    assert (exc.value.code, exc.value.resp_id) == (AUTHORIZATION, -1)


def test_fault_raises_one_error_with_negative_code(oned):
    client = OneClient(oned[0], timeout=5)
    with pytest.raises(OneError) as exc:
        client.call("s", "one.no.such.method")
    assert "not supported" in exc.value.message
    with pytest.raises(OneError) as exc:
        client.call("s", "one.vm.update", 1, "A=1", True)  # bool where oned wants int
    assert exc.value.code == -501
    assert exc.value.message == "Parameter that is supposed to be int is not"


def test_typed_arguments(oned):
    url, calls = oned
    client = OneClient(url, timeout=5)
    assert client.call("s", "one.vm.update", 7, "A=1", 1) == 7
    assert client.call("s", "one.typed", True, 3) == "True 3"
    assert calls[-1] == ("typed", "bool", "int")


def test_keep_alive_reuses_connections_and_is_thread_safe(oned):
    client = OneClient(oned[0], timeout=5)
    results, errors = [], []

    def worker():
        try:
            for _ in range(20):
                results.append(client.call("alice:pw", "one.vm.info", 5))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 120
    assert 1 <= len(client._idle) <= 4  # at most `keepalive` (4 by default) stay open
    client.close()
    assert client._idle == []


def test_stale_keep_alive_connection_is_retried(oned):
    client = OneClient(oned[0], timeout=5)
    client.call("alice:pw", "one.vm.info", 5)
    # The server side goes away while the connection sits idle in the pool.
    client._idle[0][0].sock.shutdown(socket.SHUT_RDWR)
    assert client.call("alice:pw", "one.vm.info", 5) == "<VM><ID>5</ID></VM>"


def test_silent_server_times_out():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts (kernel backlog) and never answers
    try:
        client = OneClient(f"http://127.0.0.1:{listener.getsockname()[1]}/RPC2", timeout=0.3)
        start = time.monotonic()
        with pytest.raises(OneUnavailable) as exc:
            client.call("s", "one.vm.info", 1)
        assert time.monotonic() - start < 2
        assert "did not answer" in exc.value.message
    finally:
        listener.close()


def test_slow_call_times_out(oned):
    client = OneClient(oned[0], timeout=0.3)
    with pytest.raises(OneUnavailable):
        client.call("s", "one.sleepy", 2)


def test_closed_port_is_unavailable(closed_url):
    with pytest.raises(OneUnavailable) as exc:
        OneClient(closed_url, timeout=1).call("s", "one.vm.info", 1)
    assert "cannot reach" in exc.value.message


def test_http_error_and_garbage_are_unavailable():
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Bad(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/RPC2":
                body = b"not xml at all"
                self.send_response(200)
            else:
                body = b"gone"
                self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Bad)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        with pytest.raises(OneUnavailable) as exc:
            OneClient(f"http://127.0.0.1:{port}/other", timeout=2).call("s", "one.x")
        assert "HTTP 404" in exc.value.message
        with pytest.raises(OneUnavailable) as exc:
            OneClient(f"http://127.0.0.1:{port}/RPC2", timeout=2).call("s", "one.x")
        assert "not XML-RPC" in exc.value.message
    finally:
        server.shutdown()
        server.server_close()


def test_bad_endpoint_rejected():
    with pytest.raises(ValueError):
        OneClient("ftp://x/RPC2", timeout=1)


def test_int_out_of_range_is_a_type_fault(oned):
    with pytest.raises(OneError) as exc:
        OneClient(oned[0], timeout=5).call("alice:pw", "one.vm.info", 2**31)
    assert exc.value.code == -501


def test_an_answer_cut_short_is_not_sent_again():
    """oned ran the call and its answer broke off: sending it again on a new connection would
    run it twice (two VMs). Only a connection that failed before any byte is retried."""
    import struct

    answer = (
        b"<?xml version='1.0'?><methodResponse><params><param><value><array><data>"
        b"<value><boolean>1</boolean></value><value><int>7</int></value>"
        b"</data></array></value></param></params></methodResponse>"
    )
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: Keep-Alive\r\n\r\n" % len(answer)
    served = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def read_request(conn: socket.socket) -> bool:
        data = b""
        while b"</methodCall>" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            data += chunk
        return True

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            while read_request(conn):
                served.append(1)
                if len(served) == 2:  # run, then the answer breaks off with a reset
                    conn.sendall(head + answer[:40])
                    time.sleep(0.05)
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    conn.close()
                    break
                conn.sendall(head + answer)

    threading.Thread(target=serve, daemon=True).start()
    try:
        client = OneClient(f"http://127.0.0.1:{listener.getsockname()[1]}/RPC2", timeout=5)
        assert client.call("s", "one.vm.allocate", "x") == 7
        with pytest.raises(OneUnavailable):
            client.call("s", "one.vm.allocate", "x")
        assert len(served) == 2
    finally:
        listener.close()
