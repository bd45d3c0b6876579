"""VM and image life cycles: speed 0 (deterministic) and a small positive speed."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from lxml import etree

from onesim.server import SimServer

from .conftest import One

D = "demo:demo"


def st(one: One, vid: int) -> tuple[int, int]:
    xml = one("one.vm.info", D, vid)[1]
    return int(re.search(r"<STATE>(\d+)</STATE>", xml)[1]), int(
        re.search(r"<LCM_STATE>(\d+)</LCM_STATE>", xml)[1]
    )


def image_state(one: One, iid: int) -> int:
    return int(re.search(r"<STATE>(\d+)</STATE>", one("one.image.info", D, iid)[1])[1])


def test_speed0_full_cycle(one: One, sim) -> None:
    vid = one("one.template.instantiate", D, 0, "", False, 'DISK=[IMAGE_ID="0"]', False)[1]
    assert st(one, vid) == (3, 3)
    xml = one("one.vm.info", D, vid)[1]
    assert "<NAME>m1.small-0</NAME>" in xml and "<TM_MAD_SYSTEM>" in xml
    assert "<EC2_INSTANCE_TYPE><![CDATA[m1.small]]></EC2_INSTANCE_TYPE>" in xml
    assert "<IP><![CDATA[10.0.0.2]]></IP>" in xml and "<DEPLOY_ID>host01:m1.small-0:dummy<" in xml
    assert image_state(one, 0) == 2
    for action, expected in [
        ("reboot", (3, 3)),
        ("suspend", (5, 0)),
        ("resume", (3, 3)),
        ("poweroff", (8, 0)),
        ("resume", (3, 3)),
        ("undeploy", (9, 0)),
        ("resume", (3, 3)),
        ("stop", (4, 0)),
        ("resume", (3, 3)),
        ("poweroff-hard", (8, 0)),
        ("terminate", (6, 0)),
    ]:
        assert one("one.vm.action", D, action, vid) == [True, vid, 0], action
        assert st(one, vid) == expected, action
    xml = one("one.vm.info", D, vid)[1]
    assert xml.count("<HISTORY>") == 4 and "<ACTION>27</ACTION>" in xml
    assert not re.search(r"<ETIME>0</ETIME><DEPLOY", xml)
    assert image_state(one, 0) == 1
    assert "<LEASE>" not in one("one.vn.info", D, 0)[1]
    assert one("one.vm.action", D, "terminate", vid) == [True, vid, 0]  # DONE: no-op success
    assert re.search(r"<STATE>6</STATE>", one("one.vmpool.info", D, -2, -1, -1, -2)[1])
    assert one("one.vmpool.info", D, -2, -1, -1, -1)[1] == "<VM_POOL></VM_POOL>"


def test_refusals(one: One) -> None:
    vid = one("one.vm.allocate", D, 'MEMORY="8"\nCPU="1"', True)[1]
    assert st(one, vid) == (2, 0)
    for action in ("poweroff", "resume", "reboot", "stop", "suspend", "undeploy", "hold"):
        r = one("one.vm.action", D, action, vid)
        assert r == [
            False,
            f'[one.vm.action] Error performing action "{action}": This action is '
            "not available for state HOLD",
            2048,
            -1,
            -1,
        ]
    assert (
        one("one.vm.action", D, "shutdown", vid)[1]
        == '[one.vm.action] Action "shutdown" is not supported'
    )
    assert one("one.vm.attach", D, vid, 'DISK=[IMAGE_ID="0"]') == [
        False,
        f"[one.vm.attach] Could not attach a new disk to VM {vid}, wrong state HOLD.",
        2048,
        -1,
        -1,
    ]
    assert one("one.vm.detachnic", D, vid, 0)[1] == (
        f"[one.vm.detachnic] Could not detach NIC from VM {vid}, wrong state HOLD."
    )
    assert one("one.vm.disksaveas", D, vid, 0, "x", "", -1)[1:3] == [
        "[one.vm.disksaveas] VM has to be RUNNING, POWEROFF or SUSPENDED to save disks.",
        8192,  # INTERNAL, as VirtualMachineAPI::disk_save_as answers
    ]
    assert one("one.vm.action", D, "release", vid)[0]
    assert st(one, vid) == (3, 3)
    assert one("one.vm.disksnapshotcreate", D, vid, 5, "s")[1] == (
        "[one.vm.disksnapshotcreate] VM disk does not exist"
    )
    assert one("one.vm.action", D, "release", vid)[1].endswith("not available for state RUNNING")


def test_hotplug_and_disks(one: One, sim) -> None:
    vid = one(
        "one.vm.allocate",
        D,
        'MEMORY="64"\nCPU="1"\nNIC=[NETWORK="private", NETWORK_UNAME="oneadmin"]\nCONTEXT=[NETWORK="YES"]',
    )[1]
    assert one("one.vm.attach", D, vid, 'DISK=[IMAGE_ID="0"]') == [True, vid, 0]
    xml = one("one.vm.info", D, vid)[1]
    assert "<DISK_ID><![CDATA[1]]></DISK_ID>" in xml and "<TARGET><![CDATA[sdb]]></TARGET>" in xml
    assert one("one.vm.disksnapshotcreate", D, vid, 1, "s1") == [True, 0, 0]
    assert one("one.vm.disksnapshotcreate", D, vid, 1, "s2") == [True, 1, 0]
    iid = one("one.vm.disksaveas", D, vid, 1, "saved", "", -1)[1]
    assert image_state(one, iid) == 1 and "<NAME>saved</NAME>" in one("one.image.info", D, iid)[1]
    assert one("one.vm.attachnic", D, vid, 'NIC=[NETWORK_ID="0"]') == [True, vid, 0]
    assert one("one.vm.info", D, vid)[1].count("<NIC>") == 2
    assert one("one.vm.detachnic", D, vid, 1) == [True, vid, 0]
    assert one("one.vn.info", D, 0)[1].count("<LEASE>") == 1
    assert one("one.vm.detach", D, vid, 1) == [True, vid, 0]
    assert image_state(one, 0) == 1
    assert one("one.vm.detach", D, vid, 7)[2] == 2048
    assert one("one.vm.attach", D, vid, 'DISK=[IMAGE_ID="99"]')[1].endswith("does not exist")


def test_disksaveas_as_oned_7_4(one: One, sim) -> None:
    """VirtualMachineAPI::disk_save_as: state and disk before rights, INTERNAL refusals, the
    new image's SAVED_* attributes, and every state oned saves from."""
    A = sim.one_auth
    vid = one("one.template.instantiate", D, 0, "", False, 'DISK=[IMAGE_ID="0"]', False)[1]
    for disk, snap, msg in ((7, -1, "DISK does not exist."), (0, 3, "Snapshot does not exist.")):
        assert one("one.vm.disksaveas", D, vid, disk, "x", "", snap)[1:3] == [
            f"[one.vm.disksaveas] Cannot use DISK. {msg}",
            8192,
        ]
    uid = one("one.user.allocate", A, "saver", "pw", "core", [1])[1]
    assert one("one.vm.disksaveas", "saver:pw", vid, 0, "x", "", -1)[1:3] == [
        f"[one.vm.disksaveas] User [{uid}] : Not authorized to perform MANAGE VM [{vid}].",
        512,
    ]
    iid = one("one.vm.disksaveas", D, vid, 0, "saved-os", "", -1)[1]
    assert st(one, vid) == (3, 3) and image_state(one, iid) == 1  # speed 0: done at once
    xml = one("one.image.info", D, iid)[1]
    for attr, value in (("SAVED_IMAGE_ID", "0"), ("SAVED_DISK_ID", "0"), ("SAVED_VM_ID", str(vid))):
        assert f"<{attr}><![CDATA[{value}]]></{attr}>" in xml, attr
    assert "SAVE_AS_HOT" not in xml  # Image::clear_saving once the copy is done
    assert "<TYPE>0</TYPE>" in xml  # the disk image's type (OS) when none is given
    assert one("one.vm.disksaveas", D, vid, 0, "saved-os", "", -1)[1:3] == [
        f"[one.vm.disksaveas] Error allocating a new image. NAME is already taken by IMAGE {iid}.",
        16384,
    ]
    assert st(one, vid) == (3, 3)  # a refused save leaves the VM as it was
    for action, state, saving in (
        ("undeploy", 9, 67),
        ("stop", 4, 68),
        ("suspend", 5, 28),
        ("poweroff", 8, 27),
    ):
        assert one("one.vm.action", D, action, vid)[0], action
        sim.sim.speed = 60  # seconds per step: the save stays in progress
        try:
            iid = one("one.vm.disksaveas", D, vid, 0, f"from-{action}", "DATABLOCK", -1)[1]
            assert st(one, vid) == (3, saving), action
            assert image_state(one, iid) == 4  # LOCKED while copied
            assert "<SAVE_AS_HOT><![CDATA[YES]]>" in one("one.image.info", D, iid)[1]
            # ImageManager::delete_image releases the VM being saved at once
            assert one("one.image.delete", A, iid, True)[0], action
            assert st(one, vid) == (state, 0), action
        finally:
            sim.sim.speed = 0
        assert one("one.vm.action", D, "resume", vid)[0], action
    one("one.vm.action", D, "terminate-hard", vid)


def test_image_rules(one: One, sim, tmp_path: Path) -> None:
    f = tmp_path / "disk.img"
    f.write_bytes(b"x" * (3 * 1024 * 1024 + 1))
    iid = one("one.image.allocate", D, f'NAME="f"\nPATH="{f}"\n', 1)[1]
    assert "<SIZE>4</SIZE>" in one("one.image.info", D, iid)[1]
    r = one("one.image.allocate", D, 'NAME="g"\nPATH="/nonexistent/x.img"\n', 1)
    assert r[0] is False and r[2] == 8192 and "Cannot determine image SIZE" in r[1]
    assert one("one.image.chtype", D, iid, "DATABLOCK") == [True, iid, 0]
    assert one("one.image.chtype", D, iid, "KERNEL") == [
        False,
        "[one.image.chtype] Cannot change image type to an incompatible type for the "
        "current datastore.",
        2048,
        -1,
        -1,
    ]
    assert one("one.image.persistent", D, iid, True) == [True, iid, 0]
    vid = one("one.vm.allocate", D, f'MEMORY="8"\nCPU="1"\nDISK=[IMAGE_ID="{iid}"]')[1]
    assert image_state(one, iid) == 8  # USED_PERS
    assert one("one.image.persistent", D, iid, False)[1:3] == [
        "[one.image.persistent] Could not make image non-persistent: Image cannot be in state "
        "USED.",
        8192,
    ]
    assert one("one.vm.allocate", D, f'MEMORY="8"\nCPU="1"\nDISK=[IMAGE_ID="{iid}"]')[2] == 8192
    assert one("one.image.delete", D, iid)[1] == (
        "[one.image.delete] Cannot delete image. There are 1 VMs using it."
    )
    one("one.vm.action", D, "terminate-hard", vid)
    assert one("one.image.enable", D, iid, False) == [True, iid, 0]
    assert image_state(one, iid) == 3
    assert one("one.image.enable", D, iid, True) == [True, iid, 0]
    cid = one("one.image.clone", D, iid, "copy")[1]
    assert image_state(one, cid) == 1
    assert one("one.image.clone", D, iid, "copy")[1].endswith(
        f"NAME is already taken by IMAGE {cid}."
    )
    assert one("one.image.delete", D, cid) == [True, cid, 0]
    assert one("one.image.info", D, cid)[2] == 1024


def test_templates(one: One, sim) -> None:
    tid = one(
        "one.template.allocate",
        D,
        "<TEMPLATE><NAME>x</NAME><MEMORY><![CDATA[32]]></MEMORY>"
        "<NIC><NETWORK_ID>0</NETWORK_ID></NIC></TEMPLATE>",
    )[1]
    assert one("one.template.update", D, tid, 'CPU="2"', 1) == [True, tid, 0]
    xml = one("one.template.info", D, tid)[1]
    assert "<CPU><![CDATA[2]]></CPU>" in xml and "<MEMORY><![CDATA[32]]></MEMORY>" in xml
    cid = one("one.template.clone", D, tid, "y")[1]
    assert one("one.template.delete", D, tid) == [True, tid, 0]
    assert one("one.template.info", D, tid)[2] == 1024
    vid = one("one.template.instantiate", D, cid, "", False, "", False)[1]
    assert f"<NAME>y-{vid}</NAME>" in one("one.vm.info", D, vid)[1]


def test_networks(one: One, sim) -> None:
    A = sim.one_auth
    nid = one(
        "one.vn.allocate", A, 'NAME="n"\nVN_MAD="dummy"\nAR=[TYPE="IP4",IP="10.9.0.1",SIZE="2"]', -1
    )[1]
    assert one("one.vn.add_ar", A, nid, 'AR=[TYPE="IP4", IP="10.9.1.1", SIZE="1"]') == [
        True,
        nid,
        0,
    ]
    assert one("one.vn.update", A, nid, 'DESCRIPTION="d"', 1) == [True, nid, 0]
    xml = one("one.vn.info", A, nid)[1]
    assert xml.count("<AR>") == 2 and "<DESCRIPTION><![CDATA[d]]>" in xml
    for ip in ("10.9.0.1", "10.9.0.2", "10.9.1.1"):
        assert one("one.vn.hold", A, nid, f'LEASES=[IP="{ip}"]')[0]
    r = one("one.vm.allocate", A, f'MEMORY="8"\nCPU="1"\nNIC=[NETWORK_ID="{nid}"]')
    assert r == [
        False,
        f"[one.vm.allocate] Cannot get IP/MAC lease from virtual network {nid}.",
        8192,
        -1,
        -1,
    ]
    assert one("one.vn.hold", A, nid, 'LEASES=[MAC="02:00:00:00:00:01"]')[2] == 8192
    assert one("one.vn.hold", A, 1, 'LEASES=[MAC="02:00:c6:33:64:05"]') == [True, 1, 0]
    assert "<IP><![CDATA[198.51.100.5]]></IP>" in one("one.vn.info", A, 1)[1]
    assert one("one.vn.release", A, 1, 'LEASES=[MAC="02:00:c6:33:64:05"]') == [True, 1, 0]
    assert "<LEASE>" not in one("one.vn.info", A, 1)[1]


def test_positive_speed(tmp_path: Path) -> None:
    s = SimServer(str(tmp_path / "s"), port=0, speed=0.15).start()
    try:
        one = One(s.url)
        vid = one("one.vm.allocate", D, 'MEMORY="8"\nCPU="1"\nNIC=[NETWORK_ID="0"]')[1]
        seen = [st(one, vid)]
        deadline = time.time() + 5
        while seen[-1] != (3, 3) and time.time() < deadline:
            time.sleep(0.03)
            cur = st(one, vid)
            if cur != seen[-1]:
                seen.append(cur)
        assert seen == [(1, 0), (3, 1), (3, 2), (3, 3)]
        v2 = one("one.vm.allocate", D, 'MEMORY="8"\nCPU="1"')[1]
        while st(one, v2) != (3, 1) and time.time() < deadline + 2:
            time.sleep(0.01)
        msg = one("one.vm.action", D, "terminate", v2)[1]
        assert re.fullmatch(
            r'\[one.vm.action\] Error performing action "terminate": Could not terminate VM '
            rf"{v2}, wrong state (PROLOG|BOOT)\.",
            msg,
        ), msg
        assert one("one.vm.action", D, "terminate", vid)[0]
        seen = [st(one, vid)]
        while seen[-1] != (6, 0) and time.time() < deadline + 5:
            time.sleep(0.03)
            cur = st(one, vid)
            if cur != seen[-1]:
                seen.append(cur)
        assert seen == [(3, 12), (3, 11), (6, 0)]
        # image stays LOCKED for one step
        iid = one("one.image.allocate", D, 'NAME="b"\nTYPE="DATABLOCK"\nSIZE="1"', 1)[1]
        assert image_state(one, iid) == 4
        time.sleep(0.35)
        assert image_state(one, iid) == 1
    finally:
        s.stop()


@pytest.mark.parametrize("speed", ["0", "0.5"])
def test_speed_from_environment(tmp_path: Path, monkeypatch, speed: str) -> None:
    monkeypatch.setenv("ONESIM_SPEED", speed)
    s = SimServer(str(tmp_path / "s"), port=0)
    try:
        assert s.sim.speed == float(speed)
    finally:
        s.httpd.server_close()
        s.sim.store.close()


def test_allocate_validation(one: One) -> None:
    r = one("one.vm.allocate", D, 'MEMORY="8"', False)
    assert r == [
        False,
        "[one.vm.allocate] CPU attribute must be a positive float or integer value.",
        8192,
        -1,
        -1,
    ]
    r = one("one.vm.allocate", D, 'MEMORY="8"\nCPU="1"\nVCPU="x"', False)
    assert r[1] == "[one.vm.allocate] VCPU attribute must be a positive integer value."
    vid = one("one.vm.allocate", D, 'MEMORY="08"\nCPU="1.50"', True)[1]
    xml = one("one.vm.info", D, vid)[1]
    assert "<CPU><![CDATA[1.5]]></CPU>" in xml and "<MEMORY><![CDATA[8]]></MEMORY>" in xml
    assert f"<NAME>one-{vid}</NAME>" in xml


def test_references_by_name(one: One, sim) -> None:
    r = one("one.vm.allocate", D, 'MEMORY="8"\nCPU="1"\nNIC=[NETWORK="private"]', False)
    assert r[1] == (
        "[one.vm.allocate] User 2 does not own a network with name: private . Set NETWORK_UNAME "
        "or NETWORK_UID of owner in NIC."
    )
    r = one(
        "one.vm.allocate",
        D,
        'MEMORY="8"\nCPU="1"\nNIC=[NETWORK="private", NETWORK_UID="0"]\nDISK=[IMAGE="ttylinux"]',
        False,
    )
    assert r[0], r
    xml = one("one.vm.info", D, r[1])[1]
    assert "<IMAGE><![CDATA[ttylinux]]></IMAGE>" in xml and "<NETWORK_UID><![CDATA[0]]>" in xml
    r = one("one.vm.allocate", sim.one_auth, 'MEMORY="8"\nCPU="1"\nDISK=[IMAGE="ttylinux"]')
    assert r[1] == (
        "[one.vm.allocate] User 0 does not own an image with name: ttylinux . Set "
        "IMAGE_UNAME or IMAGE_UID of owner in DISK."
    )
    r = one("one.vm.allocate", D, 'MEMORY="8"\nCPU="1"\nNIC=[NETWORK="x", NETWORK_UNAME="nobody"]')
    assert r[1] == "[one.vm.allocate] User set in NETWORK_UNAME does not exist"
    # a failing DISK gives back the leases already taken
    r = one("one.vm.allocate", D, 'MEMORY="8"\nCPU="1"\nNIC=[NETWORK_ID="0"]\nDISK=[IMAGE_ID="9"]')
    assert r[1] == "[one.vm.allocate] Image with ID: 9 does not exist"
    assert one("one.vn.info", D, 0)[1].count("<LEASE>") == 1


def test_locked_image_rules(one: One, sim) -> None:
    sim.sim.speed = 3600
    iid = one("one.image.allocate", D, 'NAME="l"\nTYPE="DATABLOCK"\nSIZE="1"', 1)[1]
    vid = one("one.vm.allocate", D, f'MEMORY="8"\nCPU="1"\nDISK=[IMAGE_ID="{iid}"]', True)[1]
    assert image_state(one, iid) == 9  # LOCKED_USED
    r = one("one.vm.attach", D, vid, f'DISK=[IMAGE_ID="{iid}"]')
    assert r[2] == 2048  # VM on hold: wrong state comes first
    kid = one(
        "one.image.allocate",
        D,
        f'NAME="k"\nTYPE="KERNEL"\nPATH="{sim.state_dir}/images/ttylinux.img"',
        2,
    )
    assert kid[0], kid
    r = one("one.vm.allocate", D, f'MEMORY="8"\nCPU="1"\nDISK=[IMAGE_ID="{kid[1]}"]', True)
    assert r[1] == f"[one.vm.allocate] Image {kid[1]} (k) of type KERNEL cannot be used as DISK."


def test_allocation_messages(one: One, sim) -> None:
    A = sim.one_auth
    assert one("one.template.allocate", D, 'CPU="1"') == [
        False,
        "[one.template.allocate] Error allocating a new virtual machine template. Invalid "
        "NAME, it cannot be empty",
        16384,
        -1,
        -1,
    ]
    assert one("one.template.allocate", D, 'NAME="m1.small"\nCPU="1"')[0]  # per-owner names
    assert one("one.template.allocate", D, 'NAME="m1.small"')[1].endswith(
        "NAME is already taken by TEMPLATE 1."
    )
    assert one("one.vn.allocate", A, 'NAME="n"', -1)[1] == (
        "[one.vn.allocate] Error allocating a new virtual network. No VN_MAD in template for "
        "Virtual Network."
    )
    assert one("one.user.allocate", A, "a:b", "pw", "core", [])[1] == (
        "[one.user.allocate] Error allocating a new user. Invalid NAME, char ':' is not allowed."
    )
    assert one("one.user.allocate", A, "demo", "pw", "", [])[1] == (
        "[one.user.allocate] Error allocating a new user. NAME is already taken by USER 2."
    )
    uid = one("one.user.allocate", A, "srv2", "plain", "server_cipher", [])[1]
    assert "<PASSWORD><![CDATA[plain]]></PASSWORD>" in one("one.user.info", A, uid)[1]
    assert one("one.image.allocate", D, 'NAME="k"\nTYPE="KERNEL"\nSIZE="1"', 1)[1] == (
        "[one.image.allocate] Error allocating a new image. IMAGES of type KERNEL, RAMDISK and "
        "CONTEXT cannot be registered in an IMAGE_DS datastore"
    )
    assert one("one.image.allocate", D, 'NAME="x"\nTYPE="BOGUS"\nSIZE="1"', 1)[1] == (
        "[one.image.allocate] Error allocating a new image. Unknown type "
    )


def test_update_checks_object_first(one: One) -> None:
    assert one("one.vm.update", D, 99, 'A="1"', 7)[2] == 1024
    assert one("one.image.update", D, 0, 'A="1"', 7) == [
        False,
        "[one.image.update] Wrong update type",
        4096,
        -1,
        -1,
    ]
    assert one("one.template.update", D, 0, 'A="1"', 7)[2] == 512


def test_resume_paths_with_clock(tmp_path: Path) -> None:
    s = SimServer(str(tmp_path / "s"), port=0, speed=0.1).start()
    try:
        one = One(s.url)
        s.sim.speed = 0
        vid = one("one.vm.allocate", D, 'MEMORY="8"\nCPU="1"')[1]
        assert one("one.vm.action", D, "stop", vid)[0] and st(one, vid) == (4, 0)
        s.sim.speed = 0.1

        def trace(until: tuple[int, int]) -> list[tuple[int, int]]:
            seen = [st(one, vid)]
            end = time.time() + 5
            while seen[-1] != until and time.time() < end:
                time.sleep(0.01)
                if (cur := st(one, vid)) != seen[-1]:
                    seen.append(cur)
            return seen

        assert one("one.vm.action", D, "resume", vid)[0]
        assert trace((3, 3)) == [(1, 0), (3, 9), (3, 22), (3, 3)]
        assert one("one.vm.action", D, "undeploy", vid)[0]
        assert trace((9, 0)) == [(3, 29), (3, 30), (9, 0)]
        assert one("one.vm.action", D, "resume", vid)[0]
        assert trace((3, 3)) == [(1, 0), (3, 31), (3, 32), (3, 3)]
        assert one("one.vm.info", D, vid)[1].count("<HISTORY>") == 3
    finally:
        s.stop()


def test_lazy_steps_keep_their_own_time(one: One, sim) -> None:
    sim.sim.speed = 50
    vid = one("one.vm.allocate", D, 'MEMORY="8"\nCPU="1"')[1]
    assert st(one, vid) == (1, 0)
    past = time.time() - 120
    with sim.sim.lock:
        vm = sim.sim.store.get("vm", vid)
        vm["steps"] = [[past, step] for _due, step in vm["steps"]]
        sim.sim._push(past, "vm", vid)
    assert st(one, vid) == (3, 3)  # prolog at -120 s, boot at -70 s, running at -20 s
    xml = one("one.vm.info", D, vid)[1]
    pstime = int(re.search(r"<PSTIME>(\d+)</PSTIME>", xml)[1])
    rstime = int(re.search(r"<RSTIME>(\d+)</RSTIME>", xml)[1])
    assert pstime <= past + 1 and rstime == pstime + 50


def test_update_ar_replaces_the_attribute_set(one: One, sim) -> None:
    A = sim.one_auth
    assert one("one.vn.update_ar", A, 1, 'AR=[AR_ID="3", EC2_OWNER="2", NOTE="a"]')[0]
    xml = one("one.vn.info", A, 1)[1]
    assert "<EC2_OWNER><![CDATA[2]]></EC2_OWNER>" in xml and "<NOTE><![CDATA[a]]></NOTE>" in xml
    assert one("one.vn.update_ar", A, 1, 'AR=[AR_ID="3", EC2_OWNER="5", IP="1.2.3.4"]')[0]
    xml = one("one.vn.info", A, 1)[1]
    assert "<NOTE>" not in xml and "<EC2_OWNER><![CDATA[5]]></EC2_OWNER>" in xml
    assert "<IP><![CDATA[198.51.100.4]]></IP>" in xml  # IP, TYPE, MAC, SIZE are kept
    pool = one("one.vnpool.info", A, -2, -1, -1)[1]
    assert "<ALLOCATED><![CDATA[]]></ALLOCATED><AR_ID><![CDATA[3]]></AR_ID>" in pool
    assert one("one.vn.update_ar", A, 1, 'AR=[AR_ID="3", SIZE="x"]')[1] == (
        "[one.vn.update_ar] Unable to read the SIZE attribute, it must be number >= 0"
    )


def test_clone_states(one: One, sim) -> None:
    sim.sim.speed = 3600  # clones stay LOCKED
    c1 = one("one.image.clone", D, 0, "c1")[1]
    src = one("one.image.info", D, 0)[1]
    assert "<STATE>2</STATE>" in src and "<CLONING_OPS>1</CLONING_OPS>" in src
    assert f"<CLONES><ID>{c1}</ID></CLONES>" in src
    assert "<CLONING_ID>0</CLONING_ID>" in one("one.image.info", D, c1)[1]
    assert one("one.image.delete", D, 0)[1] == (
        "[one.image.delete] Cannot delete image. There are 0 VMs using it."
    )
    with sim.sim.lock:  # finish the clone now
        img = sim.sim.store.get("image", c1)
        img["steps"] = [[0.0, step] for _d, step in img["steps"]]
        sim.sim._push(0.0, "image", c1)
    assert "<STATE>1</STATE>" in one("one.image.info", D, 0)[1]
    assert "<CLONING_ID>-1</CLONING_ID>" in one("one.image.info", D, c1)[1]


def test_same_persistent_image_twice_is_undone(one: One, sim) -> None:
    assert one("one.image.persistent", D, 0, True)[0]
    r = one(
        "one.vm.allocate",
        D,
        'MEMORY="8"\nCPU="1"\nNIC=[NETWORK_ID="0"]\nDISK=[IMAGE_ID="0"]\nDISK=[IMAGE_ID="0"]',
        False,
    )
    assert r[1] == "[one.vm.allocate] Cannot acquire image 0, it is persistent and already in use"
    assert image_state(one, 0) == 1
    assert "<LEASE>" not in one("one.vn.info", D, 0)[1]


def test_address_range_errors(one: One, sim) -> None:
    A = sim.one_auth
    base = 'NAME="n"\nVN_MAD="dummy"\n'
    assert one("one.vn.allocate", A, base + 'AR=[IP="10.1.0.1", SIZE="2"]', -1)[1] == (
        "[one.vn.allocate] Error allocating a new virtual network. Unknown or missing address "
        "range TYPE."
    )
    assert one("one.vn.allocate", A, base + 'AR=[TYPE="IP4", IP="10.1.0.300", SIZE="2"]', -1)[
        1
    ].endswith("Wrong or empty IP attribute")
    assert one("one.vn.add_ar", A, 1, 'AR=[TYPE="IP4", IP="10.2.0.1", SIZE="x"]') == [
        False,
        "[one.vn.add_ar] Wrong SIZE for address range",
        8192,
        -1,
        -1,
    ]
    assert one("one.vn.add_ar", A, 1, 'X="1"')[1] == (
        "[one.vn.add_ar] Wrong AR definition. AR vector attribute is missing."
    )


@pytest.mark.parametrize("lcm", [36, 39, 49])  # BOOT_FAILURE, PROLOG_FAILURE, PROLOG_RESUME_FAILURE
def test_terminate_from_a_failure_state_cleans_up_to_done(one: One, sim, lcm: int) -> None:
    vid = one("one.template.instantiate", D, 0, "", False, 'DISK=[IMAGE_ID="0"]', False)[1]
    # A driver failure cannot be provoked through the API: put the VM there as oned would.
    with sim.sim.lock:
        vm = sim.sim.store.get("vm", vid)
        vm["state"], vm["lcm_state"] = 3, lcm
        sim.sim.store.put("vm", vm)
    assert st(one, vid) == (3, lcm)
    assert one("one.vm.action", D, "terminate-hard", vid)[0] is True
    assert st(one, vid) == (6, 0)


def test_user_quota_usage_follows_every_change(one: One, sim) -> None:
    """one.user.info's VM quota usage counts the user's live VMs after each change (onesim
    keeps the summed usage until the next change)."""

    def vms_used() -> int:
        xml = one("one.user.info", D, -1)[1]
        hit = re.search(r"<VM_QUOTA><VM>.*?<VMS_USED><!\[CDATA\[(\d+)\]\]>", xml)
        return int(hit[1]) if hit else 0

    before = vms_used()
    assert vms_used() == before  # asked again, nothing changed
    vid = one("one.vm.allocate", D, 'MEMORY="8"\nCPU="1"')[1]
    assert vms_used() == before + 1
    one("one.vm.action", D, "terminate-hard", vid)
    assert vms_used() == before


def test_a_locked_image_is_deleted_only_by_force_with_admin_rights(one: One, sim) -> None:
    """ImageAPI::del_image: a LOCKED image (being copied) answers INTERNAL without force;
    force needs ADMIN on the image (oneadmin has it, its owner by default does not)."""
    sim.sim.speed = 3600  # the clone stays LOCKED
    c1 = one("one.image.clone", D, 0, "locked")[1]
    assert image_state(one, c1) == 4
    assert one("one.image.delete", D, c1) == [
        False,
        "[one.image.delete] Image locked, use --force flag to remove the image. Force delete "
        "may leave some files on Datastore",
        8192,
        c1,
        -1,
    ]
    assert one("one.image.delete", D, c1, True)[2] == 512  # no ADMIN right for its owner
    assert one("one.image.delete", sim.one_auth, c1, True) == [True, c1, 0]


def test_hard_actions_cut_a_soft_shutdown_short(one: One, sim) -> None:
    """DispatchManager accepts terminate-hard during SHUTDOWN and SHUTDOWN_POWEROFF and
    poweroff-hard during SHUTDOWN_POWEROFF (a guest that ignores ACPI)."""
    template = 'MEMORY="8"\nCPU="1"'
    first, second = (one("one.vm.allocate", D, template, False)[1] for _ in range(2))
    sim.sim.speed = 3600  # the soft shutdowns never finish by themselves
    assert one("one.vm.action", D, "terminate", first)[0]
    assert one("one.vm.action", D, "poweroff", second)[0]
    lcm = {vid: re.search(r"<LCM_STATE>(\d+)<", one("one.vm.info", D, vid)[1]).group(1)
           for vid in (first, second)}  # fmt: skip
    assert lcm == {first: "12", second: "18"}
    assert one("one.vm.action", D, "terminate-hard", first) == [True, first, 0]
    assert one("one.vm.action", D, "poweroff-hard", second) == [True, second, 0]
    assert one("one.vm.action", D, "poweroff-hard", first)[0] is False  # not in SHUTDOWN


def test_a_persistent_images_clone_is_persistent(one: One) -> None:
    """Image::clone_template writes PERSISTENT=YES for a persistent source."""
    assert one("one.image.persistent", D, 0, True)[0]
    clone = one("one.image.clone", D, 0, "persistent-copy")[1]
    assert "<PERSISTENT>1</PERSISTENT>" in one("one.image.info", D, clone)[1]
    assert one("one.image.persistent", D, 0, False)[0]
    plain = one("one.image.clone", D, 0, "plain-copy")[1]
    assert "<PERSISTENT>0</PERSISTENT>" in one("one.image.info", D, plain)[1]


def test_an_image_larger_than_the_free_space_is_refused(one: One, sim) -> None:
    """ImageAPI's capacity check (the golden one.image.allocate.nospace.xml answer)."""
    free = int(re.search(r"<FREE_MB>(\d+)<", one("one.datastore.info", D, 1)[1]).group(1))
    big = f'NAME="too-big"\nTYPE="DATABLOCK"\nSIZE="{free + 1}"'
    assert one("one.image.allocate", D, big, 1) == [
        False,
        "[one.image.allocate] Not enough space in datastore",
        2048,
        -1,
        -1,
    ]
    fits = one("one.image.allocate", D, f'NAME="fits"\nTYPE="DATABLOCK"\nSIZE="{free}"', 1)
    assert fits[0] is True


def test_resize_as_oned_7_4(one: One, sim) -> None:
    """VirtualMachineAPI::resize + DispatchManager::resize: sizes of a powered-off VM; a
    RUNNING one only without change (no live resize in the dummy driver); STOPPED refused;
    values checked first."""
    vid = one("one.template.instantiate", D, 0, "", False, 'DISK=[IMAGE_ID="0"]', False)[1]
    assert one("one.vm.action", D, "poweroff", vid)[0]
    assert one("one.vm.resize", D, vid, 'CPU="2"\nVCPU="2"\nMEMORY="1024"', False) == [
        True,
        vid,
        0,
    ]
    xml = one("one.vm.info", D, vid)[1]
    template = xml[xml.index("<TEMPLATE>") :]
    for attr, value in (("CPU", "2"), ("VCPU", "2"), ("MEMORY", "1024")):
        assert f"<{attr}><![CDATA[{value}]]></{attr}>" in template, attr
    assert one("one.vm.resize", D, vid, 'MEMORY="-1"', False)[1:3] == [
        "[one.vm.resize] MEMORY must be a positive integer value.",
        8192,
    ]
    assert one("one.vm.resize", D, vid, 'MEMORY="1024"')[0]  # enforce is optional
    assert one("one.vm.action", D, "resume", vid)[0]
    # RUNNING: the dummy driver has no live resize; asking for the same sizes is no change
    assert one("one.vm.resize", D, vid, 'MEMORY="512"', False)[1:3] == [
        "[one.vm.resize] Hotplug resize not supported by driver dummy",
        2048,
    ]
    assert one("one.vm.resize", D, vid, 'MEMORY="1024"', False)[0] and st(one, vid) == (3, 3)
    assert one("one.vm.action", D, "stop", vid)[0]
    assert one("one.vm.resize", D, vid, 'MEMORY="256"', False)[1:3] == [
        "[one.vm.resize] Cannot resize a VM in state STOPPED",
        2048,
    ]
    one("one.vm.action", D, "terminate-hard", vid)


def _context(one: One, vid: int) -> dict[str, str]:
    xml = one("one.vm.info", D, vid)[1]
    ctx = etree.fromstring(xml.encode()).find("TEMPLATE/CONTEXT")
    return {c.tag: c.text or "" for c in ctx}


def test_updateconf_as_oned_7_4(one: One, sim) -> None:
    """VirtualMachineAPI::update_conf + VirtualMachine::updateconf: CONTEXT merged (1) or
    replaced (0), ETHx_ values refused, states checked, the update type and rights first,
    and a refused update changes nothing."""
    A = sim.one_auth
    vid = one("one.template.instantiate", D, 0, "", False, 'DISK=[IMAGE_ID="0"]', False)[1]
    before = _context(one, vid)
    assert before["NETWORK"] == "YES" and before["ETH0_IP"] == "10.0.0.2"
    assert one("one.vm.updateconf", D, vid, 'CONTEXT=[A="1"]', 2)[1:3] == [
        "[one.vm.updateconf] Wrong update type",
        4096,
    ]
    uid = one("one.user.allocate", A, "conf", "pw", "core", [1])[1]
    assert one("one.vm.updateconf", "conf:pw", vid, 'CONTEXT=[A="1"]', 1)[1:3] == [
        f"[one.vm.updateconf] User [{uid}] : Not authorized to perform MANAGE VM [{vid}].",
        512,
    ]
    for tmpl, message, code in (
        ('CONTEXT=[FILES="/etc/passwd"]', "Template includes a restricted attribute CONTEXT", 512),
        ('RAW=[TYPE="kvm",DATA="<x/>"]', "Template includes a restricted attribute RAW", 512),
        (
            'CONTEXT=[ETH0_IP="10.9.9.9"]',
            "Unable to update ETH0_IP, update NIC to update network context",
            8192,
        ),
        (
            'CONTEXT=[ETH7_IP="1.2.3.4"]',
            "Unable to add ETH7_IP, update NIC to update network context",
            8192,
        ),
    ):
        assert one("one.vm.updateconf", D, vid, tmpl, 1)[1:3] == [
            f"[one.vm.updateconf] {message}",
            code,
        ], tmpl
    # an empty DATA is no DATA (oned copies only the values it takes): nothing restricted
    assert one("one.vm.updateconf", D, vid, 'RAW=[TYPE="kvm",DATA=""]', 1)[0]
    assert _context(one, vid) == before
    # merge: a RUNNING VM takes the new values, the others stay
    assert one("one.vm.updateconf", D, vid, 'CONTEXT=[USERDATA="eA==",A="1"]', 1) == [
        True,
        vid,
        0,
    ]
    after = _context(one, vid)
    assert after == {**before, "USERDATA": "eA==", "A": "1"}
    # replace: only what was sent, the network context regenerated, TARGET and DISK_ID kept
    assert one("one.vm.updateconf", D, vid, 'CONTEXT=[NETWORK="YES",B="2"]', 0)[0]
    replaced = _context(one, vid)
    assert "USERDATA" not in replaced and "A" not in replaced and replaced["B"] == "2"
    assert replaced["ETH0_IP"] == "10.0.0.2"
    assert (replaced["TARGET"], replaced["DISK_ID"]) == (before["TARGET"], before["DISK_ID"])
    assert "<OS>" not in one("one.vm.info", D, vid)[1]  # a vector left out goes
    # OS takes only the attributes updateconf knows
    assert one("one.vm.updateconf", D, vid, 'OS=[ARCH="x86_64",NOPE="x"]', 1)[0]
    os_xml = one("one.vm.info", D, vid)[1]
    assert "<ARCH><![CDATA[x86_64]]></ARCH>" in os_xml and "NOPE" not in os_xml
    assert one("one.vm.action", D, "stop", vid)[0]
    assert one("one.vm.updateconf", D, vid, 'CONTEXT=[A="1"]', 1)[1:3] == [
        "[one.vm.updateconf] configuration cannot be updated in state STOPPED",
        8192,
    ]
    assert one("one.vm.action", D, "resume", vid)[0]
    assert one("one.vm.action", D, "poweroff", vid)[0]
    assert one("one.vm.updateconf", D, vid, 'CONTEXT=[C="3"]', 1)[0]
    assert _context(one, vid)["C"] == "3"
    # a context with FILES: a user's CONTEXT must carry the same FILES (Template::
    # check_restricted with append), whatever else it changes
    store = sim.sim.store
    vm = store.get("vm", vid)
    next(v for k, v in vm["template"] if k == "CONTEXT").append(["FILES", "/var/tmp/a.sh"])
    store.put("vm", vm)
    assert one("one.vm.updateconf", D, vid, 'CONTEXT=[C="4"]', 1)[1:3] == [
        "[one.vm.updateconf] Template includes a restricted attribute CONTEXT",
        512,
    ]
    assert one("one.vm.updateconf", D, vid, 'CONTEXT=[C="4",FILES="/var/tmp/a.sh"]', 1)[0]
    assert one("one.vm.updateconf", A, vid, 'CONTEXT=[C="5"]', 1)[0]  # oneadmin: no check
    # a VM without CONTEXT cannot be given one
    bare = one("one.vm.allocate", D, 'CPU="1"\nMEMORY="64"', True)[1]
    assert one("one.vm.updateconf", D, bare, 'CONTEXT=[A="1"]', 1)[1:3] == [
        "[one.vm.updateconf] Virtual machine does not have context, cannot add a new one.",
        8192,
    ]


def _records(one: One, vid: int, pool: bool = False) -> list[tuple[int, str, bool, bool]]:
    """(SEQ, ACTION, ended, not running) of each history record vm.info (or the pool) shows."""
    if pool:
        root = etree.fromstring(one("one.vmpool.infoextended", D, -3, vid, vid, -1)[1])
        shown = root.iterfind("VM/HISTORY_RECORDS/HISTORY")
        return [(int(h.findtext("SEQ")), h.findtext("ACTION"), False, False) for h in shown]
    root = etree.fromstring(one("one.vm.info", D, vid)[1])
    return [
        (
            int(h.findtext("SEQ")),
            h.findtext("ACTION"),
            h.findtext("ETIME") != "0",
            h.findtext("RETIME") != "0",
        )
        for h in root.iterfind("HISTORY_RECORDS/HISTORY")
    ]


def test_hotplugs_and_resize_close_the_history_record(one: One, sim) -> None:
    """DispatchManager::close_cp_history (7.4): a disk or NIC attach/detach, a disk snapshot
    and a resize end the current history record with their action and go on in a copy (same
    host, seq + 1, the action the closed record had); a disk save does not. vm.info shows every
    record, a pool the last one only."""
    vid = one("one.template.instantiate", D, 0, "", False, 'DISK=[IMAGE_ID="0"]', False)[1]
    first = _records(one, vid)
    assert [r[2:] for r in first] == [(False, False)]  # running: not ended
    start = first[0][1]
    steps = (
        ("one.vm.attach", (vid, 'DISK=[IMAGE_ID="0"]'), "21"),
        ("one.vm.detach", (vid, 2), "22"),
        ("one.vm.attachnic", (vid, 'NIC=[NETWORK_ID="0"]'), "23"),
        ("one.vm.detachnic", (vid, 1), "24"),
        ("one.vm.disksnapshotcreate", (vid, 0, "s"), "25"),
    )
    for n, (method, args, action) in enumerate(steps, 1):
        assert one(method, D, *args)[0], method
        records = _records(one, vid)
        assert records[-2] == (n - 1, action, True, True), method  # ended with the action
        assert records[-1] == (n, start, False, False), method  # the copy goes on
        assert _records(one, vid, pool=True) == [(n, start, False, False)]
    iid = one("one.vm.disksaveas", D, vid, 0, "kept", "", -1)[1]
    assert len(_records(one, vid)) == len(steps) + 1  # a save: no new record
    one("one.image.delete", sim.one_auth, iid, False)
    assert one("one.vm.action", D, "poweroff", vid)[0]
    assert one("one.vm.resize", D, vid, 'MEMORY="96"', False)[0]
    records = _records(one, vid)
    assert records[-2][1:] == ("35", True, True)
    assert records[-1][1:] == ("19", False, True)  # powered off: not running in the copy
    one("one.vm.action", D, "terminate-hard", vid)
