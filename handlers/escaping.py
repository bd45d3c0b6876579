"""The one place where request values enter OpenNebula templates and script command lines.

* `quote(value)`  — an OpenNebula template string token `"…"` (backslash and quote escaped);
  used by the Jinja2 instance-type templates: every `{{ value }}` renders through it.
* `parse_template(text)` — OpenNebula template syntax (`KEY = value`, `KEY = "…"`,
  `KEY = [ A = "x", B = y ]`, `# comments`) → a list of (NAME, value | [(NAME, value)…]).
  It reads back exactly what `quote` wrote.
* `as_given(value, member)` — a value oned keeps exactly as sent, else InvalidParameterValue.
* `template_xml(attrs)` — that list → `<TEMPLATE>…</TEMPLATE>` built with lxml, which is what
  econe sends to oned (oned parses a template starting with `<` as XML), so no request value can
  ever act as template syntax, whatever it holds.
"""

from __future__ import annotations

import re
from typing import Any

from lxml import etree

from econe.errors import invalid_value
from econe.query import NOT_XML_CHAR as _NOT_XML  # what an OpenNebula template cannot hold

Attr = tuple[str, Any]  # (NAME, str | list[tuple[str, str]])

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class TemplateError(ValueError):
    """A template (or a value for one) cannot be used; the message says where."""


def quote(value: Any) -> str:
    text = "" if value is None else str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def storable(value: Any, name: str = "value") -> str:
    """The value as text, refusing characters XML (and so oned) cannot hold."""
    text = "" if value is None else str(value)
    bad = _NOT_XML.search(text)
    if bad:
        raise TemplateError(f"{name} contains a character that cannot be stored ({bad.group()!r})")
    return text


def as_given(value: Any, member: str) -> str:
    """The value as text when OpenNebula keeps it as sent, else InvalidParameterValue naming
    `member`: oned trims blanks at either end of a template value, its XML turns a carriage
    return into a line feed, and some characters cannot be stored at all. Refused, not
    altered: a name stored otherwise than sent is not found again by that name."""
    text = "" if value is None else str(value)
    if text != text.strip():
        raise invalid_value(member, text, "Leading or trailing blanks cannot be stored here.")
    if "\r" in text:
        raise invalid_value(member, ascii(text), "A carriage return cannot be stored here.")
    try:
        return storable(text, member)
    except TemplateError as exc:
        raise invalid_value(member, ascii(text), str(exc)) from None


class _Lexer:
    def __init__(self, text: str):
        self.text, self.pos = text, 0

    def skip(self, newlines: bool = True) -> None:
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            elif ch in " \t\r" or (newlines and ch == "\n"):
                self.pos += 1
            else:
                return

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def error(self, why: str) -> TemplateError:
        line = self.text.count("\n", 0, self.pos) + 1
        return TemplateError(f"template line {line}: {why}")

    def name(self) -> str:
        self.skip()
        match = _NAME.match(self.text, self.pos)
        if not match:
            raise self.error(
                f"expected an attribute name at {self.text[self.pos : self.pos + 20]!r}"
            )
        self.pos = match.end()
        return match.group().upper()

    def expect(self, ch: str, newlines: bool = True) -> None:
        self.skip(newlines)
        if self.peek() != ch:
            raise self.error(f"expected {ch!r}, found {self.peek() or 'end'!r}")
        self.pos += 1

    def value(self, in_vector: bool) -> str:
        self.skip(newlines=in_vector)
        if self.peek() == '"':
            self.pos += 1
            out = []
            while True:
                if self.pos >= len(self.text):
                    raise self.error("unterminated string")
                ch = self.text[self.pos]
                if ch == "\\" and self.pos + 1 < len(self.text):
                    out.append(self.text[self.pos + 1])
                    self.pos += 2
                elif ch == '"':
                    self.pos += 1
                    return "".join(out)
                else:
                    out.append(ch)
                    self.pos += 1
        stop = ",]\n#" if in_vector else "\n#"
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in stop:
            if self.text[self.pos] in '"[]':
                raise self.error("unexpected quote or bracket in an unquoted value")
            self.pos += 1
        return self.text[start : self.pos].strip()


def parse_template(text: str) -> list[Attr]:
    lex = _Lexer(text)
    attrs: list[Attr] = []
    while True:
        lex.skip()
        if not lex.peek():
            return attrs
        name = lex.name()
        lex.expect("=", newlines=False)
        lex.skip(newlines=False)
        if lex.peek() == "[":
            lex.pos += 1
            vector: list[tuple[str, str]] = []
            while True:
                lex.skip()
                if lex.peek() == "]":
                    lex.pos += 1
                    break
                sub = lex.name()
                lex.expect("=")
                vector.append((sub, lex.value(in_vector=True)))
                lex.skip()
                if lex.peek() == ",":
                    lex.pos += 1
                elif lex.peek() != "]":
                    raise lex.error(f"expected ',' or ']' in {name}")
            attrs.append((name, vector))
        else:
            attrs.append((name, lex.value(in_vector=False)))
        lex.skip(newlines=False)
        if lex.peek() not in ("", "\n"):
            raise lex.error(f"unexpected {lex.peek()!r} after {name}")


def _element(parent: etree._Element, name: str) -> etree._Element:
    if not _NAME.fullmatch(name):
        raise TemplateError(f"invalid attribute name {name!r}")
    return etree.SubElement(parent, name.upper())


def template_xml(attrs: list[Attr]) -> str:
    root = etree.Element("TEMPLATE")
    for name, value in attrs:
        el = _element(root, name)
        if isinstance(value, list):
            for sub, text in value:
                _element(el, sub).text = storable(text, f"{name}/{sub}")
        else:
            el.text = storable(value, name)
    return etree.tostring(root, encoding="unicode")


def element_attrs(element: etree._Element) -> list[Attr]:
    """An OpenNebula XML TEMPLATE element → the same list form (for copying DISK/CONTEXT)."""
    out: list[Attr] = []
    for child in element:
        if not isinstance(child.tag, str):
            continue
        if len(child):
            out.append(
                (child.tag, [(c.tag, c.text or "") for c in child if isinstance(c.tag, str)])
            )
        else:
            out.append((child.tag, child.text or ""))
    return out
