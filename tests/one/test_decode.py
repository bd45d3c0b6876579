"""The lxml XML-RPC decoder answers exactly what the stdlib unmarshaller answers."""

from __future__ import annotations

import xmlrpc.client
from pathlib import Path

import pytest

from econe.one.client import decode_response

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
