"""EC2 ids ↔ OpenNebula numeric ids: `ami-%08d`, `i-%08d`; parsed strictly (DESIGN §5)."""

from __future__ import annotations

import re

from econe.errors import Ec2Error, missing_parameter

# oned ids are XML-RPC i4: anything larger cannot exist.
MAX_ONE_ID = 2**31 - 1

_PATTERNS: dict[str, re.Pattern[str]] = {}


def format_id(prefix: str, number: int | str) -> str:
    return f"{prefix}-{int(number):08d}"


# EC2's own id forms (8 or 17 hex digits, `i-0123456789abcdef0`) are well formed but name
# nothing here: they parse to a number no OpenNebula object has, so callers answer …NotFound
# (boto3's instance_exists waiter retries on NotFound, and gives up at once on Malformed).
NO_SUCH_ID = MAX_ONE_ID + 1


def parse_id(prefix: str, value: object) -> int | None:
    """`i-00000005` / `i-5` → 5; an EC2-form id → NO_SUCH_ID; anything else → None (the caller
    answers …Malformed)."""
    pattern = _PATTERNS.get(prefix)
    if pattern is None:
        pattern = _PATTERNS[prefix] = re.compile(
            rf"{re.escape(prefix)}-(?:([0-9]{{1,10}})|[0-9a-f]{{8}}|[0-9a-f]{{17}})"
        )
    if not isinstance(value, str):
        return None
    match = pattern.fullmatch(value)
    if match is None:
        return None
    return int(match.group(1)) if match.group(1) is not None else NO_SUCH_ID


# A key pair id as EC2 forms it, and econe makes its own: `key-` and 17 hex digits.
_KEY_PAIR_ID = re.compile(r"key-[0-9a-f]{17}")


def key_pair_id(value: object) -> str | None:
    """The key pair id when well formed, else None: the key pair actions answer
    InvalidKeyPair.Malformed, CreateTags/DeleteTags InvalidID, as EC2 does for any id."""
    return value if isinstance(value, str) and _KEY_PAIR_ID.fullmatch(value) else None


def required_id(raw: object, prefix: str, malformed: str, param: str) -> int:
    """The number of the id a handler was given in `param`: MissingParameter when absent,
    `malformed` (InvalidInstanceID.Malformed…) when not `prefix-` and a number."""
    if raw is None or raw == "":
        raise missing_parameter(param)
    number = parse_id(prefix, raw)
    if number is None:
        raise Ec2Error(malformed, f"Invalid id: '{raw}' (expecting '{prefix}-' and a number)")
    return number
