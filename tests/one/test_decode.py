"""The lxml XML-RPC decoder answers exactly what the stdlib unmarshaller answers."""

from __future__ import annotations

import xmlrpc.client
from pathlib import Path

import pytest
from lxml import etree

from econe.one import decode
from econe.one.decode import decode_response, parse_document_response

GOLDEN = sorted(
    (Path(__file__).resolve().parents[3] / "shared" / "opennebula-golden").glob("*.xml")
)


def stdlib(data: bytes):
    try:
        return xmlrpc.client.loads(data, use_builtin_types=True)[0][0]
    except xmlrpc.client.Fault as fault:
        return ("fault", fault.faultCode, fault.faultString)


def ours(data: bytes):
    try:
        return decode_response(data)
    except xmlrpc.client.Fault as fault:
        return ("fault", fault.faultCode, fault.faultString)


def test_golden_files_are_there():
    assert len(GOLDEN) > 100


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.name)
def test_every_golden_response_decodes_like_the_stdlib(path):
    data = path.read_bytes()
    assert ours(data) == stdlib(data)


@pytest.mark.parametrize(
    "value",
    [
        [True, "<VM_POOL>&amp;<VM/></VM_POOL>", 0],
        [False, "err", 1024, 5, -1],
        [True, 7, 0],
        [True, {"a": [1.5, None and 1, "x"]}, 0],
        [True, "", 0],
    ],
)
def test_values_round_trip(value):
    data = xmlrpc.client.dumps((value,), methodresponse=True, allow_none=True).encode()
    assert ours(data) == stdlib(data)


def test_fault():
    data = xmlrpc.client.dumps(
        xmlrpc.client.Fault(-506, "Method 'x' not defined"), methodresponse=True
    ).encode()
    assert ours(data) == ("fault", -506, "Method 'x' not defined")


def test_base64_and_datetime_like_the_stdlib():
    value = [True, xmlrpc.client.Binary(b"\x00bytes\xff"), 0]
    data = xmlrpc.client.dumps((value,), methodresponse=True).encode()
    assert ours(data) == stdlib(data) == [True, b"\x00bytes\xff", 0]


@pytest.mark.parametrize(
    "data",
    [
        b"<methodResponse><fault><value><string>x</string></value></fault></methodResponse>",
        b"<methodResponse><params><param><value><int>x</int></value></param></params>",
        b"<other/>",
    ],
)
def test_malformed_answers_are_unavailable(data):
    """Through OneClient these become OneUnavailable; decode_response raises, never hangs."""
    with pytest.raises((ValueError, SyntaxError)):
        decode_response(data)


# -- parse_document_response: the document of a success answer, parsed while it is read --------


def _xml(element) -> bytes:
    return etree.tostring(element, with_tail=False)


def _answer(document: str) -> bytes:
    return xmlrpc.client.dumps(([True, document, 0],), methodresponse=True).encode()


def _documents():
    for path in GOLDEN:
        value = stdlib(path.read_bytes())
        if isinstance(value, list) and value[0] is True and str(value[1]).startswith("<"):
            yield path


@pytest.mark.parametrize("path", list(_documents()), ids=lambda p: p.name)
def test_golden_documents_parse_as_the_decoded_text(path):
    data = path.read_bytes()
    root = etree.fromstring(decode_response(data)[1].encode())
    assert _xml(parse_document_response(data)) == _xml(root)
    if len(root):  # as a pool of its first child's kind: the same items, in order
        pool = (root.tag, root[0].tag)
        roots = parse_document_response(data, pool)
        items = [_xml(e) for r in roots for e in r.iterchildren(pool[1])]
        assert items == [_xml(e) for e in root.iterchildren(pool[1])]


def _vm(i: int, extra: str = "") -> str:
    return f"<VM><ID>{i}</ID><NAME><![CDATA[vm & {i}]]></NAME>{extra}</VM>"


@pytest.mark.parametrize(
    "extra",
    [
        "",
        "<USER_TEMPLATE><VM>a</VM><VM>b</VM></USER_TEMPLATE>",  # a cut inside an item
        "<USER_TEMPLATE><X><![CDATA[</VM><VM>]]></X></USER_TEMPLATE>",  # a cut inside CDATA
    ],
    ids=["plain", "nested-items", "cdata"],
)
def test_a_large_pool_parses_in_pieces_with_every_item_in_order(monkeypatch, extra):
    monkeypatch.setattr(decode, "PIECE", 512)  # pieces of ~512 bytes, so many of them
    monkeypatch.setattr(decode, "TEXT_BUFFER", 256)
    document = "<VM_POOL>" + "".join(_vm(i, extra) for i in range(300)) + "</VM_POOL>"
    roots = parse_document_response(_answer(document), ("VM_POOL", "VM"))
    assert isinstance(roots, list)
    if not extra:
        assert len(roots) > 10  # it really was cut
    ids = [vm.findtext("ID") for root in roots for vm in root.iterchildren("VM")]
    assert ids == [str(i) for i in range(300)]
    names = {vm.findtext("NAME") for root in roots for vm in root.iterchildren("VM")}
    assert "vm & 7" in names
    whole = etree.fromstring(document.encode())
    assert [_xml(v) for r in roots for v in r.iterchildren("VM")] == [
        _xml(v) for v in whole.iterchildren("VM")
    ]


def test_a_pool_of_another_shape_is_parsed_whole(monkeypatch):
    monkeypatch.setattr(decode, "PIECE", 64)
    document = "<IMAGE_POOL>" + "<IMAGE><ID>1</ID></IMAGE>" * 50 + "</IMAGE_POOL>"
    roots = parse_document_response(_answer(document), ("VM_POOL", "VM"))
    assert len(roots) == 1 and roots[0].tag == "IMAGE_POOL" and len(roots[0]) == 50


@pytest.mark.parametrize(
    "value",
    [[False, "[one.vmpool.info] User couldn't be authenticated", 256, -1, -1], [True, 5, 0]],
)
def test_answers_without_a_document_give_none(value):
    data = xmlrpc.client.dumps((value,), methodresponse=True).encode()
    assert parse_document_response(data) is None
    assert parse_document_response(data, ("VM_POOL", "VM")) is None


def test_a_broken_document_gives_none(monkeypatch):
    monkeypatch.setattr(decode, "PIECE", 64)
    document = "<VM_POOL>" + _vm(1) * 20 + "<VM><ID>2</ID></VM_POOL>"
    assert parse_document_response(_answer(document)) is None
    assert parse_document_response(_answer(document), ("VM_POOL", "VM")) is None


@pytest.mark.parametrize("traps", [{200}, {0}, {299}, {50, 51, 250}], ids=str)
def test_a_wrong_cut_costs_only_the_pieces_around_it(monkeypatch, traps):
    """One user's CDATA holding `</VM><VM>` must not make the whole pool parse twice."""
    monkeypatch.setattr(decode, "PIECE", 512)
    monkeypatch.setattr(decode, "TEXT_BUFFER", 256)
    trap = "<USER_TEMPLATE><X><![CDATA[</VM><VM>]]></X></USER_TEMPLATE>"
    document = (
        "<VM_POOL>" + "".join(_vm(i, trap if i in traps else "") for i in range(300)) + "</VM_POOL>"
    )
    parsed: list[bytes] = []
    parse_piece = decode._parse_piece
    monkeypatch.setattr(
        decode, "_parse_piece", lambda data: parsed.append(data) or parse_piece(data)
    )
    roots = parse_document_response(_answer(document), ("VM_POOL", "VM"))
    ids = [vm.findtext("ID") for root in roots for vm in root.iterchildren("VM")]
    assert ids == [str(i) for i in range(300)]
    assert len(roots) > 10  # the pieces before and after the trap were kept
    assert sum(len(p) for p in parsed) < 1.2 * len(document)  # only the trap's parsed twice
