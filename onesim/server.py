"""XML-RPC transport: strict parameter types (xmlrpc-c faults -501/-503/-506), oned's result
arrays, a threaded HTTP server, and the :class:`SimServer` API."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import xmlrpc.client
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509

from . import auth, errors, faults, methods  # noqa: F401  (registers the methods)
from .core import METHODS, Sim
from .seed import bootstrap
from .template import Escaped

log = logging.getLogger("onesim")
HEAD = '<?xml version="1.0" encoding="UTF-8"?>\r\n<methodResponse>\r\n'
TYPE_MSG = {
    "i": "Parameter that is supposed to be integer is not",
    "b": "Parameter that is supposed to be boolean is not",
    "s": "Parameter that is supposed to be a string is not",
    "A": "Parameter that is supposed to be an array is not",
    "n": "Parameter that is supposed to be floating point number is not",
}


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return f"<value><boolean>{int(v)}</boolean></value>"
    if isinstance(v, int):
        return f"<value><i4>{v}</i4></value>"
    if isinstance(v, Escaped):
        return f"<value><string>{v}</string></value>"
    return f"<value><string>{_esc(str(v))}</string></value>"


def response(values: list, i8_last: bool = False) -> str:
    items = [_value(v) for v in values]
    if i8_last:
        items[-1] = f"<value><i8>{values[-1]}</i8></value>"
    return (
        HEAD
        + "<params>\r\n<param><value><array><data>\r\n"
        + "\r\n".join(items)
        + "\r\n</data></array></value></param>\r\n</params>\r\n</methodResponse>\r\n"
    )


def fault(code: int, msg: str) -> str:
    return (
        HEAD + "<fault>\r\n<value><struct>\r\n<member><name>faultCode</name>\r\n"
        f"<value><i4>{code}</i4></value></member>\r\n<member><name>faultString</name>\r\n"
        f"<value><string>{_esc(msg)}</string></value></member>\r\n</struct></value>\r\n"
        "</fault>\r\n</methodResponse>\r\n"
    )


def _check(v: Any, t: str) -> bool:
    if t == "i":
        return type(v) is int
    if t == "b":
        return type(v) is bool
    if t == "s":
        return type(v) is str
    if t == "A":
        return isinstance(v, list)
    if t == "n":
        return type(v) in (int, float)
    return True


def dispatch(sim: Sim, body: bytes) -> str:
    """Run one XML-RPC call and return the methodResponse document."""
    try:
        params, name = xmlrpc.client.loads(body)
    except Exception as e:  # noqa: BLE001
        return fault(-503, f"Call XML not a proper XML-RPC call.  {e}")
    if name is None:
        return fault(-503, "Call XML not a proper XML-RPC call.  No methodName")
    entry = METHODS.get(name)
    if entry is None:
        return fault(-506, f"Method '{name}' not defined")
    rule = sim.faults.take(name)
    if rule is not None:
        if rule["message"] == "hang" and rule["code"] == 0:
            time.sleep(min(max(rule["latency"], 0.0), faults.MAX_HANG))
            raise faults.Hang()
        if rule["latency"] > 0:
            time.sleep(min(rule["latency"], faults.MAX_HANG))
        if rule["code"] < 0:
            return fault(rule["code"], rule["message"])
        if rule["code"] > 0:
            msg = rule["message"]
            msg = msg if msg.startswith("[") else f"[{name}] {msg}"
            return response([False, msg, rule["code"], -1, -1], i8_last=True)
    types, required, fn = entry
    if len(params) < 1 + required:
        return fault(-501, "Not enough parameters")
    if not _check(params[0], "s"):
        return fault(-501, TYPE_MSG["s"])
    args = list(params[1 : 1 + len(types)])
    for v, t in zip(args, types, strict=False):
        if not _check(v, t):
            return fault(-501, TYPE_MSG[t])
    with sim.lock:
        try:
            sim.advance()
            caller = auth.authenticate(sim, params[0])
            result = fn(sim, caller, *args)
            sim.advance()
            sim.warm()
        except errors.OneError as e:
            result = e
        except Exception as e:  # noqa: BLE001  (a simulator bug: make it visible, keep serving)
            log.exception("onesim: %s failed", name)
            return fault(-500, f"onesim internal error in {name}: {type(e).__name__}: {e}")
        finally:
            sim.store.flush()
    if isinstance(result, errors.OneError):
        return response(
            [False, f"[{name}] {result.message}", result.code, result.resp_id, -1], i8_last=True
        )
    return response([True, result, 0])


class _Handler(BaseHTTPRequestHandler):
    """One connection, served as oned's xmlrpc-c Abyss server does: the connection stays open
    only when the request asks for it (`Connection: keep-alive`; HTTP/1.1 alone is not
    enough), for at most KEEPALIVE_MAX_CONN calls, and ends after KEEPALIVE_TIMEOUT seconds
    without one."""

    protocol_version = "HTTP/1.1"
    server_version = "Xmlrpc-c_Abyss/1.33.14"
    sys_version = ""
    server: _HTTPServer

    def setup(self) -> None:
        self.calls = 0
        super().setup()

    def handle_one_request(self) -> None:
        # KEEPALIVE_TIMEOUT bounds the wait for the next request, not the answer's writing
        # (a slow reader of a 70 MB pool still gets all of it)
        self.connection.settimeout(self.server.keepalive_timeout)
        super().handle_one_request()

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self.connection.settimeout(None)
        try:
            out = dispatch(self.server.sim, body).encode("utf-8")  # type: ignore[attr-defined]
        except faults.Hang:
            self.close_connection = True
            return
        self.calls += 1
        keep = (
            self.headers.get("Connection", "").strip().lower() == "keep-alive"
            and self.calls < self.server.keepalive_max_conn
        )
        self.send_response(200)
        self.send_header("Content-type", "text/xml; charset=utf-8")
        self.send_header("Content-length", str(len(out)))
        self.send_header("Connection", "Keep-Alive" if keep else "close")
        if keep:
            self.send_header(
                "Keep-Alive",
                f"timeout={self.server.keepalive_timeout}, max={self.server.keepalive_max_conn}",
            )
        self.end_headers()
        self.wfile.write(out)
        self.close_connection = not keep


class _HTTPServer(ThreadingHTTPServer):
    """Serves at most `max_conn` connections at once, as oned (MAX_CONN): the next one waits
    in the listen backlog until one of them ends, kept-alive idle ones included."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self, address: Any, max_conn: int, keepalive_timeout: int, keepalive_max_conn: int
    ):
        super().__init__(address, _Handler)
        self.keepalive_timeout = keepalive_timeout
        self.keepalive_max_conn = keepalive_max_conn
        self.slots = threading.BoundedSemaphore(max_conn)
        self.closing = False
        self.open: set[Any] = set()  # the sockets being served, ended by close_all()
        self.open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        while not self.slots.acquire(timeout=0.1):
            if self.closing:
                self.shutdown_request(request)
                return
        with self.open_lock:
            self.open.add(request)
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._done(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._done(request)

    def _done(self, request: Any) -> None:
        with self.open_lock:
            if request not in self.open:
                return
            self.open.discard(request)
        self.slots.release()

    def close_all(self) -> None:
        """End every connection, idle kept-alive ones too (on stop)."""
        self.closing = True
        with self.open_lock:
            requests = list(self.open)
        for request in requests:
            with contextlib.suppress(OSError):
                request.shutdown(socket.SHUT_RDWR)


class SimServer:
    """An onesim instance: ``SimServer(state_dir, port=0).start()`` then use ``url``."""

    def __init__(
        self,
        state_dir: str,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: str = "demo",
        speed: float | None = None,
        server_x509_cert: str | None = None,
        max_conn: int = 15,
        keepalive_timeout: int = 15,
        keepalive_max_conn: int = 30,
    ) -> None:
        """The last three are oned.conf's MAX_CONN, KEEPALIVE_TIMEOUT and KEEPALIVE_MAX_CONN,
        with oned's defaults."""
        if speed is None:
            speed = float(os.environ.get("ONESIM_SPEED", "1.0"))
        self.state_dir = os.path.abspath(state_dir)
        self.sim = Sim(self.state_dir, speed)
        if server_x509_cert:  # what oned's server_x509 driver reads from its :one_cert:
            with open(server_x509_cert, "rb") as f:
                self.sim.server_x509_cert = x509.load_pem_x509_certificate(f.read())
        self.sim.faults = faults.FaultRules()
        with self.sim.lock:
            self.one_auth, self.ec2_auth = bootstrap(self.sim, seed)
            self.sim.store.flush()
        self.httpd = _HTTPServer((host, port), max_conn, keepalive_timeout, keepalive_max_conn)
        self.httpd.sim = self.sim  # type: ignore[attr-defined]
        self.host, self.port = self.httpd.server_address[:2]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/RPC2"

    def start(self) -> SimServer:
        self._thread = threading.Thread(
            target=self.httpd.serve_forever,
            name="onesim",
            kwargs={"poll_interval": 0.05},
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        """Stop serving and close the state store (safe whether or not start() was called)."""
        self.httpd.close_all()
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.httpd.server_close()
        with self.sim.lock:
            self.sim.store.close()

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
