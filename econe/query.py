"""EC2 Query wire codec: form/query parameters <-> nested JSON bodies.

Pure functions, no framework. The front middleware calls `parse_params` on the raw request,
`unflatten` to turn `Filter.1.Value.2` keys into nested lists/dicts and `coerce` to type the
strings by the action's (already $ref-resolved) OpenAPI 3.0 request schema. `flatten` is the
inverse, written the way botocore's EC2 serializer flattens, for tests and the client side.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from econe.errors import Ec2Error, invalid_value

# Characters outside XML 1.0 (control characters but tab, line feed and carriage return):
# they can reach neither oned (XML-RPC) nor an answer, whatever the value is for.
NOT_XML_CHAR = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

# Parameters that carry authentication or request metadata, not action input.
META_PARAMS = frozenset(
    {
        "Action",
        "Version",
        "AWSAccessKeyId",
        "Signature",
        "SignatureMethod",
        "SignatureVersion",
        "Timestamp",
        "Expires",
        "SecurityToken",
    }
)

_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_FORM = "application/x-www-form-urlencoded"
_MULTIPART = "multipart/form-data"


# Bounds on what a request may ask the front to decode, far above what any EC2 action takes
# (1,000 instance ids, 50 tags, 200 filter values; names like `A.1.B.2.C` at most 7 deep):
# without them a 1 MB body of 50,000 parameters held the event loop for a second, and a name
# 3,000 levels deep or an index of 5,000 digits failed as an internal error.
MAX_PARAMS = 2000
MAX_NAME_DEPTH = 10
MAX_INDEX_DIGITS = 9


def _decode_pairs(text: str | bytes, where: str) -> list[tuple[str, str]]:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Ec2Error("InvalidParameterValue", f"The {where} is not valid UTF-8.") from exc
    if not text:
        return []
    if text.count("&") >= MAX_PARAMS:
        raise Ec2Error(
            "InvalidParameterValue", f"The {where} has more than {MAX_PARAMS} parameters."
        )
    bad = _BAD_ESCAPE.search(text)
    if bad:
        raise Ec2Error(
            "InvalidParameterValue",
            f"The {where} has a malformed percent-encoding at position {bad.start()}.",
        )
    try:
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise Ec2Error(
            "InvalidParameterValue", f"The {where} has percent-encoded bytes that are not UTF-8."
        ) from exc
    except ValueError as exc:  # e.g. max_num_fields, NUL handling in some versions
        raise Ec2Error("InvalidParameterValue", f"The {where} is malformed.") from exc
    return [(k, v) for k, v in pairs if k]


def as_list(value: Any) -> list:
    """A request member that may be given once or as a list (`X` or `X.N`), as a list."""
    if value is None or value == "":
        return []
    return value if isinstance(value, list) else [value]


class Params(dict[str, str]):
    """A request's parameters. `repeated`: the first name given more than once (`InstanceId.1`
    twice, or once in the query string and once in the body), whose last value is kept for
    authentication; the front then refuses the request (`repeated_parameter`), which would
    otherwise act on fewer values than were sent."""

    repeated: str | None = None

    def add(self, pairs: list[tuple[str, str]]) -> None:
        for name, value in pairs:
            if name in self and self.repeated is None:
                self.repeated = name
            self[name] = value


def repeated_parameter(name: str) -> Ec2Error:
    return Ec2Error("InvalidParameterValue", f"The parameter {name[:100]} is given more than once.")


def media_type(content_type: str | None) -> str:
    """`application/x-www-form-urlencoded; charset=utf-8` -> `application/x-www-form-urlencoded`."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_params(
    method: str, query_string: str | bytes, body: bytes | str, content_type: str | None
) -> Params:
    """Query string and form body merged into one dict (body after query, see Params).

    The body is read as a form when it says so, or when a POST has no content type at all (as
    Rack did for the Ruby econe). Invalid UTF-8 or a broken `%XX` escape answer
    InvalidParameterValue instead of failing later.
    """
    params = Params()
    params.add(_decode_pairs(query_string, "query string"))
    kind = media_type(content_type)
    if kind == _MULTIPART:
        # Multipart bodies (the UploadImage `file` field) are decoded elsewhere once upload
        # support lands; until then they are refused here, clearly.
        raise Ec2Error(
            "InvalidParameterValue", "multipart/form-data request bodies are not supported yet."
        )
    if body and (kind == _FORM or (not kind and method.upper() == "POST")):
        params.add(_decode_pairs(body, "request body"))
    if len(params) > MAX_PARAMS:
        raise Ec2Error(
            "InvalidParameterValue", f"The request has more than {MAX_PARAMS} parameters."
        )
    for name, value in params.items():
        bad = NOT_XML_CHAR.search(value)
        if bad:
            raise invalid_value(
                ascii(name)[1:-1],
                ascii(value)[1:-1][:64],
                f"It holds {bad.group()!r}, which cannot be stored.",
            )
    return params


# ---------------------------------------------------------------------------- unflatten


def _is_index(segment: str) -> bool:
    # ASCII digits only: str.isdigit() also accepts "²" and "١", which are no EC2 index
    return segment.isascii() and segment.isdigit()


def _check_index(segment: str, key: str) -> None:
    """Refuse the index forms a request could use to send one list item twice, or that no
    client means: `01` (the same item as `1`), non-ASCII digits. Index 0 is taken: libcloud
    numbers CreateTags and DeleteTags items from 0 (`ResourceId.0`, `Tag.0.Key`)."""
    if not segment.isdigit():
        return
    if not segment.isascii():
        why = "is not written in ASCII digits"
    elif len(segment) > 1 and segment[0] == "0":
        why = "has a leading zero"
    elif len(segment) > MAX_INDEX_DIGITS:
        why = "is too large"
    else:
        return
    raise Ec2Error(
        "InvalidParameterValue", f"The parameter name {key[:100]} has a list index that {why}."
    )


def is_meta_param(name: str) -> bool:
    return name in META_PARAMS or name.lower().startswith("x-amz-")


def _wire_name(path: Iterable[str | int]) -> str:
    return ".".join(str(p) for p in path)


def _conflict(path: Iterable[str | int]) -> Ec2Error:
    name = _wire_name(path)
    return Ec2Error(
        "InvalidParameterValue",
        f"The parameter {name} is used both as a value and as a list or structure.",
    )


def unflatten(
    params: Mapping[str, str], wire_indexes: dict[tuple, list[int]] | None = None
) -> dict[str, Any]:
    """`{"Filter.1.Value.2": "x"}` -> `{"Filter": [{"Value": ["x"]}]}`.

    Digit segments are list indexes (from 1, or 0): gaps are allowed and items keep index
    order. Meta parameters (Action, Version, signature fields, X-Amz-*) are left out. Given
    `wire_indexes`, each list whose items were not sent as `.1`, `.2`... is recorded there: its
    JSON path (`("Filter", 0, "Value")`) -> the index each item was sent with, so that errors
    can name `Filter.3.Name` as the client wrote it (see econe.validation.wire_path).
    """
    root: dict[Any, Any] = {}
    for key, value in params.items():
        if is_meta_param(key):
            continue
        parts = key.split(".", MAX_NAME_DEPTH)
        if any(p == "" for p in parts) or len(parts) > MAX_NAME_DEPTH:
            raise Ec2Error("InvalidParameterValue", f"The parameter name {key[:100]} is malformed.")
        for part in parts:
            _check_index(part, key)
        if _is_index(parts[0]):
            raise Ec2Error("InvalidParameterValue", f"The parameter name {key[:100]} is malformed.")
        segs: list[str | int] = [int(p) if _is_index(p) else p for p in parts]
        node = root
        for depth, seg in enumerate(segs[:-1]):
            child = node.get(seg)
            if child is None:
                child = node[seg] = {}
            elif not isinstance(child, dict):
                raise _conflict(segs[: depth + 1])
            node = child
        last = segs[-1]
        if isinstance(node.get(last), dict):
            raise _conflict(segs)
        node[last] = value
    return _listify(root, [], (), {} if wire_indexes is None else wire_indexes)


def _listify(
    node: dict[Any, Any], path: list[str | int], at: tuple, wire_indexes: dict[tuple, list[int]]
) -> Any:
    """`path`: the wire name so far (for messages); `at`: the JSON path of `node`."""
    ints = [k for k in node if isinstance(k, int)]
    if ints and len(ints) != len(node):
        raise Ec2Error(
            "InvalidParameterValue",
            f"The parameter {_wire_name(path)} mixes list items and named members.",
        )
    if not ints:
        return {
            k: _listify(v, [*path, k], (*at, k), wire_indexes) if isinstance(v, dict) else v
            for k, v in node.items()
        }
    ints.sort()
    if ints != list(range(1, len(ints) + 1)):
        wire_indexes[at] = ints
    return [
        _listify(node[k], [*path, k], (*at, n), wire_indexes)
        if isinstance(node[k], dict)
        else node[k]
        for n, k in enumerate(ints)
    ]


# ---------------------------------------------------------------------------- coerce

_INT = re.compile(r"^[+-]?[0-9]+$")


def _schema_type(schema: Mapping[str, Any]) -> str | None:
    kind = schema.get("type")
    if kind is None:
        if "properties" in schema or "additionalProperties" in schema:
            return "object"
        if "items" in schema:
            return "array"
    return kind


def _merged(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """Fold `allOf` parts into one schema (the overlay may add constraints that way)."""
    parts = schema.get("allOf")
    if not parts:
        return schema
    out: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    for part in parts:
        part = _merged(part)
        for k, v in part.items():
            if k == "properties":
                out["properties"] = {**out.get("properties", {}), **v}
            else:
                out.setdefault(k, v)
    return out


def _coerce_scalar(value: str, kind: str | None) -> Any:
    if kind == "integer":
        # a few thousand digits would raise in int(); leave it for validation to name
        return int(value) if _INT.match(value.strip()) and len(value) <= 40 else value
    if kind == "number":
        try:
            number = float(value)
        except ValueError:
            return value
        return number if math.isfinite(number) else value
    if kind == "boolean":
        lowered = value.strip().lower()
        if lowered in ("true", "false", "1", "0"):  # libcloud sends Force=1, Encrypted=1
            return lowered in ("true", "1")
    return value


def coerce(value: Any, schema: Mapping[str, Any]) -> Any:
    """Type the unflattened strings where the schema says integer, number or boolean.

    Values that do not parse stay strings so that validation names them. A list member sent
    without its number (`KeyName=k` for `KeyName.1=k`, as libcloud and old fog send it) is a
    list of that one value when the list holds plain values; an empty `Name=` is the empty
    list of SDKs that send one (Go v1).
    """
    if not isinstance(schema, Mapping):
        return value
    schema = _merged(schema)
    kind = _schema_type(schema)
    if isinstance(value, dict):
        if kind not in (None, "object"):
            return value
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        out = {}
        for k, v in value.items():
            sub = props.get(k, extra if isinstance(extra, Mapping) else None)
            out[k] = coerce(v, sub) if sub is not None else v
        return out
    if isinstance(value, list):
        items = schema.get("items")
        if kind not in (None, "array") or not isinstance(items, Mapping):
            return value
        return [coerce(v, items) for v in value]
    if isinstance(value, str):
        if kind == "array":
            if value == "":
                return []
            items = schema.get("items")
            if isinstance(items, Mapping) and _schema_type(_merged(items)) not in (
                "object",
                "array",
            ):
                return [coerce(value, items)]
            return value
        return _coerce_scalar(value, kind)
    return value


# ---------------------------------------------------------------------------- flatten


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def flatten(body: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """The inverse of `unflatten`, as botocore's EC2 serializer: lists become `.1`, `.2`...,
    empty lists and empty structures send nothing, booleans are `true`/`false`."""
    out: dict[str, str] = {}

    def walk(value: Any, name: str) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, f"{name}.{k}" if name else str(k))
        elif isinstance(value, list | tuple):
            for i, v in enumerate(value, 1):
                walk(v, f"{name}.{i}")
        elif value is not None:
            out[name] = _scalar_text(value)

    walk(body, prefix)
    return out
