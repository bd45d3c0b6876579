"""EC2 `Filter.N.Name` / `Filter.N.Value.M` matching over view dicts, and pagination.

A mapping's `filters:` maps each EC2 filter name to a dotted field path of the view
(`State.Name`, `Tags.Key`; a list on the way is searched element-wise). `tag:*` names the tags
field (list of {Key, Value}) and enables `tag:<key>` filters. Values are AWS wildcards (`*`, `?`,
backslash escapes). Filters are ANDed; the values of one filter are ORed; an unknown filter is
an `InvalidParameterValue` naming it. A value that is an id in a short form econe accepts
(`i-2`, `ami-0`, `sg-000000001`) also matches the id as econe writes it (`i-00000002`).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from econe.errors import Ec2Error
from econe.mapping.ids import MAX_ONE_ID, format_id

Predicate = Callable[[dict], bool]


def get_path(item: Any, path: str) -> list[Any]:
    """All values at a dotted path; lists are flattened on the way."""
    values = [item]
    for part in path.split("."):
        nxt: list[Any] = []
        for value in values:
            if isinstance(value, list):
                nxt.extend(v.get(part) for v in value if isinstance(v, dict))
            elif isinstance(value, dict):
                nxt.append(value.get(part))
        values = nxt
    flat: list[Any] = []
    for value in values:
        if isinstance(value, list):
            flat.extend(value)
        elif value is not None:
            flat.append(value)
    return flat


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return str(value)


class Wildcard:
    """An EC2 filter value: `*` any run, `?` one character, `\\` escapes the next one.

    Matched with the two-pointer glob algorithm (at most len(text) × len(pattern) steps) rather
    than a regex, whose backtracking on values like `*a*a*a…b` is exponential."""

    def __init__(self, pattern: str):
        self.tokens: list[str | None] = []  # a character, "" for `?`, None for `*`
        i = 0
        while i < len(pattern):
            ch = pattern[i]
            if ch == "\\" and i + 1 < len(pattern):
                self.tokens.append(pattern[i + 1])
                i += 2
                continue
            self.tokens.append(None if ch == "*" else "" if ch == "?" else ch)
            i += 1

    def fullmatch(self, text: str) -> bool:
        tokens, t, p = self.tokens, 0, 0
        star, star_t = -1, 0
        while t < len(text):
            if p < len(tokens) and tokens[p] is not None and tokens[p] in ("", text[t]):
                t, p = t + 1, p + 1
            elif p < len(tokens) and tokens[p] is None:
                star, star_t, p = p, t, p + 1
            elif star >= 0:  # let the last `*` take one more character
                star_t += 1
                t, p = star_t, star + 1
            else:
                return False
        return all(tok is None for tok in tokens[p:])


def wildcard(pattern: str) -> Wildcard:
    return Wildcard(pattern)


def _nothing(item: Any) -> bool:
    return False


_SHORT_ID = re.compile(r"([a-z]+)-([0-9]{1,10})")


def _patterns(value: str, ids: frozenset[str]) -> list[Wildcard]:
    """A value's patterns: itself and, for an id of a kind the views format, econe's form of it
    (by_id takes `i-2` for `i-00000002`: so does the filter)."""
    patterns = [wildcard(value)]
    short = _SHORT_ID.fullmatch(value)
    if short and short[1] in ids and int(short[2]) <= MAX_ONE_ID:
        canonical = format_id(short[1], short[2])
        if canonical != value:
            patterns.append(wildcard(canonical))
    return patterns


def compile_filters(
    requested: list[dict] | None,
    spec: dict[str, str],
    known: frozenset[str] = frozenset(),
    ids: frozenset[str] = frozenset(),
) -> list[Predicate]:
    """Predicates for the request's Filter.N: `spec` maps filter names to item paths; a name
    in `known` (EC2 documents it) but not in `spec` is of something this cloud does not have,
    and matches nothing, as does a filter given no values; any other name is
    InvalidParameterValue. `ids`: the id prefixes whose short forms match in the `…-id`
    filters (see _patterns)."""
    predicates: list[Predicate] = []
    for entry in requested or []:
        name = str(entry.get("Name") or "")
        values = entry.get("Value") or entry.get("Values") or []
        if isinstance(values, str):
            values = [values]
        patterns = [wildcard(str(v)) for v in values]
        if name in spec:
            if name.endswith("-id"):  # an id filter (instance-id, resource-id…), not tag-value
                patterns = [p for v in values for p in _patterns(str(v), ids)]
            path = spec[name]
            predicates.append(
                lambda item, path=path, ps=patterns: any(
                    p.fullmatch(_text(v)) for v in get_path(item, path) for p in ps
                )
            )
        elif name.startswith("tag:") and "tag:*" in spec and len(name) > 4:
            key, path = name[4:], spec["tag:*"]
            predicates.append(
                lambda item, key=key, path=path, ps=patterns: any(
                    t.get("Key") == key and any(p.fullmatch(_text(t.get("Value", ""))) for p in ps)
                    for t in get_path(item, path)
                    if isinstance(t, dict)
                )
            )
        elif name in known or (name.startswith("tag:") and "tag:*" in known):
            predicates.append(_nothing)
        else:
            raise Ec2Error("InvalidParameterValue", f"The filter '{name}' is invalid")
        if not patterns:  # Terraform sends `resource-id` with no values for no resources
            predicates[-1] = _nothing
    return predicates


# -- pagination -------------------------------------------------------------------------------

_TOKEN_PREFIX = "econe1:"


def encode_token(key: Any) -> str:
    return base64.urlsafe_b64encode(f"{_TOKEN_PREFIX}{key}".encode()).decode()


def decode_token(token: str, kind: type = int) -> Any:
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        if text.startswith(_TOKEN_PREFIX):
            return kind(text[len(_TOKEN_PREFIX) :])
    except (binascii.Error, ValueError, UnicodeDecodeError):
        pass
    raise Ec2Error("InvalidParameterValue", f"Invalid value '{token}' for NextToken")


def paginate(
    items: list[dict], max_results: Any, token: Any, key: str, lo: int, hi: int, kind: type = int
) -> tuple[list[dict], str | None]:
    """Stable pages by increasing `key` (an int field, or of type `kind`: str for names); the
    token names the last key served. MaxResults below `lo` is refused; above `hi` gives pages
    of `hi`."""
    items = sorted(items, key=lambda i: i.get(key) or kind())
    if token:
        last = decode_token(str(token), kind)
        items = [i for i in items if (i.get(key) or kind()) > last]
    if max_results is None:
        return items, None
    try:
        limit = int(max_results)
    except (TypeError, ValueError):
        limit = -1
    if limit < lo:
        raise Ec2Error(
            "InvalidParameterValue",
            f"Value ({max_results}) for parameter MaxResults is invalid. "
            f"Expecting a value of at least {lo}.",
        )
    # more than a page holds: a full page, as EC2 does (the AWS CLI asks for 1000 per page of
    # DescribeVolumes, whose pages hold 500)
    limit = min(limit, hi)
    if len(items) > limit:
        page = items[:limit]
        return page, encode_token(page[-1].get(key) or kind())
    return items, None
