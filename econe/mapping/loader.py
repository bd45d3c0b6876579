"""Read mappings/<Action>.yaml once, validate, compile (syntax: mappings/README.md)."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from lxml import etree

from econe.mapping.expr import Compiled, Expressions, Place
from econe.mapping.onecall import ERROR_NAMES, ErrorTable
from econe.mapping.views import View, load_views
from econe.one.methods import ONED_METHODS, answer_path

# The names every expression's scope holds (the engine's Runtime.scope); each place of a
# mapping adds its own (see compile_mapping).
SCOPE_NAMES = frozenset({"body", "principal", "config", "options", "now"})

# An EC2 error code as clients match it: `InvalidAMIID.NotFound`, no spaces or punctuation.
_CODE = re.compile(r"[A-Z][A-Za-z0-9]*(\.[A-Z][A-Za-z0-9]*)*")


def adds(*keys: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declares the item keys an `enrich:`/`after:` hook sets, so that expressions reading
    them pass the load-time field check (a hook without it turns that check off)."""

    def mark(hook: Callable[..., Any]) -> Callable[..., Any]:
        hook.adds = frozenset(keys)  # type: ignore[attr-defined]
        return hook

    return mark


TOP_KEYS = {
    "action",
    "doc",
    "handler",
    "source",
    "by_id",
    "view",
    "where",
    "match",
    "refuse",
    "filters",
    "paginate",
    "each",
    "output",
    "options",
    "enrich",
    "prefetch",
    "after",
}
PREFETCH_KEYS = {"call", "args", "admin"}
SOURCE_KEYS = {"call", "args", "items", "admin", "errors", "static"}
BY_ID_KEYS = {
    "param",
    "prefix",
    "call",
    "args",
    "item",
    "malformed",
    "not_found",
    "noun",
    "field",
    "admin",
}
EACH_KEYS = {"call", "args", "admin", "errors", "skip", "refuse", "refresh"}
PAGE_KEYS = {"max_results", "token", "key", "min", "max", "not_with"}


class MappingError(Exception):
    """A mapping file cannot be used; the message names the file and key."""


@dataclass
class Call:
    method: str
    args: Compiled
    admin: bool
    errors: ErrorTable


@dataclass
class Source:
    call: Call | None = None
    items: etree.XPath | None = None
    static: Compiled | None = None
    pool: tuple[str, str] | None = None  # (ROOT, ITEM) when items is `/ROOT/ITEM`


_POOL_ITEMS = re.compile(r"/([A-Za-z_][A-Za-z0-9_]*)/([A-Za-z_][A-Za-z0-9_]*)")


def _pool_of(items: str) -> tuple[str, str] | None:
    """A plain `/ROOT/ITEM` items path: the answer may be parsed in pieces between items."""
    hit = _POOL_ITEMS.fullmatch(items.strip())
    return (hit.group(1), hit.group(2)) if hit else None


@dataclass
class ById:
    param: str
    prefix: str | None
    call: Call | None
    item: etree.XPath | None
    malformed: str
    not_found: str
    noun: str
    field: str | None


@dataclass
class Each:
    call: Call
    skip: Compiled | None
    refresh: bool
    # (condition over an item, its error: None for the call's ACTION error, else (code,
    # message)): checked for every item before any call, so a refused request changes nothing
    refuse: list[tuple[Compiled, tuple[str, Compiled | None] | None]] = field(default_factory=list)


@dataclass
class Paginate:
    max_results: str
    token: str
    key: str = "_id"
    lo: int = 5
    hi: int = 1000
    not_with: str | None = None


@dataclass
class Mapping:
    action: str
    path: Path
    handler: Callable[..., Any] | None = None
    source: Source | None = None
    by_id: ById | None = None
    view: View | None = None
    where: Compiled | None = None  # one item (by-id fetches)
    where_all: Callable[[dict, list], list] | None = None  # a whole list in one render
    match: list[Callable[[dict, list], list]] = field(default_factory=list)
    # request checks, {if: EXPR, code, message} over the request alone: that error, before all
    refuse: list[tuple[Compiled, tuple[str, Compiled | None] | None]] = field(default_factory=list)
    filters: dict[str, str] | None = None
    paginate: Paginate | None = None
    each: Each | None = None
    output: Compiled | None = None
    output_keys: list[str] = field(default_factory=list)  # the output's top-level members
    options: dict[str, Any] = field(default_factory=dict)
    enrich: list[Callable[..., Any]] = field(default_factory=list)  # f(rt, items), pre-filter
    prefetch: list[Call] = field(default_factory=list)  # calls the hooks make, sent beforehand
    after: list[Callable[..., Any]] = field(default_factory=list)  # f(rt, items, changes)
    # (where, member) of every `body.X` its expressions read: checked against the spec
    body_reads: list[tuple[str, str]] = field(default_factory=list)


def _check_keys(data: Any, allowed: set[str], where: str) -> dict:
    if not isinstance(data, dict):
        raise MappingError(f"{where}: must be a mapping")
    unknown = set(data) - allowed
    if unknown:
        raise MappingError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    return data


def _xpath(text: str, where: str) -> etree.XPath:
    try:
        return etree.XPath(text)
    except etree.XPathSyntaxError as exc:
        raise MappingError(f"{where}: bad XPath {text!r}: {exc}") from exc


def _code(code: Any, where: str) -> str:
    """An EC2 error code a client can match (SDKs and scripts compare it as a whole)."""
    if not isinstance(code, str) or not _CODE.fullmatch(code):
        raise MappingError(
            f"{where}: {code!r} is not an EC2 error code (such as InvalidAMIID.NotFound: "
            "capitalised words, joined by dots)"
        )
    return code


def _errors(data: Any, exprs: Expressions, where: str, place: Place | None = None) -> ErrorTable:
    table: ErrorTable = {}
    place = place.binding("error") if place is not None else None  # oned's message
    for name, spec in _check_keys(data or {}, ERROR_NAMES, where).items():
        if isinstance(spec, str):
            table[name] = (_code(spec, f"{where}.{name}"), None)
        elif isinstance(spec, dict) and "code" in spec:
            _check_keys(spec, {"code", "message"}, f"{where}.{name}")
            msg = (
                exprs.value(spec["message"], f"{where}.{name}.message", place)
                if "message" in spec
                else None
            )
            table[name] = (_code(spec["code"], f"{where}.{name}.code"), msg)
        else:
            raise MappingError(f"{where}.{name}: an EC2 code or {{code, message}}")
    return table


def _refusals(
    data: Any, exprs: Expressions, where: str, place: Place
) -> list[tuple[Compiled, tuple[str, Compiled | None] | None]]:
    """`refuse:` an expression (the call's ACTION error when true for an item), or a list of
    those and of `{if: EXPR, code: CODE, message: TEMPLATE}` (that error), tried in order."""
    if data is None:
        return []
    out: list[tuple[Compiled, tuple[str, Compiled | None] | None]] = []
    for i, spec in enumerate(data if isinstance(data, list) else [data]):
        at = f"{where}[{i}]" if isinstance(data, list) else where
        if isinstance(spec, dict):
            _check_keys(spec, {"if", "code", "message"}, at)
            if "if" not in spec or not isinstance(spec.get("code"), str):
                raise MappingError(f"{at}: an expression, or {{if: EXPR, code: CODE, message}}")
            message = (
                exprs.value(spec["message"], f"{at}.message", place) if "message" in spec else None
            )
            code = _code(spec["code"], f"{at}.code")
            out.append((exprs.expression(str(spec["if"]), f"{at}.if", place), (code, message)))
        else:
            out.append((exprs.expression(str(spec), at, place), None))
    return out


# A lint for the plain mistake in calls that take a template (it cannot see every way an
# expression could build template text): template syntax written around an expression,
# `A="{{ x }}"`, `<A>{{ x }}</A>`, `V=[ A={{ x }} ]`.
_TAKES_TEMPLATE = {
    "allocate",
    "update",
    "updateconf",
    "attach",
    "attachnic",
    "instantiate",
    "resize",
    "addar",
    "updatear",
    "reserve",
    "clone",
    "disksaveas",
}
_TEMPLATE_TEXT = re.compile(r"[=<>\[\]]")
_EXPRESSIONS = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)


def _texts(value: Any, where: str) -> list[tuple[str, str]]:
    """Every string in an argument list, nested ones too, with where it is."""
    if isinstance(value, str):
        return [(where, value)]
    if isinstance(value, list):
        return [t for k, v in enumerate(value) for t in _texts(v, f"{where}[{k}]")]
    if isinstance(value, dict) and set(value) != {"template"}:
        return [t for k, v in value.items() for t in _texts(v, f"{where}.{k}")]
    return []


def _call(
    data: dict, exprs: Expressions, where: str, place: Place, default_args: list | None = None
) -> Call:
    method = data.get("call")
    if not isinstance(method, str) or not method.startswith("one."):
        raise MappingError(f"{where}.call: an OpenNebula method name such as one.vm.info")
    if method not in ONED_METHODS:
        raise MappingError(f"{where}.call: oned has no method {method!r} (econe/one/methods.py)")
    args = data.get("args", default_args or [])
    if not isinstance(args, list):
        raise MappingError(f"{where}.args: must be a list")
    if method.rpartition(".")[2] in _TAKES_TEMPLATE:
        for k, text in _texts(args, f"{where}.args"):
            if ("{{" in text or "{%" in text) and _TEMPLATE_TEXT.search(_EXPRESSIONS.sub("", text)):
                raise MappingError(
                    f"{k}: writes a value into OpenNebula template text, where a request value "
                    "could act as template syntax; write {template: {NAME: value}}"
                )
    return Call(
        method=method,
        args=exprs.value(args, f"{where}.args", place),
        admin=bool(data.get("admin", False)),
        errors=_errors(data.get("errors"), exprs, f"{where}.errors", place),
    )


def _answer_xpath(text: Any, method: str, where: str) -> etree.XPath:
    """An XPath into `method`'s answer; an absolute one must start with the elements that
    answer has (/IMAGE for one.image.info, /IMAGE_POOL/IMAGE for one.imagepool.info): any
    other matches nothing, and every id would be NotFound, every list empty."""
    xpath = _xpath(text, where)
    steps = str(text).strip().split("/")
    if steps[0] == "" and len(steps) > 1 and steps[1]:  # `/A/B…`, not `//A` nor relative
        for got, want in zip(steps[1:], answer_path(method), strict=False):
            name = re.match(r"[A-Za-z_][A-Za-z0-9_]*|\*", got)
            if name is None or name.group() == "*" or "(" in got or "::" in got:
                break  # an expression step: not checked
            if name.group() != want:
                raise MappingError(
                    f"{where}: {text!r} cannot match what {method} answers "
                    f"(/{'/'.join(answer_path(method))}…)"
                )
    return xpath


def _handler(ref: Any, where: str) -> Callable[..., Any]:
    if not isinstance(ref, str) or ":" not in ref:
        raise MappingError(
            f"{where}: handler must be 'module:function', e.g. handlers.instances:run_instances"
        )
    module_name, func_name = ref.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise MappingError(f"{where}: cannot import {module_name}: {exc}") from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise MappingError(f"{where}: {module_name} has no function {func_name}")
    return func


def _places(m: Mapping) -> dict[str, Place]:
    """What expressions read at each place of `m` (the engine's scopes there, see
    Engine.run_sync): the request's alone; per id fetched; per item; the output."""
    fields, of = None, ""
    hooks = m.enrich + m.after
    if m.view is not None and all(hasattr(h, "adds") for h in hooks):
        # `_element`: the items' XML element, kept for the hooks
        fields = frozenset(m.view.names | {"_element"}).union(*(h.adds for h in hooks))
        of = f"view {m.view.name}" + (" and its hooks" if hooks else "")
    request = Place(SCOPE_NAMES, body=m.body_reads)
    return {
        "request": request,
        "id": request.binding("id"),
        "item": Place(SCOPE_NAMES | {"item"}, fields, of, m.body_reads),
        "each": Place(SCOPE_NAMES | {"item", "id"}, fields, of, m.body_reads),
        "output": Place(SCOPE_NAMES | {"items", "changes", "next_token"}, fields, of, m.body_reads),
    }


def compile_mapping(path: Path, data: Any, views: dict[str, View], exprs: Expressions) -> Mapping:
    w = str(path)
    data = _check_keys(data, TOP_KEYS, w)
    action = data.get("action")
    if action != path.stem:
        raise MappingError(f"{w}: action: must be {path.stem!r} (the file name), not {action!r}")
    m = Mapping(action=action, path=path, options=dict(data.get("options") or {}))
    try:
        if "handler" in data:
            m.handler = _handler(data["handler"], f"{w}: handler")
        if "view" in data:
            m.view = views.get(data["view"])
            if m.view is None:
                raise MappingError(f"{w}: view: no mappings/views/{data['view']}.yaml")
        for key in ("enrich", "after"):
            if key not in data:
                continue
            refs = data[key] if isinstance(data[key], list) else [data[key]]
            if m.handler is not None:
                raise MappingError(f"{w}: {key}: runs in the pipeline; a handler calls it itself")
            setattr(m, key, [_handler(r, f"{w}: {key}[{i}]") for i, r in enumerate(refs)])
        at = _places(m)
        if "source" in data:
            s = _check_keys(data["source"], SOURCE_KEYS, f"{w}: source")
            if "static" in s:
                m.source = Source(
                    static=exprs.value(s["static"], f"{w}: source.static", at["request"])
                )
            else:
                if "items" not in s:
                    raise MappingError(f"{w}: source.items: XPath of the items in the result")
                call = _call(s, exprs, f"{w}: source", at["request"])
                m.source = Source(
                    call=call,
                    items=_answer_xpath(s["items"], call.method, f"{w}: source.items"),
                    pool=_pool_of(str(s["items"])),
                )
        if "by_id" in data:
            b = _check_keys(data["by_id"], BY_ID_KEYS, f"{w}: by_id")
            for key in ("param", "not_found"):
                if key not in b:
                    raise MappingError(f"{w}: by_id.{key} is required")
            if "call" not in b and "field" not in b:
                raise MappingError(f"{w}: by_id needs call: (fetch per id) or field: (select)")
            if "call" not in b and "source" not in data:
                raise MappingError(f"{w}: by_id.field selects from source: (add one)")
            if "call" in b and "prefix" not in b:
                raise MappingError(f"{w}: by_id.prefix is required with call: (e.g. i, ami)")
            call = _call(b, exprs, f"{w}: by_id", at["id"], ["{{ id }}"]) if "call" in b else None
            m.by_id = ById(
                param=b["param"],
                prefix=b.get("prefix"),
                call=call,
                item=(
                    _answer_xpath(b.get("item", "/*"), call.method, f"{w}: by_id.item")
                    if call is not None
                    else None
                ),
                malformed=_code(
                    b.get("malformed", "InvalidParameterValue"), f"{w}: by_id.malformed"
                ),
                not_found=_code(b["not_found"], f"{w}: by_id.not_found"),
                noun=b.get("noun", "ID"),
                field=b.get("field"),
            )
        where = data.get("where", m.view.where if m.view is not None else None)
        if where is not None:  # the mapping's own, else its view's
            m.where = exprs.expression(str(where), f"{w}: where", at["item"])
            m.where_all = exprs.predicate(str(where), f"{w}: where")
        m.refuse = _refusals(data.get("refuse"), exprs, f"{w}: refuse", at["request"])
        if any(error is None for _, error in m.refuse):
            raise MappingError(f"{w}: refuse: {{if: EXPR, code: CODE, message}} entries only")
        if m.refuse and m.handler is not None:
            raise MappingError(f"{w}: refuse: runs in the pipeline; a handler checks itself")
        for i, expr in enumerate(data.get("match") or []):
            m.match.append(exprs.predicate(str(expr), f"{w}: match[{i}]", at["item"]))
        if "filters" in data:
            f = data["filters"]
            if not isinstance(f, dict) or not all(isinstance(v, str) for v in f.values()):
                raise MappingError(f"{w}: filters: EC2 filter name → view field path")
            if m.view is not None:
                for name, fpath in f.items():
                    if fpath.split(".")[0] not in m.view.names:
                        raise MappingError(
                            f"{w}: filters.{name}: {fpath.split('.')[0]!r} is not a field of view {m.view.name}"
                        )
            m.filters = {str(k): v for k, v in f.items()}
        if "paginate" in data:
            p = _check_keys(data["paginate"], PAGE_KEYS, f"{w}: paginate")
            m.paginate = Paginate(
                max_results=p.get("max_results", "MaxResults"),
                token=p.get("token", "NextToken"),
                key=p.get("key", "_id"),
                lo=int(p.get("min", 5)),
                hi=int(p.get("max", 1000)),
                not_with=p.get("not_with"),
            )
        if "each" in data:
            e = _check_keys(data["each"], EACH_KEYS, f"{w}: each")
            each = at["each"]
            m.each = Each(
                call=_call(e, exprs, f"{w}: each", each),
                skip=(
                    exprs.expression(str(e["skip"]), f"{w}: each.skip", each)
                    if "skip" in e
                    else None
                ),
                refresh=bool(e.get("refresh", False)),
                refuse=_refusals(e.get("refuse"), exprs, f"{w}: each.refuse", each),
            )
            if m.each.refresh and (m.by_id is None or m.by_id.call is None):
                raise MappingError(f"{w}: each.refresh needs by_id.call to read the item again")
        if "output" in data:
            m.output = exprs.value(data["output"], f"{w}: output", at["output"])
            if isinstance(data["output"], dict):
                m.output_keys = [str(k) for k in data["output"]]
        for i, spec in enumerate(data.get("prefetch") or []):
            where = f"{w}: prefetch[{i}]"
            spec = _check_keys(spec, PREFETCH_KEYS, where)
            m.prefetch.append(_call(spec, exprs, where, at["request"]))
        if m.prefetch and (m.source is None or m.source.call is None):
            raise MappingError(f"{w}: prefetch: goes with a source call")
    except ValueError as exc:
        raise MappingError(str(exc)) from exc
    if m.handler is None and m.output is None:
        raise MappingError(f"{w}: needs output: (or a handler:)")
    return m


def load_mappings(
    directory: Path, exprs: Expressions | None = None, views_out: dict[str, View] | None = None
) -> dict[str, Mapping]:
    """Every <Action>.yaml of `directory` (views from its views/); `views_out` receives the views."""
    exprs = exprs or Expressions()
    if not directory.is_dir():
        raise MappingError(f"{directory}: mappings directory not found")
    views_dir = directory / "views"
    try:
        views = load_views(views_dir, exprs) if views_dir.is_dir() else {}
    except ValueError as exc:
        raise MappingError(str(exc)) from exc
    if views_out is not None:
        views_out.update(views)
    mappings: dict[str, Mapping] = {}
    for path in sorted(directory.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise MappingError(f"{path}: not valid YAML: {exc}") from exc
        m = compile_mapping(path, data, views, exprs)
        mappings[m.action] = m
    return mappings


def check_against_spec(mappings: dict[str, Mapping], spec: Any) -> None:
    """What the spec says of each action against its mapping, at start: an action in one and
    not the other, a request member (`by_id.param`, `paginate`, `body.X` in an expression) or
    an output member the spec
    does not have. Each would otherwise start fine and answer wrong (the ids ignored, the
    member dropped) or InvalidAction at the first request. MappingError lists them all."""
    from econe.spec import flatten_all_of

    problems: list[str] = []
    for name in sorted(set(spec.actions) - set(mappings)):
        problems.append(f"{name} is in {spec.path} but mappings/ has no {name}.yaml")
    for name, m in sorted(mappings.items()):
        act = spec.action(name)
        if act is None:
            problems.append(
                f"{m.path}: {name} is not in {spec.path} (add it: tools/gen_spec.py --add {name})"
            )
            continue
        asked = flatten_all_of(act.request_schema).get("properties", {})
        named = []
        if m.by_id is not None:
            named.append(("by_id.param", m.by_id.param))
        if m.paginate is not None:
            named += [("paginate.max_results", m.paginate.max_results)]
            named += [
                ("paginate.token", m.paginate.token),
                ("paginate.not_with", m.paginate.not_with),
            ]
        # `body.X` in expressions (each place once)
        named += dict.fromkeys((k.removeprefix(f"{m.path}: "), x) for k, x in m.body_reads)
        for key, member in named:
            if member is not None and member not in asked:
                problems.append(
                    f"{m.path}: {key}: the request of {name} has no member {member!r} (wire "
                    f"names: {', '.join(sorted(asked)) or 'none'})"
                )
        answered = flatten_all_of(act.output_schema).get("properties", {})
        for member in m.output_keys:
            if member not in answered and not member.startswith("_"):  # `_`: never answered
                problems.append(
                    f"{m.path}: output.{member}: the answer of {name} has no such member "
                    f"({', '.join(sorted(answered)) or 'none'})"
                )
    if problems:
        raise MappingError("; ".join(problems))
