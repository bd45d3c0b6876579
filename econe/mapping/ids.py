"""EC2 ids ↔ OpenNebula numeric ids: `ami-%08d`, `i-%08d`; parsed strictly (DESIGN §5)."""

from __future__ import annotations

import re

from econe.errors import Ec2Error, missing_parameter

# oned ids are XML-RPC i4: anything larger cannot exist.
MAX_ONE_ID = 2**31 - 1

_PATTERNS: dict[str, re.Pattern[str]] = {}


def format_id(prefix: str, number: int | str) -> str:
    return f"{prefix}-{int(number):08d}"


def parse_id(prefix: str, value: object) -> int | None:
    """`i-00000005` / `i-5` → 5; anything else → None (the caller answers …Malformed)."""
    pattern = _PATTERNS.get(prefix)
    if pattern is None:
        pattern = _PATTERNS[prefix] = re.compile(rf"{re.escape(prefix)}-([0-9]{{1,10}})")
    if not isinstance(value, str):
        return None
    match = pattern.fullmatch(value)
    return int(match.group(1)) if match else None


def required_id(raw: object, prefix: str, malformed: str, param: str) -> int:
    """The number of the id a handler was given in `param`: MissingParameter when absent,
    `malformed` (InvalidInstanceID.Malformed…) when not `prefix-` and a number."""
    if raw is None or raw == "":
        raise missing_parameter(param)
    number = parse_id(prefix, raw)
    if number is None:
        raise Ec2Error(malformed, f"Invalid id: '{raw}' (expecting '{prefix}-' and a number)")
    return number
