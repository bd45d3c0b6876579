"""Generate spec/ec2-query.yaml from botocore's EC2 model and spec/overlay.yaml.

    python tools/gen_spec.py                       # rewrite spec/ec2-query.yaml
    python tools/gen_spec.py --check               # exit 1 if the committed spec is stale
    python tools/gen_spec.py --add DescribeSubnets --out DIR/ec2-query.yaml

Request schemas (`components/schemas/<Shape>`) use the EC2 *wire* names, as botocore's EC2
serializer writes them: `queryName`, else `locationName` with its first letter capitalised,
else the member name; lists are JSON arrays (the front unflattens `Name.N`). Response schemas
(`<Shape>.xml`) are keyed by botocore *member* names (what boto3 returns), each property with
`x-member` and `xml.name` (the element name), lists wrapped with `item` entries. The
serializer renders XML from these alone.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
OVERLAY = ROOT / "spec" / "overlay.yaml"
OUT = ROOT / "spec" / "ec2-query.yaml"
OUT_SUFFIX = ".xml"
UNSUPPORTED = (
    "Not supported by econe: a request that gives it (other than empty) is refused "
    "(UnsupportedOperation)."
)
ERROR_STATUSES = {
    "400": "Client error (EC2 error document)",
    "401": "AuthFailure",
    "403": "SignatureDoesNotMatch / UnauthorizedOperation",
    "413": "Request body too large",
    "500": "InternalError",
    "503": "Unavailable (OpenNebula unreachable or timing out)",
}


def load_model() -> dict[str, Any]:
    from botocore.loaders import Loader

    return Loader().load_service_model("ec2", "service-2")


def botocore_version() -> str:
    import botocore

    return botocore.__version__


def wire_name(member_name: str, member: dict[str, Any]) -> str:
    """The EC2 serializer's input name for a structure member."""
    if "queryName" in member:
        return member["queryName"]
    if "locationName" in member:
        loc = member["locationName"]
        return loc[:1].upper() + loc[1:]
    return member_name


# What an unsupported parameter may still be: the empty value of its kind, which asks for
# nothing (some SDKs send empty lists and structures); anything else fails the `not`.
_NOTHING = {"array": "minItems", "object": "minProperties", "string": "minLength"}


def _unsupported(
    schema: dict[str, Any], names: list[str], components: dict[str, Any], where: str
) -> None:
    """Replace each named property by a schema refusing any value but an empty one; the
    validator answers UnsupportedOperation for it (x-econe-unsupported)."""
    for wire in names:
        prop = schema["properties"].get(wire)
        if prop is None:
            raise ValueError(f"overlay: {where} has no request parameter {wire}")
        kind = prop.get("type") or ("object" if "$ref" in prop else None)
        refused = {"not": {_NOTHING[kind]: 1}} if kind in _NOTHING else {"not": {}}
        schema["properties"][wire] = {
            **({"type": kind} if kind in _NOTHING else {}),
            **({"maxItems": 1000} if kind == "array" else {}),  # every list is bounded
            **refused,
            "x-econe-unsupported": True,
            "description": UNSUPPORTED,
        }


def _patch(schema: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            schema.pop(key, None)
        else:
            schema[key] = copy.deepcopy(value)


class Generator:
    def __init__(self, model: dict[str, Any], overlay: dict[str, Any]):
        self.shapes = model["shapes"]
        self.ops = model["operations"]
        self.api_version = model["metadata"]["apiVersion"]
        self.overlay = overlay
        self.defaults = overlay.get("defaults", {})
        self.drop_enum = set(self.defaults.get("drop_enum", []))
        self.components: dict[str, dict[str, Any]] = {}
        self._building: set[str] = set()

    # ---- request side -------------------------------------------------------------------------

    def req_scalar(self, shape_name: str) -> dict[str, Any]:
        s = self.shapes[shape_name]
        kind = s["type"]
        out: dict[str, Any]
        if kind == "string":
            out = {"type": "string"}
            if "enum" in s and shape_name not in self.drop_enum:
                out["enum"] = list(s["enum"])
            if "min" in s:
                out["minLength"] = s["min"]
            if "max" in s:
                out["maxLength"] = s["max"]
        elif kind in ("integer", "long"):
            out = {"type": "integer"}
            _patch(out, self.defaults.get("integer", {}))
            if "min" in s:
                out["minimum"] = s["min"]
            if "max" in s:
                out["maximum"] = s["max"]
        elif kind in ("double", "float"):
            out = {"type": "number"}
        elif kind == "boolean":
            out = {"type": "boolean"}
        elif kind == "timestamp":
            out = {"type": "string", "format": "date-time"}
        elif kind == "blob":
            out = {"type": "string", "format": "byte"}
        else:
            raise ValueError(f"unsupported request shape type {kind} ({shape_name})")
        return out

    def req_schema(self, shape_name: str) -> dict[str, Any]:
        s = self.shapes[shape_name]
        if s["type"] == "structure":
            self.req_structure(shape_name)
            return {"$ref": f"#/components/schemas/{shape_name}"}
        if s["type"] == "list":
            out = {"type": "array", "items": self.req_schema(s["member"]["shape"])}
            _patch(out, self.defaults.get("array", {}))
            return out
        if s["type"] == "map":
            raise ValueError(f"map shapes are not supported on input ({shape_name})")
        return self.req_scalar(shape_name)

    def req_structure(self, shape_name: str) -> None:
        if shape_name in self.components or shape_name in self._building:
            return
        self._building.add(shape_name)
        s = self.shapes[shape_name]
        shape_patch = self.overlay.get("shapes", {}).get(shape_name, {})
        props: dict[str, Any] = {}
        names: dict[str, str] = {}
        for member_name, member in s["members"].items():
            wire = wire_name(member_name, member)
            names[member_name] = wire
            prop = self.req_schema(member["shape"])
            if "$ref" not in prop:
                _patch(prop, self.defaults.get("by_name", {}).get(wire, {}))
                _patch(prop, shape_patch.get("properties", {}).get(wire, {}))
            props[wire] = prop
        schema: dict[str, Any] = {"type": "object", "additionalProperties": False}
        _unsupported(
            {"properties": props}, shape_patch.get("unsupported", []), self.components, shape_name
        )
        required = [names[m] for m in s.get("required", [])]
        required += [r for r in shape_patch.get("required_add", []) if r not in required]
        if required:
            schema["required"] = required
        schema["properties"] = props
        self.components[shape_name] = schema
        self._building.discard(shape_name)

    # ---- response side ------------------------------------------------------------------------

    def out_schema(self, shape_name: str) -> dict[str, Any]:
        s = self.shapes[shape_name]
        kind = s["type"]
        if kind == "structure":
            self.out_structure(shape_name)
            return {"$ref": f"#/components/schemas/{shape_name}{OUT_SUFFIX}"}
        if kind == "list":
            item = self.out_schema(s["member"]["shape"])
            if "$ref" not in item:
                item["xml"] = {"name": "item"}
            return {"type": "array", "items": item}
        if kind == "string":
            out: dict[str, Any] = {"type": "string"}
            if "enum" in s and shape_name not in self.drop_enum:
                out["enum"] = list(s["enum"])
            return out
        if kind in ("integer", "long"):
            return {"type": "integer"}
        if kind in ("double", "float"):
            return {"type": "number"}
        if kind == "boolean":
            return {"type": "boolean"}
        if kind == "timestamp":
            return {"type": "string", "format": "date-time"}
        if kind == "blob":
            return {"type": "string", "format": "byte"}
        raise ValueError(f"unsupported response shape type {kind} ({shape_name})")

    def out_structure(self, shape_name: str) -> None:
        key = shape_name + OUT_SUFFIX
        if key in self.components or key in self._building:
            return
        self._building.add(key)
        s = self.shapes[shape_name]
        props: dict[str, Any] = {}
        for member_name, member in s["members"].items():
            inner = self.out_schema(member["shape"])
            xml: dict[str, Any] = {"name": member.get("locationName", member_name)}
            if "$ref" in inner:
                prop = {"allOf": [inner]}
            else:
                prop = inner
                if inner["type"] == "array":
                    xml["wrapped"] = True
            prop["x-member"] = member_name
            prop["xml"] = xml
            props[member_name] = prop
        self.components[key] = {"type": "object", "xml": {"name": "item"}, "properties": props}
        self._building.discard(key)

    # ---- operations ---------------------------------------------------------------------------

    def request_component(self, action: str) -> str:
        op = self.ops[action]
        name = op["input"]["shape"]
        self.req_structure(name)
        patch = self.overlay.get("requests", {}).get(action, {})
        schema = self.components[name]
        for wire, prop_patch in patch.get("properties", {}).items():
            if wire not in schema["properties"]:
                raise ValueError(f"overlay: {action} has no request parameter {wire}")
            _patch(schema["properties"][wire], prop_patch)
        _unsupported(schema, patch.get("unsupported", []), self.components, action)
        required = list(schema.get("required", []))
        required += [r for r in patch.get("required_add", []) if r not in required]
        required = [r for r in required if r not in patch.get("required_remove", [])]
        if required:
            schema["required"] = required
        else:
            schema.pop("required", None)
        if set(required) - set(schema["properties"]):
            raise ValueError(f"overlay: {action} requires unknown parameters")
        # keep `required` before `properties` for readability
        self.components[name] = {
            k: schema[k]
            for k in ("type", "additionalProperties", "required", "properties")
            if k in schema
        }
        return name

    def output_component(self, action: str) -> str:
        op = self.ops[action]
        if "output" in op:
            name = op["output"]["shape"]
            self.out_structure(name)
            return name + OUT_SUFFIX
        # AWS answers <return>true</return> for actions botocore models without output.
        key = f"{action}Return{OUT_SUFFIX}"
        self.components[key] = {
            "type": "object",
            "properties": {
                "Return": {
                    "type": "boolean",
                    "default": True,
                    "x-member": "Return",
                    "xml": {"name": "return"},
                }
            },
        }
        return key

    def operation(self, action: str) -> dict[str, Any]:
        req = self.request_component(action)
        out = self.output_component(action)
        has_dry_run = "DryRun" in self.components[req]["properties"]
        op: dict[str, Any] = {"operationId": action, "summary": action}
        note = self.overlay.get("notes", {}).get(action)
        if note:
            op["description"] = note
        op["x-econe-response-root"] = f"{action}Response"
        filters = self.documented_filters(action)
        if filters:
            op["x-econe-filters"] = filters
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{req}"}}},
        }
        op["responses"] = self.responses(out, has_dry_run)
        return op

    def documented_filters(self, action: str) -> list[str]:
        """The filter names EC2 documents for the action (botocore's Filters documentation): a
        name the mapping does not map matches nothing, where another name is an error."""
        members = self.shapes[self.ops[action]["input"]["shape"]]["members"]
        doc = members.get("Filters", members.get("Filter", {})).get("documentation", "")
        names = set(re.findall(r"<p>\s*<code>([a-z0-9.\-]+)</code>\s*[-–]", doc))
        if re.search(r"<code>tag</code>:&lt;key&gt;", doc):
            names.add("tag:*")  # tag:<key>
        return sorted(names)

    def responses(self, out: str, has_dry_run: bool) -> dict[str, Any]:
        responses: dict[str, Any] = {
            "200": {
                "description": "EC2 XML response",
                "content": {"text/xml": {"schema": {"$ref": f"#/components/schemas/{out}"}}},
            }
        }
        statuses = dict(ERROR_STATUSES)
        if has_dry_run:
            statuses["412"] = "DryRunOperation"
        for status in sorted(statuses):
            responses[status] = {"$ref": f"#/components/responses/Error{status}"}
        return responses

    def extra_operation(self, action: str, spec: dict[str, Any]) -> dict[str, Any]:
        req_name = f"{action}Request"
        out_name = f"{action}Result{OUT_SUFFIX}"
        self.components[req_name] = copy.deepcopy(spec["request"])
        self.components[out_name] = copy.deepcopy(spec["output"])
        op: dict[str, Any] = {"operationId": action, "summary": action}
        if spec.get("description"):
            op["description"] = spec["description"]
        op["x-econe-response-root"] = spec.get("response_root", f"{action}Response")
        op["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{req_name}"}}
            },
        }
        op["responses"] = self.responses(
            out_name, "DryRun" in spec["request"].get("properties", {})
        )
        return op

    def build(self, actions: list[str]) -> dict[str, Any]:
        paths: dict[str, Any] = {}
        for action in actions:
            if action not in self.ops:
                raise SystemExit(f"gen_spec: {action} is not an EC2 operation in botocore")
            paths[f"/{action}"] = {"post": self.operation(action)}
        for action, spec in self.overlay.get("extra_operations", {}).items():
            paths[f"/{action}"] = {"post": self.extra_operation(action, spec)}
        info = dict(self.overlay.get("info", {}))
        info.setdefault("title", "econe EC2 Query API")
        info["version"] = self.api_version
        schemas = {name: self.components[name] for name in sorted(self.components)}
        schemas["ErrorResponse"] = ERROR_SCHEMA
        error_responses = {
            f"Error{status}": {
                "description": text,
                "content": {"text/xml": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
            }
            for status, text in sorted({**ERROR_STATUSES, "412": "DryRunOperation"}.items())
        }
        return {
            "openapi": "3.0.3",
            "info": info,
            "x-econe-api-version": self.api_version,
            "x-econe-generated-from": f"botocore {botocore_version()} ec2 service-2",
            "paths": paths,
            "components": {"schemas": schemas, "responses": error_responses},
        }


# What botocore's EC2 parser returns for an error document (ResponseMetadata removed).
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["Error"],
    "properties": {
        "Error": {
            "type": "object",
            "required": ["Code", "Message"],
            "properties": {
                "Code": {"type": "string", "minLength": 1},
                "Message": {"type": "string"},
            },
        }
    },
}


OVERLAY_KEYS = {
    "info",
    "actions",
    "optional_actions",
    "defaults",
    "shapes",
    "requests",
    "notes",
    "extra_operations",
}
REQUEST_KEYS = {"properties", "required_add", "required_remove", "unsupported"}
SHAPE_KEYS = {"properties", "required_add", "unsupported"}
DEFAULT_KEYS = {"integer", "array", "by_name", "drop_enum"}


def check_overlay(overlay: dict[str, Any], model: dict[str, Any], actions: list[str]) -> None:
    """A misspelt name in the overlay would change nothing, silently (a restriction meant
    for `RunInstance` never applied): every name must be one the generator uses."""
    problems = [f"unknown key {k!r}" for k in sorted(set(overlay) - OVERLAY_KEYS)]
    known = set(actions) | set(overlay.get("optional_actions") or [])
    known |= set(overlay.get("extra_operations") or {})
    for key in ("requests", "notes"):
        for action in overlay.get(key) or {}:
            if action not in known:
                problems.append(f"{key}: {action!r} is not an action it generates")
    for action, patch in (overlay.get("requests") or {}).items():
        problems += [
            f"requests: {action}: unknown key {k!r}" for k in sorted(set(patch) - REQUEST_KEYS)
        ]
    for shape, patch in (overlay.get("shapes") or {}).items():
        if shape not in model["shapes"]:
            problems.append(f"shapes: {shape!r} is not a shape of botocore's EC2 model")
        problems += [f"shapes: {shape}: unknown key {k!r}" for k in sorted(set(patch) - SHAPE_KEYS)]
    defaults = overlay.get("defaults") or {}
    problems += [f"defaults: unknown key {k!r}" for k in sorted(set(defaults) - DEFAULT_KEYS)]
    for shape in defaults.get("drop_enum") or []:
        if shape not in model["shapes"]:
            problems.append(
                f"defaults: drop_enum: {shape!r} is not a shape of botocore's EC2 model"
            )
    for action in actions:
        if action not in model["operations"] and action not in (
            overlay.get("extra_operations") or {}
        ):
            problems.append(f"{action!r} is not an action of botocore's EC2 model")
    if problems:
        raise SystemExit(f"{OVERLAY}: " + "; ".join(problems))


def generate(add: list[str] | None = None, drop: list[str] | None = None) -> dict[str, Any]:
    overlay = yaml.safe_load(OVERLAY.read_text())
    actions = [a for a in overlay["actions"] if a not in (drop or [])]
    actions += [a for a in (add or []) if a not in actions]
    model = load_model()
    check_overlay(overlay, model, actions)
    return Generator(model, overlay).build(actions)


def dump(spec: dict[str, Any]) -> str:
    header = "# GENERATED by tools/gen_spec.py from botocore's EC2 model + spec/overlay.yaml. Do not edit.\n"
    return header + yaml.safe_dump(spec, sort_keys=False, width=100, allow_unicode=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--add", action="append", default=[], metavar="ACTION", help="also generate ACTION"
    )
    parser.add_argument(
        "--drop", action="append", default=[], metavar="ACTION", help="leave ACTION out"
    )
    parser.add_argument("--out", type=Path, default=OUT, help=f"output file (default {OUT})")
    parser.add_argument(
        "--check", action="store_true", help="compare with --out instead of writing"
    )
    args = parser.parse_args(argv)
    text = dump(generate(args.add, args.drop))
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is stale: run tools/gen_spec.py", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
