"""OpenNebula template syntax, as oned 7.4's flex/bison parser reads it
(``src/parsers/template_parser.l`` and ``template_syntax.y``).

Lexer (INITIAL state): comments ``[[:blank:]]*#.*\\n`` and ``[[:blank:]\\n]+`` are skipped;
``VARIABLE`` is ``[[:alnum:]_]+``; ``EQUAL`` is ``[[:blank:]]*=[[:blank:]]*`` (enters VALUE),
``EQUAL_EMPTY`` the same followed by a newline; ``COMMA`` and ``CBRACKET`` absorb blanks and
newlines around them. VALUE state: ``OBRACKET``, a line holding ``]]>`` (``CCDATA``, which
aborts the parse), a double-quoted string (``\\"`` escapes a quote, newlines allowed) or a bare
word ``[^=#[:blank:]\\n,\\[\\]]+``. Unmatched characters are consumed silently (flex's default
rule). Every token advances the column counter, which is never reset on new lines.

Grammar: ``attribute: VARIABLE EQUAL STRING | VARIABLE EQUAL OBRACKET array_val CBRACKET |
VARIABLE EQUAL OBRACKET CBRACKET | VARIABLE EQUAL_EMPTY``; ``array_val: VARIABLE EQUAL STRING
(COMMA VARIABLE EQUAL STRING)*``. Vector keys are upper-cased and the first of duplicate keys
wins (a ``std::map``). Error texts are bison's verbose ones with oned's location suffix.
"""

from __future__ import annotations

import re

_BLANK = " \t"
_COMMENT = re.compile(r"[ \t]*#.*\n")
_SKIP = re.compile(r"[ \t\n]+")
_VARIABLE = re.compile(r"[A-Za-z0-9_]+")
_EQUAL_EMPTY = re.compile(r"[ \t]*=[ \t]*\n")
_EQUAL = re.compile(r"[ \t]*=[ \t]*")
_COMMA = re.compile(r"[ \t\n]*,[ \t\n]*")
_CBRACKET = re.compile(r"[ \t\n]*\][ \t\n]*")
_OBRACKET = re.compile(r"[ \t]*\[[ \t\n]*")
_CCDATA = re.compile(r".*\]\]>.*")
_QUOTED = re.compile(r'"((?:\\"|[^"])*)"', re.S)
_WORD = re.compile(r"[^=#\t \n,\[\]]+")


class SyntaxError_(Exception):
    """Raised with oned's message (without the "Parse error: " prefix)."""


class _Lexer:
    def __init__(self, s: str) -> None:
        self.s, self.i, self.col, self.value_state = s, 0, 1, False

    def _take(self, m: re.Match) -> tuple[int, int]:
        first = self.col
        self.col += len(m.group(0))
        self.i = m.end()
        return first, self.col

    def next(self) -> tuple[str, str, int, int]:
        """(kind, text, first_column, last_column); kind "$end" at the end."""
        s = self.s
        while self.i < len(s):
            if self.value_state:
                for kind, rx in (("OBRACKET", _OBRACKET), ("CCDATA", _CCDATA)):
                    m = rx.match(s, self.i)
                    if m and (kind != "CCDATA" or len(m.group(0)) >= self._value_len()):
                        self.value_state = False
                        return (kind, m.group(0), *self._take(m))
                m = _QUOTED.match(s, self.i)
                w = _WORD.match(s, self.i)
                if m and (not w or len(m.group(0)) >= len(w.group(0))):
                    self.value_state = False
                    return ("STRING", m.group(1).replace('\\"', '"'), *self._take(m))
                if w:
                    self.value_state = False
                    return ("STRING", w.group(0).replace('\\"', '"'), *self._take(w))
                self.i += 1  # flex default rule: the character is echoed and dropped
                self.col += 1
                continue
            best = None
            for kind, rx in (
                ("", _COMMENT),
                ("", _SKIP),
                ("VARIABLE", _VARIABLE),
                ("EQUAL_EMPTY", _EQUAL_EMPTY),
                ("EQUAL", _EQUAL),
                ("COMMA", _COMMA),
                ("CBRACKET", _CBRACKET),
            ):
                m = rx.match(s, self.i)
                if m and m.group(0) and (best is None or len(m.group(0)) > len(best[1].group(0))):
                    best = (kind, m)
            if best is None:
                self.i += 1
                self.col += 1
                continue
            kind, m = best
            first, last = self._take(m)
            if not kind:
                continue
            if kind == "EQUAL":
                self.value_state = True
            return kind, m.group(0), first, last
        return "$end", "", -1, -1

    def _value_len(self) -> int:
        q = _QUOTED.match(self.s, self.i)
        w = _WORD.match(self.s, self.i)
        return max(len(q.group(0)) if q else 0, len(w.group(0)) if w else 0, 1)


def parse(s: str) -> list:
    """Parse ``s`` into ``[[NAME, value], ...]``; raise SyntaxError_ with bison's text."""
    lex = _Lexer(s)
    out: list = []
    loc = (1, 1)

    def tok() -> tuple[str, str]:
        nonlocal loc
        kind, text, first, last = lex.next()
        if kind != "$end":
            loc = (first, last)
        return kind, text

    def fail(kind: str, expecting: str) -> SyntaxError_:
        if kind == "CCDATA":  # YYABORT: no message
            return SyntaxError_("")
        return SyntaxError_(
            f"syntax error, unexpected {kind}, expecting {expecting} "
            f"at line 1, columns {loc[0]}:{loc[1]}"
        )

    kind, text = tok()
    while kind != "$end":
        if kind != "VARIABLE":
            raise fail(kind, "$end")
        name = text.upper()
        kind, text = tok()
        if kind == "EQUAL_EMPTY":
            out.append([name, ""])
            kind, text = tok()
            continue
        if kind != "EQUAL":
            raise fail(kind, "EQUAL or EQUAL_EMPTY")
        kind, text = tok()
        if kind == "STRING":
            out.append([name, text])
        elif kind == "OBRACKET":
            vec: dict[str, str] = {}
            kind, text = tok()
            if kind != "CBRACKET":
                while True:
                    if kind != "VARIABLE":
                        raise fail(kind, "CBRACKET or VARIABLE" if not vec else "VARIABLE")
                    key = text.upper()
                    kind, text = tok()
                    if kind != "EQUAL":
                        raise fail(kind, "EQUAL")
                    kind, text = tok()
                    if kind != "STRING":
                        raise fail(kind, "STRING")
                    vec.setdefault(key, text)
                    kind, text = tok()
                    if kind == "CBRACKET":
                        break
                    if kind != "COMMA":
                        raise fail(kind, "COMMA or CBRACKET")
                    kind, text = tok()
            out.append([name, [[k, v] for k, v in vec.items()]])
        else:
            raise fail(kind, "OBRACKET or CCDATA or STRING")
        kind, text = tok()
    return out
