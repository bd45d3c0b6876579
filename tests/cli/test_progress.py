"""The upload progress bar, driven by a fake clock."""

from __future__ import annotations

import io

from econe.client.progress import Progress, human_bytes, human_duration


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_human_units():
    assert human_bytes(0) == "0 B"
    assert human_bytes(1023) == "1023 B"
    assert human_bytes(1024) == "1.0 KiB"
    assert human_bytes(5 * 1024**3) == "5.0 GiB"
    assert human_duration(59) == "0:59"
    assert human_duration(61) == "1:01"
    assert human_duration(3725) == "1:02:05"


def test_render_shows_bytes_percent_rate_and_eta():
    clock = FakeClock()
    bar = Progress(100 * 1024**2, stream=io.StringIO(), clock=clock, width=10)
    assert bar.render() == "[..........]   0%  0 B / 100.0 MiB  0 B/s  ETA --:--"
    clock.now += 5
    bar.done = 25 * 1024**2
    # 25 MiB in 5 s = 5 MiB/s; 75 MiB left → 15 s
    assert bar.render() == "[##........]  25%  25.0 MiB / 100.0 MiB  5.0 MiB/s  ETA 0:15"
    clock.now += 15
    bar.done = bar.total
    assert bar.render() == "[##########] 100%  100.0 MiB / 100.0 MiB  5.0 MiB/s  in 0:20"


def test_updates_are_throttled_and_redrawn_in_place():
    clock = FakeClock()
    out = io.StringIO()
    bar = Progress(1000, stream=out, clock=clock, width=4, interval=1.0)
    bar.update(100)  # first update always draws
    bar.update(100)  # same instant: throttled
    clock.now += 1
    bar.update(100)  # a second later: draws
    assert out.getvalue().count("\r") == 2
    bar.update(700)  # reaching 100 % always draws
    bar.finish()
    text = out.getvalue()
    assert text.count("\r") == 4 and text.endswith("\n")
    last = text.rstrip("\n").split("\r")[-1]
    assert "100%" in last and "1000 B / 1000 B" in last


def test_shorter_line_blanks_the_rest_of_the_previous_one():
    clock = FakeClock()
    out = io.StringIO()
    bar = Progress(10, stream=out, clock=clock, width=2, interval=0, label="x" * 20)
    bar.update(1)
    bar.label = ""
    bar.update(1)
    first, second = out.getvalue().split("\r")[1:]
    assert len(second) == len(first)


def test_empty_file():
    out = io.StringIO()
    bar = Progress(0, stream=out, clock=FakeClock())
    bar.finish()
    assert "100%" in out.getvalue()
