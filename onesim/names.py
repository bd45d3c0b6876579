"""Object name rules (``PoolObjectSQL::name_is_valid``)."""

from __future__ import annotations

INVALID_NAME_CHARS = "&|:\\\";/'#{}$<>\t\n\v\f\r"


def name_error(name: str, chars: str = INVALID_NAME_CHARS) -> str | None:
    """``PoolObjectSQL::name_is_valid``: the error text, or None for a valid name."""
    if not name:
        return "Invalid NAME, it cannot be empty"
    for c in name:
        if c in chars:
            return f"Invalid NAME, char '{c}' is not allowed"
    if len(name.encode()) > 128:  # std::string::length: bytes of UTF-8, not characters
        return "Invalid NAME, max length is 128 chars"
    return None
