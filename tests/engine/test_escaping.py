"""handlers/escaping.py: request values never act as OpenNebula template syntax."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from handlers.escaping import (
    TemplateError,
    element_attrs,
    parse_template,
    quote,
    storable,
    template_xml,
)

xml_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\ufffe\uffff"),
).filter(lambda s: all(c in "\t\n\r" or ord(c) >= 0x20 for c in s))
NASTY = ['"', "\\", "]", "[", "\n", '" ]\nMEMORY = "1', "$USER[PASSWORD]", 'a\\"b', "=", ",", "#x"]


@given(xml_text)
def test_quote_round_trips_through_the_parser(value: str) -> None:
    assert parse_template(f"A = {quote(value)}\n") == [("A", value)]
    assert parse_template(f"V = [ X = {quote(value)}, Y = {quote(value)} ]") == [
        ("V", [("X", value), ("Y", value)])
    ]


@pytest.mark.parametrize("value", NASTY)
def test_breakout_attempts_stay_one_value(value: str) -> None:
    text = f'NAME = vm\nCONTEXT = [ USERDATA = {quote(value)}, NETWORK = "YES" ]\nCPU = 1\n'
    assert parse_template(text) == [
        ("NAME", "vm"),
        ("CONTEXT", [("USERDATA", value), ("NETWORK", "YES")]),
        ("CPU", "1"),
    ]


@given(xml_text, xml_text)
def test_template_xml_keeps_values_exactly(a: str, b: str) -> None:
    xml = template_xml([("EC2_CLIENT_TOKEN", a), ("CONTEXT", [("USERDATA", b)])])
    root = etree.fromstring(xml.encode())
    assert [c.tag for c in root] == ["EC2_CLIENT_TOKEN", "CONTEXT"]
    assert (root.findtext("EC2_CLIENT_TOKEN") or "") == a
    assert (root.findtext("CONTEXT/USERDATA") or "") == b
    assert element_attrs(root)[1][0] == "CONTEXT"
    assert len(root.find("CONTEXT")) == 1


def test_template_xml_refuses_control_characters_and_bad_names() -> None:
    with pytest.raises(TemplateError, match="cannot be stored"):
        template_xml([("A", "x\x00y")])
    with pytest.raises(TemplateError, match="invalid attribute name"):
        template_xml([("A B", "x")])
    with pytest.raises(TemplateError):
        storable("\x07")


def test_parser_reads_the_seed_style_template() -> None:
    text = """# comment
NAME   = eco-vm
CPU    = 0.2
OS = [ kernel = /vmlinuz,
       kernel_cmd = "ro xencons=tty console=tty1" ]
DISK = [ IMAGE_ID = "5" ]  # trailing comment
"""
    assert parse_template(text) == [
        ("NAME", "eco-vm"),
        ("CPU", "0.2"),
        ("OS", [("KERNEL", "/vmlinuz"), ("KERNEL_CMD", "ro xencons=tty console=tty1")]),
        ("DISK", [("IMAGE_ID", "5")]),
    ]


@pytest.mark.parametrize("bad", ['A = "x', "A = [ B = 1", "= 1", 'A = "x" "y"', "A = x]y"])
def test_parser_rejects_broken_templates(bad: str) -> None:
    with pytest.raises(TemplateError):
        parse_template(bad)
