"""OneClient.exchange_async (calls made on the event loop) against real servers on loopback:
the same answers, errors, timeouts and connection handling as the blocking calls."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from econe.one.client import (
    NO_EXISTS,
    NeedsOned,
    OneClient,
    OneError,
    OneUnavailable,
    no_blocking,
)


def _call(client: OneClient, session: str, method: str, *args):
    """What the engine does: send on the loop, then read the answer like `call()`."""

    async def go():
        data = await client.exchange_async(method, (session, *args))
        return client.answered(method, args, data)

    return asyncio.run(go())


def test_answers_read_like_call(oned):
    url, calls = oned
    client = OneClient(url, timeout=5)
    answered = _call(client, "alice:pw", "one.vm.info", 5)
    assert answered.answers("one.vm.info", [5]) and not answered.answers("one.vm.info", [6])
    assert answered.call("alice:pw", "one.vm.info", 5) == "<VM><ID>5</ID></VM>"
    assert answered.call_xml("alice:pw", "one.vm.info", 5).findtext("ID") == "5"
    assert calls == [("one.vm.info", "alice:pw", 5, False)]  # one call, read twice
    missing = _call(client, "alice:pw", "one.vm.info", 7)
    with pytest.raises(OneError) as exc:
        missing.call_xml("alice:pw", "one.vm.info", 7)
    assert exc.value.code == NO_EXISTS
    fault = _call(client, "alice:pw", "one.vm.update", 5, "A=1", True)  # a bool: fault -501
    with pytest.raises(OneError) as exc:
        fault.call("alice:pw", "one.vm.update", 5, "A=1", True)
    assert exc.value.code == -501


def test_keep_alive_connections_are_reused_on_their_loop(oned):
    client = OneClient(oned[0], timeout=5)

    async def many():
        datas = await asyncio.gather(
            *(client.exchange_async("one.vm.info", ("alice:pw", 5)) for _ in range(4))
        )
        return datas, len(client._aidle)

    datas, idle = asyncio.run(many())
    assert len({bytes(d) for d in datas}) == 1 and b"&lt;ID&gt;5&lt;/ID&gt;" in datas[0]
    assert 1 <= idle <= 4  # at most `keepalive` (4 by default) stay open
    # another event loop does not borrow the first loop's connections: they are dropped (that
    # loop is closed) and the new loop's own connection is the only one pooled
    assert _call(client, "alice:pw", "one.vm.info", 5).call("", "one.vm.info", 5)
    assert len(client._aidle) == 1
    client.close()
    assert client._aidle == []


def test_stale_keep_alive_connection_is_retried(oned):
    client = OneClient(oned[0], timeout=5)

    async def go():
        await client.exchange_async("one.vm.info", ("alice:pw", 5))
        _, conn, _ = client._aidle[0]
        conn.transport.get_extra_info("socket").shutdown(socket.SHUT_RDWR)  # the server is gone
        return await client.exchange_async("one.vm.info", ("alice:pw", 5))

    data = asyncio.run(go())
    assert client.answered("one.vm.info", (5,), data).call("", "one.vm.info", 5)


def test_silent_server_times_out():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        client = OneClient(f"http://127.0.0.1:{listener.getsockname()[1]}/RPC2", timeout=0.3)
        start = time.monotonic()
        with pytest.raises(OneUnavailable) as exc:
            _call(client, "s", "one.vm.info", 1)
        assert time.monotonic() - start < 2
        assert "did not answer within 0.3 s" in exc.value.message
    finally:
        listener.close()


def test_closed_port_is_unavailable(closed_url):
    with pytest.raises(OneUnavailable) as exc:
        _call(OneClient(closed_url, timeout=1), "s", "one.vm.info", 1)
    assert "cannot reach" in exc.value.message


def test_int_out_of_range_is_refused_before_sending(oned):
    url, calls = oned
    with pytest.raises(OneError) as exc:
        _call(OneClient(url, timeout=5), "alice:pw", "one.vm.info", 2**31)
    assert exc.value.code == -501 and calls == []


class _Canned:
    """A server that answers each request with the next canned answer: `bytes` (then closes
    the connection) or `(bytes, False)` (keeps it open for the next request)."""

    def __init__(self, *answers):
        self.answers = [a if isinstance(a, tuple) else (a, True) for a in answers]
        self.requests: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/RPC2"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while self.answers:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                while self.answers:
                    request = conn.recv(65536)
                    if not request:
                        break
                    self.requests.append(request)
                    answer, close = self.answers.pop(0)
                    conn.sendall(answer)
                    if close:
                        break

    def close(self):
        self.sock.close()


OK = b"<?xml version='1.0'?><methodResponse><params><param><value><array><data><value><boolean>1</boolean></value><value><string>&lt;VM&gt;&lt;ID&gt;5&lt;/ID&gt;&lt;/VM&gt;</string></value><value><i4>0</i4></value></data></array></value></param></params></methodResponse>"


def test_chunked_close_and_length_less_answers_are_read():
    chunked = b"".join(
        [b"%x\r\n%s\r\n" % (len(OK[i : i + 50]), OK[i : i + 50]) for i in range(0, len(OK), 50)]
    )
    server = _Canned(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked + b"0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(OK), OK),
        b"HTTP/1.0 200 OK\r\n\r\n" + OK,  # ends with the connection
    )
    client = OneClient(server.url, timeout=2)

    async def three():
        return [await client.exchange_async("one.vm.info", ("s", 5)) for _ in range(3)]

    try:
        assert asyncio.run(three()) == [OK, OK, OK]
        assert client._aidle == []  # the last two said the connection ends
        head = server.requests[0].split(b"\r\n\r\n")[0]
        assert head.startswith(b"POST /RPC2 HTTP/1.1\r\n")
        assert b"Content-Type: text/xml" in head
    finally:
        server.close()


def test_a_connection_with_bytes_after_the_answer_is_not_reused():
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(OK), OK)
    server = _Canned((ok + b"HTTP/1.1 200 OK\r\n", False), ok)
    client = OneClient(server.url, timeout=2)

    async def two():
        first = await client.exchange_async("one.vm.info", ("s", 5))
        pooled = len(client._aidle)
        return first, pooled, await client.exchange_async("one.vm.info", ("s", 5))

    try:
        first, pooled, second = asyncio.run(two())
        assert first == second == OK and pooled == 0
    finally:
        server.close()


def test_http_error_and_garbage_are_unavailable():
    server = _Canned(b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\ngone", b"garbage\r\n\r\n")
    client = OneClient(server.url, timeout=2)
    try:
        with pytest.raises(OneUnavailable) as exc:
            _call(client, "s", "one.x")
        assert "HTTP 404 Not Found" in exc.value.message
        with pytest.raises(OneUnavailable) as exc:
            _call(client, "s", "one.x")
        assert "cannot reach" in exc.value.message
    finally:
        server.close()


def test_answer_cut_short_is_not_sent_again():
    """On a reused connection, an end of stream after part of the answer means the request
    reached oned: it is not sent again (unlike a connection found closed before any answer)."""
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(OK), OK)
    server = _Canned((ok, False), b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\nshort", ok)
    client = OneClient(server.url, timeout=2)

    async def go():
        first = await client.exchange_async("one.vm.info", ("s", 5))
        with pytest.raises(OneUnavailable) as exc:
            await client.exchange_async("one.vm.info", ("s", 5))  # reused, then cut
        return first, exc.value.message

    try:
        first, message = asyncio.run(go())
        assert first == OK
        assert "cannot reach" in message
        assert len(server.requests) == 2
    finally:
        server.close()


def test_retry_after_oned_dropped_its_idle_connections_takes_a_new_one(oned):
    """oned closes every idle keep-alive connection after its timeout: the retry must not
    borrow the next dead one (both the blocking and the event-loop client)."""
    client = OneClient(oned[0], timeout=5)

    async def go():
        await asyncio.gather(
            *(client.exchange_async("one.vm.info", ("alice:pw", 5)) for _ in range(3))
        )
        assert len(client._aidle) >= 2
        for _, conn, _ in client._aidle:
            conn.transport.get_extra_info("socket").shutdown(socket.SHUT_RDWR)
        return await client.exchange_async("one.vm.info", ("alice:pw", 5))

    data = asyncio.run(go())
    assert client.answered("one.vm.info", (5,), data).call("", "one.vm.info", 5)

    threads = [
        threading.Thread(target=client.call, args=("alice:pw", "one.vm.info", 5)) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(client._idle) >= 2
    for conn, _ in client._idle:
        conn.sock.shutdown(socket.SHUT_RDWR)
    assert client.call("alice:pw", "one.vm.info", 5) == "<VM><ID>5</ID></VM>"


def _one_client_server(serve) -> tuple[str, socket.socket]:
    """A listening socket whose first connection is handed to `serve(conn)` in a thread."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)

    def accept():
        conn, _ = sock.accept()
        with conn:
            conn.recv(65536)
            serve(conn)

    threading.Thread(target=accept, daemon=True).start()
    return f"http://127.0.0.1:{sock.getsockname()[1]}/RPC2", sock


def test_the_timeout_applies_to_each_read_not_the_whole_answer():
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(OK), OK)

    def trickle(conn):  # five pieces, 0.3 s apart: 1.2 s in all
        size = len(answer) // 5 + 1
        for k in range(0, len(answer), size):
            time.sleep(0.3 if k else 0)
            conn.sendall(answer[k : k + size])

    url, sock = _one_client_server(trickle)
    try:
        start = time.monotonic()
        data = asyncio.run(OneClient(url, timeout=1).exchange_async("one.vm.info", ("s", 5)))
        assert data == OK
        assert time.monotonic() - start > 1  # longer than the timeout, in steps under it
    finally:
        sock.close()


def test_cancelled_call_closes_its_connection(monkeypatch):
    from econe.one import aio

    closed = threading.Event()
    closing = []  # what the client closes itself (not left to the garbage collector)
    close = aio.Connection.close
    monkeypatch.setattr(aio.Connection, "close", lambda conn: closing.append(conn) or close(conn))

    def wait_for_close(conn):
        conn.settimeout(5)
        if conn.recv(1) == b"":  # the client hung up
            closed.set()

    url, sock = _one_client_server(wait_for_close)
    client = OneClient(url, timeout=5)

    async def go():
        task = asyncio.create_task(client.exchange_async("one.vm.info", ("s", 5)))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        asyncio.run(go())
        assert closed.wait(2)
        assert len(closing) == 1 and client._aidle == []
    finally:
        sock.close()


def test_blocking_calls_refused_while_no_blocking_is_set(oned):
    url, calls = oned
    client = OneClient(url, timeout=5)
    token = no_blocking.set(True)
    try:
        with pytest.raises(NeedsOned):
            client.call("alice:pw", "one.vm.info", 5)
    finally:
        no_blocking.reset(token)
    assert calls == []
    assert client.call("alice:pw", "one.vm.info", 5) == "<VM><ID>5</ID></VM>"
