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

Types: str (default), int, float, bool (YES/TRUE/1), epoch (datetime UTC; 0 → absent),
iso (ISO-8601 string), list (every match's text), tags (EC2_TAGS vectors → [{Key, Value}]).
`default:` applies when the path is absent or empty; `or:` is another field spec tried when
this one gives nothing; `if: PATH` + `then: SPEC` use SPEC instead when the plain path PATH has a
value (e.g. a VM marked for termination shows `shutting-down`). An `expr` that does not read `item` is evaluated once per request. A path that is not a plain `A/B/C` is an
XPath expression, precompiled. Tables are views/<table>.yaml with `entries` (keys joined with
`.` for composite paths, tried longest first), optional `values` (entry → value) and `default`.
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
from econe.mapping.ids import format_id

_SIMPLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*")
_FIELD_KEYS = {"path", "type", "default", "id", "table", "value", "expr", "or", "if", "then"}
_TYPES = {"str", "int", "float", "bool", "epoch", "iso", "list", "tags"}


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


def _epoch(text: str) -> datetime | None:
    seconds = int(text)
    return datetime.fromtimestamp(seconds, UTC) if seconds > 0 else None


def _tags(elements: list[etree._Element]) -> list[dict[str, str]]:
    """`EC2_TAGS=[KEY=k, VALUE=v]` (one vector per tag) or the Ruby form `EC2_TAGS=[K=v,…]`."""
    tags = []
    for vec in elements:
        key = vec.findtext("KEY")
        if key is not None and len(vec) <= 2:
            tags.append({"Key": key, "Value": vec.findtext("VALUE") or ""})
        else:
            tags.extend({"Key": child.tag.lower(), "Value": child.text or ""} for child in vec)
    return tags


_CONVERT: dict[str, Callable[[str], Any]] = {
    "str": lambda t: t,
    "int": int,
    "float": float,
    "bool": lambda t: t.strip().upper() in ("YES", "TRUE", "1"),
    "epoch": _epoch,
    "iso": lambda t: _epoch(t).strftime("%Y-%m-%dT%H:%M:%S.000Z") if int(t) > 0 else None,
}

# A compiled field: (found elements by plain path, element, item so far, scope) → value
Field = Callable[[dict, etree._Element, dict, dict], Any]


class View:
    """Compiled view: `apply_all(elements, scope)` → dicts.

    The plain paths of all fields form a trie walked once per element (one pass over the
    children that matter), which is several times faster than one find() per field."""

    def __init__(
        self, name: str, spec: dict, tables: dict[str, Table], exprs: Expressions, where: str
    ):
        self.name = name
        fields = spec.get("fields")
        if not isinstance(fields, dict) or not fields:
            raise ValueError(f"{where}: a view needs `fields:` (member: path or spec)")
        self.trie: dict[str, list] = {}
        self.names = set(fields)
        self.fields: list[tuple[str, Field]] = []
        self.constants: list[tuple[str, Callable[[dict], Any]]] = []
        for member, fspec in fields.items():
            fn = self._compile(fspec, tables, exprs, f"{where}: fields.{member}")
            if isinstance(fn, tuple):  # an expression that does not read `item`
                self.constants.append((member, fn[1]))
                fn = lambda found, el, item, scope, m=member: scope["_constants"][m]  # noqa: E731
            self.fields.append((member, fn))

    def _need(self, path: str) -> None:
        node = self.trie
        parts = path.split("/")
        for i, part in enumerate(parts):
            entry = node.setdefault(part, [None, None])
            if i == len(parts) - 1:
                entry[1] = path
            else:
                if entry[0] is None:
                    entry[0] = {}
                node = entry[0]

    def _getter(self, path: str, where: str) -> Callable[[dict, etree._Element], str | None]:
        plain = _simple_paths(path)
        if plain is None:
            run = _xpath_getter(path, where)
            return lambda found, el: run(el)
        for p in plain:
            self._need(p)
        if len(plain) == 1:
            only = plain[0]

            def one(found: dict, el: etree._Element) -> str | None:
                hit = found.get(only)
                return hit[0].text if hit else None

            return one

        def first(found: dict, el: etree._Element) -> str | None:
            for p in plain:
                hit = found.get(p)
                if hit and hit[0].text:
                    return hit[0].text
            return None

        return first

    def _compile(self, fspec: Any, tables: dict[str, Table], exprs: Expressions, where: str):
        if isinstance(fspec, str):
            fspec = {"path": fspec}
        if not isinstance(fspec, dict):
            raise ValueError(f"{where}: expected a path or a mapping")
        unknown = set(fspec) - _FIELD_KEYS
        if unknown:
            raise ValueError(
                f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_FIELD_KEYS)}"
            )
        if "if" in fspec or "then" in fspec:
            return self._conditional(fspec, tables, exprs, where)
        default = fspec.get("default")
        fallback = (
            self._compile(fspec["or"], tables, exprs, f"{where}.or") if "or" in fspec else None
        )
        if isinstance(fallback, tuple):
            raise ValueError(f"{where}.or: must read the element (a path)")
        base = self._base(fspec, default, tables, exprs, where)
        if fallback is None or isinstance(base, tuple):
            return base

        def either(found: dict, el: etree._Element, item: dict, scope: dict) -> Any:
            value = base(found, el, item, scope)
            return fallback(found, el, item, scope) if value is None else value

        return either

    def _conditional(self, fspec: dict, tables: dict[str, Table], exprs: Expressions, where: str):
        """`if: PATH, then: SPEC`: when the plain path PATH has a value, the field is SPEC;
        otherwise it is the rest of the spec (a cheap per-element switch, no expression)."""
        cond, then = fspec.get("if"), fspec.get("then")
        if not isinstance(cond, str) or not _SIMPLE.fullmatch(cond) or then is None:
            raise ValueError(f"{where}: `if:` takes a plain A/B/C path and needs `then:`")
        self._need(cond)
        chosen = self._compile(then, tables, exprs, f"{where}.then")
        rest = {k: v for k, v in fspec.items() if k not in ("if", "then")}
        other = self._compile(rest, tables, exprs, where)
        if isinstance(chosen, tuple) or isinstance(other, tuple):
            raise ValueError(f"{where}: with `if:`, both branches must read the element")

        def switch(found: dict, el: etree._Element, item: dict, scope: dict) -> Any:
            hit = found.get(cond)
            if hit and hit[0].text:
                return chosen(found, el, item, scope)
            return other(found, el, item, scope)

        return switch

    def _base(
        self, fspec: dict, default: Any, tables: dict[str, Table], exprs: Expressions, where: str
    ):
        if "value" in fspec:
            constant = fspec["value"]
            return lambda found, el, item, scope: constant
        if "expr" in fspec:
            fn = exprs.expression(fspec["expr"], where)
            if "item" not in exprs.variables(fspec["expr"]):
                return ("const", lambda scope: _or(fn(scope), default))
            return lambda found, el, item, scope: _or(fn({**scope, "item": item}), default)
        path = fspec.get("path")
        if path is None:
            raise ValueError(f"{where}: needs one of path, value, expr")
        kind = fspec.get("type", "str")
        if kind not in _TYPES:
            raise ValueError(f"{where}: unknown type {kind!r}; one of {sorted(_TYPES)}")
        if "table" in fspec:
            table = tables.get(fspec["table"])
            if table is None:
                raise ValueError(f"{where}: no table views/{fspec['table']}.yaml")
            paths = path if isinstance(path, list) else [path]
            getters = [self._getter(str(p), where) for p in paths]
            return lambda found, el, item, scope: table.lookup(tuple(g(found, el) for g in getters))
        if not isinstance(path, str):
            raise ValueError(f"{where}: path must be a string (a list only with table:)")
        if kind in ("list", "tags"):
            if not _SIMPLE.fullmatch(path):
                raise ValueError(f"{where}: list/tags need a plain A/B/C path")
            self._need(path)
            if kind == "tags":
                return lambda found, el, item, scope: _tags(found.get(path, ()))
            return lambda found, el, item, scope: (
                [e.text for e in found.get(path, ()) if e.text] or default
            )
        get = self._getter(path, where)
        prefix = fspec.get("id")
        convert = _CONVERT[kind]

        def field(found: dict, el: etree._Element, item: dict, scope: dict) -> Any:
            text = get(found, el)
            if text is None or text == "":
                return default
            try:
                return format_id(prefix, text) if prefix else convert(text)
            except (TypeError, ValueError):
                return default

        return field

    def _walk(self, el: etree._Element, node: dict, found: dict) -> None:
        # iterchildren(*tags) filters in C: no Python proxy for the children nobody reads
        for child in el.iterchildren(*node):
            sub, path = node[child.tag]
            if path is not None:
                hits = found.get(path)
                if hits is None:
                    found[path] = [child]
                else:
                    hits.append(child)
            if sub is not None:
                self._walk(child, sub, found)

    def apply_all(self, elements: list[etree._Element], scope: dict) -> list[dict[str, Any]]:
        scope = {**scope, "_constants": {m: fn(scope) for m, fn in self.constants}}
        out = []
        walk, trie, fields = self._walk, self.trie, self.fields
        for element in elements:
            found: dict[str, list] = {}
            walk(element, trie, found)
            item: dict[str, Any] = {}
            for member, fn in fields:
                item[member] = fn(found, element, item, scope)
            out.append(item)
        return out

    def apply(self, element: etree._Element, scope: dict) -> dict[str, Any]:
        return self.apply_all([element], scope)[0]


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


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
    return {n: View(n, d, tables, exprs, str(p)) for n, (p, d) in raw.items() if "entries" not in d}
