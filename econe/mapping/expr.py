"""Jinja2 expressions as mapping values.

A string value in a mapping is
  * exactly one `{{ expression }}`  → the expression's native value (int, list, dict, None…);
  * any other text holding `{{` or `{%` → a Jinja2 template rendered to a string;
  * anything else → itself (a literal).
Lists and dicts are compiled element-wise. A dict `{for: EXPR, each: VALUE}` (optionally `as:`,
default `it`) is a list built by evaluating VALUE once per element of EXPR. Dict entries whose
value is None are dropped, so optional output members simply disappear.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import jinja2
import jinja2.runtime
from jinja2 import meta, nodes

from econe.mapping.ids import format_id

Compiled = Callable[[dict[str, Any]], Any]

_SINGLE = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.S)


def _b64decode(value: str) -> str:
    try:
        return base64.b64decode(value, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return ""


def _reservations(items: list[dict], default_owner: str = "") -> list[dict]:
    """Group instance views by `_reservation` (first-seen order); `_owner` gives OwnerId."""
    groups: dict[str, dict] = {}
    for item in items:
        rid = item["_reservation"]
        group = groups.get(rid)
        if group is None:
            group = groups[rid] = {
                "ReservationId": rid,
                "OwnerId": item.get("_owner") or default_owner,
                "Groups": [],
                "Instances": [],
            }
        group["Instances"].append(item)
    return list(groups.values())


def make_environment() -> jinja2.Environment:
    env = jinja2.Environment(autoescape=False, keep_trailing_newline=True)
    env.filters.update(
        ec2_id=lambda n, prefix: format_id(prefix, n),
        b64encode=lambda s: base64.b64encode(str(s).encode()).decode(),
        b64decode=_b64decode,
        reservations=_reservations,
    )
    return env


def _runner(template: jinja2.Template) -> Callable[[dict[str, Any]], jinja2.runtime.Context]:
    """`template` run over a scope; the context it ran in. The template's globals become a
    plain dict: as Jinja's ChainMap they were merged into every context one key look-up at a
    time, half of an expression's cost."""
    template.globals = dict(template.globals)
    new_context, body = template.new_context, template.root_render_func

    def run(scope: dict[str, Any]) -> jinja2.runtime.Context:
        context = new_context(scope)
        context.output = "".join(body(context))
        return context

    return run


@dataclass(frozen=True)
class Place:
    """What an expression at one place of a mapping may read, checked when it is compiled (a
    name the scope has not there, or a field the items have not, would fail at every request):
    `names` the scope holds there (Jinja's globals besides); `fields` the keys of `item` and
    `items[N]` (None: not known); `body` collects (where, member) of each `body.X` read, for
    the check against the spec's request."""

    names: frozenset[str]
    fields: frozenset[str] | None = None
    of: str = ""  # what the fields are of, for messages ("view image")
    body: list[tuple[str, str]] | None = None

    def binding(self, name: str) -> Place:
        """The place inside a loop binding `name` (which may hide `item` or `items`)."""
        fields = None if name in ("item", "items") else self.fields
        return replace(self, names=self.names | {name}, fields=fields)


class Expressions:
    """Compiles mapping values once; `where` names the file/key for error messages; `place`
    (optional) what the expression may read there."""

    def __init__(self, env: jinja2.Environment | None = None):
        self.env = env or make_environment()

    def expression(self, source: str, where: str, place: Place | None = None) -> Compiled:
        try:
            self.env.compile_expression(source)  # errors name the expression itself
            run = _runner(self.env.from_string("{% set result = (" + source + ") %}"))
        except jinja2.TemplateSyntaxError as exc:
            raise ValueError(f"{where}: bad expression {source!r}: {exc.message}") from exc
        if place is not None:
            self._check(self.env.parse("{{ " + source + " }}"), source, where, place)

        def evaluate(scope: dict[str, Any]) -> Any:
            value = run(scope).vars.get("result")
            return None if isinstance(value, jinja2.Undefined) else value

        return evaluate

    def template(self, source: str) -> Callable[[dict[str, Any]], str]:
        """A Jinja2 template rendered over a scope."""
        run = _runner(self.env.from_string(source))
        return lambda scope: run(scope).output

    def predicate(
        self, source: str, where: str, place: Place | None = None
    ) -> Callable[[dict[str, Any], list], list]:
        """A condition over `item`, applied to a whole list in one template render (a compiled
        loop, much cheaper than one expression call per item): (scope, items) → kept items."""
        self.expression(source, where, place)  # errors name the file and key
        render = self.template(
            "{% for item in _econe_items %}{% if ("
            + source
            + ") %}{{ loop.index0 }},{% endif %}{% endfor %}"
        )

        def keep(scope: dict[str, Any], items: list) -> list:
            if not items:
                return items
            hits = render({**scope, "_econe_items": items})
            return [items[int(i)] for i in hits.split(",") if i]

        return keep

    def variables(self, source: str) -> set[str]:
        """Names an expression reads (to evaluate item-independent ones once)."""
        return meta.find_undeclared_variables(self.env.parse("{{ " + source + " }}"))

    def _check(self, tree: nodes.Template, source: str, where: str, place: Place) -> None:
        """Refuse what `place` proves wrong: a name the scope has not there, a field `item`
        (or `items[N]`) has not; note the request members read (`body.X`)."""
        unknown = meta.find_undeclared_variables(tree) - place.names - set(self.env.globals)
        if unknown:
            raise ValueError(
                f"{where}: bad expression: {', '.join(sorted(unknown))} is not defined here "
                f"(names: {', '.join(sorted(place.names))}) in {_short(source)}"
            )
        bound = {n.name for n in tree.find_all(nodes.Name) if n.ctx != "load"}
        called = {id(c.node) for c in tree.find_all(nodes.Call)}  # item.get(…): a method
        for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
            if id(node) in called:
                continue
            key = node.attr if isinstance(node, nodes.Getattr) else getattr(node.arg, "value", None)
            if not isinstance(key, str):
                continue
            root = node.node
            if isinstance(root, nodes.Getitem) and isinstance(
                getattr(root.arg, "value", None), int
            ):
                root = root.node  # items[0].X: X of an item
                if not isinstance(root, nodes.Name) or root.name != "items":
                    continue
            elif isinstance(root, nodes.Name) and root.name == "items":
                continue  # not an item's field
            if not isinstance(root, nodes.Name) or root.name in bound:
                continue
            if root.name == "body" and place.body is not None:
                place.body.append((where, key))
            elif root.name in ("item", "items") and place.fields is not None:
                if key not in place.fields:
                    raise ValueError(
                        f"{where}: bad expression: {key!r} is not a field of the items "
                        f"({place.of}: {', '.join(sorted(place.fields))}) in {_short(source)}"
                    )

    def value(self, spec: Any, where: str, place: Place | None = None) -> Compiled:
        if isinstance(spec, str):
            single = _SINGLE.match(spec)
            if single and "{{" not in single.group(1) and "}}" not in single.group(1):
                return self.expression(single.group(1), where, place)
            if "{{" in spec or "{%" in spec:
                try:
                    compiled = self.template(spec)
                    if place is not None:
                        self._check(self.env.parse(spec), spec, where, place)
                    return compiled
                except jinja2.TemplateSyntaxError as exc:
                    raise ValueError(f"{where}: bad template {spec!r}: {exc.message}") from exc
            return lambda scope: spec
        if isinstance(spec, list):
            parts = [self.value(v, f"{where}[{i}]", place) for i, v in enumerate(spec)]
            return lambda scope: [p(scope) for p in parts]
        if isinstance(spec, dict):
            if set(spec) == {"template"}:
                return self._one_template(spec["template"], where, place)
            if "for" in spec and "each" in spec:
                extra = set(spec) - {"for", "each", "as"}
                if extra:
                    raise ValueError(f"{where}: unknown key(s) beside for/each: {sorted(extra)}")
                name = spec.get("as", "it")
                seq = self.expression(_strip(spec["for"]), f"{where}.for", place)
                inner = place.binding(name) if place is not None else None
                each = self.value(spec["each"], f"{where}.each", inner)
                return lambda scope: [each({**scope, name: x}) for x in (seq(scope) or [])]
            members = {str(k): self.value(v, f"{where}.{k}", place) for k, v in spec.items()}

            def build(scope: dict[str, Any]) -> dict[str, Any]:
                out = {}
                for key, fn in members.items():
                    value = fn(scope)
                    if value is not None:
                        out[key] = value
                return out

            return build
        return lambda scope: spec

    def _one_template(self, spec: Any, where: str, place: Place | None) -> Compiled:
        """`{template: {NAME: VALUE, VECTOR: {SUB: VALUE}}}` → an OpenNebula template, built
        as XML by handlers.escaping (so no value can act as template syntax); a value that
        OpenNebula would not store as given is InvalidParameterValue naming its attribute;
        None leaves the attribute out."""
        from handlers.escaping import as_given, template_xml

        if not isinstance(spec, dict) or not spec:
            raise ValueError(f"{where}.template: must map attribute names to values")
        parts: list[tuple[str, Any]] = []
        for name, value in spec.items():
            if not _ATTRIBUTE.fullmatch(str(name)):
                raise ValueError(f"{where}.template: {name!r} is not an OpenNebula attribute name")
            if isinstance(value, dict):
                for sub in value:
                    if not _ATTRIBUTE.fullmatch(str(sub)):
                        raise ValueError(
                            f"{where}.template.{name}: {sub!r} is not an OpenNebula attribute name"
                        )
            parts.append((str(name), self.value(value, f"{where}.template.{name}", place)))

        def build(scope: dict[str, Any]) -> str:
            attrs: list[tuple[str, Any]] = []
            for name, fn in parts:
                value = fn(scope)
                if isinstance(value, dict):
                    subs = [
                        (s, as_given(v, f"{name}/{s}")) for s, v in value.items() if v is not None
                    ]
                    attrs.append((name, subs))
                elif value is not None:
                    attrs.append((name, as_given(value, name)))
            return template_xml(attrs)

        return build


_ATTRIBUTE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _short(source: str) -> str:
    """An expression for a message: one line, not too long."""
    text = " ".join(source.split())
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _strip(source: Any) -> str:
    """`for:` takes an expression with or without the `{{ }}` around it."""
    text = str(source)
    single = _SINGLE.match(text)
    return single.group(1) if single else text
