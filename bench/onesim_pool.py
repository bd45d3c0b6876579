"""Benchmark: ``one.vmpool.infoextended`` (and ``one.vmpool.info``) over 10,000 VMs in onesim.

Run: ``.venv/bin/python bench/onesim_pool.py [--vms N]``. Figures are printed as ratios against
a baseline measured in the same run on the same machine: parsing the very same response body
with the stdlib XML-RPC parser (``xmlrpc.client.loads``), i.e. the least any client must pay to
receive it. Absolute seconds are printed for information only.

"cold" clears the render cache first, so every VM body is rendered during the call; "warm" is
the normal case, because the server renders the pool bodies of every VM a request changed
before answering it (and caches them until the VM changes again).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import urllib.request
import xmlrpc.client
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from onesim import template as T  # noqa: E402
from onesim.methods.vm import _new_vm  # noqa: E402
from onesim.methods.vnet import new_vnet  # noqa: E402
from onesim.server import SimServer  # noqa: E402


def populate(s: SimServer, n: int) -> None:
    sim = s.sim
    with sim.lock:
        admin = sim.caller_for(sim.store.get("user", 0))
        demo = sim.caller_for(sim.store.get("user", 2))
        net = new_vnet(
            sim,
            0,
            1,
            T.parse(
                f'NAME="bench"\nVN_MAD="dummy"\nAR=[TYPE="IP4", IP="10.128.0.1", SIZE="{n + 10}"]'
            ),
            perms=[1, 1, 0, 1, 0, 0, 0, 0, 0],
        )
        tmpl = T.parse(
            f'NAME="vm"\nCPU="1"\nVCPU="1"\nMEMORY="512"\nDISK=[IMAGE_ID="0"]\n'
            f'NIC=[NETWORK_ID="{net}"]\nCONTEXT=[NETWORK="YES"]\nEC2_INSTANCE_TYPE="m1.small"\n'
        )
        _ = admin
        for i in range(n):
            t = [[k, [list(p) for p in v] if isinstance(v, list) else v] for k, v in tmpl]
            _new_vm(sim, demo, t, False, f"vm-{i}")
        sim.advance()
        sim.store.flush()


def call(url: str, body: bytes) -> bytes:
    req = urllib.request.Request(url, body, {"Content-Type": "text/xml"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.read()


def best(fn, runs: int = 3) -> tuple[float, object]:
    t_best, out = float("inf"), None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        t_best = min(t_best, time.perf_counter() - t)
    return t_best, out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vms", type=int, default=10_000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        s = SimServer(d, port=0, seed="demo", speed=0).start()
        try:
            t0 = time.perf_counter()
            populate(s, a.vms)
            t_pop = time.perf_counter() - t0
            results = {}
            for method in ("one.vmpool.infoextended", "one.vmpool.info"):
                body = xmlrpc.client.dumps(("demo:demo", -2, -1, -1, -1), method).encode()
                with s.sim.lock:
                    s.sim.store.cache.clear()  # cold: every body rendered during the call
                t_first = time.perf_counter()
                raw = call(s.url, body)
                t_first = time.perf_counter() - t_first
                t_warm, raw = best(lambda body=body: call(s.url, body))
                t_parse, parsed = best(lambda raw=raw: xmlrpc.client.loads(raw))
                assert parsed[0][0][0] is True and parsed[0][0][1].count("<VM>") == a.vms
                results[method] = (t_first, t_warm, t_parse, len(raw))
        finally:
            s.stop()
    print(f"onesim pool benchmark: {a.vms} VMs (populated in {t_pop:.1f} s)")
    print("baseline = xmlrpc.client.loads() of the same response body, same run")
    for method, (t_first, t_warm, t_parse, size) in results.items():
        print(f"{method}: {size / 1e6:.1f} MB")
        print(f"  served, cold cache : {t_first / t_parse:5.2f} x baseline  ({t_first:.3f} s)")
        print(f"  served, warm cache : {t_warm / t_parse:5.2f} x baseline  ({t_warm:.3f} s)")
        print(f"  baseline parse     :  1.00 x baseline  ({t_parse:.3f} s)")
    ok = results["one.vmpool.infoextended"][1] < 1.0
    print("infoextended over 10,000 VMs under 1 s (warm):", "yes" if ok else "NO")
    return 0


if __name__ == "__main__":
    sys.exit(main())
