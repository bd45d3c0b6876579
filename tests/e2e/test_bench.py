"""The benchmarks run (tiny sizes, no timing asserted): `make bench` must not rot."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_gateway_bench_prints_its_ratios():
    out = run(str(BENCH / "gateway.py"), "--vms", "10", "--small", "5")
    assert re.search(r"10 VMs\s+oned call .* ratio +[\d.]+x .*gateway's own time", out), out
    assert re.search(r"5 small requests: .*overhead -?[\d.]+ ms per request", out), out
    assert "DescribeRegions (no oned call)" in out


def test_onesim_pool_bench_runs():
    out = run(str(BENCH / "onesim_pool.py"), "--vms", "50")
    assert re.search(r"served, warm cache : +[\d.]+ x baseline", out), out
