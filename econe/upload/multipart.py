"""An incremental multipart/form-data parser (RFC 7578 / RFC 2046) with constant memory.

    parser = MultipartParser(boundary)
    for chunk in body_chunks:
        for event in parser.feed(chunk):
            ...                      # PartStart, bytes (part data), PartEnd
    parser.finish()                  # raises MultipartError if the body stopped early

The parser keeps at most one part's header block (capped) plus `len(delimiter) - 1` bytes
of carry-over between chunks, whatever the part sizes: data is handed out as it arrives, so a
file part is never buffered. Delimiters split across chunk borders at any byte position are
found (the carry-over holds any possible delimiter prefix).

Accepted leniencies, as common parsers do: a preamble before the first delimiter, transport
padding (spaces/tabs) after a delimiter, an epilogue after the close delimiter, header lines
folded with leading whitespace. Everything else malformed raises MultipartError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_HEADER_BYTES = 16 * 1024  # one part's header block
MAX_BOUNDARY = 200  # RFC 2046 says 70; be generous with real clients
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class MultipartError(ValueError):
    """The body is not well-formed multipart/form-data; the message says why."""


@dataclass
class PartStart:
    """A part begins; `headers` has lower-cased names."""

    headers: dict[str, str]
    name: str | None = None
    filename: str | None = None
    content_type: str | None = None
    disposition: dict[str, str] = field(default_factory=dict)


@dataclass
class PartEnd:
    """The current part ended (its data events have all been delivered)."""


Event = PartStart | PartEnd | bytes


def parse_options_header(value: str) -> tuple[str, dict[str, str]]:
    """`form-data; name="a"; filename="b c"` -> ("form-data", {"name": "a", "filename": "b c"}).

    Quoted strings may hold `;` and backslash escapes; parameter names are lower-cased."""
    value = value.strip()
    pos = value.find(";")
    main = (value if pos < 0 else value[:pos]).strip().lower()
    params: dict[str, str] = {}
    i = len(value) if pos < 0 else pos + 1
    n = len(value)
    while i < n:
        while i < n and value[i] in " \t;":
            i += 1
        m = _TOKEN.match(value, i)
        if not m:
            break
        key = m.group().lower()
        i = m.end()
        while i < n and value[i] in " \t":
            i += 1
        if i >= n or value[i] != "=":
            params.setdefault(key, "")
            continue
        i += 1
        while i < n and value[i] in " \t":
            i += 1
        if i < n and value[i] == '"':
            i += 1
            out = []
            while i < n and value[i] != '"':
                if value[i] == "\\" and i + 1 < n:
                    i += 1
                out.append(value[i])
                i += 1
            i += 1  # closing quote (or end)
            text = "".join(out)
        else:
            start = i
            while i < n and value[i] != ";":
                i += 1
            text = value[start:i].strip()
        params.setdefault(key, text)
    return main, params


def boundary_from_content_type(content_type: str | None) -> bytes:
    """The boundary of a `multipart/form-data; boundary=…` header, or MultipartError."""
    kind, params = parse_options_header(content_type or "")
    if kind != "multipart/form-data":
        raise MultipartError("the body is not multipart/form-data")
    boundary = params.get("boundary", "")
    if not boundary:
        raise MultipartError("the Content-Type header has no boundary")
    if len(boundary) > MAX_BOUNDARY or not boundary.isascii():
        raise MultipartError("the multipart boundary is too long or not ASCII")
    if any(ch in boundary for ch in "\r\n"):
        raise MultipartError("the multipart boundary contains a line break")
    return boundary.encode("ascii")


def _parse_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    last: str | None = None
    for raw in block.split(b"\r\n"):
        if not raw:
            continue
        line = raw.decode("utf-8", "replace")
        if line[0] in " \t":  # obsolete line folding
            if last is None:
                raise MultipartError("a part header starts with whitespace")
            headers[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        name = name.strip().lower()
        if not sep or not name or not _TOKEN.fullmatch(name):
            raise MultipartError(f"malformed part header line {line[:60]!r}")
        headers[name] = value.strip() if name not in headers else headers[name]
        last = name
    return headers


def _part_start(headers: dict[str, str]) -> PartStart:
    disposition: dict[str, str] = {}
    name = filename = None
    if "content-disposition" in headers:
        kind, disposition = parse_options_header(headers["content-disposition"])
        if kind != "form-data":
            raise MultipartError(f"part disposition {kind!r} is not form-data")
        name = disposition.get("name")
        filename = disposition.get("filename")
    return PartStart(headers, name, filename, headers.get("content-type"), disposition)


# parser states
_PREAMBLE, _AFTER_DELIM, _HEADERS, _BODY, _EPILOGUE = range(5)


class MultipartParser:
    """Feed body chunks in order; get events. Not thread-safe; one per request."""

    def __init__(self, boundary: bytes, *, max_header_bytes: int = MAX_HEADER_BYTES):
        if not boundary:
            raise MultipartError("empty boundary")
        # The body is treated as if preceded by CRLF, so the first delimiter needs no special
        # case: every delimiter is CRLF "--" boundary.
        self._delim = b"\r\n--" + boundary
        self._keep = len(self._delim) - 1
        self._buf = b"\r\n"
        self._state = _PREAMBLE
        self._max_header = max_header_bytes
        self.parts = 0

    @property
    def done(self) -> bool:
        return self._state == _EPILOGUE

    def feed(self, data: bytes) -> list[Event]:
        """The events completed by `data` (possibly none)."""
        if self._state == _EPILOGUE:
            return []  # the epilogue is ignored
        buf = self._buf + data if self._buf else bytes(data)
        events: list[Event] = []
        pos = 0
        while True:
            state = self._state
            if state == _PREAMBLE:
                i = buf.find(self._delim, pos)
                if i < 0:
                    pos = max(pos, len(buf) - self._keep)
                    break
                pos = i + len(self._delim)
                self._state = _AFTER_DELIM
            elif state == _AFTER_DELIM:
                # "--" closes; otherwise optional padding then CRLF opens a part.
                j = pos
                while j < len(buf) and buf[j] in b" \t":
                    j += 1
                if j - pos > 64:
                    raise MultipartError("too much padding after a multipart delimiter")
                if len(buf) - pos < 2 or len(buf) - j < 2:
                    break
                if buf.startswith(b"--", pos):
                    self._state = _EPILOGUE
                    pos = len(buf)
                    break
                if not buf.startswith(b"\r\n", j):
                    raise MultipartError("a multipart delimiter is not followed by a line break")
                pos = j + 2
                self._state = _HEADERS
            elif state == _HEADERS:
                if buf.startswith(b"\r\n", pos):  # a part without headers
                    block, pos = b"", pos + 2
                else:
                    i = buf.find(b"\r\n\r\n", pos)
                    if i < 0:
                        if len(buf) - pos > self._max_header:
                            raise MultipartError("a part's header block is too large")
                        break
                    if i - pos > self._max_header:
                        raise MultipartError("a part's header block is too large")
                    block, pos = buf[pos:i], i + 4
                self.parts += 1
                events.append(_part_start(_parse_headers(block)))
                self._state = _BODY
            elif state == _BODY:
                i = buf.find(self._delim, pos)
                if i < 0:
                    # Everything except a possible delimiter prefix at the end is data.
                    end = len(buf) - self._keep
                    cr = buf.find(b"\r", max(pos, end))
                    cut = cr if cr >= 0 else len(buf)
                    if cut > pos:
                        events.append(buf[pos:cut])
                        pos = cut
                    break
                if i > pos:
                    events.append(buf[pos:i])
                events.append(PartEnd())
                pos = i + len(self._delim)
                self._state = _AFTER_DELIM
            else:  # _EPILOGUE
                pos = len(buf)
                break
        self._buf = buf[pos:]
        return events

    def finish(self) -> None:
        """Call at the end of the body: raises unless the close delimiter was seen."""
        if self._state != _EPILOGUE:
            if self._state == _PREAMBLE:
                raise MultipartError("the body holds no multipart delimiter")
            raise MultipartError("the multipart body ended before its close delimiter")
