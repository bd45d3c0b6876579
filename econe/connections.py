"""The HTTP protocol econe serves with: uvicorn's httptools protocol plus the limits a server
clients reach directly needs, which uvicorn lacks for that parser:

- a request's head (request line and headers) must arrive within `:header_timeout:` seconds
  of its first byte (or of the connection, for the first request): a client sending nothing,
  or a header line now and then, held a connection for ever;
- a head over MAX_HEAD bytes is refused (uvicorn took a 100 MB header into memory);
- no more than `:max_connections:` connections at once (kept below the process's file
  limit): beyond it a new connection gets a 503 and is closed, so idle clients cannot take
  every file descriptor.
Each refusal is EC2 XML, as every other answer. The body has its own limits (econe.front).
"""

from __future__ import annotations

import logging
import resource
import time
import uuid
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from econe.errors import error_xml

log = logging.getLogger("econe.connections")

MAX_HEAD = 128 * 1024  # httptools takes a request line of 64 KiB at most; headers are small
_SLICE = 16 * 1024  # a head is read in pieces this large, to count it
_LINGER = 2.0  # seconds a refused connection is still read (and dropped) before it is closed
_SPARE_FILES = 64  # file descriptors kept for oned connections, logs, uploads, scripts


def max_connections(configured: int) -> int:
    """`:max_connections:`, kept below the process's open-file limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(1, min(configured, soft - _SPARE_FILES))


def protocol_class(header_timeout: float, connections: int) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn.Config(http=…), with these limits."""
    return type(
        "EconeHttpProtocol",
        (EconeHttpProtocol,),
        {"header_timeout": header_timeout, "max_connections": connections},
    )


class EconeHttpProtocol(HttpToolsProtocol):
    header_timeout: float = 10.0
    max_connections: int = 1000
    _said_full = 0.0  # when "too many connections" was last logged (once a minute)

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        self._head_timer: Any = None
        self._head_bytes = 0
        self._head_started = False  # a byte of this request's head has arrived
        self._in_head = True  # what arrives now is a request's head
        self._refused = False
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            now = time.monotonic()
            if now - EconeHttpProtocol._said_full > 60:
                EconeHttpProtocol._said_full = now
                log.warning(
                    "%d connections open (:max_connections:): new ones get 503",
                    len(self.connections) - 1,
                )
            self._refuse(503, "ServiceUnavailable", "The server has too many connections open.")
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # Fed in slices, a head is counted while it is incomplete (httptools keeps a header's
        # partial value to itself until its line ends); a body is not counted.
        while data and not self._refused and not self.transport.is_closing():
            piece, data = data[:_SLICE], data[_SLICE:]
            counting = self._in_head
            super().data_received(piece)
            if counting and self._in_head:
                self._head_bytes += len(piece)
                if self._head_bytes > MAX_HEAD and not self._refused:
                    message = f"The request's headers are longer than {MAX_HEAD} bytes."
                    self._refuse(400, "InvalidRequest", message)

    # -- the head of each request

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_started = True
        if not self._answering():  # a pipelined head waits: its clock starts after the answer
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        self._in_head = self._head_started = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True  # what comes next is the next request's head
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._in_head and self._head_started and not self.transport.is_closing():
            self._arm()  # the next head had begun while this answer was made

    def send_400_response(self, msg: str) -> None:
        if not self._refused:  # a parse error after our own answer: that one was the answer
            self._refused = True  # and only one answer: the rest of the read is dropped
            super().send_400_response(msg)

    def _answering(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_late)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self._refused or self.transport.is_closing() or self._answering():
            return  # answering: on_response_complete starts the next head's clock again
        if not self._head_started:  # nothing asked: just close, as for an idle keep-alive
            self._refused = True
            self.transport.close()
            return
        self._refuse(
            400,
            "RequestTimeout",
            f"The request's headers did not arrive within {self.header_timeout:g} s.",
        )

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer EC2 XML and close; the rest of what the client sends is dropped."""
        self._refused = True
        self._disarm()
        body = error_xml(code, message, str(uuid.uuid4())).encode()
        reason = {400: b"Bad Request", 503: b"Service Unavailable"}[status]
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/xml; charset=UTF-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (status, reason, len(body), body)
        )
        # Closing with the client's bytes unread would reset the connection, which can lose
        # the answer on its way: half-close, read and drop what still comes, close in a while.
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(_LINGER, self.transport.close)
        else:
            self.transport.close()
