"""Result dict → EC2 XML, driven by the action's output schema in the spec.

The result dict is keyed by botocore member names (`Reservations`, `InstanceId`, ...), as
boto3 returns them. Each output property carries `xml.name` (the element, from the model's
`locationName`); lists render as `<xSet><item>…</item></xSet>`; booleans as `true`/`false`;
timestamps as ISO 8601 UTC with milliseconds (`2024-05-01T10:00:00.000Z`). Members absent
from the result (or None) are left out, except that a `default` in the schema is rendered
(AWS's `<return>true</return>`). Plain string building: each output schema is compiled once
into nested closures.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from econe.errors import xml_text
from econe.spec import ApiSpec, flatten_all_of, load_spec

Writer = Callable[[Any, list[str]], None]

# Text that needs neither escaping nor dropping of characters: the common case, kept fast.
_PLAIN = re.compile(r"[^&<>\"\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]*")
_plain_match = _PLAIN.fullmatch


def _text(value: Any) -> str:
    s = value if isinstance(value, str) else str(value)
    if _plain_match(s) is not None:
        return s
    return xml_text(s)


def format_timestamp(value: Any) -> str:
    """ISO 8601 UTC with milliseconds; strings are passed through (escaped)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat(timespec="milliseconds") + "Z"
    if isinstance(value, bool):
        return _text(value)
    if isinstance(value, int | float):
        stamp = dt.datetime.fromtimestamp(value, dt.UTC).replace(tzinfo=None)
        return format_timestamp(stamp)
    return _text(value)


def _write_string(value: Any, out: list[str]) -> None:
    out.append(_text(value))


def _write_bool(value: Any, out: list[str]) -> None:
    if value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    else:
        out.append(_text(value).lower())


def _write_int(value: Any, out: list[str]) -> None:
    if isinstance(value, int) and not isinstance(value, bool):
        out.append(str(value))
    else:
        out.append(_text(value))


def _write_timestamp(value: Any, out: list[str]) -> None:
    out.append(format_timestamp(value))


def _writer(schema: dict[str, Any], memo: dict[int, tuple[Any, Writer]]) -> Writer:
    while "allOf" in schema and len(schema["allOf"]) == 1 and "properties" not in schema:
        schema = schema["allOf"][0]  # the generator's {allOf: [$ref]} wrapper
    schema = flatten_all_of(schema)
    hit = memo.get(id(schema))
    if hit is not None:
        return hit[1]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return _struct_writer(schema, memo)
    if kind == "array":
        return _list_writer(schema, memo)
    if kind == "boolean":
        return _write_bool
    if kind == "integer":
        return _write_int
    if kind == "string" and schema.get("format") == "date-time":
        return _write_timestamp
    return _write_string


_MAX_PLANS = 64  # distinct key sets remembered per structure


def _struct_writer(schema: dict[str, Any], memo: dict[int, tuple[Any, Writer]]) -> Writer:
    members: dict[str, tuple[int, str, str, Writer, Any]] = {}
    plans: dict[tuple[str, ...], list[tuple[str, str, str, Writer, Any]]] = {}

    def plan(keys: tuple[str, ...]) -> list[tuple[str, str, str, Writer, Any]]:
        """Members to write for a dict with these keys, in schema order."""
        chosen = [m for m in members.items() if m[0] in keys or m[1][4] is not None]
        chosen.sort(key=lambda m: m[1][0])
        steps = [(name, o, c, w, d) for name, (_, o, c, w, d) in chosen]
        if len(plans) < _MAX_PLANS:
            plans[keys] = steps
        return steps

    def write(value: Any, out: list[str]) -> None:
        if not isinstance(value, dict):
            raise TypeError(f"expected a dict for a structure, got {type(value).__name__}")
        keys = tuple(value)
        steps = plans.get(keys) or plan(keys)
        get = value.get
        append = out.append
        for member, open_tag, close_tag, inner, default in steps:
            v = get(member)
            if v is None:
                if default is None:
                    continue
                v = default
            if inner is _write_string and v.__class__ is str and _plain_match(v) is not None:
                append(open_tag + v + close_tag)  # the common case, without a call
                continue
            append(open_tag)
            inner(v, out)
            append(close_tag)

    memo[id(schema)] = (schema, write)  # before the members: recursive shapes
    for index, (name, prop) in enumerate(schema.get("properties", {}).items()):
        member = prop.get("x-member", name)
        tag = prop.get("xml", {}).get("name", member)
        members[member] = (index, f"<{tag}>", f"</{tag}>", _writer(prop, memo), prop.get("default"))
    return write


def _list_writer(schema: dict[str, Any], memo: dict[int, tuple[Any, Writer]]) -> Writer:
    items = schema.get("items", {})
    tag = flatten_all_of(items).get("xml", {}).get("name", "item")
    open_tag, close_tag = f"<{tag}>", f"</{tag}>"
    inner = _writer(items, memo)

    def write(value: Any, out: list[str]) -> None:
        if isinstance(value, str | bytes | dict):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        for item in value:
            out.append(open_tag)
            inner(item, out)
            out.append(close_tag)

    memo[id(schema)] = (schema, write)
    return write


def namespace(version: str) -> str:
    """AWS's namespace, with the trailing slash some clients (libcloud) match on."""
    return f"http://ec2.amazonaws.com/doc/{version}/"


class Serializer:
    """Renders results for every action of one spec; writers compiled on first use."""

    def __init__(self, spec: ApiSpec):
        self.spec = spec
        self._writers: dict[str, Writer] = {}

    def writer(self, action: str) -> Writer:
        w = self._writers.get(action)
        if w is None:
            act = self.spec.action(action)
            if act is None:
                raise KeyError(f"unknown action {action}")
            w = self._writers[action] = _writer(act.output_schema, {})
        return w

    def render(self, action: str, version: str, request_id: str, result: dict[str, Any]) -> str:
        act = self.spec.action(action)
        if act is None:
            raise KeyError(f"unknown action {action}")
        root = act.response_root
        version = version or self.spec.api_version
        out = [
            '<?xml version="1.0" encoding="UTF-8"?>\n',
            f'<{root} xmlns="{xml_text(namespace(version))}">',
            f"<requestId>{xml_text(request_id)}</requestId>",
        ]
        self.writer(action)(result or {}, out)
        out.append(f"</{root}>")
        return "".join(out)


def render(action: str, version: str, request_id: str, result: dict[str, Any]) -> str:
    """Render with the default spec (see `Serializer` for another spec)."""
    return _default_serializer().render(action, version, request_id, result)


def _default_serializer() -> Serializer:
    spec = load_spec()
    ser = _SERIALIZERS.get(id(spec))
    if ser is None or ser.spec is not spec:
        ser = _SERIALIZERS[id(spec)] = Serializer(spec)
    return ser


_SERIALIZERS: dict[int, Serializer] = {}
