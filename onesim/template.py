"""OpenNebula template parser and renderer.

A template is a list of ``[NAME, value]`` pairs where value is a ``str`` (single attribute) or a
list of ``[NAME, str]`` pairs (vector attribute). Both oned syntaxes are accepted: the classic
``KEY = "v"`` / ``VEC = [ A = "x", B = "y" ]`` text and XML (``<TEMPLATE>...</TEMPLATE>``,
CDATA allowed). Syntax errors raise :class:`TemplateError` with oned's bison-style message.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from . import tmpl_syntax

Value = str | list
Template = list


class TemplateError(Exception):
    """A template that oned's parser would reject; ``str(e)`` is oned's message."""


def parse_text(s: str) -> Template:
    """Parse OpenNebula template syntax (see :mod:`onesim.tmpl_syntax`)."""
    try:
        return tmpl_syntax.parse(s)
    except tmpl_syntax.SyntaxError_ as e:
        raise TemplateError(f"Parse error: {e}" if str(e) else "Parse error.") from None


def parse_xml(s: str) -> Template:
    """Parse an XML template (``<TEMPLATE><A><![CDATA[x]]></A></TEMPLATE>``)."""
    try:
        root = ET.fromstring(s)
    except ET.ParseError:
        raise TemplateError("Parse error: XML Template malformed.") from None
    # Template::single_xml_att / vector_xml_att: an element without text is no attribute at
    # all, and neither is a vector's sub-element without text (`<A></A>` clears nothing)
    out: Template = []
    for child in root:
        if len(child):
            subs = [[g.tag.upper(), g.text] for g in child if g.text and not len(g)]
            out.append([child.tag.upper(), subs])
        elif child.text:
            out.append([child.tag.upper(), child.text])
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
