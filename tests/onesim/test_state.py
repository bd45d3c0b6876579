"""Persistence across restarts and concurrent state changes."""

from __future__ import annotations

import os
import stat
import threading
import xmlrpc.client
from pathlib import Path

from onesim.server import SimServer

from .conftest import One


def test_bootstrap_files(tmp_path: Path) -> None:
    s = SimServer(str(tmp_path / "st"), port=0, seed="none", speed=0)
    try:
        for name, line in (("one_auth", s.one_auth), ("ec2_auth", s.ec2_auth)):
            p = tmp_path / "st" / ".one" / name
            assert p.read_text().strip() == line
            assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
        assert s.one_auth.startswith("oneadmin:") and s.ec2_auth.startswith("serveradmin:")
        users = {u["name"]: u for u in s.sim.store.all("user")}
        assert users["oneadmin"]["id"] == 0 and users["serveradmin"]["id"] == 1
        assert users["serveradmin"]["auth_driver"] == "server_cipher"
        assert "demo" not in users
        assert sorted(d["name"] for d in s.sim.store.all("datastore")) == [
            "default",
            "files",
            "system",
        ]
    finally:
        s.stop()  # never started: must not block


def test_restart_keeps_everything(tmp_path: Path) -> None:
    d = str(tmp_path / "st")
    s = SimServer(d, port=0, speed=0).start()
    one = One(s.url)
    vid = one("one.template.instantiate", "demo:demo", 0, "keep", False, "", False)[1]
    one("one.vn.hold", s.one_auth, 1, 'LEASES=[IP="198.51.100.7"]')
    tok = one("one.user.login", "demo:demo", "demo", "", 3600)[1]
    before = one("one.vm.info", "demo:demo", vid)[1]
    auth = s.one_auth
    s.stop()

    s2 = SimServer(d, port=0, speed=0).start()
    try:
        one = One(s2.url)
        assert s2.one_auth == auth
        after = one("one.vm.info", "demo:demo", vid)[1]
        cut = before.index("<MONITORING>"), before.index("</MONITORING>")
        assert after[: cut[0]].split("<LAST_POLL>")[0] == before[: cut[0]].split("<LAST_POLL>")[0]
        assert after.split("</MONITORING>")[1] == before.split("</MONITORING>")[1]
        assert "<VM><![CDATA[-1]]></VM>" in one("one.vn.info", s2.one_auth, 1)[1]
        assert one("one.user.info", f"demo:{tok}", -1)[0]
        # id counters continue
        assert one("one.vm.allocate", "demo:demo", 'MEMORY="8"\nCPU="1"', True)[1] == vid + 1
        assert one("one.vn.hold", s2.one_auth, 1, 'LEASES=[IP="198.51.100.7"]')[0] is False
    finally:
        s2.stop()


def test_concurrent_hold_of_one_ip(sim) -> None:
    results: list[list] = []
    lock = threading.Lock()
    barrier = threading.Barrier(20)

    def worker() -> None:
        proxy = xmlrpc.client.ServerProxy(sim.url)
        barrier.wait()
        r = list(proxy.one.vn.hold(sim.one_auth, 1, 'LEASES=[IP="198.51.100.9"]'))
        with lock:
            results.append(r)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 20
    assert sum(1 for r in results if r[0]) == 1
    assert all(r[2] == 8192 for r in results if not r[0])


def test_concurrent_instantiate_unique_leases(sim) -> None:
    out: list[int] = []

    def worker() -> None:
        proxy = xmlrpc.client.ServerProxy(sim.url)
        for _ in range(5):
            r = proxy.one.template.instantiate("demo:demo", 0, "", False, "", False)
            out.append(r[1])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(out) == list(range(40))
    vn = One(sim.url)("one.vn.info", sim.one_auth, 0)[1]
    assert vn.count("<LEASE>") == 40
