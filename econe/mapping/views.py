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
`default:` applies when the path is absent or empty. A path that is not a plain `A/B/C` is an
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
_FIELD_KEYS = {"path", "type", "default", "id", "table", "value", "expr"}
_TYPES = {"str", "int", "float", "bool", "epoch", "iso", "list", "tags"}

Getter = Callable[[etree._Element], Any]


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


def _text_getter(path: str, where: str) -> Getter:
    alternatives = (
        [p.strip() for p in path.split("|")] if "|" in path and "[" not in path else [path]
    )
    getters: list[Getter] = []
    for alt in alternatives:
        if _SIMPLE.fullmatch(alt):
            getters.append(lambda el, p=alt: el.findtext(p))
        else:
            try:
                xp = etree.XPath(alt)
            except etree.XPathSyntaxError as exc:
                raise ValueError(f"{where}: bad XPath {alt!r}: {exc}") from exc

            def run(el: etree._Element, xp: etree.XPath = xp) -> str | None:
                res = xp(el)
                if isinstance(res, list):
                    if not res:
                        return None
                    res = res[0]
                    return res.text if isinstance(res, etree._Element) else str(res)
                return str(res) if res is not None else None

            getters.append(run)
    if len(getters) == 1:
        return getters[0]

    def first(el: etree._Element) -> str | None:
        for get in getters:
            value = get(el)
            if value:
                return value
        return None

    return first


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


class View:
    """Compiled view: `apply(element, scope)` → dict."""

    def __init__(
        self, name: str, spec: dict, tables: dict[str, Table], exprs: Expressions, where: str
    ):
        self.name = name
        fields = spec.get("fields")
        if not isinstance(fields, dict) or not fields:
            raise ValueError(f"{where}: a view needs `fields:` (member: path or spec)")
        self.fields: list[tuple[str, Callable[[etree._Element, dict, dict], Any]]] = []
        self.names = set(fields)
        for member, fspec in fields.items():
            self.fields.append(
                (member, self._compile(member, fspec, tables, exprs, f"{where}: fields.{member}"))
            )

    @staticmethod
    def _compile(member: str, fspec: Any, tables: dict[str, Table], exprs: Expressions, where: str):
        if isinstance(fspec, str):
            fspec = {"path": fspec}
        if not isinstance(fspec, dict):
            raise ValueError(f"{where}: expected a path or a mapping")
        unknown = set(fspec) - _FIELD_KEYS
        if unknown:
            raise ValueError(
                f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_FIELD_KEYS)}"
            )
        default = fspec.get("default")
        if "value" in fspec:
            constant = fspec["value"]
            return lambda el, item, scope: constant
        if "expr" in fspec:
            fn = exprs.expression(fspec["expr"], where)
            return lambda el, item, scope: _or(fn({**scope, "item": item}), default)
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
            getters = [_text_getter(str(p), where) for p in paths]
            return lambda el, item, scope: table.lookup(tuple(g(el) for g in getters))
        if not isinstance(path, str):
            raise ValueError(f"{where}: path must be a string (a list only with table:)")
        if kind in ("list", "tags"):
            if not _SIMPLE.fullmatch(path):
                raise ValueError(f"{where}: list/tags need a plain A/B/C path")
            if kind == "tags":
                return lambda el, item, scope: _tags(el.findall(path))
            return lambda el, item, scope: [e.text for e in el.findall(path) if e.text] or default
        get = _text_getter(path, where)
        prefix = fspec.get("id")
        convert = _CONVERT[kind]

        def field(el: etree._Element, item: dict, scope: dict) -> Any:
            text = get(el)
            if text is None or text == "":
                return default
            try:
                return format_id(prefix, text) if prefix else convert(text)
            except (TypeError, ValueError):
                return default

        return field

    def apply(self, element: etree._Element, scope: dict) -> dict[str, Any]:
        item: dict[str, Any] = {}
        for member, fn in self.fields:
            item[member] = fn(element, item, scope)
        return item


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
