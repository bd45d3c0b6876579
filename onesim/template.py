"""OpenNebula template parser and renderer.

A template is a list of ``[NAME, value]`` pairs where value is a ``str`` (single attribute) or a
list of ``[NAME, str]`` pairs (vector attribute). Both oned syntaxes are accepted: the classic
``KEY = "v"`` / ``VEC = [ A = "x", B = "y" ]`` text and XML (``<TEMPLATE>...</TEMPLATE>``,
CDATA allowed). Syntax errors raise :class:`TemplateError` with oned's bison-style message.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

Value = str | list
Template = list

_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


class TemplateError(Exception):
    """A template that oned's parser would reject; ``str(e)`` is oned's message."""


class _Tok:
    __slots__ = ("kind", "text", "col")

    def __init__(self, kind: str, text: str, col: int) -> None:
        self.kind, self.text, self.col = kind, text, col


def _syntax(tok: _Tok, expecting: str, last: _Tok | None) -> TemplateError:
    loc = tok if tok.kind != "$end" or last is None else last
    width = max(len(loc.text), 1) if loc.kind != "STRING" else len(loc.text) + 2
    return TemplateError(
        f"Parse error: syntax error, unexpected {tok.kind}, expecting {expecting} "
        f"at line 1, columns {loc.col}:{loc.col + width}"
    )


def _value(s: str, i: int, in_vector: bool) -> tuple[str, int]:
    """Read a value starting at ``s[i]`` (spaces skipped). Returns (value, new index)."""
    n = len(s)
    if i < n and s[i] == '"':
        j = i + 1
        out = []
        while j < n:
            c = s[j]
            if c == "\\" and j + 1 < n and s[j + 1] == '"':
                out.append('"')
                j += 2
                continue
            if c == '"':
                return "".join(out), j + 1
            out.append(c)
            j += 1
        # unterminated quote: oned's lexer falls back to a bare word up to a separator
        j = i + 1
        while j < n and s[j] not in "\n=[],":
            j += 1
        return s[i:j].strip(), j
    stops = "\n,]" if in_vector else "\n"
    j = i
    while j < n and s[j] not in stops:
        j += 1
    return s[i:j].strip(), j


def parse_text(s: str) -> Template:
    """Parse OpenNebula template syntax."""
    out: Template = []
    n = len(s)
    i = 0
    last: _Tok | None = None

    def skip_ws(i: int, newlines: bool = True) -> int:
        while i < n:
            c = s[i]
            if c == "#" and (i == 0 or s[i - 1] == "\n" or s[:i].strip() == ""):
                while i < n and s[i] != "\n":
                    i += 1
            elif c in " \t\r" or (newlines and c == "\n"):
                i += 1
            else:
                break
        return i

    def token(i: int) -> _Tok:
        if i >= n:
            return _Tok("$end", "", i + 1)
        c = s[i]
        kinds = {"=": "EQUAL", "[": "OBRACKET", "]": "CBRACKET", ",": "COMMA"}
        if c in kinds:
            return _Tok(kinds[c], c, i + 1)
        m = _NAME.match(s, i)
        if m:
            return _Tok("VARIABLE", m.group(0), i + 1)
        return _Tok("$undefined", c, i + 1)

    while True:
        i = skip_ws(i)
        tok = token(i)
        if tok.kind == "$end":
            return out
        if tok.kind != "VARIABLE":
            raise _syntax(tok, "$end", last)
        name = tok.text.upper()
        last = tok
        i = skip_ws(i + len(tok.text), newlines=False)
        tok = token(i)
        if tok.kind != "EQUAL":
            raise _syntax(tok, "EQUAL", last)
        last = tok
        i = skip_ws(i + 1, newlines=False)
        if i < n and s[i] == "[":
            last = token(i)
            i += 1
            vec: list = []
            expect_name = True
            while True:
                i = skip_ws(i)
                tok = token(i)
                if expect_name:
                    if tok.kind == "CBRACKET" and not vec:
                        i += 1
                        break
                    if tok.kind != "VARIABLE":
                        raise _syntax(tok, "CBRACKET or VARIABLE" if not vec else "VARIABLE", last)
                    vname = tok.text.upper()
                    last = tok
                    i = skip_ws(i + len(tok.text))
                    tok = token(i)
                    if tok.kind != "EQUAL":
                        raise _syntax(tok, "EQUAL", last)
                    last = tok
                    i = skip_ws(i + 1)
                    val, i = _value(s, i, True)
                    vec.append([vname, val])
                    expect_name = False
                else:
                    if tok.kind == "COMMA":
                        last = tok
                        i += 1
                        expect_name = True
                    elif tok.kind == "CBRACKET":
                        i += 1
                        break
                    else:
                        raise _syntax(tok, "COMMA or CBRACKET", last)
            out.append([name, vec])
        else:
            val, i = _value(s, i, False)
            out.append([name, val])


def parse_xml(s: str) -> Template:
    """Parse an XML template (``<TEMPLATE><A><![CDATA[x]]></A></TEMPLATE>``)."""
    try:
        root = ET.fromstring(s)
    except ET.ParseError:
        raise TemplateError("Parse error: XML Template malformed.") from None
    out: Template = []
    for child in root:
        if len(child):
            out.append([child.tag.upper(), [[g.tag.upper(), g.text or ""] for g in child]])
        else:
            out.append([child.tag.upper(), child.text or ""])
    return out


def parse(s: str) -> Template:
    """Parse either syntax, as oned's ``parse_str_or_xml`` does (XML only when the very first
    character is ``<``), then trim every value (``Template::trim_attributes``)."""
    t = parse_xml(s) if s.startswith("<") else parse_text(s)
    for pair in t:
        if isinstance(pair[1], list):
            for sub in pair[1]:
                sub[1] = sub[1].strip()
        else:
            pair[1] = pair[1].strip()
    return t


# ---------------------------------------------------------------------------- access helpers


def get(t: Template, name: str, default: str | None = None) -> str | None:
    for k, v in t:
        if k == name and isinstance(v, str):
            return v
    return default


def get_vec(t: Template, name: str) -> list:
    return [v for k, v in t if k == name and isinstance(v, list)]


def vget(vec: list, name: str, default: str | None = None) -> str | None:
    for k, v in vec:
        if k == name:
            return v
    return default


def vset(vec: list, name: str, value: str) -> None:
    for pair in vec:
        if pair[0] == name:
            pair[1] = value
            return
    vec.append([name, value])


def tset(t: Template, name: str, value: Value) -> None:
    for pair in t:
        if pair[0] == name:
            pair[1] = value
            return
    t.append([name, value])


def remove(t: Template, name: str) -> None:
    t[:] = [p for p in t if p[0] != name]


def merge(t: Template, new: Template) -> None:
    """oned's merge: every name in ``new`` replaces all attributes of that name."""
    names = {k for k, _ in new}
    t[:] = [p for p in t if p[0] not in names] + [[k, v] for k, v in new]


# ---------------------------------------------------------------------------- rendering


def cdata(v: str) -> str:
    return "<![CDATA[" + v.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def esc(v: object) -> str:
    s = str(v)
    if "&" in s or "<" in s or ">" in s:
        s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return s


class Escaped(str):
    """A string already escaped for an XML-RPC ``<string>`` (pool bodies built from cached,
    pre-escaped parts); the transport sends it as is."""


def xmlrpc_escape(s: str) -> Escaped:
    return Escaped(s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))


def render_vec(name: str, vec: list) -> str:
    body = "".join(f"<{k}>{cdata(v)}</{k}>" for k, v in sorted(vec, key=lambda p: p[0]))
    return f"<{name}>{body}</{name}>"


def render_body(t: Template) -> str:
    parts = []
    for k, v in sorted(t, key=lambda p: p[0]):
        parts.append(render_vec(k, v) if isinstance(v, list) else f"<{k}>{cdata(v)}</{k}>")
    return "".join(parts)


def render(t: Template, root: str = "TEMPLATE") -> str:
    return f"<{root}>{render_body(t)}</{root}>"
