"""A one-line progress bar for uploads: bytes sent, percent, rate and ETA, on stderr."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(n: float) -> str:
    for unit in _UNITS:
        if abs(n) < 1024 or unit == _UNITS[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Call ``update(n)`` as bytes go out and ``finish()`` at the end.

    The line is redrawn at most every ``interval`` seconds (always at 100 %). ``clock`` is
    injectable so tests can drive time. The rate is the average since the start, which is
    steadier than an instantaneous rate for one large file.
    """

    def __init__(
        self,
        total: int,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        width: int = 30,
        interval: float = 0.2,
        label: str = "",
    ):
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.width = width
        self.interval = interval
        self.label = label
        self.started = clock()
        self._last_draw: float | None = None
        self._last_len = 0

    def render(self) -> str:
        elapsed = self.clock() - self.started
        fraction = self.done / self.total if self.total else 1.0
        filled = int(self.width * min(fraction, 1.0))
        bar = "#" * filled + "." * (self.width - filled)
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if self.done >= self.total:
            eta = f"in {human_duration(elapsed)}"
        elif rate > 0:
            eta = f"ETA {human_duration((self.total - self.done) / rate)}"
        else:
            eta = "ETA --:--"
        prefix = f"{self.label} " if self.label else ""
        return (
            f"{prefix}[{bar}] {fraction * 100:3.0f}%  "
            f"{human_bytes(self.done)} / {human_bytes(self.total)}  "
            f"{human_bytes(rate)}/s  {eta}"
        )

    def _draw(self) -> None:
        line = self.render()
        pad = " " * max(0, self._last_len - len(line))
        self.stream.write("\r" + line + pad)
        self.stream.flush()
        self._last_len = len(line)
        self._last_draw = self.clock()

    def update(self, n: int) -> None:
        self.done += n
        now = self.clock()
        if (
            self._last_draw is None
            or now - self._last_draw >= self.interval
            or self.done >= self.total
        ):
            self._draw()

    def finish(self) -> None:
        self._draw()
        self.stream.write("\n")
        self.stream.flush()
