"""Authorization and pool filters: users never see or change each other's private objects."""

from __future__ import annotations

import re

import pytest

from .conftest import One

BOB = "bob:bobpw"


@pytest.fixture
def two(sim, one: One) -> One:
    assert one("one.user.allocate", sim.one_auth, "bob", "bobpw", "core", [1]) == [True, 3, 0]
    return one


def ids(xml: str, tag: str) -> list[int]:
    return [int(x) for x in re.findall(rf"<{tag}><ID>(\d+)</ID>", xml)]


def test_other_users_vm(two: One) -> None:
    vid = two("one.template.instantiate", "demo:demo", 0, "mine", False, "", False)[1]
    assert two("one.vm.info", BOB, vid) == [
        False,
        f"[one.vm.info] User [3] : Not authorized to perform USE VM [{vid}].",
        512,
        -1,
        -1,
    ]
    assert two("one.vm.action", BOB, "terminate", vid) == [
        False,
        f"[one.vm.action] User [3] : Not authorized to perform MANAGE VM [{vid}].",
        512,
        -1,
        -1,
    ]
    assert two("one.vm.update", BOB, vid, 'A="1"', 1)[2] == 512
    assert two("one.vmpool.info", BOB, -2, -1, -1, -2)[1] == "<VM_POOL></VM_POOL>"
    assert two("one.vmpool.infoextended", BOB, -2, -1, -1, -2)[1] == "<VM_POOL></VM_POOL>"
    assert two("one.vmpool.infoset", BOB, str(vid), True)[1] == "<VM_POOL></VM_POOL>"
    assert two("one.vmpool.info", BOB, 2, -1, -1, -1)[1] == "<VM_POOL></VM_POOL>"


def test_other_users_image_and_network(two: One, sim) -> None:
    assert two("one.image.info", BOB, 0) == [
        False,
        "[one.image.info] User [3] : Not authorized to perform USE IMAGE [0].",
        512,
        -1,
        -1,
    ]
    assert two("one.image.delete", BOB, 0)[1].endswith("MANAGE IMAGE [0].")
    assert ids(two("one.imagepool.info", BOB, -2, -1, -1)[1], "IMAGE") == []
    # the elastic-IP network is oneadmin's: users neither see nor hold it
    assert two("one.vn.info", "demo:demo", 1)[1].endswith("USE NET [1].")
    assert two("one.vn.hold", "demo:demo", 1, 'LEASES=[IP="198.51.100.1"]')[1].endswith(
        "MANAGE NET [1]."
    )
    assert ids(two("one.vnpool.info", "demo:demo", -2, -1, -1)[1], "VNET") == [0]
    # a VM cannot use a network the user may not use
    r = two("one.vm.allocate", "demo:demo", 'MEMORY="64"\nCPU="1"\nNIC=[NETWORK_ID="1"]', False)
    assert r == [
        False,
        "[one.vm.allocate] User [2] : Not authorized to perform USE NET [1].",
        512,
        -1,
        -1,
    ]
    # nor someone else's image
    r = two("one.vm.allocate", BOB, 'MEMORY="64"\nCPU="1"\nDISK=[IMAGE_ID="0"]', False)
    assert r[2] == 512 and r[1].endswith("USE IMAGE [0].")


def test_group_shared_objects(two: One, sim) -> None:
    # template 0 and network 0 belong to oneadmin with USE for group users
    assert two("one.template.info", BOB, 0)[0]
    assert two("one.vn.info", BOB, 0)[0]
    assert two("one.template.update", BOB, 0, 'A="1"', 1)[1].endswith("MANAGE TEMPLATE [0].")
    assert ids(two("one.templatepool.info", BOB, -2, -1, -1)[1], "VMTEMPLATE") == [0]
    assert ids(two("one.templatepool.info", BOB, -3, -1, -1)[1], "VMTEMPLATE") == []
    assert ids(two("one.templatepool.info", BOB, -1, -1, -1)[1], "VMTEMPLATE") == [0]
    assert ids(two("one.templatepool.info", BOB, -4, -1, -1)[1], "VMTEMPLATE") == [0]
    assert two("one.datastore.info", BOB, 1)[0]
    assert two("one.user.info", BOB, 2)[1].endswith("USE USER [2].")
    assert two("one.group.info", BOB, 0)[1].endswith("USE GROUP [0].")
    assert two("one.group.info", BOB, -1)[0]


def test_filters_ranges_and_pagination(one: One, sim) -> None:
    A, D = sim.one_auth, "demo:demo"
    vms = [
        one("one.vm.allocate", D, f'NAME="v{i}"\nMEMORY="8"\nCPU="1"\nCPU="1"', True)[1]
        for i in range(6)
    ]
    admin_vm = one("one.vm.allocate", A, 'NAME="adm"\nMEMORY="8"\nCPU="1"', True)[1]

    def pool(session: str, *args: int) -> list[int]:
        return ids(one("one.vmpool.info", session, *args)[1].replace("<VM>", "<VM><X>"), "X")

    assert pool(D, -3, -1, -1, -1) == sorted(vms, reverse=True)
    assert pool(D, -2, -1, -1, -1) == sorted(vms, reverse=True)
    assert pool(A, -2, -1, -1, -1) == sorted(vms + [admin_vm], reverse=True)
    assert pool(A, -3, -1, -1, -1) == [admin_vm]
    assert pool(A, 2, -1, -1, -1) == sorted(vms, reverse=True)
    assert pool(D, -2, 2, 4, -1) == [4, 3, 2]
    assert pool(D, -2, 3, -1, -1) == [5, 4, 3]
    assert pool(D, -2, -1, 2, -1) == sorted(vms, reverse=True)  # start=-1 drops the range
    assert pool(D, -2, 0, -2, -1) == [5, 4]  # pagination: offset 0, 2 per page
    assert pool(D, -2, 2, -2, -1) == [3, 2]
    assert pool(D, -2, -1, -1, 2) == sorted(vms, reverse=True)  # state HOLD
    assert pool(D, -2, -1, -1, 3) == []
    assert one("one.vmpool.info", D, -5, -1, -1, -1) == [
        False,
        "[one.vmpool.info] Incorrect filter_flag",
        4096,
        -1,
        -1,
    ]
    assert (
        one("one.vmpool.info", D, -2, -1, -1, -3)[1]
        == "[one.vmpool.info] Incorrect state filter -3"
    )
    assert one("one.vmpool.info", D, -2, -1, -1, -1, "NAME=v1")[2] == 8192


def test_vn_info_lists_only_visible_leases(two: One, sim) -> None:
    mine = two("one.template.instantiate", "demo:demo", 0, "", False, "", False)[1]
    theirs = two("one.template.instantiate", BOB, 0, "", False, "", False)[1]
    two("one.vn.hold", sim.one_auth, 0, 'LEASES=[IP="10.0.0.100"]')
    demo_view = two("one.vn.info", "demo:demo", 0)[1]
    assert f"<VM><![CDATA[{mine}]]></VM>" in demo_view
    assert f"<VM><![CDATA[{theirs}]]></VM>" not in demo_view
    assert "<VM><![CDATA[-1]]></VM>" not in demo_view
    assert "<USED_LEASES>3</USED_LEASES>" in demo_view  # the counters are not filtered
    admin_view = two("one.vn.info", sim.one_auth, 0)[1]
    assert admin_view.count("<LEASE>") == 3


def test_chmod_shares_and_needs_admin_for_admin_bits(two: One) -> None:
    """SharedAPI::chmod: the owner (MANAGE) shares an image with the group; an ADMIN bit that
    changes needs ADMIN; values are checked after authorization; -1 keeps a bit."""
    assert ids(two("one.imagepool.info", BOB, -2, -1, -1)[1], "IMAGE") == []
    keep = [-1] * 9
    group_use = [-1, -1, -1, 1, -1, -1, -1, -1, -1]
    assert two("one.image.chmod", BOB, 0, *group_use)[:3] == [
        False,
        "[one.image.chmod] User [3] : Not authorized to perform MANAGE IMAGE [0].",
        512,
    ]
    assert two("one.image.chmod", "demo:demo", 0, *group_use)[:2] == [True, 0]
    assert ids(two("one.imagepool.info", BOB, -2, -1, -1)[1], "IMAGE") == [0]
    assert "<GROUP_U>1</GROUP_U>" in two("one.image.info", BOB, 0)[1]
    assert two("one.image.chmod", "demo:demo", 0, -1, -1, 1, *keep[3:])[:3] == [
        False,
        "[one.image.chmod] User [2] : Not authorized to perform ADMIN IMAGE [0].",
        512,
    ]
    assert two("one.image.chmod", "demo:demo", 0, -1, -1, 0, *keep[3:])[:2] == [True, 0]
    assert two("one.image.chmod", "demo:demo", 0, 2, *keep[1:])[:3] == [
        False,
        "[one.image.chmod] New permission values must be -1, 0 or 1",
        8192,
    ]
    assert two("one.image.chmod", "demo:demo", 99, *keep)[:4] == [
        False,
        "[one.image.chmod] Error getting image [99].",
        1024,
        99,
    ]
    assert two("one.image.chmod", "demo:demo", 0, -1, -1, -1, 0, *keep[4:])[:2] == [True, 0]
    assert ids(two("one.imagepool.info", BOB, -2, -1, -1)[1], "IMAGE") == []
