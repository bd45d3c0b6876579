"""Wire conventions: result arrays, <i8> replication index, xmlrpc-c faults."""

from __future__ import annotations

import http.client
import urllib.parse
import xmlrpc.client

import pytest

from .conftest import One


def raw(url: str, body: str) -> str:
    u = urllib.parse.urlparse(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    c.request("POST", u.path, body, {"Content-Type": "text/xml"})
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Content-type") == "text/xml; charset=utf-8"
    return r.read().decode()


def test_failure_has_i8_replication_index(sim) -> None:
    body = xmlrpc.client.dumps(("demo:demo", 999), "one.vm.info")
    out = raw(sim.url, body)
    assert (
        "<value><i4>1024</i4></value>\r\n<value><i4>999</i4></value>\r\n<value><i8>-1</i8>" in out
    )
    assert "<value><string>[one.vm.info] Error getting virtual machine [999].</string>" in out


def test_success_array(one: One, sim) -> None:
    assert one("one.system.version", sim.one_auth) == [True, "7.4.0", 0]
    assert one("one.system.version", "oneadmin:bad") == [
        False,
        "[one.system.version] User couldn't be authenticated, aborting call.",
        256,
        -1,
        -1,
    ]


@pytest.mark.parametrize(
    ("method", "args", "msg"),
    [
        ("one.vm.info", ("S",), "Not enough parameters"),
        ("one.vm.info", ("S", "0"), "Parameter that is supposed to be integer is not"),
        ("one.vm.info", ("S", True), "Parameter that is supposed to be integer is not"),
        ("one.vm.info", ("S", 0, 1), "Parameter that is supposed to be boolean is not"),
        ("one.vm.update", ("S", 0, "A=1", True), "Parameter that is supposed to be integer is not"),
        ("one.vm.action", ("S", 0, 0), "Parameter that is supposed to be a string is not"),
        ("one.vm.info", (5, 0), "Parameter that is supposed to be a string is not"),
        (
            "one.user.allocate",
            ("S", "a", "b", "core", "x"),
            "Parameter that is supposed to be an array is not",
        ),
    ],
)
def test_type_faults(sim, method: str, args: tuple, msg: str) -> None:
    args = tuple(sim.one_auth if a == "S" else a for a in args)
    with pytest.raises(xmlrpc.client.Fault) as e:
        One(sim.url)(method, *args)
    assert (e.value.faultCode, e.value.faultString) == (-501, msg)


def test_unknown_method(sim) -> None:
    with pytest.raises(xmlrpc.client.Fault) as e:
        One(sim.url)("one.foo.bar", sim.one_auth)
    assert (e.value.faultCode, e.value.faultString) == (-506, "Method 'one.foo.bar' not defined")


def test_malformed_call(sim) -> None:
    out = raw(sim.url, "<methodCall><nope")
    assert "<i4>-503</i4>" in out and "Call XML not a proper XML-RPC call." in out


def test_xml_escaping_of_bodies(one: One) -> None:
    r = one("one.vm.allocate", "demo:demo", 'NAME="a<b"\nMEMORY="8"\nCPU="1"', True)
    assert r == [False, "[one.vm.allocate] Invalid NAME, char '<' is not allowed", 8192, -1, -1]
    r = one(
        "one.vm.allocate",
        "demo:demo",
        "<TEMPLATE><MEMORY>8</MEMORY><CPU>1</CPU>"
        "<NOTE><![CDATA[x]]]]><![CDATA[>y<&]]></NOTE></TEMPLATE>",
        True,
    )
    xml = one("one.vm.info", "demo:demo", r[1])[1]
    assert "<NOTE><![CDATA[x]]]]><![CDATA[>y<&]]></NOTE>" in xml


def test_system_config(one: One, sim) -> None:
    assert "<API_LIST_ORDER><![CDATA[DESC]]>" in one("one.system.config", sim.one_auth)[1]
    assert (
        one("one.system.config", "demo:demo")[1]
        == "<OPENNEBULA_CONFIGURATION></OPENNEBULA_CONFIGURATION>"
    )
