"""Views: one OpenNebula XML element (VM, IMAGE, …) → a dict keyed by EC2 member names.

mappings/views/<name>.yaml:

    object: VM                       # documentation: the element the view reads
    fields:
      InstanceId: {path: ID, id: i}  # text at a path, formatted as an EC2 id
      _id: {path: ID, type: int}     # names starting with `_` are internal (filters, grouping)
      State: {path: [STATE, LCM_STATE], table: instance_states}
      KeyName: USER_TEMPLATE/EC2_KEYNAME|TEMPLATE/CONTEXT/EC2_KEYNAME   # short form; `|` = first found
      Monitoring: {value: {State: disabled}}                           # a constant
      Public: {expr: "item._group_u == '1' or item._other_u == '1'"}   # Jinja over earlier fields
      Volumes:                       # a list: one dict per matching element (here each DISK
        path: TEMPLATE/DISK          # that has an EC2_VOLUME_ID), with fields read from it
        having: EC2_VOLUME_ID
        each: {VolumeId: EC2_VOLUME_ID, Device: TARGET}

Types: str (default), int, float, bool (YES/TRUE/1), epoch (datetime UTC; 0 → absent),
iso (ISO-8601 string), list (every match's text), tags (EC2_TAGS vectors → [{Key, Value}]).
`prefix:` is text put before a non-empty str value (`/dev/` + TARGET); `format:` is a
printf-style format applied to the typed value (`{path: ID, type: int, format: "r-%017x"}`);
`default:` applies when the path is absent or empty; `or:` is another field spec tried when
this one gives nothing; `if: PATH` + `then: SPEC` use SPEC instead when the plain path PATH has a
value (e.g. a VM marked for termination shows `shutting-down`). An `expr` that does not read
`item` is evaluated once per request. A path that is not a plain `A/B/C` is an XPath
expression, precompiled. Tables are views/<table>.yaml with `entries` (keys joined with
`.` for composite paths, tried longest first), optional `values` (entry → value) and `default`.
`each:` (with a plain `path:`) makes a list of structures: the `each` fields form a view of their
own, applied to every match of the path (relative paths; `having: NAME` keeps only the matches
with a child NAME that has a non-blank value); it is `[]` when nothing matches.
A view's `where:` (an expression over `item`, or `{like: VIEW}` for another view's) says which
elements a mapping using it lists, unless the mapping has a `where:` of its own. A field given
as `{like: VIEW}` is VIEW's field of the same name, `{like: VIEW.FIELD}` its FIELD (one rule,
written once).

Each view compiles into one generated Python function (`View.code` holds its source), as
econe/serialize.py does for output writers. Per element it walks the children once, in nested
loops built from the trie of the plain paths, keeping the text of the first match of each path
(in document order) in a local variable, or every match for list/tags paths; then it computes
the fields inline, in field order. Only XPath getters, expressions and the tags helper are
called. YAML values reach the code only as repr() literals of str/int/bool/None or as constants
of the function's namespace, never as code (tags are plain names: `_SIMPLE`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from lxml import etree

from econe.mapping.expr import Expressions

_SIMPLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FIELD_KEYS = {
    "path",
    "type",
    "default",
    "id",
    "table",
    "value",
    "expr",
    "or",
    "if",
    "then",
    "each",
    "having",
    "prefix",
    "format",
}
_TYPES = {"str", "int", "float", "bool", "epoch", "iso", "list", "tags"}
# Each level of a plain path is a loop of the generated code; Python nests at most 20 blocks.
_MAX_LEVELS = 16


class Table:
    def __init__(self, data: dict, where: str):
        if not isinstance(data.get("entries"), dict):
            raise ValueError(f"{where}: a table needs `entries:`")
        values = data.get("values") or {}
        self.default = values.get(data.get("default"), data.get("default"))
        self.entries = {
            str(k): values.get(v, v) if v is not None else None for k, v in data["entries"].items()
        }

    def lookup(self, key: tuple[str, ...]) -> Any:
        for n in range(len(key), 0, -1):
            hit = ".".join(k or "" for k in key[:n])
            if hit in self.entries:
                return self.entries[hit]
        return self.default


def _simple_paths(path: str) -> list[str] | None:
    """`A/B|C/D` → [A/B, C/D] when every alternative is a plain path, else None (XPath)."""
    alternatives = [p.strip() for p in path.split("|")]
    return alternatives if all(_SIMPLE.fullmatch(a) for a in alternatives) else None


def _xpath_getter(path: str, where: str) -> Callable[[etree._Element], str | None]:
    try:
        xp = etree.XPath(path)
    except etree.XPathSyntaxError as exc:
        raise ValueError(f"{where}: bad XPath {path!r}: {exc}") from exc

    def run(el: etree._Element) -> str | None:
        res = xp(el)
        if isinstance(res, list):
            if not res:
                return None
            res = res[0]
            return res.text if isinstance(res, etree._Element) else str(res)
        return str(res) if res is not None else None

    return run


def _parents(children: list[etree._Element]) -> list[etree._Element]:
    """The parents of the children with a non-blank text, each once, in document order."""
    return list(dict.fromkeys(c.getparent() for c in children if c.text and c.text.strip()))


# econe writes one `EC2_TAGS = [KEY = k, VALUE = v]` vector per tag, and oned drops a VALUE
# that is empty: KEY alone is a tag with an empty value. The Ruby econe wrote one vector for all
# of a resource's tags, a child per tag named by its key (oned upper-cases it), never an empty
# one. So a vector with any other child is the Ruby econe's (`[KEY = "prod", OWNER = "bob"]`:
# key=prod, owner=bob). The one set both could have written, the Ruby econe's `key` (with or
# without `value`) and nothing else, reads as econe's form; writing the tags back keeps that
# vector as it is, so no tag is ever lost.
_OWN_FORM = (["KEY"], ["KEY", "VALUE"])


def ec2_tags(vectors: list[etree._Element]) -> list[dict[str, str]]:
    """EC2_TAGS elements → [{Key, Value}], in either form (a non-vector EC2_TAGS holds none)."""
    tags = []
    for vec in vectors:
        if sorted(child.tag for child in vec) in _OWN_FORM:
            tags.append({"Key": vec.findtext("KEY") or "", "Value": vec.findtext("VALUE") or ""})
        else:
            tags.extend({"Key": child.tag.lower(), "Value": child.text or ""} for child in vec)
    return tags


# Conversion of a non-empty text `t` (raising TypeError/ValueError means: the default).
_CONVERT = {
    "int": "int({t})",
    "float": "float({t})",
    "bool": "{t}.strip().upper() in ('YES', 'TRUE', '1')",
    "epoch": "_fromts(n, _UTC) if (n := int({t})) > 0 else None",  # 0 → absent
    "iso": "_fromts(n, _UTC).strftime('%Y-%m-%dT%H:%M:%S.000Z') if (n := int({t})) > 0 else None",
}

# A field compiles first into a small tree of tuples, then into code:
#   ("value", constant)              ("const", fn, default)  an expression without `item`
#   ("expr", fn, default)            ("text", source, type, id prefix, default, text prefix,
#                                      printf format)
#   ("list", path, default)          ("tags", path, default)
#   ("table", table, [source…])      ("or", spec, fallback)   ("if", path, then, otherwise)
#   ("each", path, view, having)     a sub-view over every match (those with `having`)
# A source is ("plain", [path, …]) (alternatives) or ("xpath", getter).
Spec = tuple

_MISS = object()  # a table key that is not an entry


class _Fields:
    """Validates field specs (the load-time errors) and records the plain paths they read."""

    def __init__(self, tables: dict[str, Table], exprs: Expressions):
        self.tables, self.exprs = tables, exprs
        self.texts: dict[str, None] = {}  # paths whose first match's text is read (ordered set)
        self.lists: dict[str, None] = {}  # paths whose every match is read
        self.ids: set[str] = set()  # the prefixes of the ids it formats (`id: i`)

    def field(self, fspec: Any, where: str) -> Spec:
        if isinstance(fspec, str):
            fspec = {"path": fspec}
        if not isinstance(fspec, dict):
            raise ValueError(f"{where}: expected a path or a mapping")
        if "id" in fspec:
            self.ids.add(str(fspec["id"]))
        unknown = set(fspec) - _FIELD_KEYS
        if unknown:
            raise ValueError(
                f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_FIELD_KEYS)}"
            )
        if "if" in fspec or "then" in fspec:
            return self._conditional(fspec, where)
        fallback = self.field(fspec["or"], f"{where}.or") if "or" in fspec else None
        if fallback is not None and fallback[0] == "const":
            raise ValueError(f"{where}.or: must read the element (a path)")
        base = self._base(fspec, fspec.get("default"), where)
        if fallback is None or base[0] == "const":
            return base  # an `or:` beside a constant expression is never consulted
        return ("or", base, fallback)

    def _conditional(self, fspec: dict, where: str) -> Spec:
        """`if: PATH, then: SPEC`: when the plain path PATH has a value, the field is SPEC;
        otherwise it is the rest of the spec (a cheap per-element switch, no expression)."""
        cond, then = fspec.get("if"), fspec.get("then")
        if not isinstance(cond, str) or not _SIMPLE.fullmatch(cond) or then is None:
            raise ValueError(f"{where}: `if:` takes a plain A/B/C path and needs `then:`")
        self._plain(cond, self.texts, where)
        chosen = self.field(then, f"{where}.then")
        other = self.field({k: v for k, v in fspec.items() if k not in ("if", "then")}, where)
        if chosen[0] == "const" or other[0] == "const":
            raise ValueError(f"{where}: with `if:`, both branches must read the element")
        return ("if", cond, chosen, other)

    def _base(self, fspec: dict, default: Any, where: str) -> Spec:
        if "value" in fspec:
            return ("value", fspec["value"])
        if "expr" in fspec:
            fn = self.exprs.expression(fspec["expr"], where)
            if "item" not in self.exprs.variables(fspec["expr"]):
                return ("const", fn, default)
            return ("expr", fn, default)
        path = fspec.get("path")
        if path is None:
            raise ValueError(f"{where}: needs one of path, value, expr")
        if "each" in fspec or "having" in fspec:
            return self._each(fspec, path, where)
        kind = fspec.get("type", "str")
        if kind not in _TYPES:
            raise ValueError(f"{where}: unknown type {kind!r}; one of {sorted(_TYPES)}")
        if "table" in fspec:
            table = self.tables.get(fspec["table"])
            if table is None:
                raise ValueError(f"{where}: no table views/{fspec['table']}.yaml")
            paths = path if isinstance(path, list) else [path]
            return ("table", table, [self._source(str(p), where) for p in paths])
        if not isinstance(path, str):
            raise ValueError(f"{where}: path must be a string (a list only with table:)")
        if kind in ("list", "tags"):
            if not _SIMPLE.fullmatch(path):
                raise ValueError(f"{where}: list/tags need a plain A/B/C path")
            self._plain(path, self.lists, where)
            return (kind, path, default)
        before = fspec.get("prefix")
        if before is not None and (not isinstance(before, str) or kind != "str" or "id" in fspec):
            raise ValueError(f"{where}: prefix is text put before a str value (not with id:)")
        fmt = fspec.get("format")
        if fmt is not None:
            self._check_format(fmt, kind, "id" in fspec or before is not None, where)
        return ("text", self._source(path, where), kind, fspec.get("id"), default, before, fmt)

    @staticmethod
    def _check_format(fmt: Any, kind: str, other: bool, where: str) -> None:
        """A printf-style format of one str, int or float value (alone: not with id/prefix)."""
        sample = {"str": "", "int": 0, "float": 0.0}.get(kind)
        if sample is None or other:
            raise ValueError(f"{where}: format applies to a str, int or float (not with id/prefix)")
        try:
            if not isinstance(fmt, str) or fmt % (sample,) == fmt:
                raise TypeError
        except (TypeError, ValueError):
            raise ValueError(
                f"{where}: format must be a printf-style format of one value"
            ) from None

    def _each(self, fspec: dict, path: Any, where: str) -> Spec:
        having = fspec.get("having")
        if not isinstance(path, str) or not _SIMPLE.fullmatch(path):
            raise ValueError(f"{where}: each needs a plain A/B/C path")
        if not isinstance(fspec.get("each"), dict):
            raise ValueError(f"{where}: each needs fields (member: path or spec)")
        if having is not None and not (isinstance(having, str) and _NAME.fullmatch(having)):
            raise ValueError(f"{where}: having takes the name of a child element")
        # With `having`, the walk collects the H children of the matches (none on most
        # elements, so nearly free), and the view is applied to their parents.
        self._plain(f"{path}/{having}" if having else path, self.lists, where)
        sub = View(where, {"fields": fspec["each"]}, self.tables, self.exprs, f"{where}.each")
        self.ids |= sub.id_prefixes
        return ("each", path, sub, having)

    def _source(self, path: str, where: str) -> Spec:
        plain = _simple_paths(path)
        if plain is None:
            return ("xpath", _xpath_getter(path, where))
        for p in plain:
            self._plain(p, self.texts, where)
        return ("plain", plain)

    def _plain(self, path: str, into: dict[str, None], where: str) -> None:
        if path.count("/") >= _MAX_LEVELS:
            raise ValueError(f"{where}: path {path!r} has more than {_MAX_LEVELS} levels")
        into[path] = None


class _Node:
    """A trie node: one child tag of the node above, with the paths ending there."""

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.slot: int | None = None  # t<slot>: the first match's text
        self.list: int | None = None  # l<list>: every match

    def pure(self) -> bool:
        """Only the first match's text is read here (and nothing below)."""
        return not self.children and self.list is None


def _trie(texts: dict[str, None], lists: dict[str, None]) -> tuple[dict[str, _Node], dict, dict]:
    """The trie of the plain paths → (root children, path → text slot, path → list number)."""
    root: dict[str, _Node] = {}
    ends: dict[str, _Node] = {}
    for path in [*texts, *lists]:
        level, node = root, None
        for part in path.split("/"):
            node = level.setdefault(part, _Node())
            level = node.children
        ends[path] = node
    for n, path in enumerate(texts):
        ends[path].slot = n
    for n, path in enumerate(lists):
        ends[path].list = n
    return root, {p: ends[p].slot for p in texts}, {p: ends[p].list for p in lists}


class _Code:
    """Writes the function of one view: `apply_all(elements, scope)` → list of dicts.

    Per element, local `t<n>` holds the text of the first match of plain path n (False while
    none was seen; None or "" for an empty one), `l<n>` every match of list path n."""

    def __init__(self, fields: list[tuple[Any, Spec]], paths: _Fields):
        self.ns: dict[str, Any] = {
            "_fromts": datetime.fromtimestamp,
            "_UTC": UTC,
            "_MISS": _MISS,
            "_tags": ec2_tags,
            "_parents": _parents,
        }
        self.temps = 0
        self.trie, self.slot, self.list = _trie(paths.texts, paths.lists)
        consts = [(i, spec) for i, (_, spec) in enumerate(fields) if spec[0] == "const"]
        item_at = next((i for i, (_, s) in enumerate(fields) if _reads_item(s)), None)
        lines = ["def apply_all(elements, scope):"]
        for i, (_, fn, default) in consts:  # item-independent expressions: once per call
            lines.append(f"    f{i} = {self.const(fn)}(scope)")
            if default is not None:
                lines.append(f"    if f{i} is None: f{i} = {self.const(default)}")
        if item_at is not None:
            members = ", ".join(f"{self.const(fields[i][0])}: f{i}" for i, _ in consts)
            lines.append(f"    scope = {{**scope, '_constants': {{{members}}}}}")
        lines += ["    out = []", "    append = out.append", "    for el in elements:"]
        if self.slot:
            lines.append("        " + " = ".join(f"t{n}" for n in self.slot.values()) + " = False")
        lines += [f"        l{n} = []" for n in self.list.values()]
        self.walk("el", self.trie, 0, lines, " " * 8)
        for i, (member, spec) in enumerate(fields):
            if i == item_at:  # expressions read the fields so far as `item`
                done = ", ".join(f"{self.const(fields[j][0])}: f{j}" for j in range(i))
                lines.append(f"        item = {{{done}}}")
            if spec[0] != "const":
                self.value(spec, f"f{i}", lines, " " * 8)
            if item_at is not None and i >= item_at:
                lines.append(f"        item[{self.const(member)}] = f{i}")
        if item_at is None:
            done = ", ".join(f"{self.const(m)}: f{i}" for i, (m, _) in enumerate(fields))
            lines.append(f"        append({{{done}}})")
        else:
            lines.append("        append(item)")
        lines.append("    return out")
        self.source = "\n".join(lines) + "\n"

    def const(self, value: Any) -> str:
        """Code for a constant: a literal for str/int/bool/None, else a namespace name."""
        if value is None or type(value) in (str, int, bool):
            return repr(value)
        name = f"_k{len(self.ns)}"
        self.ns[name] = value
        return name

    def temp(self) -> str:
        self.temps += 1
        return f"v{self.temps}"

    # -- the walk ----------------------------------------------------------------------------

    def walk(self, parent: str, level: dict[str, _Node], depth: int, out: list, ind: str) -> None:
        """Loops over the children of `parent` whose tags are in this trie level.

        lxml filters children by tag in C, but each call sets up a matcher costing about as
        much as a dozen children visited in Python. So the children are filtered in C for the
        element itself (a fixed, wide schema: VM, IMAGE) and where at most 3 tags are wanted
        (one attribute of a NIC, a DISK); templates are iterated whole (often small)."""
        if not level:
            return
        child = f"c{depth}"
        tags = list(level)
        if len(tags) == 1 and level[tags[0]].pure():
            # one path wanted here: its first match decides; a repeated parent (the next NIC)
            # is not searched again once it was found
            slot = level[tags[0]].slot
            out.append(f"{ind}if t{slot} is False:")
            out.append(f"{ind}    for {child} in {parent}.iterchildren({tags[0]!r}):")
            out.append(f"{ind}        t{slot} = {child}.text")
            out.append(f"{ind}        break")
            return
        filtered = depth == 0 or len(tags) <= 3
        if filtered:
            out.append(f"{ind}for {child} in {parent}.iterchildren({', '.join(map(repr, tags))}):")
        else:
            out.append(f"{ind}for {child} in {parent}:")
        if len(tags) == 1:
            self.visit(level[tags[0]], child, depth, out, ind + "    ")
            return
        out.append(f"{ind}    tag = {child}.tag")
        for i, tag in enumerate(tags):
            if i == 0:
                out.append(f"{ind}    if tag == {tag!r}:")
            elif filtered and i == len(tags) - 1:
                out.append(f"{ind}    else:  # {tag!r}")
            else:
                out.append(f"{ind}    elif tag == {tag!r}:")
            self.visit(level[tag], child, depth, out, ind + "        ")

    def visit(self, node: _Node, el: str, depth: int, out: list, ind: str) -> None:
        """The code for one matching child `el` of `node`'s tag."""
        if node.list is not None:
            out.append(f"{ind}l{node.list}.append({el})")
        if node.slot is not None:
            out.append(f"{ind}if t{node.slot} is False:")
            out.append(f"{ind}    t{node.slot} = {el}.text")
        self.walk(el, node.children, depth + 1, out, ind)

    # -- the fields --------------------------------------------------------------------------

    def text(self, source: Spec, out: list, ind: str) -> str:
        """An expression for a source's text: a str, or something false when absent/empty."""
        if source[0] == "xpath":
            v = self.temp()
            out.append(f"{ind}{v} = {self.const(source[1])}(el)")
            return v
        return " or ".join(f"t{self.slot[p]}" for p in source[1])

    def value(self, spec: Spec, v: str, out: list, ind: str) -> None:
        """Statements that set the variable `v` to the field's value."""
        kind = spec[0]
        if kind == "value":
            out.append(f"{ind}{v} = {self.const(spec[1])}")
        elif kind == "expr":
            out.append(f"{ind}{v} = {self.const(spec[1])}({{**scope, 'item': item}})")
            if spec[2] is not None:
                out.append(f"{ind}if {v} is None: {v} = {self.const(spec[2])}")
        elif kind == "text":
            self.convert(spec, v, out, ind)
        elif kind == "list":
            items = f"l{self.list[spec[1]]}"
            out.append(f"{ind}{v} = [t for e in {items} if (t := e.text)] or {self.const(spec[2])}")
        elif kind == "tags":
            items = f"l{self.list[spec[1]]}"
            out.append(f"{ind}{v} = _tags({items}) if {items} else []")
        elif kind == "each":
            path, sub, having = spec[1], self.const(spec[2].apply_all), spec[3]
            if having is None:
                items = f"l{self.list[path]}"
            else:
                found, items = f"l{self.list[f'{path}/{having}']}", self.temp()
                # each match once (a child may repeat), and only for a value that is not blank
                out.append(f"{ind}{items} = _parents({found}) if {found} else {found}")
            out.append(f"{ind}{v} = {sub}({items}, scope) if {items} else []")
        elif kind == "table":
            self.lookup(spec[1], spec[2], v, out, ind)
        elif kind == "or":
            self.value(spec[1], v, out, ind)
            out.append(f"{ind}if {v} is None:")
            self.value(spec[2], v, out, ind + "    ")
        else:  # "if"
            out.append(f"{ind}if t{self.slot[spec[1]]}:")
            self.value(spec[2], v, out, ind + "    ")
            out.append(f"{ind}else:")
            self.value(spec[3], v, out, ind + "    ")

    def convert(self, spec: Spec, v: str, out: list, ind: str) -> None:
        _, source, kind, prefix, default, before, fmt = spec
        text, otherwise = self.text(source, out, ind), self.const(default)
        if fmt is not None and kind == "str":
            out.append(f"{ind}{v} = {self.const(fmt)} % ({text},) if {text} else {otherwise}")
            return
        if not prefix and kind == "str":
            if before:
                out.append(f"{ind}{v} = {self.const(before)} + ({text}) if {text} else {otherwise}")
                return
            out.append(f"{ind}{v} = {text} or {otherwise}")
            return
        if not text.isidentifier():  # alternatives: the first non-empty one
            t = self.temp()
            out.append(f"{ind}{t} = {text}")
            text = t
        if prefix:  # as format_id(prefix, text): f"{prefix}-{int(text):08d}"
            code = f"{self.const(f'{prefix}-'.replace('%', '%%') + '%08d')} % int({text})"
        else:
            code = _CONVERT[kind].format(t=text)
            if fmt is not None:
                code = f"{self.const(fmt)} % ({code},)"
        out.append(f"{ind}if {text}:")
        if kind == "bool" and not prefix:  # cannot fail
            out.append(f"{ind}    {v} = {code}")
        else:
            out.append(f"{ind}    try:")
            out.append(f"{ind}        {v} = {code}")
            out.append(f"{ind}    except (TypeError, ValueError, OverflowError, OSError):")
            out.append(f"{ind}        {v} = {otherwise}")
        out.append(f"{ind}else:")
        out.append(f"{ind}    {v} = {otherwise}")

    def lookup(self, table: Table, sources: list[Spec], v: str, out: list, ind: str) -> None:
        """Table.lookup inline: the keys joined with `.`, tried longest first."""
        get, default = self.const(table.entries.get), self.const(table.default)
        if not sources:
            out.append(f"{ind}{v} = {default}")
            return
        keys = []
        for source in sources:
            key = self.temp()
            out.append(f"{ind}{key} = {self.text(source, out, ind)} or ''")
            if keys:
                out.append(f"{ind}{key} = {keys[-1]} + '.' + {key}")
            keys.append(key)
        for n, key in enumerate(reversed(keys)):
            if n == len(keys) - 1:
                out.append(f"{ind}{v} = {get}({key}, {default})")
            else:
                out.append(f"{ind}{v} = {get}({key}, _MISS)")
                out.append(f"{ind}if {v} is _MISS:")
                ind += "    "


def _reads_item(spec: Spec) -> bool:
    """Whether a field evaluates an expression over `item` (then `item` must exist before)."""
    kind = spec[0]
    if kind == "or":
        return _reads_item(spec[1]) or _reads_item(spec[2])
    if kind == "if":
        return _reads_item(spec[2]) or _reads_item(spec[3])
    return kind == "expr"


class View:
    """Compiled view: `apply_all(elements, scope)` → dicts."""

    def __init__(
        self, name: str, spec: dict, tables: dict[str, Table], exprs: Expressions, where: str
    ):
        self.name = name
        fields = spec.get("fields")
        if not isinstance(fields, dict) or not fields:
            raise ValueError(f"{where}: a view needs `fields:` (member: path or spec)")
        self.names = set(fields)
        # which of its elements a mapping using the view lists, unless the mapping says
        self.where: str | None = spec.get("where")
        paths = _Fields(tables, exprs)
        specs = [(m, paths.field(f, f"{where}: fields.{m}")) for m, f in fields.items()]
        self.id_prefixes = frozenset(paths.ids)  # filters take these ids in their short form
        code = _Code(specs, paths)
        self.code = code.source
        exec(compile(self.code, f"<econe view {name}>", "exec"), code.ns)
        self._apply_all: Callable[[list, dict], list[dict[str, Any]]] = code.ns["apply_all"]

    def apply_all(self, elements: list[etree._Element], scope: dict) -> list[dict[str, Any]]:
        return self._apply_all(elements, scope)

    def apply(self, element: etree._Element, scope: dict) -> dict[str, Any]:
        return self._apply_all([element], scope)[0]


def _is_like(spec: Any) -> bool:
    return isinstance(spec, dict) and "like" in spec


def load_views(directory: Path, exprs: Expressions) -> dict[str, View]:
    """Every views/*.yaml: tables first (they have `entries`), then views."""
    raw: dict[str, tuple[Path, dict]] = {}
    for path in sorted(directory.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{path}: must be a YAML mapping")
        raw[path.stem] = (path, data)
    tables = {n: Table(d, str(p)) for n, (p, d) in raw.items() if "entries" in d}
    for path, data in raw.values():  # `where: {like: other}`: that view's rule, one text
        like = data.get("where")
        if isinstance(like, dict):
            other = raw.get(str(like.get("like")), (None, {}))[1].get("where")
            if set(like) != {"like"} or not isinstance(other, str):
                raise ValueError(f"{path}: where: an expression, or {{like: VIEW}} with one")
            data["where"] = other
        elif like is not None and not isinstance(like, str):
            raise ValueError(f"{path}: where: an expression over item")
    # `fields: {NAME: {like: VIEW}}`: VIEW's field NAME; `{like: VIEW.FIELD}`: its FIELD
    likes = []
    for path, data in raw.values():
        for member, spec in (data.get("fields") or {}).items():
            if _is_like(spec):
                view, _, field = str(spec["like"]).partition(".")
                other = raw.get(view, (None, {}))[1].get("fields") or {}
                same = other.get(field or member)
                if set(spec) != {"like"} or same is None or _is_like(same):
                    raise ValueError(
                        f"{path}: fields.{member}: {{like: {spec.get('like')}}} names no field "
                        "of another view (VIEW for its field of this name, or VIEW.FIELD; "
                        "nothing beside it)"
                    )
                likes.append((data["fields"], member, same))
    for fields, member, same in likes:
        fields[member] = same
    return {n: View(n, d, tables, exprs, str(p)) for n, (p, d) in raw.items() if "entries" not in d}
