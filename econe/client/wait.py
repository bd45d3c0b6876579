"""``--wait``: after an action, poll its Describe action until the resources reach the state the
action leads to, for at most ``--wait-timeout`` seconds (then exit 4, EXIT_WAIT_TIMEOUT).

Actions on a cloud finish after their answer (a new instance is `pending`, a new volume
`creating`), and the next action refuses them meanwhile: scripts need to wait.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from econe.client.base import seconds
from econe.client.errors import CliError, WaitTimeout
from econe.client.output import field
from econe.client.session import Context

WAIT_TIMEOUT = 600.0  # as AWS's waiters (40 polls 15 s apart): a real cloud copies disks
FIRST_DELAY = 0.5  # seconds between polls, doubling up to MAX_DELAY
MAX_DELAY = 5.0

Record = dict[str, Any]


@dataclass(frozen=True)
class Kind:
    """How to list resources of one kind by id (a filter: one that is gone is no error) and
    read the state waited for."""

    operation: str
    list_key: str
    id_key: str
    filter: str
    state: Callable[[Record], Any]
    records: Callable[[Record], list[Record]]


INSTANCES = Kind(
    "describe_instances",
    "Reservations",
    "InstanceId",
    "instance-id",
    field("State", "Name"),
    lambda r: [i for res in r.get("Reservations", []) for i in res.get("Instances", [])],
)
VOLUMES = Kind(
    "describe_volumes",
    "Volumes",
    "VolumeId",
    "volume-id",
    field("State"),
    lambda r: r.get("Volumes", []),
)
# a volume's attachment: none left means the attachment failed or was undone
ATTACHMENTS = dataclasses.replace(
    VOLUMES, state=lambda v: field("Attachments", 0, "State")(v) or "detached"
)
IMAGES = Kind(
    "describe_images",
    "Images",
    "ImageId",
    "image-id",
    field("State"),
    lambda r: r.get("Images", []),
)


def add_wait_options(p: argparse.ArgumentParser, until: str) -> None:
    p.add_argument(
        "--wait",
        action="store_true",
        help=f"return once {until}, printing that state (exit 4 after --wait-timeout)",
    )
    p.add_argument(
        "--wait-timeout",
        type=seconds,
        metavar="SECONDS",
        help=f"how long --wait waits (default {WAIT_TIMEOUT:g}); implies --wait",
    )


def wanted(args: argparse.Namespace) -> bool:
    return args.wait or args.wait_timeout is not None


def wait_for(
    ctx: Context,
    args: argparse.Namespace,
    kind: Kind,
    ids: list[str],
    goal: str,
    failures: Collection[str] = (),
    gone_is_goal: bool = False,
) -> dict[str, Record]:
    """Poll until every one of `ids` is in state `goal`; → the last record of each (one gone
    has none). A state in `failures`, or a resource gone (unless that is the goal), is an
    error at once: waiting longer would not bring it to `goal`."""
    limit = args.wait_timeout or WAIT_TIMEOUT
    deadline = time.monotonic() + limit
    delay = FIRST_DELAY
    while True:
        response = ctx.call_all(
            kind.operation, kind.list_key, Filters=[{"Name": kind.filter, "Values": ids}]
        )
        found = {r.get(kind.id_key): r for r in kind.records(response)}
        waiting = []
        for id_ in ids:
            state = kind.state(found[id_]) if id_ in found else None
            if state == goal or (state is None and gone_is_goal):
                continue
            if state is None or state in failures:
                reason = field("StateReason", "Message")(found.get(id_, {}))
                raise CliError(
                    f"{id_} is {state or 'gone'}, not {goal}" + (f" ({reason})" if reason else "")
                )
            waiting.append(f"{id_} is {state}")
        if not waiting:
            return found
        left = deadline - time.monotonic()
        if left <= 0:
            raise WaitTimeout(
                f"gave up waiting for {goal} after {limit:g} s (--wait-timeout): "
                + ", ".join(waiting)
            )
        if ctx.options.verbose:
            ctx.note(f"waiting for {goal}: {', '.join(waiting)}")
        time.sleep(min(delay, left))
        delay = min(delay * 2, MAX_DELAY)


@contextmanager
def shown_if_failing(show: Callable[[], None]) -> Iterator[None]:
    """Print what the action answered (`show`) if the wait fails: it was done all the same,
    and a script needs its ids (of instances launched, say)."""
    try:
        yield
    except CliError:
        show()
        raise
