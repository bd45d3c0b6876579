"""Request body validation with EC2 error codes, naming the *wire* parameter.

Registered with Connexion as the `*/*json` body validator. jsonschema errors become:
`additionalProperties` → UnknownParameter, `required` → MissingParameter, `not` in a parameter
the overlay marks unsupported → UnsupportedOperation, anything else → InvalidParameterValue;
the parameter is named as the client sent it (`InstanceId.1`, `Filter.1.Name`). Compiled Draft-4 validators (with the `byte`/`date-time` format checker)
are cached per schema object.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterable
from typing import Any

from connexion.validators import JSONRequestBodyValidator
from jsonschema import Draft4Validator
from jsonschema.exceptions import ValidationError

from econe.errors import Ec2Error, invalid_value, missing_parameter
from econe.spec import format_checker

_KIND_ORDER = {"additionalProperties": 0, "required": 1}
_MAX_SHOWN = 100
# a list's JSON path -> the index each of its items was sent with (econe.query.unflatten)
WireIndexes = dict[tuple, list[int]]


def wire_path(path: Iterable[Any], wire_indexes: WireIndexes | None = None) -> str:
    """['Filter', 0, 'Value', 1] → 'Filter.1.Value.2' (list indexes are 1-based on the wire).

    `wire_indexes` (from econe.query.unflatten) gives the index each item of a list was sent
    with when that was not 1, 2, 3...: with `Filter.1` and `Filter.3` sent, item 1 is Filter.3.
    """
    names: list[str] = []
    at: tuple = ()
    for p in path:
        if isinstance(p, int):
            sent = (wire_indexes or {}).get(at)
            names.append(str(sent[p] if sent and p < len(sent) else p + 1))
        else:
            names.append(str(p))
        at = (*at, p)
    return ".".join(names)


def _join(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return "(structure)" if isinstance(value, dict) else "(list)"
    text = str(value)
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "..."


def _why(error: ValidationError) -> str:
    kind, limit = error.validator, error.validator_value
    if kind == "type":
        wanted = limit if isinstance(limit, str) else " or ".join(limit)
        return {"integer": "Expected an integer.", "boolean": "Expected true or false."}.get(
            wanted, f"Expected a value of type {wanted}."
        )
    if kind == "enum":
        shown = ", ".join(_shown(v) for v in list(limit)[:20])
        more = ", ..." if len(limit) > 20 else ""
        return f"Valid values are: {shown}{more}."
    if kind == "maximum":
        return f"The value must be at most {limit}."
    if kind == "minimum":
        return f"The value must be at least {limit}."
    if kind == "maxLength":
        return f"The value must be at most {limit} characters long."
    if kind == "minLength":
        return f"The value must be at least {limit} characters long."
    if kind == "maxItems":
        return f"At most {limit} values are allowed."
    if kind == "minItems":
        return f"At least {limit} values are required."
    if kind == "pattern":
        return "The value is malformed."
    if kind == "format" and limit == "byte":
        return "Invalid BASE64 encoding."
    if kind == "format":
        return f"The value is not a valid {limit}."
    return "The value is not valid here."


def _error_key(error: ValidationError) -> tuple:
    path = tuple((0, p) if isinstance(p, int) else (1, str(p)) for p in error.absolute_path)
    return (_KIND_ORDER.get(str(error.validator), 2), path)


def to_ec2_error(error: ValidationError, wire_indexes: WireIndexes | None = None) -> Ec2Error:
    """One jsonschema error → the EC2 error a client of AWS would see."""
    where = wire_path(error.absolute_path, wire_indexes)
    instance = error.instance
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        known = set(error.schema.get("properties", {}))
        extra = sorted(k for k in instance if k not in known)
        name = _join(where, extra[0]) if extra else where
        return Ec2Error("UnknownParameter", f"The parameter {name} is not recognized")
    if error.validator == "not" and error.schema.get("x-econe-unsupported"):
        # a parameter the overlay marks `unsupported`: what EC2 says of what a region lacks
        return Ec2Error(
            "UnsupportedOperation", f"The parameter {where} is not supported by this cloud"
        )
    if error.validator == "required" and isinstance(instance, dict):
        missing = [r for r in error.validator_value if r not in instance]
        return missing_parameter(_join(where, missing[0] if missing else ""))
    if error.validator == "type" and isinstance(instance, list | dict) and where:
        # e.g. `InstanceId=x` where a list is expected, or `Filter.1=x` for a structure
        return invalid_value(where, _shown(instance), _why(error))
    return invalid_value(where or "(body)", _shown(instance), _why(error))


_lock = threading.Lock()
_compiled: dict[int, tuple[dict, Draft4Validator]] = {}
_MAX_COMPILED = 1024


def compiled_validator(schema: dict[str, Any]) -> Draft4Validator:
    """One Draft-4 validator per schema object (Connexion makes a validator per request)."""
    hit = _compiled.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    validator = Draft4Validator(schema, format_checker=format_checker())
    with _lock:
        if len(_compiled) >= _MAX_COMPILED:  # Connexion reuses its schema objects; a guard
            _compiled.clear()
        _compiled[id(schema)] = (schema, validator)  # the schema is kept alive with its id
    return validator


def validate_body(
    validator: Draft4Validator, body: Any, wire_indexes: WireIndexes | None = None
) -> None:
    """Raise the EC2 error for the most relevant schema violation, if any."""
    if not isinstance(body, dict):
        raise Ec2Error("InvalidRequest", "The request body must be a JSON object.")
    errors = list(validator.iter_errors(body))
    if errors:
        raise to_ec2_error(min(errors, key=_error_key), wire_indexes)


class Ec2BodyValidator(JSONRequestBodyValidator):
    """Connexion's JSON body validator, answering EC2 errors instead of problem+json."""

    _wire_indexes: WireIndexes | None = None  # one validator per request (Connexion)

    async def _parse(self, stream: AsyncIterator[bytes], scope: Any) -> Any:
        ec2 = (scope.get("extensions") or {}).get("ec2") or {}
        self._wire_indexes = ec2.get("wire_indexes")  # put there by the Query front
        data = b"".join([chunk async for chunk in stream])
        if not data:
            return None
        try:
            text = data.decode(self._encoding or "utf-8")
        except (UnicodeDecodeError, LookupError) as exc:
            raise Ec2Error("InvalidRequest", "The request body is not valid UTF-8.") from exc
        try:
            return json.loads(text)
        except ValueError as exc:
            raise Ec2Error("InvalidRequest", "The request body is not valid JSON.") from exc

    def _validate(self, body: Any) -> dict | None:
        if body is None:
            raise Ec2Error("InvalidRequest", "The request body must be a JSON object.")
        validate_body(compiled_validator(self._schema), body, self._wire_indexes)
        return None
