"""Result dict → EC2 XML, driven by the action's output schema in the spec.

The result dict is keyed by botocore member names (`Reservations`, `InstanceId`, ...), as
boto3 returns them. Each output property carries `xml.name` (the element, from the model's
`locationName`); lists render as `<xSet><item>…</item></xSet>`; booleans as `true`/`false`;
timestamps as ISO 8601 UTC with milliseconds (`2024-05-01T10:00:00.000Z`). Members absent
from the result (or None) are left out, except that a `default` in the schema is rendered
(AWS's `<return>true</return>`); so are members the schema does not name (such as a view's
`_`-prefixed helpers). Plain string building: each output schema is compiled once into Python
functions (one per structure shape, with its lists as inline loops; tags and member names are
embedded as `repr()` literals, never as code).
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Callable
from time import gmtime as _gmtime
from time import strftime as _strftime
from typing import Any

from econe.errors import xml_text
from econe.spec import ApiSpec, flatten_all_of, load_spec

Writer = Callable[[Any, list[str]], None]

# A character to escape (& < > ") or drop (not allowed in XML). Most text has none, and
# searching for one costs about half of full-matching the complement.
_SPECIAL = re.compile(r"[&<>\"\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_special = _SPECIAL.search


def _text(value: Any) -> str:
    s = value if isinstance(value, str) else str(value)
    if _special(s) is None:
        return s
    return xml_text(s)


_DATETIME = dt.datetime
_UTC = dt.UTC
_ISO_MS = "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ"


def format_timestamp(value: Any) -> str:
    """ISO 8601 UTC with milliseconds from a datetime or epoch seconds; strings are passed
    through (escaped)."""
    cls = value.__class__
    if cls is _DATETIME and (value.tzinfo is _UTC or value.tzinfo is None):
        # The usual case, by hand: utcoffset(), replace() and isoformat() cost 2-3 times more.
        return _ISO_MS % (
            value.year,
            value.month,
            value.day,
            value.hour,
            value.minute,
            value.second,
            value.microsecond // 1000,
        )
    if cls is int or cls is float:
        try:
            if cls is int:
                return _strftime("%Y-%m-%dT%H:%M:%S.000Z", _gmtime(value))
            secs = int(value // 1)
            millis = min(int((value - secs) * 1000), 999)
            return _strftime("%Y-%m-%dT%H:%M:%S", _gmtime(secs)) + f".{millis:03d}Z"
        except (OverflowError, OSError, ValueError):
            return _text(value)
    if isinstance(value, dt.datetime):
        offset = value.utcoffset()
        if offset is not None:
            value = (value - offset).replace(tzinfo=None)
        return value.isoformat(timespec="milliseconds") + "Z"
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


def _kind(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return "struct"
    if kind == "array":
        return "list"
    if kind == "boolean":
        return "bool"
    if kind == "integer":
        return "int"
    if kind == "string" and schema.get("format") == "date-time":
        return "timestamp"
    return "string"


def _unwrap(schema: dict[str, Any]) -> dict[str, Any]:
    while "allOf" in schema and len(schema["allOf"]) == 1 and "properties" not in schema:
        schema = schema["allOf"][0]  # the generator's {allOf: [$ref]} wrapper
    return flatten_all_of(schema)


# Generated code per scalar kind: `{v}` is the value, `{o}`/`{c}` the tags. Tags and value
# are appended separately: concatenating them first costs more than the extra list items.
_SCALAR_CODE = {
    "string": "append({o}); append({v} if {v}.__class__ is str and _special({v}) is None "
    "else _text({v})); append({c})",
    "int": "append({o}); append(_str({v}) if {v}.__class__ is int else _text({v})); append({c})",
    "bool": "append({t} if {v} is True else {f} if {v} is False "
    "else {o} + _text({v}).lower() + {c})",
    "timestamp": "append({o}); append(_ts({v})); append({c})",
}
_SCALAR_WRITERS: dict[str, Writer] = {
    "string": _write_string,
    "int": _write_int,
    "bool": _write_bool,
    "timestamp": _write_timestamp,
}

# Lists are written by a loop inline in the parent's function (a call per list, often empty,
# costs more), nested up to this depth.
_MAX_DEPTH = 8


class _Compiler:
    """Compiles output schemas into Python functions (plain string building, no lookups of
    the schema at render time); schemas are keyed by identity, so shared shapes compile once.

    A function writes one structure (or list) `value`; a structure's members pass through
    `v0`, the items of a list nested `d` deep in the function through `v{d}`."""

    def __init__(self) -> None:
        self.ns: dict[str, Any] = {
            "_special": _special,
            "_text": _text,
            "_ts": format_timestamp,
            "_str": str,
            "_list": list,
            "_dict": dict,
            "_bad": _bad_value,
        }
        self.memo: dict[int, tuple[Any, str]] = {}  # id(schema) → (schema, function name)

    def writer(self, schema: dict[str, Any]) -> Writer:
        return self.ns[self.name_of(schema)]

    def name_of(self, schema: dict[str, Any]) -> str:
        schema = _unwrap(schema)
        hit = self.memo.get(id(schema))
        if hit is not None:
            return hit[1]
        kind = _kind(schema)
        if kind not in ("struct", "list"):
            name = f"_scalar_{kind}"
            self.ns[name] = _SCALAR_WRITERS[kind]
            return name
        name = f"w{len(self.memo)}"
        self.memo[id(schema)] = (schema, name)  # before the body: recursive shapes
        if kind == "list":
            self.ns[name] = self._define(name, self._list(schema, "value", 0, "    "))
        else:
            self.ns[name] = self._define(name, self._struct(schema))
        return name

    def _define(self, name: str, body: list[str]) -> Writer:
        source = "\n".join([f"def {name}(value, out):", "    append = out.append", *body])
        local: dict[str, Any] = {}
        exec(compile(source, f"<econe {name}>", "exec"), self.ns, local)
        return local[name]

    def _struct(self, schema: dict[str, Any]) -> list[str]:
        """Lines writing the structure `value`."""
        lines = [
            "    if value.__class__ is not _dict and not isinstance(value, _dict):",
            "        _bad('a structure', value)",
            "    get = value.get",
        ]
        for prop_name, raw_prop in schema.get("properties", {}).items():
            prop = _unwrap(raw_prop)
            member = raw_prop.get("x-member", prop.get("x-member", prop_name))
            default = raw_prop.get("default", prop.get("default"))
            lines.append(f"    v0 = get({member!r})")
            if default is not None:
                lines.append(f"    if v0 is None: v0 = {default!r}")
            lines.append("    if v0 is not None:")
            xml = raw_prop.get("xml") or prop.get("xml") or {}
            lines += self._member(prop, "v0", 1, "        ", xml.get("name", member))
        return lines

    def _list(self, schema: dict[str, Any], x: str, d: int, ind: str) -> list[str]:
        """Lines writing the list held in variable `x`, nested `d` deep, indented by `ind`."""
        items = schema.get("items", {})
        unwrapped = _unwrap(items)
        tag = (items.get("xml") or unwrapped.get("xml") or {}).get("name", "item")
        return [
            f"{ind}if {x}.__class__ is not _list and isinstance({x}, (str, bytes, _dict)):",
            f"{ind}    _bad('a list', {x})",
            f"{ind}for v{d} in {x}:",
            f"{ind}    if v{d} is None: continue",
            *self._member(unwrapped, f"v{d}", d + 1, ind + "    ", tag),
        ]

    def _member(self, schema: dict[str, Any], x: str, d: int, ind: str, tag: str) -> list[str]:
        """Lines writing the value held in `x` (not None) as element `tag`."""
        o, c = repr(f"<{tag}>"), repr(f"</{tag}>")
        kind = _kind(schema)
        if kind in _SCALAR_CODE:
            t, f = repr(f"<{tag}>true</{tag}>"), repr(f"<{tag}>false</{tag}>")
            return [ind + _SCALAR_CODE[kind].format(o=o, c=c, v=x, t=t, f=f)]
        if kind == "list" and d <= _MAX_DEPTH:
            return [f"{ind}append({o})", *self._list(schema, x, d, ind), f"{ind}append({c})"]
        return [f"{ind}append({o}); {self.name_of(schema)}({x}, out); append({c})"]


def _bad_value(wanted: str, value: Any) -> None:
    raise TypeError(f"expected {wanted}, got {type(value).__name__}")


def namespace(version: str) -> str:
    """AWS's namespace, with the trailing slash some clients (libcloud) match on."""
    return f"http://ec2.amazonaws.com/doc/{version}/"


class Serializer:
    """Renders results for every action of one spec; writers compiled on first use."""

    def __init__(self, spec: ApiSpec):
        self.spec = spec
        self._writers: dict[str, Writer] = {}
        self._compiler = _Compiler()
        # Renders run in the engine's worker threads: one compiles at a time (the compiler
        # names and records functions before it defines them).
        self._compiling = threading.Lock()

    def writer(self, action: str) -> Writer:
        w = self._writers.get(action)
        if w is None:
            act = self.spec.action(action)
            if act is None:
                raise KeyError(f"unknown action {action}")
            with self._compiling:
                w = self._writers.get(action)
                if w is None:
                    w = self._writers[action] = self._compiler.writer(act.output_schema)
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
