"""A thin XML-RPC client for oned: stdlib framing over a keep-alive connection pool.

Returns the success value of oned's result array as is (XML strings stay strings; parsing them
with lxml is the caller's job). Thread-safe: each call borrows one pooled connection.

On the event loop, `await exchange_async(method, params)` sends a call without blocking and
returns the raw answer; `answered(method, args, data)` then reads it like `call()` would.
While `no_blocking` is set (code running on the event loop thread), a blocking call raises
NeedsOned instead of stalling every other request.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import http.client
import logging
import select
import ssl
import threading
import time
import xmlrpc.client
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit
from xml.parsers.expat import ExpatError

from lxml import etree

from econe.one import aio
from econe.one.decode import decode_response, parse_document_response

log = logging.getLogger(__name__)

# oned error codes (include/Request.h, 7.x)
SUCCESS = 0x0000
AUTHENTICATION = 0x0100
AUTHORIZATION = 0x0200
NO_EXISTS = 0x0400
ACTION = 0x0800
RPC_API = 0x1000
INTERNAL = 0x2000
ALLOCATE = 0x4000
LOCKED = 0x8000
REPLICATION = 0x10000
FAULT_TYPE = -501  # xmlrpc-c fault for a mistyped parameter


class OneError(Exception):
    """oned answered with a failure array, or with an XML-RPC fault (negative code)."""

    def __init__(self, code: int, message: str, method: str, resp_id: int = -1):
        super().__init__(f"{method}: {message} (code {code:#x})" if code >= 0 else message)
        self.code = code
        self.message = message
        self.method = method
        self.resp_id = resp_id


class OneUnavailable(Exception):
    """oned cannot be reached, timed out, or answered something that is not XML-RPC."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NeedsOned(BaseException):
    """Raised instead of a blocking oned call while `no_blocking` is set. A BaseException, so
    that no `except Exception` on the way swallows it: the code that set `no_blocking` catches
    it and runs the whole job again in a worker thread."""


# Set while code runs on the event loop thread on the chance that it needs no blocking oned
# call (authentication from the cached user pool, a mapping whose only call was made
# asynchronously beforehand).
no_blocking: ContextVar[bool] = ContextVar("econe_no_blocking", default=False)


# A reused keep-alive connection that the server closed while idle fails like this before any
# byte of an answer (sending, or waiting for the status line): the request never reached oned,
# so it is sent once more on a new socket. A failure after the answer began is never retried:
# oned may have run the call.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class _NoAnswer(Exception):
    """The connection failed before any byte of an answer."""


# oned (xmlrpc-c's Abyss) keeps a connection open when asked to, and serves at most MAX_CONN
# connections at once (15 by default), an idle kept-alive one included until its
# KEEPALIVE_TIMEOUT (15 s) ends it: so econe keeps few open (`keepalive`, in all) and reuses
# none that has been idle longer than IDLE_REUSE, well before oned would close it.
IDLE_REUSE = 5.0


class OneClient:
    """`OneClient("http://localhost:2633/RPC2", timeout=30).call(session, "one.vm.info", 5)`.

    `keepalive`: how many connections to oned stay open between calls (0: one per call)."""

    def __init__(self, endpoint: str, timeout: float = 30.0, keepalive: int = 4):
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) XML-RPC endpoint: {endpoint!r}")
        self.endpoint = endpoint
        self.timeout = float(timeout)
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._path = parts.path or "/RPC2"
        if parts.query:
            self._path += "?" + parts.query
        self._host_header = parts.netloc.rpartition("@")[2]
        self._keepalive = keepalive
        self._connection = b"keep-alive" if keepalive else b"close"
        # (connection, idle since): borrowed and given back by worker threads, under the lock
        self._idle: list[tuple[http.client.HTTPConnection, float]] = []
        self._lock = threading.Lock()
        # (event loop, connection, idle since): used only on an event loop thread, so no lock
        self._aidle: list[tuple[asyncio.AbstractEventLoop, aio.Connection, float]] = []
        self._ssl_context: ssl.SSLContext | None = None

    # -- connection pool

    def _new_connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        # The socket timeout applies to connect and to every read, so no call can hang.
        return cls(self._host, self._port, timeout=self.timeout)

    def _borrow(self) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            while self._idle:
                conn, since = self._idle.pop()
                if time.monotonic() - since <= IDLE_REUSE and not _readable(conn.sock):
                    return conn, True
                conn.close()  # too old, or oned closed it (end of file waiting)
        return self._new_connection(), False

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
        """Pool `conn`; connections idle too long are closed, and when the pool is full its
        oldest makes room (a fresh connection is worth more than an old one)."""
        now = time.monotonic()
        with self._lock:
            close = [c for c, since in self._idle if now - since > IDLE_REUSE]
            self._idle = [(c, since) for c, since in self._idle if now - since <= IDLE_REUSE]
            if self._idle and self._idle_count() >= self._keepalive:
                close.append(self._idle.pop(0)[0])
            if self._idle_count() < self._keepalive:
                self._idle.append((conn, now))
            else:
                close.append(conn)
        for c in close:
            c.close()

    def _idle_count(self) -> int:
        """Idle connections still open (those of a closed event loop are closed)."""
        alive = sum(1 for loop, conn, _ in self._aidle if not (loop.is_closed() or conn.ended))
        return len(self._idle) + alive

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()
        aidle, self._aidle = self._aidle, []
        for _, conn, _ in aidle:
            with contextlib.suppress(RuntimeError):  # its event loop is closed already
                conn.close()

    # -- calls

    def _post(self, conn: http.client.HTTPConnection, payload: bytes) -> tuple[int, str, bytes]:
        try:
            conn.request(
                "POST",
                self._path,
                body=payload,
                headers={"Content-Type": "text/xml", "Connection": self._connection.decode()},
            )
            aio.ack_at_once(conn.sock)
            resp = conn.getresponse()
        except _STALE as exc:
            raise _NoAnswer from exc
        data = resp.read()
        if resp.will_close:
            conn.close()
        return resp.status, resp.reason, data

    @staticmethod
    def _payload(method: str, params: tuple[Any, ...]) -> bytes:
        try:
            return xmlrpc.client.dumps(params, methodname=method, encoding="utf-8").encode()
        except OverflowError:
            # oned's ints are 32-bit; it answers a wider value with this same fault.
            raise OneError(
                FAULT_TYPE, "Parameter that is supposed to be int is not (out of range)", method
            ) from None

    def _exchange(self, method: str, params: tuple[Any, ...]) -> bytes:
        """Send one call; the raw XML-RPC answer (HTTP 200) or OneError/OneUnavailable."""
        if no_blocking.get():
            raise NeedsOned
        payload = self._payload(method, params)
        for attempt in (1, 2):
            # the retry takes a new connection: oned drops all its idle ones at once
            conn, reused = self._borrow() if attempt == 1 else (self._new_connection(), False)
            try:
                status, reason, data = self._post(conn, payload)
            except _NoAnswer as exc:
                conn.close()
                if reused and attempt == 1:
                    continue
                raise OneUnavailable(f"oned at {self.endpoint} closed the connection") from exc
            except TimeoutError as exc:
                conn.close()
                raise OneUnavailable(
                    f"oned at {self.endpoint} did not answer within {self.timeout:g} s"
                ) from exc
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise OneUnavailable(f"cannot reach oned at {self.endpoint}: {exc}") from exc
            if status != 200:
                conn.close()
                raise OneUnavailable(f"oned at {self.endpoint} answered HTTP {status} {reason}")
            if not conn.sock:  # closed by the server's `Connection: close`
                conn.close()
            else:
                self._give_back(conn)
            break
        return data

    def _decode(self, method: str, data: bytes) -> Any:
        try:
            return decode_response(data)
        except xmlrpc.client.Fault as fault:
            raise OneError(fault.faultCode, str(fault.faultString), method) from None
        except (
            etree.XMLSyntaxError,
            ExpatError,
            ValueError,
            TypeError,
            IndexError,
            AttributeError,
            binascii.Error,
        ) as exc:
            raise OneUnavailable(
                f"oned at {self.endpoint} sent an answer that is not XML-RPC"
            ) from exc

    def call(self, session: str, method: str, *args: Any) -> Any:
        """Call `method(session, *args)`; return the success value or raise OneError.

        Pass Python `bool` for oned's boolean flags and `int` for ids and the `append` argument
        of `*.update` (a bool there makes oned answer fault -501).
        """
        return self._read(method, self._exchange(method, (session, *args)))

    @staticmethod
    def _result(method: str, result: Any) -> Any:
        if not isinstance(result, list | tuple) or not result or not isinstance(result[0], bool):
            raise OneUnavailable(f"{method}: oned answered an unexpected value")
        if result[0]:
            return result[1] if len(result) > 1 else None
        message = str(result[1]) if len(result) > 1 else ""
        code = int(result[2]) if len(result) > 2 else INTERNAL
        resp_id = int(result[3]) if len(result) > 3 else -1
        raise OneError(code, message, method, resp_id)

    def call_xml(
        self, session: str, method: str, *args: Any, pool: tuple[str, str] | None = None
    ) -> Any:
        """`call()` for methods whose success value is an XML document (`*.info`, pools).

        A plain success answer comes back as the document's parsed root element, parsed while
        the envelope is read (one pass instead of two over a pool's ~50 MB); with
        `pool=(ROOT, ITEM)` as a list of roots whose ITEM children are the pool's items (a
        large pool is parsed in pieces, in parallel). Any other answer goes through `call()`'s
        path, so errors and odd shapes behave exactly as there.
        """
        return self._read_xml(method, self._exchange(method, (session, *args)), pool)

    def _read_xml(self, method: str, data: bytes, pool: tuple[str, str] | None) -> Any:
        root = parse_document_response(data, pool)
        if root is not None:
            return root
        return self._read(method, data)

    def _read(self, method: str, data: Any) -> Any:
        """The success value of a received answer, or OneError/OneUnavailable."""
        return self._result(method, self._decode(method, data))

    # -- calls from the event loop

    async def exchange_async(self, method: str, params: tuple[Any, ...]) -> Any:
        """`_exchange()` on the event loop: the raw answer (bytes-like), or OneError /
        OneUnavailable, with the same timeout (for the connection and for each read), retry
        of a stale keep-alive connection and messages (see econe.one.aio)."""
        request = self._request_head(len(payload := self._payload(method, params))) + payload
        loop = asyncio.get_running_loop()
        step = self.timeout
        for attempt in (1, 2):
            conn = self._aborrow(loop) if attempt == 1 else None
            reused = conn is not None
            try:
                if conn is None:
                    conn = await aio.connect(self._host, self._port, self._ssl(), step)
                status, reason, data, keep = await conn.exchange(request, step)
            except aio.Stale as exc:
                conn.close()
                if reused:
                    continue
                raise OneUnavailable(f"oned at {self.endpoint} closed the connection") from exc
            except TimeoutError as exc:
                if conn is not None:
                    conn.close()
                raise OneUnavailable(
                    f"oned at {self.endpoint} did not answer within {self.timeout:g} s"
                ) from exc
            except (OSError, ValueError, EOFError) as exc:
                if conn is not None:
                    conn.close()
                raise OneUnavailable(f"cannot reach oned at {self.endpoint}: {exc}") from exc
            except BaseException:  # cancelled: the answer may be half read
                if conn is not None:
                    conn.close()
                raise
            if status != 200:
                conn.close()
                raise OneUnavailable(f"oned at {self.endpoint} answered HTTP {status} {reason}")
            if keep:
                self._agive_back(loop, conn)
            else:
                conn.close()
            return data
        raise AssertionError("unreachable")  # pragma: no cover

    def answered(self, method: str, args: tuple[Any, ...], data: bytes) -> Answered:
        """A client look-alike that answers `method(session, *args)` from `data`, an answer
        `exchange_async` received."""
        return Answered(self, method, tuple(args), data)

    def _request_head(self, length: int) -> bytes:
        return (
            (
                f"POST {self._path} HTTP/1.1\r\nHost: {self._host_header}\r\n"
                f"Content-Type: text/xml\r\nContent-Length: {length}\r\n"
            ).encode("latin-1")
            + b"Connection: "
            + self._connection
            + b"\r\n\r\n"
        )

    def _ssl(self) -> ssl.SSLContext | None:
        if not self._https:
            return None
        if self._ssl_context is None:  # what http.client uses: the system CAs, verified
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def _aborrow(self, loop: asyncio.AbstractEventLoop) -> aio.Connection | None:
        """An idle connection of this event loop that the server has not closed meanwhile.
        Those of a closed event loop are dropped (it cannot close them any more)."""
        idle = self._aidle = [entry for entry in self._aidle if not entry[0].is_closed()]
        now = time.monotonic()
        for k in range(len(idle) - 1, -1, -1):
            owner, conn, since = idle[k]
            if owner is loop:
                del idle[k]
                if conn.usable and now - since <= IDLE_REUSE:
                    return conn
                conn.close()
        return None

    def _agive_back(self, loop: asyncio.AbstractEventLoop, conn: aio.Connection) -> None:
        """As _give_back, for this event loop's connections (only it may close them)."""
        now = time.monotonic()
        keep = []
        for entry in self._aidle:
            owner, old, since = entry
            if owner.is_closed():
                continue  # closed with its loop
            if owner is loop and (now - since > IDLE_REUSE or not old.usable):
                old.close()
                continue
            keep.append(entry)
        self._aidle = keep
        if self._idle_count() >= self._keepalive:  # the oldest makes room: this loop's own,
            mine = [k for k, (owner, _, _) in enumerate(keep) if owner is loop]  # or a thread's
            with self._lock:
                theirs = self._idle[0] if self._idle else None
                if theirs is not None and (not mine or theirs[1] < keep[mine[0]][2]):
                    self._idle.pop(0)
                else:
                    theirs = None
            if theirs is not None:
                theirs[0].close()
            elif mine:
                keep.pop(mine[0])[1].close()
        if self._idle_count() < self._keepalive:
            self._aidle.append((loop, conn, now))
        else:
            conn.close()


class Answered:
    """Answers one call, `method(session, *args)`, like OneClient would, from the bytes
    `OneClient.exchange_async` received (see OneClient.answered)."""

    def __init__(self, client: OneClient, method: str, args: tuple[Any, ...], data: bytes):
        self.client = client
        self.method = method
        self.args = args
        self.data = data
        # other calls' answers (or failures), by (session, method, args): see Prefetched
        self.prefetched: dict[tuple[str, str, tuple[Any, ...]], Any] = {}

    @property
    def size(self) -> int:
        got = (d for d in self.prefetched.values() if not isinstance(d, BaseException))
        return len(self.data) + sum(len(d) for d in got)

    def answers(self, method: str, args: Any) -> bool:
        return method == self.method and tuple(args) == self.args

    def call(self, session: str, method: str, *args: Any) -> Any:
        return self.client._read(method, self.data)

    def call_xml(
        self, session: str, method: str, *args: Any, pool: tuple[str, str] | None = None
    ) -> Any:
        return self.client._read_xml(method, self.data, pool)


class Prefetched:
    """`client`, but the calls in `answers` ((session, method, args) → the raw answer received
    already, or the OneError/OneUnavailable it ended with) are answered from there, each once:
    a second one is sent (it may want a fresh read)."""

    def __init__(self, client: Any, answers: dict[tuple[str, str, tuple[Any, ...]], Any]):
        self._client = client
        self._answers = dict(answers)

    def call(self, session: str, method: str, *args: Any) -> Any:
        data = self._answers.pop((session, method, args), None)
        if data is None:
            return self._client.call(session, method, *args)
        if isinstance(data, (OneError, OneUnavailable)):
            raise data
        if isinstance(data, BaseException):  # cancelled: never answered
            return self._client.call(session, method, *args)
        return self._client._read(method, data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _readable(sock: Any) -> bool:
    """Whether an idle connection has something to read: the end of file oned sends when it
    closes the connection (KEEPALIVE_TIMEOUT, a restart), or bytes nobody asked for."""
    if sock is None:
        return True
    if isinstance(sock, ssl.SSLSocket):
        # TLS records (a session ticket) may wait there on a good connection: not a sign; a
        # connection oned closed fails before any byte of an answer and is tried again
        return False
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True
