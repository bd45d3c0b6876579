"""The OpenNebula template parser and renderer."""

from __future__ import annotations

import pytest

from onesim import template as T


@pytest.mark.parametrize(
    ("src", "msg"),
    [
        ('NAME="z\n=[', "unexpected EQUAL, expecting $end at line 1, columns 9:10"),
        ('X="\n=[', "unexpected EQUAL, expecting $end at line 1, columns 5:6"),
        ('MEMORY="=[', "unexpected EQUAL, expecting $end at line 1, columns 9:10"),
        (
            'NAME="x\nCPU=[',
            "unexpected $end, expecting CBRACKET or VARIABLE at line 1, columns 13:14",
        ),
        ("A", "unexpected $end, expecting EQUAL"),
        ('A=[B="1" C="2"]', "unexpected VARIABLE, expecting COMMA or CBRACKET"),
    ],
)
def test_syntax_errors(src: str, msg: str) -> None:
    with pytest.raises(T.TemplateError) as e:
        T.parse(src)
    assert str(e.value).startswith("Parse error: syntax error, " + msg.split(" at ")[0])
    assert msg in str(e.value) or " at " not in msg


def test_text_syntax() -> None:
    t = T.parse(
        '# comment\nname = "a \\"q\\" b"\nV = [ A = "x", b = y,\n a = dup ]\nU = word\nE=[]\nZ =\n'
    )
    assert t == [
        ["NAME", 'a "q" b'],
        ["V", [["A", "x"], ["B", "y"]]],
        ["U", "word"],
        ["E", []],
        ["Z", ""],
    ]
    assert T.parse('D = "multi\nline"') == [["D", "multi\nline"]]


@pytest.mark.parametrize(
    ("src", "msg"),
    [
        (
            "U = plain words",
            "unexpected $end, expecting EQUAL or EQUAL_EMPTY at line 1, columns 11:16",
        ),
        ("A = [B = 1,]", "unexpected CBRACKET, expecting VARIABLE"),
        ("A =", "unexpected $end, expecting OBRACKET or CCDATA or STRING"),
        ("A = [B 1]", "unexpected VARIABLE, expecting EQUAL"),
    ],
)
def test_more_syntax_errors(src: str, msg: str) -> None:
    with pytest.raises(T.TemplateError) as e:
        T.parse(src)
    assert msg in str(e.value)


def test_cdata_terminator_aborts_the_parse() -> None:
    with pytest.raises(T.TemplateError) as e:
        T.parse('A = "x]]>y"')
    assert str(e.value) == "Parse error."


def test_xml_syntax_with_cdata() -> None:
    t = T.parse("<TEMPLATE><A><![CDATA[x<y]]></A><NIC><NETWORK_ID>0</NETWORK_ID></NIC></TEMPLATE>")
    assert t == [["A", "x<y"], ["NIC", [["NETWORK_ID", "0"]]]]
    with pytest.raises(T.TemplateError) as e:
        T.parse("<TEMPLATE><A></TEMPLATE>")
    assert str(e.value) == "Parse error: XML Template malformed."
    assert T.parse('A = "  padded  "\nV=[B=" x "]') == [["A", "padded"], ["V", [["B", "x"]]]]
    with pytest.raises(T.TemplateError):  # XML only when "<" is the very first character
        T.parse(" <TEMPLATE><A>1</A></TEMPLATE>")


def test_xml_elements_without_text_are_no_attributes() -> None:
    """Template::single_xml_att / vector_xml_att: `<A></A>` and a vector's empty sub-element
    are skipped (clearing a value takes the text syntax, `A = ""`)."""
    t = T.parse("<TEMPLATE><A></A><B/><C>1</C><V><X></X><Y>2</Y></V></TEMPLATE>")
    assert t == [["C", "1"], ["V", [["Y", "2"]]]]
    assert T.parse('A = ""\nV = [ X = "" ]') == [["A", ""], ["V", [["X", ""]]]]


def test_render_sorted_and_merge() -> None:
    t = T.parse('Z="1"\nNIC_ALIAS=[B="2",A="1"]\nNIC=[X="1"]\nA="2"')
    assert T.render(t) == (
        "<TEMPLATE><A><![CDATA[2]]></A><NIC><X><![CDATA[1]]></X></NIC><NIC_ALIAS><A><![CDATA[1]]>"
        "</A><B><![CDATA[2]]></B></NIC_ALIAS><Z><![CDATA[1]]></Z></TEMPLATE>"
    )
    T.merge(t, T.parse('Z="9"\nN="new"'))
    assert T.get(t, "Z") == "9" and T.get(t, "N") == "new" and T.get(t, "A") == "2"
