"""CONTEXT variables as oned expands them (VirtualMachine::parse_context_variables): at
allocation and at updateconf, in every CONTEXT value, with no escape for `$`."""

from __future__ import annotations

import pytest
from lxml import etree

from .conftest import One

D = "demo:demo"
VM = 'NAME="ctx"\nCPU="0.1"\nMEMORY="64"\nNIC=[NETWORK_ID="0"]\nFOO="bar"\n'


def _context(one: One, vid: int) -> dict[str, str]:
    ctx = etree.fromstring(one("one.vm.info", D, vid)[1].encode()).find("TEMPLATE/CONTEXT")
    return {c.tag: c.text or "" for c in ctx}


@pytest.fixture
def demo_key(one: One) -> str:
    uid = int(etree.fromstring(one("one.user.info", D, -1)[1].encode()).findtext("ID"))
    assert one("one.user.update", D, uid, 'SSH_PUBLIC_KEY="ssh-ed25519 AAAA me@home"', 1)[0]
    return "ssh-ed25519 AAAA me@home"


def test_variables_are_expanded_in_every_context_value(one: One, demo_key: str) -> None:
    context = (
        'CONTEXT=[NETWORK="YES", KEY="$USER[SSH_PUBLIC_KEY]", WHO="$UNAME x", IP="$NIC[IP]",'
        ' NET="$NETWORK[GATEWAY, NETWORK_ID=\\"0\\"]", MINE="$FOO/$CPU", NONE="a$NOTHING",'
        ' VEC="$NIC[NOPE]-b", KEPT="c\\$UNAME", NOVAR="$USER[PASSWORD]"]'
    )
    ok, vid, *_ = one("one.vm.allocate", D, VM + context, False)
    assert ok, vid
    ctx = _context(one, vid)
    assert ctx["KEY"] == demo_key and ctx["WHO"] == "demo x"
    assert ctx["IP"] == ctx["ETH0_IP"] and ctx["IP"]
    assert ctx["NET"] == ctx["ETH0_GATEWAY"] == "10.0.0.1"
    assert ctx["MINE"] == "bar/0.1"  # user template attributes too, then the template's
    assert ctx["NONE"] == "a" and ctx["VEC"] == "-b" and ctx["NOVAR"] == ""
    assert ctx["KEPT"] == "c\\$UNAME"  # `\$` stops a variable, and stays


@pytest.mark.parametrize("value", ["$ x", "a$", "$NETWORK[", "$NIC[IP]x", "$$A"])
def test_a_dollar_without_a_variable_is_refused_and_nothing_is_taken(one: One, value: str) -> None:
    before = one("one.vmpool.info", D, -1, -1, -1, -1)[1]
    ok, message, code, *_ = one("one.vm.allocate", D, VM + f'CONTEXT=[A="{value}"]', False)
    assert not ok and code == 8192
    assert "Error parsing" in message and "syntax error" in message
    assert one("one.vmpool.info", D, -1, -1, -1, -1)[1] == before
    ok, vid, *_ = one("one.vm.allocate", D, VM + 'CONTEXT=[A="1"]', False)  # its lease is free
    assert ok and _context(one, vid)["A"] == "1"


def test_updateconf_expands_the_new_values(one: One, demo_key: str) -> None:
    ok, vid, *_ = one("one.vm.allocate", D, VM + 'CONTEXT=[A="1"]', True)
    assert ok, vid
    assert one("one.vm.updateconf", D, vid, 'CONTEXT=[B="$UNAME", K="$USER[SSH_PUBLIC_KEY]"]', 1)[0]
    ctx = _context(one, vid)
    assert ctx["A"] == "1" and ctx["B"] == "demo" and ctx["K"] == demo_key
    assert not one("one.vm.updateconf", D, vid, 'CONTEXT=[C="$ "]', 1)[0]
    assert "C" not in _context(one, vid)
