"""Security groups as oned 7.4 keeps them: the default group 0, rule checks, permissions, and
what VMs take from the groups their NICs name."""

from __future__ import annotations

import re

import pytest

from .conftest import One

DEMO = "demo:demo"
BOB = "bob:bobpw"
WEB = 'NAME="web"\nDESCRIPTION="web servers"\nRULE=[PROTOCOL="TCP",RULE_TYPE="inbound",RANGE="22,80:81"]\n'


def rules(xml: str) -> list[str]:
    return re.findall(r"<SECURITY_GROUP_RULE>(.*?)</SECURITY_GROUP_RULE>", xml)


def test_default_group_is_everyones_and_cannot_be_deleted(one: One, sim) -> None:
    ok, xml, *_ = one("one.secgroup.info", DEMO, 0)
    assert ok
    assert "<NAME>default</NAME>" in xml and "<UNAME>oneadmin</UNAME>" in xml
    assert "<OWNER_A>1</OWNER_A><GROUP_U>1</GROUP_U><GROUP_M>0</GROUP_M>" in xml
    assert "<OTHER_U>1</OTHER_U><OTHER_M>0</OTHER_M>" in xml
    assert one("one.secgroup.delete", DEMO, 0)[:3] == [
        False,
        "[one.secgroup.delete] User [2] : Not authorized to perform MANAGE SECGROUP [0].",
        512,
    ]
    assert one("one.secgroup.delete", sim.one_auth, 0)[:3] == [
        False,
        "[one.secgroup.delete] Cannot delete security group. The default security group "
        "(ID 0) cannot be deleted.",
        2048,
    ]


def test_allocate_checks_rules_and_names(one: One) -> None:
    assert one("one.secgroup.allocate", DEMO, WEB)[:2] == [True, 100]
    assert one("one.secgroup.allocate", DEMO, WEB)[:3] == [
        False,
        "[one.secgroup.allocate] Error allocating a new security group. NAME is already taken "
        "by SecurityGroup 100.",
        16384,
    ]
    for rule, why in (
        (
            'PROTOCOL="SCTP",RULE_TYPE="inbound"',
            "Wrong PROTOCOL in rule. Valid options: TCP, UDP, ICMP, ICMPV6, IPSEC, ALL.",
        ),
        (
            'PROTOCOL="ICMP",RULE_TYPE="inbound",RANGE="22"',
            "RANGE is supported only for TCP and UDP protocols.",
        ),
        (
            'PROTOCOL="TCP",RULE_TYPE="inbound",RANGE="90:80"',
            "RANGE BEGIN value is greater than RANGE END value",
        ),
        ('PROTOCOL="TCP",RULE_TYPE="inbound",RANGE="70000"', "RANGE out of bounds 0-65536."),
        (
            'PROTOCOL="TCP",RULE_TYPE="sideways"',
            "Wrong RULE_TYPE in rule. Valid options: INBOUND, OUTBOUND.",
        ),
        ('PROTOCOL="TCP",RULE_TYPE="inbound",IP="10.0.0.0"', "Wrong or empty SIZE."),
        ('PROTOCOL="TCP",RULE_TYPE="inbound",IP="10.0.0",SIZE="4"', "Wrong format for IP value."),
        (
            'PROTOCOL="TCP",RULE_TYPE="inbound",ICMP_TYPE="8"',
            "ICMP_TYPE is supported only for ICMP protocol.",
        ),
    ):
        answer = one("one.secgroup.allocate", DEMO, f'NAME="bad"\nRULE=[{rule}]')
        assert answer[:3] == [
            False,
            f"[one.secgroup.allocate] Error allocating a new security group. {why}",
            16384,
        ], rule
    # oned counts a name's bytes (std::string::length), not its characters: 64 "é" are 128
    assert one("one.secgroup.allocate", DEMO, 'NAME="' + "é" * 65 + '"')[:3] == [
        False,
        "[one.secgroup.allocate] Error allocating a new security group. Invalid NAME, max "
        "length is 128 chars",
        16384,
    ]
    assert one("one.secgroup.allocate", DEMO, 'NAME="' + "é" * 64 + '"')[0] is True
    # duplicates go, whatever the order of their attributes
    twice = 'NAME="twice"\nRULE=[PROTOCOL="UDP",RULE_TYPE="outbound"]\nRULE=[RULE_TYPE="outbound",PROTOCOL="UDP"]'
    sid = one("one.secgroup.allocate", DEMO, twice)[1]
    assert len(re.findall("<RULE>", one("one.secgroup.info", DEMO, sid)[1])) == 1


def test_owner_only_and_update_checks(one: One, sim) -> None:
    assert one("one.user.allocate", sim.one_auth, "bob", "bobpw", "core", [1])[0]
    sid = one("one.secgroup.allocate", DEMO, WEB)[1]
    assert one("one.secgroup.info", BOB, sid)[:3] == [
        False,
        f"[one.secgroup.info] User [3] : Not authorized to perform USE SECGROUP [{sid}].",
        512,
    ]
    assert (
        "SECURITY_GROUP_POOL><SECURITY_GROUP><ID>0<"
        in one("one.secgrouppool.info", BOB, -2, -1, -1)[1]
    )
    assert f"<ID>{sid}</ID>" not in one("one.secgrouppool.info", BOB, -2, -1, -1)[1]
    assert one("one.secgroup.update", DEMO, sid, 'RULE=[PROTOCOL="TCP",RULE_TYPE="up"]', 1)[:3] == [
        False,
        "[one.secgroup.update] Cannot update template. Wrong RULE_TYPE in rule. Valid options: "
        "INBOUND, OUTBOUND.",
        8192,
    ]
    assert "RANGE><![CDATA[22,80:81]]>" in one("one.secgroup.info", DEMO, sid)[1]  # unchanged
    assert one("one.secgroup.delete", DEMO, 999)[:3] == [
        False,
        "[one.secgroup.delete] Error getting security group [999].",
        1024,
    ]


def group_with_a_vm(one: One) -> tuple[int, int]:
    """demo's new group `web` and a VM of demo's whose NIC is in it."""
    sid = one("one.secgroup.allocate", DEMO, WEB)[1]
    vid = one(
        "one.vm.allocate",
        DEMO,
        f'NAME="v"\nCPU=1\nMEMORY=64\nNIC=[NETWORK_ID=0,SECURITY_GROUPS="{sid}"]',
    )[1]
    return sid, vid


def test_vm_takes_the_rules_of_its_groups(one: One) -> None:
    sid, vid = group_with_a_vm(one)
    vm = one("one.vm.info", DEMO, vid)[1]
    # the NIC's groups and the network's (0), as a sorted set; rules in group order
    assert f"<SECURITY_GROUPS><![CDATA[0,{sid}]]></SECURITY_GROUPS>" in vm
    got = rules(vm)
    assert len(got) == 3 and "<SECURITY_GROUP_NAME><![CDATA[web]]>" in got[2]
    assert "<RANGE><![CDATA[22,80:81]]></RANGE>" in got[2]
    sg = one("one.secgroup.info", DEMO, sid)[1]
    assert f"<UPDATED_VMS><ID>{vid}</ID></UPDATED_VMS>" in sg
    assert one("one.secgroup.delete", DEMO, sid)[:2] == [
        False,
        "[one.secgroup.delete] Cannot delete security group. The security group has VMs using it",
    ]
    # a change reaches the VMs in the group
    one("one.secgroup.update", DEMO, sid, 'RULE=[PROTOCOL="UDP",RULE_TYPE="outbound"]', 1)
    got = rules(one("one.vm.info", DEMO, vid)[1])
    assert len(got) == 3 and "<PROTOCOL><![CDATA[UDP]]>" in got[2]
    one("one.vm.action", DEMO, "terminate-hard", vid)
    assert "<UPDATED_VMS></UPDATED_VMS>" in one("one.secgroup.info", DEMO, sid)[1]
    assert one("one.secgroup.delete", DEMO, sid)[:2] == [True, sid]


def test_a_vm_whose_rules_cannot_be_set_up_is_in_error_vms(one: One, sim) -> None:
    """LifeCycleManager::trigger_updatesg: an ACTIVE VM in a state oned cannot set rules up in
    (UNKNOWN here) keeps its old rules and goes to ERROR_VMS; the group is still in use
    (SecurityGroup::get_vms counts every set) until the VM leaves it."""
    sid, vid = group_with_a_vm(one)
    with sim.sim.lock:
        vm = sim.sim.store.get("vm", vid)
        vm["state"], vm["lcm_state"] = 3, 16  # ACTIVE/UNKNOWN: oned lost its host
        sim.sim.store.put("vm", vm)
    assert one("one.secgroup.update", DEMO, sid, 'RULE=[PROTOCOL="UDP",RULE_TYPE="outbound"]', 1)[0]
    sg = one("one.secgroup.info", DEMO, sid)[1]
    assert "<UPDATED_VMS></UPDATED_VMS>" in sg and f"<ERROR_VMS><ID>{vid}</ID></ERROR_VMS>" in sg
    assert "UDP" not in "".join(rules(one("one.vm.info", DEMO, vid)[1]))  # the old rules
    assert one("one.secgroup.delete", DEMO, sid)[:2] == [
        False,
        "[one.secgroup.delete] Cannot delete security group. The security group has VMs using it",
    ]
    one("one.vm.action", DEMO, "terminate-hard", vid)
    assert "<ERROR_VMS></ERROR_VMS>" in one("one.secgroup.info", DEMO, sid)[1]
    assert one("one.secgroup.delete", DEMO, sid)[:2] == [True, sid]


def test_vm_cannot_use_another_users_group(one: One, sim) -> None:
    assert one("one.user.allocate", sim.one_auth, "bob", "bobpw", "core", [1])[0]
    sid = one("one.secgroup.allocate", DEMO, WEB)[1]
    answer = one(
        "one.vm.allocate",
        BOB,
        f'NAME="v"\nCPU=1\nMEMORY=64\nNIC=[NETWORK_ID=0,SECURITY_GROUPS="{sid}"]',
    )
    assert answer[:3] == [
        False,
        f"[one.vm.allocate] User [3] : Not authorized to perform USE SECGROUP [{sid}].",
        512,
    ]


@pytest.mark.parametrize("flag", [-3, -2, -1])
def test_pool_filters(one: One, flag: int) -> None:
    sid = one("one.secgroup.allocate", DEMO, WEB)[1]
    xml = one("one.secgrouppool.info", DEMO, flag, -1, -1)[1]
    assert f"<ID>{sid}</ID>" in xml
    # the default group is oneadmin's: among what the user may use, not among the user's own
    # or the user's group's
    assert ("<ID>0</ID>" in xml) == (flag == -2)


def test_attach_and_detach_groups_on_a_vm(one: One, sim) -> None:
    sid = one("one.secgroup.allocate", DEMO, WEB)[1]
    vid = one("one.vm.allocate", DEMO, 'NAME="v"\nCPU=1\nMEMORY=64\nNIC=[NETWORK_ID=0]')[1]
    assert one("one.vm.attachsg", DEMO, vid, 0, sid)[:2] == [True, vid]
    vm = one("one.vm.info", DEMO, vid)[1]
    assert f"<SECURITY_GROUPS><![CDATA[0,{sid}]]></SECURITY_GROUPS>" in vm
    assert len(rules(vm)) == 3
    assert f"<UPDATED_VMS><ID>{vid}</ID></UPDATED_VMS>" in one("one.secgroup.info", DEMO, sid)[1]
    for args, answer in (
        ((vid, 0, sid), [False, f"[one.vm.attachsg] VM {vid} SG {sid} already in NIC 0", 2048]),
        ((vid, 7, sid), [False, f"[one.vm.attachsg] VM {vid} doesn't have NIC id 7", 8192]),
        (
            (vid, 0, 555),
            [False, "[one.vm.attachsg] Could not attach SG 555 to VM, SG does not exist", 2048],
        ),
        ((999, 0, sid), [False, "[one.vm.attachsg] Error getting virtual machine [999].", 1024]),
    ):
        assert one("one.vm.attachsg", DEMO, *args)[:3] == answer, args
    assert one("one.vm.detachsg", DEMO, vid, 0, 0)[:2] == [True, vid]
    vm = one("one.vm.info", DEMO, vid)[1]
    assert f"<SECURITY_GROUPS><![CDATA[{sid}]]></SECURITY_GROUPS>" in vm
    assert len(rules(vm)) == 1
    default = one("one.secgroup.info", DEMO, 0)[1]
    assert "<UPDATED_VMS></UPDATED_VMS>" in default  # the VM left group 0
    assert one("one.vm.detachsg", DEMO, vid, 0, 0)[:3] == [
        False,
        f"[one.vm.detachsg] VM {vid} NIC 0 doesn't contain SG 0",
        2048,
    ]
    assert one("one.vm.detachsg", DEMO, vid, 0, sid)[:2] == [True, vid]
    assert rules(one("one.vm.info", DEMO, vid)[1]) == []
    assert "<UPDATED_VMS></UPDATED_VMS>" in one("one.secgroup.info", DEMO, sid)[1]
    # another user's group cannot be attached
    assert one("one.user.allocate", sim.one_auth, "bob", "bobpw", "core", [1])[0]
    bobs = one("one.secgroup.allocate", BOB, 'NAME="b"')[1]
    assert one("one.vm.attachsg", DEMO, vid, 0, bobs)[:3] == [
        False,
        f"[one.vm.attachsg] User [2] : Not authorized to perform USE SECGROUP [{bobs}].",
        512,
    ]


def test_nic_detach_leaves_the_groups_no_other_nic_has(one: One) -> None:
    sid = one("one.secgroup.allocate", DEMO, WEB)[1]
    vid = one("one.vm.allocate", DEMO, 'NAME="v"\nCPU=1\nMEMORY=64\nNIC=[NETWORK_ID=0]')[1]
    assert one("one.vm.attachnic", DEMO, vid, f'NIC=[NETWORK_ID=0,SECURITY_GROUPS="{sid}"]')[0]
    vm = one("one.vm.info", DEMO, vid)[1]
    assert len(rules(vm)) == 3  # group 0's two (once), and web's
    assert f"<ID>{vid}</ID>" in one("one.secgroup.info", DEMO, sid)[1]
    assert one("one.vm.detachnic", DEMO, vid, 1)[0]
    vm = one("one.vm.info", DEMO, vid)[1]
    assert len(rules(vm)) == 2 and "web" not in vm
    assert "<UPDATED_VMS></UPDATED_VMS>" in one("one.secgroup.info", DEMO, sid)[1]


def test_address_range_groups_and_odd_numbers(one: One, sim) -> None:
    sid = one("one.secgroup.allocate", DEMO, WEB)[1]
    empty = one("one.secgroup.allocate", DEMO, 'NAME="empty"')[1]
    ar = f'AR=[TYPE="IP4",IP="10.9.0.1",SIZE="4",SECURITY_GROUPS="{sid}"]'
    assert one("one.vn.add_ar", sim.one_auth, 0, ar)[0]
    # the leased range's groups join the NIC's; a number in other digits is no group id
    vid = one(
        "one.vm.allocate",
        DEMO,
        f'NAME="v"\nCPU=1\nMEMORY=64\nNIC=[NETWORK_ID=0,IP="10.9.0.1",SECURITY_GROUPS="١٠٢,{empty}"]',
    )[1]
    assert vid >= 0, vid
    vm = one("one.vm.info", DEMO, vid)[1]
    assert f"<SECURITY_GROUPS><![CDATA[0,{sid},{empty}]]></SECURITY_GROUPS>" in vm
    # a group left on no NIC... and one with no rules leaves the VM even when a NIC keeps it
    assert one("one.vm.attachnic", DEMO, vid, f'NIC=[NETWORK_ID=0,SECURITY_GROUPS="{empty}"]')[0]
    assert f"<ID>{vid}</ID>" in one("one.secgroup.info", DEMO, empty)[1]
    assert one("one.vm.detachsg", DEMO, vid, 0, empty)[0]
    assert "<UPDATED_VMS></UPDATED_VMS>" in one("one.secgroup.info", DEMO, empty)[1]


def test_attachsg_authorizes_the_networks_groups_and_reads_numbers_as_oned(one: One, sim) -> None:
    sid = one("one.secgroup.allocate", DEMO, WEB)[1]
    admins = one("one.secgroup.allocate", sim.one_auth, 'NAME="admins"')[1]
    vid = one("one.vm.allocate", DEMO, 'NAME="v"\nCPU=1\nMEMORY=64\nNIC=[NETWORK_ID=0]')[1]
    assert one("one.vn.update", sim.one_auth, 0, f'SECURITY_GROUPS="0,{admins}"', 1)[0]
    assert one("one.vm.attachsg", DEMO, vid, 0, sid)[:3] == [
        False,
        f"[one.vm.attachsg] User [2] : Not authorized to perform USE SECGROUP [{admins}].",
        512,
    ]
    # split_unique reads each piece as `istringstream >> int` does: "+N" and "Nabc" are N
    assert one("one.vn.update", sim.one_auth, 0, 'SECURITY_GROUPS="0"', 1)[0]
    vid2 = one(
        "one.vm.allocate",
        DEMO,
        f'NAME="w"\nCPU=1\nMEMORY=64\nNIC=[NETWORK_ID=0,SECURITY_GROUPS="+{sid},7abc,x"]',
    )[1]
    assert vid2 >= 0, vid2
    assert f"<SECURITY_GROUPS><![CDATA[0,7,{sid}]]>" in one("one.vm.info", DEMO, vid2)[1]
