"""All econe subcommands, in the order `econe --help` lists them."""

from __future__ import annotations

from econe.client import compute, resources
from econe.client.base import Command

COMMANDS: list[Command] = [*compute.COMMANDS, *resources.COMMANDS]
BY_NAME: dict[str, Command] = {c.name: c for c in COMMANDS}
