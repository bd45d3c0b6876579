"""How the econe CLI prints results: aligned tables with headers, or JSON."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

Column = tuple[str, Callable[[Mapping[str, Any]], Any]]


def cell(value: Any) -> str:
    """One table cell: empty for missing values, ISO-8601 for datetimes, words for booleans."""
    if value is None or value == "":
        return "-"
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, bool):
        return "yes" if value else "no"
    return " ".join(str(value).split())  # no newlines or tabs inside a table cell


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], with_headers: bool = True) -> str:
    """Columns left-aligned, separated by two spaces, no trailing blanks."""
    body = [[cell(v) for v in row] for row in rows]
    lines = ([list(headers)] if with_headers else []) + body
    if not lines:
        return ""
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    out = []
    for line in lines:
        padded = [text.ljust(width) for text, width in zip(line, widths, strict=True)]
        out.append("  ".join(padded).rstrip())
    return "\n".join(out) + "\n"


def records_table(
    columns: Sequence[Column], records: Iterable[Mapping[str, Any]], with_headers: bool = True
) -> str:
    headers = [name for name, _ in columns]
    rows = [[get(rec) for _, get in columns] for rec in records]
    return table(headers, rows, with_headers)


def field(*path: str | int) -> Callable[[Mapping[str, Any]], Any]:
    """A getter for a nested field, e.g. ``field("State", "Name")``; missing → None."""

    def get(record: Mapping[str, Any]) -> Any:
        value: Any = record
        for key in path:
            try:
                value = value[key]
            except (KeyError, IndexError, TypeError):
                return None
        return value

    return get


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    if hasattr(value, "read"):  # streaming bodies never appear in EC2 answers, but be safe
        return value.read().decode("utf-8", "replace")
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def without_metadata(response: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in response.items() if k != "ResponseMetadata"}


def to_json(response: Mapping[str, Any]) -> str:
    """The boto3 response minus ResponseMetadata, datetimes as ISO-8601."""
    return (
        json.dumps(without_metadata(response), indent=2, sort_keys=True, default=_json_default)
        + "\n"
    )
