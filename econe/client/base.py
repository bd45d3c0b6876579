"""What every econe subcommand shares: the Command record, id and argument helpers."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from econe.client.errors import UsageError
from econe.client.session import Context

Handler = Callable[[Context, argparse.Namespace], None]


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Handler
    legacy: bool = True  # the Ruby tools had `econe-<name>`; we install that alias
    details: str = ""  # more text for `econe <name> --help`


# ---------------------------------------------------------------- ids and argument types


def normalize_id(prefix: str, value: str) -> str:
    """``5`` → ``<prefix>-00000005``; anything else is sent as given (the server judges it)."""
    value = value.strip()
    return f"{prefix}-{int(value):08d}" if value.isascii() and value.isdigit() else value


def split_list(values: list[str]) -> list[str]:
    """Items from several arguments, each possibly comma-separated."""
    items = [part.strip() for v in values for part in v.split(",") if part.strip()]
    if not items and values:
        raise UsageError("empty list of ids")
    return items


def id_list(prefix: str, values: list[str]) -> list[str]:
    return [normalize_id(prefix, item) for item in split_list(values)]


def instance_count(text: str) -> tuple[int, int]:
    """``N`` or ``MIN-MAX`` for ``-n/--instance-count``."""
    low, sep, high = text.partition("-")
    try:
        lo = int(low)
        hi = int(high) if sep else lo
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or MIN-MAX, not {text!r}") from None
    if lo < 1 or hi < lo:
        raise argparse.ArgumentTypeError(f"need 1 <= MIN <= MAX, not {text!r}")
    return lo, hi


def seconds(text: str) -> float:
    """A timeout: a positive number of seconds (argparse turns the error into usage, exit 2)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def ids_arg(p: argparse.ArgumentParser, what: str, required: bool) -> None:
    p.add_argument(
        "ids",
        nargs="+" if required else "*",
        metavar=f"{what.upper()}-ID",
        help=f"{what} ids, several arguments and/or comma-separated; a bare number N means "
        f"the padded id",
    )


def no_args(p: argparse.ArgumentParser) -> None:
    del p


def show_headers(ctx: Context) -> bool:
    return ctx.options.headers


def ids(what: str, required: bool) -> Callable[[argparse.ArgumentParser], None]:
    return lambda p: ids_arg(p, what, required)
