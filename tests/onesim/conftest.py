"""Fixtures and the golden-comparison helper for the onesim tests."""

from __future__ import annotations

import re
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from onesim.server import SimServer

_SHARED = Path(__file__).resolve().parents[3] / "shared"
if not _SHARED.is_dir():
    _SHARED = Path("/work/shared")
GOLDEN = _SHARED / "opennebula-golden"
XSD = _SHARED / "opennebula-xsd"
NS = "http://opennebula.org/XMLSchema"

# Values that depend on time, randomness, the recording host or the monitoring probe.
TIME_TAGS = {
    "STIME",
    "ETIME",
    "PSTIME",
    "PETIME",
    "RSTIME",
    "RETIME",
    "ESTIME",
    "EETIME",
    "LAST_POLL",
    "REGTIME",
    "MODTIME",
    "TIMESTAMP",
    "EXPIRATION_TIME",
}
SECRET_TAGS = {"PASSWORD", "TOKEN", "TOKEN_PASSWORD", "UUID", "REQUEST_ID"}
LOCAL_TAGS = {"PATH", "BASE_PATH", "TOTAL_MB", "FREE_MB", "USED_MB"}


def golden(name: str) -> list:
    """The result array of a golden response (faults raise xmlrpc.client.Fault)."""
    assert GOLDEN.is_dir(), f"golden responses missing: {GOLDEN}"
    return list(xmlrpc.client.loads((GOLDEN / name).read_bytes())[0][0])


def normalise(xml: str, host: str = "localhost") -> list[tuple[str, str]]:
    """(tag path, normalised text) for every element, in document order."""
    root = etree.fromstring(xml.encode())
    out = []
    for el in root.iter():
        path = "/".join([a.tag for a in reversed(list(el.iterancestors()))] + [el.tag])
        text = (el.text or "") if len(el) == 0 else ""
        parent = el.getparent()
        if el.tag in TIME_TAGS or (parent is not None and parent.tag == "MONITORING"):
            text = "<t>" if text not in ("", "0", "-1") else text
        elif el.tag in SECRET_TAGS or el.tag in LOCAL_TAGS:
            text = "<s>"
        text = text.replace(host, "<host>")
        out.append((path, text))
    return out


def tag_paths(xml: str) -> list[str]:
    return [p for p, _ in normalise(xml)]


def assert_like_golden(
    ours: str, golden_xml: str, ignore: tuple[str, ...] = (), host: str = "localhost"
) -> None:
    """Same elements in the same order, same normalised values (paths in ``ignore`` and
    their children are dropped from both sides)."""

    def keep(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [
            (p, t) for p, t in items if not any(p == i or p.startswith(i + "/") for i in ignore)
        ]

    a = keep(normalise(ours, host))
    b = keep(normalise(golden_xml, "localhost"))
    assert [p for p, _ in a] == [p for p, _ in b], _diff([p for p, _ in a], [p for p, _ in b])
    assert a == b, _diff([f"{p}={t}" for p, t in a], [f"{p}={t}" for p, t in b])


def _diff(a: list[str], b: list[str]) -> str:
    import difflib

    return "\n".join(difflib.unified_diff(b, a, "golden", "onesim", lineterm="", n=2))


def norm_msg(msg: str) -> str:
    return re.sub(r"at line -?\d+", "at line N", msg)


_SCHEMAS: dict[str, etree.XMLSchema] = {}


def validate(xml: str, xsd: str) -> None:
    """Validate against the 7.4 XSD after putting the namespace on the root."""
    if xsd not in _SCHEMAS:
        _SCHEMAS[xsd] = etree.XMLSchema(etree.parse(str(XSD / xsd)))
    root = etree.fromstring(xml.encode())
    qualified = etree.Element(f"{{{NS}}}{root.tag}", nsmap={None: NS})
    _qualify(root, qualified)
    schema = _SCHEMAS[xsd]
    if not schema.validate(qualified):
        raise AssertionError(f"{xsd}: {schema.error_log}")


def _qualify(src: etree._Element, dst: etree._Element) -> None:
    dst.text = src.text
    for child in src:
        c = etree.SubElement(dst, f"{{{NS}}}{child.tag}")
        _qualify(child, c)
        c.tail = child.tail


class One:
    """Raw XML-RPC calls returning the result array (faults raise)."""

    def __init__(self, url: str) -> None:
        self.proxy = xmlrpc.client.ServerProxy(url)

    def __call__(self, name: str, *args: Any) -> list:
        return list(getattr(self.proxy, name)(*args))


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimServer]:
    s = SimServer(str(tmp_path / "state"), port=0, seed="demo", speed=0).start()
    yield s
    s.stop()


@pytest.fixture
def one(sim: SimServer) -> One:
    return One(sim.url)
