"""Wire conventions: result arrays, <i8> replication index, xmlrpc-c faults."""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
import xmlrpc.client

import pytest

from onesim.server import SimServer

from .conftest import One


def raw(url: str, body: str) -> str:
    u = urllib.parse.urlparse(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    c.request("POST", u.path, body, {"Content-Type": "text/xml"})
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Content-type") == "text/xml; charset=utf-8"
    return r.read().decode()


def test_failure_has_i8_replication_index(sim) -> None:
    body = xmlrpc.client.dumps(("demo:demo", 999), "one.vm.info")
    out = raw(sim.url, body)
    assert (
        "<value><i4>1024</i4></value>\r\n<value><i4>999</i4></value>\r\n<value><i8>-1</i8>" in out
    )
    assert "<value><string>[one.vm.info] Error getting virtual machine [999].</string>" in out


def test_success_array(one: One, sim) -> None:
    assert one("one.system.version", sim.one_auth) == [True, "7.4.0", 0]
    assert one("one.system.version", "oneadmin:bad") == [
        False,
        "[one.system.version] User couldn't be authenticated, aborting call.",
        256,
        -1,
        -1,
    ]


@pytest.mark.parametrize(
    ("method", "args", "msg"),
    [
        ("one.vm.info", ("S",), "Not enough parameters"),
        ("one.vm.info", ("S", "0"), "Parameter that is supposed to be integer is not"),
        ("one.vm.info", ("S", True), "Parameter that is supposed to be integer is not"),
        ("one.vm.info", ("S", 0, 1), "Parameter that is supposed to be boolean is not"),
        ("one.vm.update", ("S", 0, "A=1", True), "Parameter that is supposed to be integer is not"),
        ("one.vm.action", ("S", 0, 0), "Parameter that is supposed to be a string is not"),
        ("one.vm.info", (5, 0), "Parameter that is supposed to be a string is not"),
        (
            "one.user.allocate",
            ("S", "a", "b", "core", "x"),
            "Parameter that is supposed to be an array is not",
        ),
    ],
)
def test_type_faults(sim, method: str, args: tuple, msg: str) -> None:
    args = tuple(sim.one_auth if a == "S" else a for a in args)
    with pytest.raises(xmlrpc.client.Fault) as e:
        One(sim.url)(method, *args)
    assert (e.value.faultCode, e.value.faultString) == (-501, msg)


def test_unknown_method(sim) -> None:
    with pytest.raises(xmlrpc.client.Fault) as e:
        One(sim.url)("one.foo.bar", sim.one_auth)
    assert (e.value.faultCode, e.value.faultString) == (-506, "Method 'one.foo.bar' not defined")


def test_malformed_call(sim) -> None:
    out = raw(sim.url, "<methodCall><nope")
    assert "<i4>-503</i4>" in out and "Call XML not a proper XML-RPC call." in out


def test_xml_escaping_of_bodies(one: One) -> None:
    r = one("one.vm.allocate", "demo:demo", 'NAME="a<b"\nMEMORY="8"\nCPU="1"', True)
    assert r == [False, "[one.vm.allocate] Invalid NAME, char '<' is not allowed", 8192, -1, -1]
    r = one(
        "one.vm.allocate",
        "demo:demo",
        "<TEMPLATE><MEMORY>8</MEMORY><CPU>1</CPU>"
        "<NOTE><![CDATA[x]]]]><![CDATA[>y<&]]></NOTE></TEMPLATE>",
        True,
    )
    xml = one("one.vm.info", "demo:demo", r[1])[1]
    assert "<NOTE><![CDATA[x]]]]><![CDATA[>y<&]]></NOTE>" in xml


def test_system_config(one: One, sim) -> None:
    assert "<API_LIST_ORDER><![CDATA[DESC]]>" in one("one.system.config", sim.one_auth)[1]
    assert (
        one("one.system.config", "demo:demo")[1]
        == "<OPENNEBULA_CONFIGURATION></OPENNEBULA_CONFIGURATION>"
    )


# -- connections, as oned's xmlrpc-c Abyss server keeps them (oned.conf's MAX_CONN,
# KEEPALIVE_TIMEOUT, KEEPALIVE_MAX_CONN)

VERSION = xmlrpc.client.dumps(("demo:demo",), "one.system.version")


def _post(conn: http.client.HTTPConnection, keep_alive: bool) -> http.client.HTTPResponse:
    headers = {"Content-Type": "text/xml"}
    if keep_alive:
        headers["Connection"] = "keep-alive"
    conn.request("POST", "/RPC2", VERSION, headers)
    resp = conn.getresponse()
    assert "<string>7.4.0</string>" in resp.read().decode()
    return resp


def _connection(sim) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(sim.host, sim.port, timeout=10)


def _ended(conn: http.client.HTTPConnection) -> bool:
    """The server closed its side (a read gets end of file)."""
    conn.sock.settimeout(5)
    return conn.sock.recv(1) == b""


def test_a_connection_ends_after_the_answer_unless_asked_to_stay(sim) -> None:
    conn = _connection(sim)
    resp = _post(conn, keep_alive=False)  # what the golden answers were recorded with
    assert resp.getheader("Connection") == "close" and resp.getheader("Keep-Alive") is None
    assert resp.will_close


def test_keep_alive_serves_the_next_calls_on_the_same_connection(sim) -> None:
    conn = _connection(sim)
    resp = _post(conn, keep_alive=True)
    assert resp.getheader("Connection") == "Keep-Alive"
    assert resp.getheader("Keep-Alive") == "timeout=15, max=30"
    sock = conn.sock
    for _ in range(5):
        _post(conn, keep_alive=True)
    assert conn.sock is sock  # no new connection was made


def test_the_last_call_a_connection_may_carry_closes_it(tmp_path) -> None:
    sim = SimServer(str(tmp_path), seed="demo", speed=0, keepalive_max_conn=3).start()
    try:
        conn = _connection(sim)
        first, second, third = (_post(conn, keep_alive=True) for _ in range(3))
        assert first.getheader("Connection") == second.getheader("Connection") == "Keep-Alive"
        assert third.getheader("Connection") == "close" and third.will_close
    finally:
        sim.stop()


def test_an_idle_connection_ends_after_the_keepalive_timeout(tmp_path) -> None:
    sim = SimServer(str(tmp_path), seed="demo", speed=0, keepalive_timeout=1).start()
    try:
        conn = _connection(sim)
        _post(conn, keep_alive=True)
        start = time.monotonic()
        assert _ended(conn)
        assert 0.5 < time.monotonic() - start < 4
    finally:
        sim.stop()


def test_beyond_max_conn_a_connection_waits_until_one_ends(tmp_path) -> None:
    sim = SimServer(str(tmp_path), seed="demo", speed=0, max_conn=2).start()
    try:
        held = [_connection(sim) for _ in range(2)]
        for conn in held:
            _post(conn, keep_alive=True)  # both stay open, idle
        answered = threading.Event()

        def third() -> None:
            _post(_connection(sim), keep_alive=False)
            answered.set()

        threading.Thread(target=third, daemon=True).start()
        assert not answered.wait(0.5)  # oned does not accept it meanwhile
        held[0].close()
        assert answered.wait(5)
    finally:
        sim.stop()


def test_stop_ends_idle_kept_alive_connections(tmp_path) -> None:
    sim = SimServer(str(tmp_path), seed="demo", speed=0).start()
    conn = _connection(sim)
    _post(conn, keep_alive=True)
    start = time.monotonic()
    sim.stop()
    assert time.monotonic() - start < 3 and _ended(conn)


def test_a_slow_reader_gets_the_whole_answer(tmp_path) -> None:
    """KEEPALIVE_TIMEOUT bounds the wait for a request, not the writing of a large answer."""
    import socket
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from onesim_pool import populate

    sim = SimServer(str(tmp_path), seed="demo", speed=0, keepalive_timeout=1).start()
    try:
        populate(sim, 1000)  # about 7 MB of XML-RPC
        body = xmlrpc.client.dumps(("demo:demo", -2, -1, -1, -1), "one.vmpool.infoextended")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((sim.host, sim.port))
        head = f"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
        sock.sendall(head.encode() + body.encode())
        time.sleep(2.5)  # longer than the timeout, with the server blocked in writing
        sock.settimeout(20)
        data = b""
        while chunk := sock.recv(1 << 20):
            data += chunk
        header, _, answer = data.partition(b"\r\n\r\n")
        length = int(
            next(h for h in header.split(b"\r\n") if h.lower().startswith(b"content-length")).split(
                b":"
            )[1]
        )
        assert len(answer) == length > 5_000_000
    finally:
        sim.stop()
