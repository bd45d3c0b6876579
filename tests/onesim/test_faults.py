"""Fault hooks: injected failures, XML-RPC faults, latency, hang-ups; admin only."""

from __future__ import annotations

import http.client
import time
import xmlrpc.client

import pytest

from .conftest import One


def test_fault_failure_then_normal(one: One, sim) -> None:
    A = sim.one_auth
    assert one("onesim.fault.set", A, "one.vm.info", 2048, "boom", 0, 1) == [True, 0, 0]
    assert one("one.vm.info", "demo:demo", 0) == [False, "[one.vm.info] boom", 2048, -1, -1]
    assert one("one.vm.info", "demo:demo", 0)[2] == 1024  # rule used up: normal answer


def test_fault_xmlrpc_fault_and_wildcard(one: One, sim) -> None:
    A = sim.one_auth
    one("onesim.fault.set", A, "*", -32500, "down", 0, 0)
    for _ in range(3):
        with pytest.raises(xmlrpc.client.Fault) as e:
            one("one.system.version", A)
        assert e.value.faultCode == -32500
    assert one("onesim.fault.clear", A) == [True, 0, 0]
    assert one("one.system.version", A) == [True, "7.4.0", 0]


def test_fault_latency(one: One, sim) -> None:
    one("onesim.fault.set", sim.one_auth, "one.system.version", 0, "", 0.3, 1)
    t = time.time()
    assert one("one.system.version", sim.one_auth)[0]
    assert time.time() - t >= 0.3


def test_fault_hang(one: One, sim) -> None:
    # count 2: xmlrpc.client retries once after a dropped connection
    one("onesim.fault.set", sim.one_auth, "one.vmpool.info", 0, "hang", 0.2, 2)
    with pytest.raises(
        (http.client.RemoteDisconnected, ConnectionError, xmlrpc.client.ProtocolError)
    ):
        one("one.vmpool.info", "demo:demo", -2, -1, -1, -1)
    assert one("one.vmpool.info", "demo:demo", -2, -1, -1, -1)[0]


def test_fault_admin_only(one: One) -> None:
    r = one("onesim.fault.set", "demo:demo", "*", 1, "x", 0, 1)
    assert r == [
        False,
        "[onesim.fault.set] User couldn't be authenticated, aborting call.",
        256,
        -1,
        -1,
    ]
    assert one("one.system.version", "demo:demo")[0]
