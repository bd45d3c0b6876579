"""HTTP/1.1 to oned on the event loop, for OneClient.exchange_async.

One `Connection` (an asyncio BufferedProtocol) carries one exchange at a time and may be kept
alive for the next. A body of known length is received straight into one buffer of that size:
asyncio's streams copied a 70 MB pool answer three times on the event loop thread (twice the
time of a blocking read). Every connect and every read waits at most `step` seconds, the
meaning of the blocking client's socket timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

_SCRATCH = 1 << 16  # what one read takes when no body of known length is awaited
_MAX_HEAD = 1 << 20  # the longest status line plus headers accepted


# oned's HTTP server (xmlrpc-c Abyss) writes an answer's status line and headers before its
# body, in separate writes. On a kept-alive connection the rest then waits (Nagle) for the ACK
# of the first part, which Linux delays by 40 ms: every call took 40 ms more. So an immediate
# ACK is asked for each time an answer is awaited (Linux; elsewhere nothing to do).
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


def ack_at_once(sock: Any) -> None:
    if _QUICKACK is not None and sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)


class Stale(Exception):
    """The connection ended before any byte of an answer: the request never reached oned, so
    it may be sent again (a kept-alive connection the server closed while idle)."""


async def within(seconds: float, step: Any) -> Any:
    """`await step`, or TimeoutError after `seconds`."""
    async with asyncio.timeout(seconds):
        return await step


async def connect(host: str, port: int, ssl: Any, step: float) -> Connection:
    loop = asyncio.get_running_loop()
    _, conn = await within(
        step, loop.create_connection(lambda: Connection(loop), host, port, ssl=ssl)
    )
    return conn


class Connection(asyncio.BufferedProtocol):
    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.transport: Any = None
        self.ended = False  # the server closed its side, or the connection was lost
        self._scratch = bytearray(_SCRATCH)
        self._data = bytearray()  # received, not yet consumed
        self._body: bytearray | None = None  # the buffer a body of known length goes to
        self._filled = 0
        self._progress: asyncio.Future | None = None

    # -- asyncio's side

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int) -> Any:
        if self._body is not None:
            return memoryview(self._body)[self._filled :]
        return self._scratch

    def buffer_updated(self, nbytes: int) -> None:
        if self._body is not None:
            self._filled += nbytes
            if self._filled == len(self._body):
                self._body = None  # complete: anything further goes to the scratch buffer
        else:
            self._data += memoryview(self._scratch)[:nbytes]
        self._wake()

    def eof_received(self) -> bool:
        self.ended = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self._wake()

    def _wake(self) -> None:
        if self._progress is not None and not self._progress.done():
            self._progress.set_result(None)

    # -- the exchange

    @property
    def usable(self) -> bool:
        """Idle and still open, with nothing unasked-for received."""
        return not self.ended and not self._data and not self.transport.is_closing()

    def close(self) -> None:
        self.transport.close()

    async def _more(self, step: float) -> None:
        """Wait (at most `step` seconds) until more arrives or the connection ends."""
        if self.ended:
            raise asyncio.IncompleteReadError(bytes(self._data), None)
        self._progress = self.loop.create_future()
        try:
            await within(step, self._progress)
        finally:
            self._progress = None

    async def exchange(self, request: bytes, step: float) -> tuple[int, str, Any, bool]:
        """Send `request`; (status, reason, body, keep the connection). Raises Stale,
        TimeoutError, EOFError (cut short), ValueError (not HTTP) or OSError."""
        self.transport.write(request)
        ack_at_once(self.transport.get_extra_info("socket"))
        while (end := self._data.find(b"\r\n\r\n")) < 0:
            if self.ended and not self._data:
                raise Stale
            if len(self._data) > _MAX_HEAD:
                raise ValueError("the answer's headers are too long")
            try:
                await self._more(step)
            except asyncio.IncompleteReadError:
                raise ValueError("the answer's headers were cut short") from None
        status_line, *lines = self._data[:end].decode("latin-1").split("\r\n")
        del self._data[: end + 4]
        version, _, rest = status_line.partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise ValueError(f"not an HTTP answer: {status_line[:60]!r}")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        connection = headers.get("connection", "").lower()
        keep = connection != "close" and (version == "HTTP/1.1" or connection == "keep-alive")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = await self._chunked(step)
        elif "content-length" in headers:
            body = await self._exactly(int(headers["content-length"]), step)
        else:  # the body ends with the connection
            body, keep = await self._to_end(step), False
        return int(code), reason, body, keep and not self._data

    async def _exactly(self, size: int, step: float) -> bytearray:
        if size < 0:
            raise ValueError("negative Content-Length")
        body = bytearray(size)
        have = min(size, len(self._data))
        body[:have] = self._data[:have]
        del self._data[:have]
        if have < size:
            self._body, self._filled = body, have
            try:
                while self._body is not None:
                    await self._more(step)
            finally:
                self._body = None
        return body

    async def _line(self, step: float) -> bytes:
        while (end := self._data.find(b"\r\n")) < 0:
            await self._more(step)
        line = bytes(self._data[:end])
        del self._data[: end + 2]
        return line

    async def _chunked(self, step: float) -> bytes:
        parts = []
        while size := int((await self._line(step)).split(b";", 1)[0].strip(), 16):
            parts.append(await self._exactly(size, step))
            if await self._line(step):
                raise ValueError("malformed chunked body")
        while await self._line(step):
            pass  # trailers
        return b"".join(parts)

    async def _to_end(self, step: float) -> bytes:
        while not self.ended:
            await self._more(step)
        body = bytes(self._data)
        self._data.clear()
        return body
