"""The API spec (spec/ec2-query.yaml), loaded and resolved once.

`load_spec(path)` reads the YAML with the C loader, resolves every `$ref`, and exposes per
action: the request schema (wire names), the output schema (member names, `xml.name`), the
response root element, whether the action has `DryRun`, and a precompiled Draft-4 validator
whose format checker knows OpenAPI's `byte` (base64) and `date-time`.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime as dt
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft4Validator, FormatChecker

from econe.paths import data_dir

DEFAULT_API_VERSION = "2016-11-15"


def default_spec_path() -> Path:
    return data_dir("spec") / "ec2-query.yaml"


def _check_byte(value: object) -> bool:
    """Base64, in one piece or in MIME lines (`base64` wraps at 76 characters, CRLF or LF)."""
    if not isinstance(value, str):
        return True
    try:
        base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _check_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    return "T" in value.upper()


def format_checker() -> FormatChecker:
    checker = FormatChecker(formats=())
    checker.checks("byte")(_check_byte)
    checker.checks("date-time")(_check_date_time)
    return checker


def resolve_refs(node: Any, root: dict[str, Any], _seen: dict[str, Any] | None = None) -> Any:
    """A copy of `node` with local `$ref`s replaced by the (shared, resolved) targets."""
    seen: dict[str, Any] = {} if _seen is None else _seen
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and len(node) == 1:
            if ref in seen:
                return seen[ref]
            if not ref.startswith("#/"):
                raise ValueError(f"only local $ref is supported: {ref}")
            target: Any = root
            for part in ref[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            placeholder: dict[str, Any] = {}
            seen[ref] = placeholder
            placeholder.update(resolve_refs(target, root, seen))
            return placeholder
        return {k: resolve_refs(v, root, seen) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve_refs(v, root, seen) for v in node]
    return node


def flatten_all_of(schema: dict[str, Any]) -> dict[str, Any]:
    """Merge a schema's `allOf` parts into one dict (the generator wraps `$ref`s in allOf)."""
    if "allOf" not in schema:
        return schema
    merged: dict[str, Any] = {}
    for part in schema["allOf"]:
        merged.update(flatten_all_of(part))
    merged.update({k: v for k, v in schema.items() if k != "allOf"})
    return merged


@dataclass
class ActionSpec:
    name: str
    request_schema: dict[str, Any]
    output_schema: dict[str, Any]
    response_root: str
    has_dry_run: bool
    validator: Draft4Validator = field(repr=False)
    filters: frozenset[str] = frozenset()  # the filter names EC2 documents for the action


@dataclass
class ApiSpec:
    path: Path
    raw: dict[str, Any] = field(repr=False)  # the spec as written, $refs intact
    api_version: str
    actions: dict[str, ActionSpec] = field(repr=False)

    def action(self, name: str) -> ActionSpec | None:
        return self.actions.get(name)

    def known_filters(self) -> dict[str, frozenset[str]]:
        return {name: a.filters for name, a in self.actions.items() if a.filters}

    def connexion_spec(self) -> dict[str, Any]:
        """A private copy for Connexion, which resolves and mutates what it is given."""
        return copy.deepcopy(self.raw)


def build_spec(raw: dict[str, Any], path: Path) -> ApiSpec:
    checker = format_checker()
    actions: dict[str, ActionSpec] = {}
    for route, item in raw.get("paths", {}).items():
        op = item.get("post")
        if not op:
            continue
        name = op.get("operationId") or route.strip("/")
        body = op["requestBody"]["content"]["application/json"]["schema"]
        request_schema = resolve_refs(body, raw)
        out = op["responses"]["200"]["content"]["text/xml"]["schema"]
        output_schema = resolve_refs(out, raw)
        actions[name] = ActionSpec(
            name=name,
            request_schema=request_schema,
            output_schema=output_schema,
            response_root=op.get("x-econe-response-root", f"{name}Response"),
            has_dry_run="DryRun" in request_schema.get("properties", {}),
            validator=Draft4Validator(request_schema, format_checker=checker),
            filters=frozenset(op.get("x-econe-filters") or ()),
        )
    version = str(raw.get("x-econe-api-version") or raw.get("info", {}).get("version") or "")
    return ApiSpec(path=path, raw=raw, api_version=version or DEFAULT_API_VERSION, actions=actions)


@functools.lru_cache(maxsize=8)
def _load(path: Path, mtime_ns: int) -> ApiSpec:
    with path.open("rb") as fh:
        raw = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    if not isinstance(raw, dict) or "paths" not in raw:
        raise ValueError(f"{path} is not an OpenAPI document")
    return build_spec(raw, path)


def load_spec(path: str | Path | None = None) -> ApiSpec:
    """The spec at `path` (default: the shipped spec/ec2-query.yaml), loaded once per file."""
    p = Path(path) if path is not None else default_spec_path()
    p = p.resolve()
    return _load(p, p.stat().st_mtime_ns)
