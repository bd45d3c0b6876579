"""oned's XML-RPC answers decoded: `decode_response` (any answer, as the stdlib would) and
`parse_document_response` (a success answer carrying an XML document, parsed while the
envelope is read; a large pool in pieces, in parallel). Used by econe.one.client.
"""

from __future__ import annotations

import base64
import functools
import pyexpat
import threading
import xmlrpc.client
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from xml.parsers.expat import ExpatError

from lxml import etree

# A pool document travels as one escaped XML-RPC string; the stdlib unmarshaller gets it from
# expat in millions of small pieces (each `&lt;` splits the text), which made a 10,000-VM pool
# cost ~15 s. lxml hands over the whole text at once.
# One parser per thread: an lxml parser serves one parse at a time.
_PARSERS = threading.local()


def _new_parser() -> etree.XMLParser:
    return etree.XMLParser(huge_tree=True, resolve_entities=False, no_network=True)


def _parser() -> etree.XMLParser:
    """This thread's parser (for whole documents; a feed parser is always a new one)."""
    parser = getattr(_PARSERS, "parser", None)
    if parser is None:
        parser = _PARSERS.parser = _new_parser()
    return parser


def _value(node: etree._Element) -> Any:
    typed = node[0] if len(node) else None
    if typed is None:
        return node.text or ""
    tag, text = typed.tag, typed.text or ""
    if tag == "string":
        return text
    if tag in ("int", "i4", "i8"):
        return int(text)
    if tag == "boolean":
        return text.strip() == "1"
    if tag == "double":
        return float(text)
    if tag == "array":
        return [_value(v) for v in typed.iterfind("data/value")]
    if tag == "struct":
        return {m.findtext("name"): _value(m.find("value")) for m in typed.iterfind("member")}
    if tag == "nil":
        return None
    if tag == "base64":
        return base64.b64decode(text)  # as the stdlib with use_builtin_types=True: bytes
    return text


def decode_response(data: bytes) -> Any:
    """The value of an XML-RPC methodResponse; a <fault> raises xmlrpc.client.Fault."""
    root = etree.fromstring(data, _parser())
    if root.tag != "methodResponse":
        raise ValueError("not a methodResponse")
    fault = root.find("fault/value")
    if fault is not None:
        info = _value(fault)
        if not isinstance(info, dict):
            raise ValueError("malformed fault")
        raise xmlrpc.client.Fault(info.get("faultCode"), info.get("faultString"))
    value = root.find("params/param/value")
    return None if value is None else _value(value)


# The start tags, with their depth, of oned's plain success answer [true, document, int].
_SUCCESS = tuple(
    enumerate(["methodResponse", "params", "param", "value", "array", "data", "value", "boolean"])
) + ((6, "value"), (7, "string"))
_TAIL = (((6, "value"), (7, "i4")), ((6, "value"), (7, "int")), ((6, "value"), (7, "i8")), ())


class _Streamer:
    """expat handlers: record the envelope's shape and pass the <string> text on to lxml.

    expat unescapes the text and, with buffer_text, hands it over in large pieces; each piece
    goes straight into a feed parser for the document, so its text is never a Python string
    of its own. Anything unusual (attributes, a comment, a PI, CDATA, a DOCTYPE) sets `odd`.

    With `pool=(ROOT, ITEM)` a large `<ROOT><ITEM>…</ITEM><ITEM>…</ROOT>` document is instead
    cut between items into pieces of about PIECE bytes, each parsed as a document of its own
    by a worker thread while expat unescapes the next one (lxml parses without the GIL, so
    the two overlap on two cores). A cut at a wrong place (an `</ITEM><ITEM>` inside CDATA or
    deeper in the tree) leaves the pieces on both sides of it not well-formed (one ends inside
    an item, the other closes elements it never opened); a piece that parses was cut right at
    both ends. So the failed pieces between two good ones hold whole items and are parsed
    again together."""

    def __init__(self, pool: tuple[str, str] | None = None) -> None:
        self.tags: list[tuple[int, str]] = []  # every start tag with its depth
        self.depth = 0
        self.open: str | None = None  # the element the text belongs to, when it is a leaf
        self.odd = False
        self.fed = False
        self.leaf: dict[int, list[str]] = {}  # start-tag index → text (boolean, int)
        self.inner = _new_parser()
        self.pool = pool
        self.asked_pool = pool is not None  # answer a list of roots, even of one
        if pool is not None:
            root, item = (t.encode() for t in pool)
            self.head = b"<" + root + b"><" + item + b">"  # how the document must start
            self.reopen = b"<" + root + b">"
            self.close = b"</" + root + b">"
            self.cut = b"</" + item + b"><" + item + b">"
            self.cut_at = len(item) + 3  # after the `</ITEM>`
        self.held: list[bytes] = []  # document bytes not yet handed to a piece
        self.held_size = 0
        # [piece, its parse]: a piece's bytes are dropped once it parsed (kept if it failed)
        self.pieces: list[list[Any]] = []

    def start(self, tag: str, attrs: Any) -> None:
        self.tags.append((self.depth, tag))
        self.depth += 1
        self.open = tag
        if attrs or len(self.tags) > len(_SUCCESS) + 2:
            self.odd = True

    def end(self, tag: str) -> None:
        self.depth -= 1
        self.open = None

    def text(self, chunk: str) -> None:
        if self.open is None:
            return  # whitespace between elements: decode_response ignores it too
        if self.open == "string" and len(self.tags) == len(_SUCCESS):
            self.fed = True
            if self.pool is None:
                self.inner.feed(chunk.encode("utf-8"))
                return
            self.held.append(chunk.encode("utf-8"))
            self.held_size += len(self.held[-1])
            if self.held_size >= PIECE:
                self._hand_over()
        else:
            self.leaf.setdefault(len(self.tags) - 1, []).append(chunk)

    def _hand_over(self) -> None:
        """Send the held bytes up to their last item boundary to a worker (one copy: the
        boundary is looked for in the last chunk and across its start)."""
        if not self.pieces and not self._starts_as_pool():
            self.pool = None  # not the expected shape: one piece, fed as usual
            self.inner.feed(b"".join(self.held))
            self.held, self.held_size = [], 0
            return
        last = self.held[-1]
        if len(self.held) > 1:  # a boundary may straddle the last two chunks
            last = self.held[-2][-len(self.cut) :] + last
            self.held[-2] = self.held[-2][: -len(self.cut)]
            self.held[-1] = last
        at = last.rfind(self.cut)
        if at < 0:
            return  # no boundary yet: hold on
        at += self.cut_at
        head = [self.reopen] if self.pieces else []
        piece = b"".join([*head, *self.held[:-1], last[:at], self.close])
        entry: list[Any] = [piece, None]
        entry[1] = parse = _piece_workers().submit(_parse_piece, piece)
        parse.add_done_callback(lambda done: _drop_if_parsed(done, entry))
        self.pieces.append(entry)
        self.held = [last[at:]]
        self.held_size = len(self.held[0])

    def _starts_as_pool(self) -> bool:
        start = b""
        for chunk in self.held:
            start += chunk[: len(self.head)]
            if len(start) >= len(self.head):
                break
        return start.startswith(self.head)

    def result(self) -> etree._Element | list[etree._Element]:
        """The parsed document, or with `pool` its pieces' roots in order; raises
        etree.LxmlError / ValueError when the document does not parse."""
        if self.pool is None:
            if self.held:
                self.inner.feed(b"".join(self.held))
            root = self.inner.close()
            return [root] if self.asked_pool else root
        roots: list[etree._Element] = []
        failed: list[bytes] = []  # the items of consecutive pieces that did not parse
        for k, (piece, parse) in enumerate(self.pieces):
            try:
                root = parse.result()
            except etree.XMLSyntaxError:
                # cut at a wrong place; a piece that parsed was cut right at both ends, so
                # the failed ones between two of them hold whole items: parsed together
                if not failed and k:
                    failed.append(self.reopen)
                failed.append(piece[len(self.reopen) if k else 0 : -len(self.close)])
                continue
            if failed:
                roots.append(_parse_piece(b"".join([*failed, self.close])))
                failed = []
            roots.append(root)
        if not failed and self.pieces:
            failed.append(self.reopen)
        return [*roots, _parse_piece(b"".join([*failed, *self.held]))]

    def cancel(self) -> None:
        """Drop the parses not started yet (running ones end on their own)."""
        for _, parse in self.pieces:
            parse.cancel()

    def flag(self, *_: Any) -> None:
        self.odd = True


def _drop_if_parsed(parse: Future, entry: list[Any]) -> None:
    if not parse.cancelled() and parse.exception() is None:
        entry[0] = None  # parsed: its bytes are not needed again


# Pieces of a large pool answer parsed in parallel (see _Streamer); expat hands the text over
# in TEXT_BUFFER pieces.
PIECE = 4 << 20
TEXT_BUFFER = 1 << 20


@functools.cache
def _piece_workers() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="econe-xml")


def _parse_piece(data: bytes) -> etree._Element:
    return etree.fromstring(data, _parser())


def parse_document_response(
    data: bytes, pool: tuple[str, str] | None = None
) -> etree._Element | list[etree._Element] | None:
    """The parsed document of a plain success answer `[true, "<XML…>", int]`, else None.

    Gives the same element as parsing `decode_response(data)[1]` with the engine's parser
    options; None for a failure, a fault, any other shape, or a document that does not parse,
    so the caller takes the usual path (and its errors) for those. With `pool=(ROOT, ITEM)`:
    the list of the roots of the pieces the document was parsed in (see _Streamer); their
    ITEM children, in order, are the document's."""
    s = _Streamer(pool)
    p = pyexpat.ParserCreate()
    p.buffer_text = True
    p.buffer_size = TEXT_BUFFER
    p.StartElementHandler = s.start
    p.EndElementHandler = s.end
    p.CharacterDataHandler = s.text
    p.CommentHandler = p.ProcessingInstructionHandler = s.flag
    p.StartCdataSectionHandler = p.StartDoctypeDeclHandler = s.flag
    try:
        p.Parse(data, True)
        n = len(_SUCCESS)
        if s.odd or not s.fed or tuple(s.tags[:n]) != _SUCCESS or tuple(s.tags[n:]) not in _TAIL:
            return None
        if "".join(s.leaf.get(7, ())).strip() != "1":  # <boolean>: false is a failure
            return None
        if len(s.tags) > n:
            int("".join(s.leaf.get(n + 1, ())))  # a bad int: decode_response's error
        return s.result()
    except (ExpatError, etree.LxmlError, ValueError):
        return None
    finally:
        s.cancel()  # after a failure, no piece is parsed for nothing
