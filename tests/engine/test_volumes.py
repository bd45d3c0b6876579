"""Volumes and snapshots through the engine against a live onesim (speed 0), as real users."""

from __future__ import annotations

import importlib

import pytest
from lxml import etree

from econe.errors import Ec2Error
from tests.engine.conftest import AMI, Sim, code_of, run


@pytest.fixture(scope="module")
def trudy(sim: Sim) -> str:
    sim.as_admin("one.user.allocate", "trudy", "pw", "core", [1])
    return "trudy"


def image(sim: Sim, ec2_id: str) -> etree._Element:
    return etree.fromstring(sim.as_admin("one.image.info", int(ec2_id.split("-")[1])).encode())


def volumes(engine, user: str = "demo", **body) -> dict[str, dict]:
    return {v["VolumeId"]: v for v in run(engine, "DescribeVolumes", body, user=user)["Volumes"]}


def volume_and_snapshot(engine) -> tuple[str, str]:
    """A new available volume and a completed snapshot of it (on a slow onesim)."""
    import time

    vid = run(engine, "CreateVolume", {"Size": 1}, user="demo")["VolumeId"]
    deadline = time.monotonic() + 10
    while volumes(engine, VolumeId=[vid])[vid]["State"] != "available":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    sid = run(engine, "CreateSnapshot", {"VolumeId": vid}, user="demo")["SnapshotId"]
    snapshot = {"SnapshotId": [sid]}
    while run(engine, "DescribeSnapshots", snapshot, user="demo")["Snapshots"][0]["State"] != (
        "completed"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return vid, sid


def wait(check) -> None:
    """Until `check()` holds (at most 10 s)."""
    import time

    deadline = time.monotonic() + 10
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def new_instance(engine) -> str:
    res = run(engine, "RunInstances", {"ImageId": AMI}, user="demo")
    return res["Instances"][0]["InstanceId"]


def running_instance(engine) -> str:
    """A new instance of demo's, once it runs."""
    iid = new_instance(engine)
    state = {"InstanceId": [iid], "Filter": [{"Name": "instance-state-name", "Value": ["running"]}]}
    wait(lambda: run(engine, "DescribeInstances", state, user="demo")["Reservations"])
    return iid


def test_create_describe_delete(sim: Sim, engine) -> None:
    vol = run(
        engine,
        "CreateVolume",
        {
            "Size": 2,
            "AvailabilityZone": "opennebula",
            "TagSpecification": [
                {"ResourceType": "volume", "Tag": [{"Key": "Name", "Value": "data"}]}
            ],
        },
        user="demo",
    )
    vid = vol["VolumeId"]
    assert vid.startswith("vol-") and len(vid) == 12 and vol["Size"] == 2
    assert vol["Tags"] == [{"Key": "Name", "Value": "data"}]
    assert vol["VolumeType"] == "standard"  # none asked for
    typed = run(
        engine,
        "CreateVolume",
        {"Size": 1, "AvailabilityZone": "opennebula", "VolumeType": "gp3"},
        user="demo",
    )
    assert typed["VolumeType"] == "gp3"  # what was asked for: no drift for Terraform
    assert volumes(engine, VolumeId=[typed["VolumeId"]])[typed["VolumeId"]]["VolumeType"] == "gp3"
    run(engine, "DeleteVolume", {"VolumeId": typed["VolumeId"]}, user="demo")
    img = image(sim, vid)
    assert img.findtext("TYPE") == "2" and img.findtext("PERSISTENT") == "1"
    assert img.findtext("SIZE") == "2048" and img.findtext("DATASTORE_ID") == "1"
    assert img.findtext("TEMPLATE/EBS_VOLUME") == "YES"
    assert img.findtext("TEMPLATE/FSTYPE") == "ext3"
    listed = volumes(engine)
    assert listed[vid]["State"] == "available" and listed[vid]["Attachments"] == []
    assert listed[vid]["AvailabilityZone"] == "opennebula"
    assert set(volumes(engine, VolumeId=[vid])) == {vid}
    both_forms = {"VolumeId": [f"vol-{int(vid[4:])}", vid]}  # one volume, listed once
    listed_once = run(engine, "DescribeVolumes", both_forms, user="demo")["Volumes"]
    assert [v["VolumeId"] for v in listed_once] == [vid]
    by_tag = {"Filter": [{"Name": "tag:Name", "Value": ["data"]}, {"Name": "size", "Value": ["2"]}]}
    assert set(volumes(engine, **by_tag)) == {vid}
    assert volumes(engine, Filter=[{"Name": "status", "Value": ["in-use"]}]).get(vid) is None
    # AMIs are not volumes; volumes are not AMIs
    assert code_of(run, engine, "DescribeVolumes", {"VolumeId": ["vol-00000000"]}, user="demo") == (
        "InvalidVolume.NotFound"
    )
    assert code_of(run, engine, "DescribeImages", {"ImageId": [f"ami-{vid[4:]}"]}, user="demo") == (
        "InvalidAMIID.NotFound"
    )
    assert code_of(run, engine, "DescribeVolumes", {"VolumeId": ["vol-x"]}, user="demo") == (
        "InvalidVolumeID.Malformed"
    )
    assert run(engine, "DeleteVolume", {"VolumeId": vid}, user="demo") == {"Return": True}
    assert vid not in volumes(engine)
    assert code_of(run, engine, "DeleteVolume", {"VolumeId": vid}, user="demo") == (
        "InvalidVolume.NotFound"
    )
    for body, code in (
        ({}, "MissingParameter"),
        ({"Size": 0}, "InvalidParameterValue"),
        ({"Size": 1, "AvailabilityZone": "us-east-1a"}, "InvalidParameterValue"),
        ({"SnapshotId": "snap-99999"}, "InvalidSnapshot.NotFound"),
        ({"SnapshotId": "vol-1"}, "InvalidSnapshotID.Malformed"),
        (
            {
                "Size": 1,
                "TagSpecification": [
                    {"ResourceType": "volume", "Tag": [{"Key": "a", "Value": "1"}]},
                    {"ResourceType": "volume", "Tag": [{"Key": "b", "Value": "2"}]},
                ],
            },
            "InvalidParameterValue",  # one specification per resource type, as on EC2
        ),
        (
            {"Size": 1, "AvailabilityZone": "opennebula", "AvailabilityZoneId": "opennebula-az1"},
            "InvalidParameterCombination",  # EC2: one or the other
        ),
    ):
        assert code_of(run, engine, "CreateVolume", body, user="demo") == code, body


def test_delete_volume_deletes_only_volumes(sim: Sim, engine) -> None:
    """Ruby bug 16: DeleteVolume vol-0 deleted the AMI image 0."""
    assert code_of(run, engine, "DeleteVolume", {"VolumeId": "vol-00000000"}, user="demo") == (
        "InvalidVolume.NotFound"
    )
    assert image(sim, AMI).findtext("STATE") != "7"


def test_a_volume_larger_than_the_datastore_is_refused(sim: Sim, engine) -> None:
    before = volumes(engine)
    big = {"Size": 100}  # GiB: the demo datastore holds 20 in all
    assert code_of(run, engine, "CreateVolume", big, user="demo") == "InsufficientVolumeCapacity"
    assert volumes(engine) == before


def test_client_token_is_idempotent(sim: Sim, engine) -> None:
    first = run(engine, "CreateVolume", {"Size": 1, "ClientToken": "vol-tok-1"}, user="demo")
    again = run(engine, "CreateVolume", {"Size": 1, "ClientToken": "vol-tok-1"}, user="demo")
    assert again["VolumeId"] == first["VolumeId"]
    other = {"Size": 2, "ClientToken": "vol-tok-1"}  # the token again, for another volume
    assert code_of(run, engine, "CreateVolume", other, user="demo") == "IdempotentParameterMismatch"
    run(engine, "DeleteVolume", {"VolumeId": first["VolumeId"]}, user="demo")


def test_attach_detach_snapshot_and_restore(sim: Sim, engine) -> None:
    vid = run(engine, "CreateVolume", {"Size": 1}, user="demo")["VolumeId"]
    iid = new_instance(engine)
    att = run(
        engine,
        "AttachVolume",
        {"VolumeId": vid, "InstanceId": iid, "Device": "/dev/sdf"},
        user="demo",
    )
    assert att["State"] == "attaching" and att["Device"] == "/dev/sdf"
    assert att["InstanceId"] == iid and att["VolumeId"] == vid
    vm = sim.vm(int(iid.split("-")[1]))
    disks = {d.findtext("IMAGE_ID"): d.findtext("TARGET") for d in vm.findall("TEMPLATE/DISK")}
    assert disks[str(int(vid[4:]))] == "sdf"
    shown = volumes(engine, VolumeId=[vid])[vid]
    assert shown["State"] == "in-use"
    (a,) = shown["Attachments"]
    assert a["InstanceId"] == iid and a["Device"] == "/dev/sdf" and a["State"] == "attached"
    by_instance = {"Filter": [{"Name": "attachment.instance-id", "Value": [iid]}]}
    assert set(volumes(engine, **by_instance)) == {vid}

    # in use: cannot delete, cannot attach again
    assert code_of(run, engine, "DeleteVolume", {"VolumeId": vid}, user="demo") == "VolumeInUse"
    other = new_instance(engine)
    body = {"VolumeId": vid, "InstanceId": other, "Device": "/dev/sdg"}
    assert code_of(run, engine, "AttachVolume", body, user="demo") == "VolumeInUse"

    # snapshot while attached (disk save-as), then restore it into a new volume
    snap = run(engine, "CreateSnapshot", {"VolumeId": vid, "Description": "nightly"}, user="demo")
    sid = snap["SnapshotId"]
    assert sid.startswith("snap-") and snap["VolumeId"] == vid and snap["Description"] == "nightly"
    simg = image(sim, sid)
    assert simg.findtext("TEMPLATE/EBS_SNAPSHOT") == "YES"
    assert simg.findtext("TEMPLATE/EBS_VOLUME_ID") == vid
    assert simg.findtext("TEMPLATE/EBS_VOLUME") is None
    snaps = run(engine, "DescribeSnapshots", {"SnapshotId": [sid]}, user="demo")["Snapshots"]
    assert snaps[0]["State"] == "completed" and snaps[0]["OwnerId"] == "demo"
    assert snaps[0]["VolumeSize"] == 1 and snaps[0]["Progress"] == "100%"
    mine = run(engine, "DescribeSnapshots", {"Owner": ["self"]}, user="demo")["Snapshots"]
    assert sid in {s["SnapshotId"] for s in mine}
    by_volume = {"Filter": [{"Name": "volume-id", "Value": [vid]}]}
    assert [
        s["SnapshotId"]
        for s in run(engine, "DescribeSnapshots", by_volume, user="demo")["Snapshots"]
    ] == [sid]
    # snapshots are not volumes, volumes are not snapshots
    assert code_of(
        run, engine, "DescribeVolumes", {"VolumeId": [f"vol-{sid[5:]}"]}, user="demo"
    ) == ("InvalidVolume.NotFound")
    assert code_of(
        run, engine, "DeleteSnapshot", {"SnapshotId": f"snap-{vid[4:]}"}, user="demo"
    ) == ("InvalidSnapshot.NotFound")

    restored = run(engine, "CreateVolume", {"SnapshotId": sid}, user="demo")
    rid = restored["VolumeId"]
    rimg = image(sim, rid)
    assert rimg.findtext("PERSISTENT") == "1" and rimg.findtext("TEMPLATE/EBS_VOLUME") == "YES"
    assert rimg.findtext("TEMPLATE/EBS_SNAPSHOT") is None
    assert restored["SnapshotId"] == sid and rid != vid

    # detach: wrong instance / device first
    wrong = {"VolumeId": vid, "InstanceId": other}
    assert code_of(run, engine, "DetachVolume", wrong, user="demo") == "InvalidAttachment.NotFound"
    wrong = {"VolumeId": vid, "Device": "/dev/sdz"}
    assert code_of(run, engine, "DetachVolume", wrong, user="demo") == "InvalidAttachment.NotFound"
    det = run(engine, "DetachVolume", {"VolumeId": vid, "InstanceId": iid}, user="demo")
    assert det["State"] == "detaching" and det["Device"] == "/dev/sdf"
    assert volumes(engine, VolumeId=[vid])[vid]["State"] == "available"
    assert code_of(run, engine, "DetachVolume", {"VolumeId": vid}, user="demo") == "IncorrectState"

    # snapshot of a detached volume: a clone
    snap2 = run(engine, "CreateSnapshot", {"VolumeId": vid}, user="demo")["SnapshotId"]
    assert image(sim, snap2).findtext("TEMPLATE/EBS_SNAPSHOT") == "YES"
    # the volume is persistent, so is oned's clone of it: a snapshot is made non-persistent
    assert image(sim, snap2).findtext("PERSISTENT") == "0"

    for s in (sid, snap2):
        assert run(engine, "DeleteSnapshot", {"SnapshotId": s}, user="demo") == {"Return": True}
    assert code_of(run, engine, "DeleteSnapshot", {"SnapshotId": sid}, user="demo") == (
        "InvalidSnapshot.NotFound"
    )
    for v in (vid, rid):
        run(engine, "DeleteVolume", {"VolumeId": v}, user="demo")
    run(engine, "TerminateInstances", {"InstanceId": [iid, other]}, user="demo")


def test_attach_refusals(sim: Sim, engine) -> None:
    vid = run(engine, "CreateVolume", {"Size": 1}, user="demo")["VolumeId"]
    iid = new_instance(engine)
    for body, code in (
        ({"VolumeId": vid, "InstanceId": iid}, "MissingParameter"),
        ({"VolumeId": vid, "InstanceId": iid, "Device": "/dev/../sda"}, "InvalidParameterValue"),
        (
            {"VolumeId": vid, "InstanceId": iid, "Device": "sda"},
            "InvalidParameterValue",
        ),  # root disk
        ({"VolumeId": vid, "InstanceId": "i-99999", "Device": "sdf"}, "InvalidInstanceID.NotFound"),
        ({"VolumeId": "vol-99999", "InstanceId": iid, "Device": "sdf"}, "InvalidVolume.NotFound"),
        (
            {"VolumeId": "vol-00000000", "InstanceId": iid, "Device": "sdf"},
            "InvalidVolume.NotFound",
        ),
    ):
        assert code_of(run, engine, "AttachVolume", body, user="demo") == code, body
    for device in ("/dev/ttyz", "/dev/abc", "/dev/loop", "/dev/zzzzz", "fd0", "/dev/sdf1"):
        body = {"VolumeId": vid, "InstanceId": iid, "Device": device}
        with pytest.raises(Ec2Error) as err:
            run(engine, "AttachVolume", body, user="demo")
        assert err.value.code == "InvalidParameterValue"
        assert err.value.message == (
            f"Value ({device}) for parameter device is invalid. "
            f"{device} is not a valid EBS device name."
        )
    for device in ("/dev/sdc", "sdaa", "/dev/xvdbc", "xvdh", "/dev/vdz", "/dev/hdc"):
        body = {"VolumeId": vid, "InstanceId": iid, "Device": device, "DryRun": True}
        assert code_of(run, engine, "AttachVolume", body, user="demo") == "DryRunOperation"
    run(engine, "TerminateInstances", {"InstanceId": [iid]}, user="demo")
    # still listed by DescribeInstances: there, but terminated (as CreateImage answers)
    body = {"VolumeId": vid, "InstanceId": iid, "Device": "sdf"}
    with pytest.raises(Ec2Error) as err:
        run(engine, "AttachVolume", body, user="demo")
    assert err.value.code == "IncorrectInstanceState" and "terminated" in err.value.message
    run(engine, "DeleteVolume", {"VolumeId": vid}, user="demo")


def test_users_are_isolated(sim: Sim, engine, trudy: str) -> None:
    vid = run(engine, "CreateVolume", {"Size": 1}, user="demo")["VolumeId"]
    sid = run(engine, "CreateSnapshot", {"VolumeId": vid}, user="demo")["SnapshotId"]
    assert vid not in volumes(engine, user=trudy)
    assert run(engine, "DescribeSnapshots", {}, user=trudy)["Snapshots"] == []
    for action, body, code in (
        ("DescribeVolumes", {"VolumeId": [vid]}, "InvalidVolume.NotFound"),
        ("DeleteVolume", {"VolumeId": vid}, "InvalidVolume.NotFound"),
        ("CreateSnapshot", {"VolumeId": vid}, "InvalidVolume.NotFound"),
        ("DescribeSnapshots", {"SnapshotId": [sid]}, "InvalidSnapshot.NotFound"),
        ("DeleteSnapshot", {"SnapshotId": sid}, "InvalidSnapshot.NotFound"),
        ("CreateVolume", {"SnapshotId": sid}, "InvalidSnapshot.NotFound"),
        ("DetachVolume", {"VolumeId": vid}, "InvalidVolume.NotFound"),
    ):
        assert code_of(run, engine, action, body, user=trudy) == code, action
    mine = new_instance(engine)
    body = {"VolumeId": vid, "InstanceId": mine, "Device": "sdf"}
    assert code_of(run, engine, "AttachVolume", body, user=trudy) == "InvalidVolume.NotFound"
    tv = run(engine, "CreateVolume", {"Size": 1}, user=trudy)["VolumeId"]
    body = {"VolumeId": tv, "InstanceId": mine, "Device": "sdf"}
    assert code_of(run, engine, "AttachVolume", body, user=trudy) == "InvalidInstanceID.NotFound"
    assert image(sim, vid).findtext("STATE") in ("1", "4")
    run(engine, "DeleteSnapshot", {"SnapshotId": sid}, user="demo")
    run(engine, "DeleteVolume", {"VolumeId": vid}, user="demo")
    run(engine, "DeleteVolume", {"VolumeId": tv}, user=trudy)
    run(engine, "TerminateInstances", {"InstanceId": [mine]}, user="demo")


EVIL = ['x"\nSIZE="99999', "y]\nPERSISTENT=NO\nZ=[A=1", '\\"', "a'c<d>&e"]


@pytest.mark.parametrize("evil", EVIL)
def test_descriptions_and_tags_cannot_break_out(sim: Sim, engine, evil: str) -> None:
    vol = run(
        engine,
        "CreateVolume",
        {
            "Size": 1,
            "TagSpecification": [{"ResourceType": "volume", "Tag": [{"Key": "k", "Value": evil}]}],
        },
        user="demo",
    )
    img = image(sim, vol["VolumeId"])
    assert img.findtext("SIZE") == "1024" and img.findtext("PERSISTENT") == "1"
    assert img.find("TEMPLATE/Z") is None
    assert vol["Tags"] == [{"Key": "k", "Value": evil}]
    snap = run(
        engine, "CreateSnapshot", {"VolumeId": vol["VolumeId"], "Description": evil}, user="demo"
    )
    simg = image(sim, snap["SnapshotId"])
    assert simg.findtext("TEMPLATE/DESCRIPTION") == evil and simg.find("TEMPLATE/Z") is None
    assert snap["Description"] == evil
    run(engine, "DeleteSnapshot", {"SnapshotId": snap["SnapshotId"]}, user="demo")
    run(engine, "DeleteVolume", {"VolumeId": vol["VolumeId"]}, user="demo")


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Sim:
    server_mod = importlib.import_module("onesim.server")
    server = server_mod.SimServer(
        str(tmp_path_factory.mktemp("onesim-slow-vol")),
        host="127.0.0.1",
        port=0,
        seed="demo",
        speed=0.3,
    )
    server.start()
    try:
        yield Sim(server)
    finally:
        server.stop()


def test_states_while_oned_is_busy(slow: Sim) -> None:
    import time

    engine = slow.engine()
    try:
        vid = run(engine, "CreateVolume", {"Size": 1}, user="demo")["VolumeId"]
        assert volumes(engine, VolumeId=[vid])[vid]["State"] == "creating"
        # a dry run fails as the request does, and neither says what oned's CLI would do
        for dry in (True, False):
            with pytest.raises(Ec2Error) as err:
                run(engine, "DeleteVolume", {"VolumeId": vid, "DryRun": dry}, user="demo")
            assert err.value.code == "IncorrectState" and "creating" in err.value.message
            assert "force" not in err.value.message
        assert code_of(run, engine, "CreateSnapshot", {"VolumeId": vid}, user="demo") == (
            "IncorrectState"
        )
        deadline = time.monotonic() + 5
        while volumes(engine, VolumeId=[vid])[vid]["State"] != "available":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        sid = run(engine, "CreateSnapshot", {"VolumeId": vid}, user="demo")["SnapshotId"]
        snap = run(engine, "DescribeSnapshots", {"SnapshotId": [sid]}, user="demo")["Snapshots"]
        assert snap[0]["State"] == "pending" and snap[0]["Progress"] == "0%"
        # the volume being copied into the snapshot is in use, and says why
        for dry in (True, False):
            with pytest.raises(Ec2Error) as err:
                run(engine, "DeleteVolume", {"VolumeId": vid, "DryRun": dry}, user="demo")
            assert err.value.code == "VolumeInUse" and "snapshot" in err.value.message
        # oned deletes an image it is still copying only with force: not yet, and said so
        for dry in (True, False):
            with pytest.raises(Ec2Error) as err:
                run(engine, "DeleteSnapshot", {"SnapshotId": sid, "DryRun": dry}, user="demo")
            assert err.value.code == "IncorrectState" and "pending" in err.value.message
            assert "force" not in err.value.message
        assert code_of(run, engine, "CreateVolume", {"SnapshotId": sid}, user="demo") == (
            "IncorrectState"
        )
    finally:
        engine.close()


def test_a_failed_volume_from_a_snapshot_leaves_no_image(slow: Sim) -> None:
    """The clone made for the volume is still being copied (LOCKED) when the next step fails:
    oned deletes it only with force, which the server admin gives; nothing is left behind."""

    engine = slow.engine()
    try:
        vid, sid = volume_and_snapshot(engine)
        pool = etree.fromstring(slow.as_admin("one.imagepool.info", -2, -1, -1).encode())
        before = {i.findtext("ID") for i in pool.iterfind("IMAGE")}
        slow.as_admin("onesim.fault.set", "one.image.update", 0x2000, "disk full", 0, 1)
        try:
            code = code_of(run, engine, "CreateVolume", {"SnapshotId": sid}, user="demo")
        finally:
            slow.as_admin("onesim.fault.clear")
        assert code == "InternalError"
        pool = etree.fromstring(slow.as_admin("one.imagepool.info", -2, -1, -1).encode())
        left = {i.findtext("ID"): i.findtext("STATE") for i in pool.iterfind("IMAGE")}
        assert all(state == "7" for iid, state in left.items() if iid not in before)  # DELETE
    finally:
        engine.close()


def test_the_device_name_is_kept_as_given(sim: Sim, engine) -> None:
    """EC2 answers the device as AttachVolume got it; Terraform's aws_volume_attachment finds
    the attachment again with `attachment.device` = that very name."""
    vid = run(engine, "CreateVolume", {"Size": 1}, user="demo")["VolumeId"]
    iid = new_instance(engine)
    body = {"VolumeId": vid, "InstanceId": iid, "Device": "xvdh"}
    assert run(engine, "AttachVolume", body, user="demo")["Device"] == "xvdh"
    by_device = {"Filter": [{"Name": "attachment.device", "Value": ["xvdh"]}]}
    assert set(volumes(engine, **by_device)) == {vid}
    (shown,) = volumes(engine, VolumeId=[vid])[vid]["Attachments"]
    day = shown["AttachTime"].strftime("%Y-%m-%dT*")  # as EC2 shows it, ISO 8601
    by_time = {"Filter": [{"Name": "attachment.attach-time", "Value": [day]}]}
    assert set(volumes(engine, **by_time)) == {vid}
    described = run(engine, "DescribeInstances", {"InstanceId": [iid]}, user="demo")
    (inst,) = described["Reservations"][0]["Instances"]
    assert [m["DeviceName"] for m in inst["BlockDeviceMappings"]] == ["xvdh"]
    target = {"VolumeId": vid, "InstanceId": iid, "Device": "/dev/xvdh"}  # the same disk
    assert run(engine, "DetachVolume", target, user="demo")["Device"] == "xvdh"
    run(engine, "DeleteVolume", {"VolumeId": vid}, user="demo")
    run(engine, "TerminateInstances", {"InstanceId": [iid]}, user="demo")


def test_only_the_volume_being_attached_is_attaching(slow: Sim) -> None:
    """While oned hot-plugs one disk (it marks that DISK ATTACH="YES"), a volume attached long
    before stays `attached`, in DescribeVolumes and in the instance's block devices."""

    engine = slow.engine()

    def attachment(vid: str) -> str | None:
        found = volumes(engine, VolumeId=[vid])[vid]["Attachments"]
        return found[0]["State"] if found else None

    try:
        iid = running_instance(engine)
        first, second = (
            run(engine, "CreateVolume", {"Size": 1}, user="demo")["VolumeId"] for _ in "12"
        )
        wait(lambda: volumes(engine, VolumeId=[second])[second]["State"] == "available")
        body = {"VolumeId": first, "InstanceId": iid, "Device": "/dev/vdb"}
        run(engine, "AttachVolume", body, user="demo")
        wait(lambda: attachment(first) == "attached")
        body = {"VolumeId": second, "InstanceId": iid, "Device": "/dev/vdc"}
        run(engine, "AttachVolume", body, user="demo")
        assert (attachment(first), attachment(second)) == ("attached", "attaching")
        (res,) = run(engine, "DescribeInstances", {"InstanceId": [iid]}, user="demo")[
            "Reservations"
        ]
        shown = {
            b["Ebs"]["VolumeId"]: b["Ebs"]["Status"]
            for b in res["Instances"][0]["BlockDeviceMappings"]
        }
        assert shown == {first: "attached", second: "attaching"}
        body = {"InstanceId": iid, "Attribute": "blockDeviceMapping"}
        mappings = run(engine, "DescribeInstanceAttribute", body, user="demo")[
            "BlockDeviceMappings"
        ]
        assert {b["Ebs"]["VolumeId"]: b["Ebs"]["Status"] for b in mappings} == shown
        wait(lambda: attachment(second) == "attached")
        run(engine, "DetachVolume", {"VolumeId": first}, user="demo")
        # on its way out: a running VM's HOTPLUG does not say which way, the history record
        # the detach closed does (vm.info shows it; for a pool, econe reads that VM again)
        assert (attachment(first), attachment(second)) == ("detaching", "attached")
        going = {first: "detaching", second: "attached"}
        for body in ({"InstanceId": [iid]}, {}):
            found = run(engine, "DescribeInstances", body, user="demo")["Reservations"]
            (instance,) = [i for r in found for i in r["Instances"] if i["InstanceId"] == iid]
            shown = {
                b["Ebs"]["VolumeId"]: b["Ebs"]["Status"] for b in instance["BlockDeviceMappings"]
            }
            assert shown == going, body
        body = {"InstanceId": iid, "Attribute": "blockDeviceMapping"}
        mappings = run(engine, "DescribeInstanceAttribute", body, user="demo")[
            "BlockDeviceMappings"
        ]
        assert {b["Ebs"]["VolumeId"]: b["Ebs"]["Status"] for b in mappings} == going
        wait(lambda: attachment(first) is None)
        assert volumes(engine, VolumeId=[first])[first]["State"] == "available"
        run(engine, "TerminateInstances", {"InstanceId": [iid]}, user="demo")
    finally:
        engine.close()


def test_a_full_datastore_is_capacity_not_state(tmp_path) -> None:
    """oned answers "Not enough space in datastore" as it answers a wrong state (ACTION):
    a snapshot that does not fit is ResourceLimitExceeded (as CreateImage), a volume from a
    snapshot InsufficientVolumeCapacity (as a new volume), and nothing is left behind."""
    server = importlib.import_module("onesim.server").SimServer(
        str(tmp_path), host="127.0.0.1", port=0, seed="demo", speed=0
    )
    server.start()
    sim = Sim(server)
    engine = sim.engine()
    try:
        vol = run(engine, "CreateVolume", {"Size": 7}, user="demo")["VolumeId"]  # of 20 GiB
        snap = run(engine, "CreateSnapshot", {"VolumeId": vol}, user="demo")["SnapshotId"]
        before = etree.fromstring(sim.as_admin("one.imagepool.info", -2, -1, -1).encode())
        with pytest.raises(Ec2Error) as err:
            run(engine, "CreateVolume", {"SnapshotId": snap}, user="demo")
        assert (err.value.code, err.value.status) == ("InsufficientVolumeCapacity", 400)
        assert "enough space" in err.value.message
        run(engine, "CreateVolume", {"Size": 5}, user="demo")  # 19 GiB used
        with pytest.raises(Ec2Error) as err:
            run(engine, "CreateSnapshot", {"VolumeId": vol}, user="demo")
        assert err.value.code == "ResourceLimitExceeded"
        after = etree.fromstring(sim.as_admin("one.imagepool.info", -2, -1, -1).encode())
        assert len(after) == len(before) + 1  # the 5 GiB volume only
    finally:
        engine.close()
        server.stop()


def test_concurrent_retries_with_one_token_make_one_volume(sim: Sim, engine) -> None:
    from concurrent.futures import ThreadPoolExecutor

    sim.as_admin("onesim.fault.set", "one.image.allocate", 0, "", 0.3, 2)  # slow, not failing
    body = {"Size": 1, "ClientToken": "vol-in-flight"}
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: run(engine, "CreateVolume", body, user="demo"), range(4)))
    assert len({a["VolumeId"] for a in answers}) == 1
    pool_xml = etree.fromstring(sim.as_admin("one.imagepool.info", -2, -1, -1).encode())
    tokens = [i.findtext("TEMPLATE/EC2_CLIENT_TOKEN") for i in pool_xml.iterfind("IMAGE")]
    assert tokens.count("vol-in-flight") == 1
    run(engine, "DeleteVolume", {"VolumeId": answers[0]["VolumeId"]}, user="demo")


def test_a_volume_oned_cannot_show_afterwards_is_not_left_behind(sim: Sim, engine) -> None:
    def live_images() -> set[str]:
        pool = etree.fromstring(sim.as_admin("one.imagepool.info", -2, -1, -1).encode())
        return {i.findtext("ID") for i in pool.iterfind("IMAGE") if i.findtext("STATE") != "7"}

    before = live_images()
    sim.as_admin("onesim.fault.set", "one.image.info", 0x2000, "database locked", 0, 1)
    with pytest.raises(Ec2Error):
        run(engine, "CreateVolume", {"Size": 1}, user="demo")
    assert live_images() == before


def test_a_terminated_instance_shows_no_devices_and_no_address(sim: Sim, engine) -> None:
    """As on EC2: its volume, attached again elsewhere, is found on the live instance only."""
    vid = run(engine, "CreateVolume", {"Size": 1}, user="demo")["VolumeId"]
    gone, live = new_instance(engine), new_instance(engine)
    attach = {"VolumeId": vid, "InstanceId": gone, "Device": "/dev/sdf"}
    run(engine, "AttachVolume", attach, user="demo")
    run(engine, "TerminateInstances", {"InstanceId": [gone]}, user="demo")
    run(engine, "AttachVolume", {**attach, "InstanceId": live}, user="demo")
    (res,) = run(engine, "DescribeInstances", {"InstanceId": [gone]}, user="demo")["Reservations"]
    (inst,) = res["Instances"]
    assert inst["State"]["Name"] == "terminated"
    assert inst["BlockDeviceMappings"] == [] and inst["PrivateDnsName"] == ""
    assert inst.get("PrivateIpAddress") is None
    attribute = {"InstanceId": gone, "Attribute": "blockDeviceMapping"}
    assert (
        run(engine, "DescribeInstanceAttribute", attribute, user="demo")["BlockDeviceMappings"]
        == []
    )
    by_volume = {"Filter": [{"Name": "block-device-mapping.volume-id", "Value": [vid]}]}
    found = run(engine, "DescribeInstances", by_volume, user="demo")["Reservations"]
    assert [i["InstanceId"] for r in found for i in r["Instances"]] == [live]
    run(engine, "TerminateInstances", {"InstanceId": [live]}, user="demo")


def test_a_retry_never_gets_the_volume_a_failed_attempt_left(slow: Sim) -> None:
    """The volume of a failed CreateVolume is deleted; it still carries the token while oned
    deletes it: a retry gets a volume that stays, never that one."""
    import time

    engine = slow.engine()
    try:
        vid, sid = volume_and_snapshot(engine)
        body = {"SnapshotId": sid, "ClientToken": "rolled-back"}
        slow.as_admin("onesim.fault.set", "one.image.persistent", 0x2000, "disk full", 0, 1)
        try:
            assert code_of(run, engine, "CreateVolume", body, user="demo") == "InternalError"
        finally:
            slow.as_admin("onesim.fault.clear")
        again = run(engine, "CreateVolume", body, user="demo")
        assert again["State"] in ("creating", "available")
        assert run(engine, "CreateVolume", body, user="demo")["VolumeId"] == again["VolumeId"]
        time.sleep(1)  # whatever oned was deleting is gone: the retry's volume is not
        assert volumes(engine, VolumeId=[again["VolumeId"]])[again["VolumeId"]]["State"] in (
            "creating",
            "available",
        )
    finally:
        engine.close()


def test_a_volume_oned_made_after_econe_gave_up_is_the_retrys(sim: Sim) -> None:
    """oned answers CreateVolume's allocation after :one_timeout: (Unavailable, which SDKs
    retry): the retry waits for that attempt (Unavailable while it may still be under way)
    and then answers its volume; one volume in all, as RunInstances does."""
    import time

    from econe.engine import Engine
    from econe.one.client import OneClient
    from econe.one.session import ServerCipherSessions

    impatient = Engine(
        sim.config(one_timeout=0.5),
        OneClient(sim.url, timeout=0.5),
        ServerCipherSessions(sim.ec2_auth),
    )
    body = {"Size": 1, "ClientToken": "answered-late"}
    try:
        sim.as_admin("onesim.fault.set", "one.image.allocate", 0, "", 1.0, 1)  # slow
        with pytest.raises(Ec2Error) as err:
            run(impatient, "CreateVolume", body, user="demo")
        assert err.value.code == "Unavailable"
        with pytest.raises(Ec2Error) as err:  # at once: oned is still making it
            run(impatient, "CreateVolume", body, user="demo")
        assert err.value.code == "Unavailable" and "in progress" in err.value.message
        time.sleep(1.0)  # onesim makes it once its delay is over
        first = run(impatient, "CreateVolume", body, user="demo")
        assert run(impatient, "CreateVolume", body, user="demo")["VolumeId"] == first["VolumeId"]
        pool = etree.fromstring(sim.as_admin("one.imagepool.info", -2, -1, -1).encode())
        tokens = [i.findtext("TEMPLATE/EC2_CLIENT_TOKEN") for i in pool.iterfind("IMAGE")]
        assert tokens.count("answered-late") == 1
        run(impatient, "DeleteVolume", {"VolumeId": first["VolumeId"]}, user="demo")
    finally:
        impatient.close()


def test_a_copy_oned_made_after_econe_gave_up_is_the_retrys(sim: Sim, engine) -> None:
    """CreateVolume from a snapshot: oned's copy answered after :one_timeout: was left unmarked
    (no token, no EBS_VOLUME) and the retry made a second one. The copy is named after the
    user and token: the retry finds it, finishes it and answers it; one copy in all."""
    import time

    from tests.engine.test_sim import impatient_engine

    vid = run(engine, "CreateVolume", {"Size": 1}, user="demo")["VolumeId"]
    sid = run(engine, "CreateSnapshot", {"VolumeId": vid}, user="demo")["SnapshotId"]
    impatient = impatient_engine(sim)
    body = {"SnapshotId": sid, "ClientToken": "copied-late"}
    try:
        before = {i.findtext("ID") for i in _image_pool(sim)}
        sim.as_admin("onesim.fault.set", "one.image.clone", 0, "", 1.0, 1)  # slow
        assert code_of(run, impatient, "CreateVolume", body, user="demo") == "Unavailable"
        time.sleep(2.2)  # past the window a retry waits (2 x :one_timeout: + 1 s)
        volume = run(impatient, "CreateVolume", body, user="demo")
        assert volume["SnapshotId"] == sid and volume["State"] in ("available", "creating")
        assert run(impatient, "CreateVolume", body, user="demo")["VolumeId"] == volume["VolumeId"]
        made = [i for i in _image_pool(sim) if i.findtext("ID") not in before]
        assert [i.findtext("ID") for i in made] == [volume["VolumeId"][4:].lstrip("0") or "0"]
        assert made[0].findtext("TEMPLATE/EC2_CLIENT_TOKEN") == "copied-late"
        run(impatient, "DeleteVolume", {"VolumeId": volume["VolumeId"]}, user="demo")
    finally:
        impatient.close()


def _image_pool(sim: Sim) -> list:
    return list(etree.fromstring(sim.as_admin("one.imagepool.info", -2, -1, -1).encode()))


def test_a_shared_snapshot_shows_no_tags_to_others(sim: Sim, engine, trudy: str) -> None:
    """As a shared AMI: its tags are its owner's (EC2), in DescribeSnapshots as in DescribeTags."""
    tag = {"ResourceType": "snapshot", "Tag": [{"Key": "secret", "Value": "demo-only"}]}
    vid = run(engine, "CreateVolume", {"Size": 1}, user="demo")["VolumeId"]
    sid = run(engine, "CreateSnapshot", {"VolumeId": vid, "TagSpecification": [tag]}, user="demo")[
        "SnapshotId"
    ]
    sim.as_admin("one.image.chmod", int(sid[5:]), -1, -1, -1, 1, -1, -1, -1, -1, -1)  # group USE
    mine = run(engine, "DescribeSnapshots", {"SnapshotId": [sid]}, user="demo")["Snapshots"]
    assert mine[0]["Tags"] == [{"Key": "secret", "Value": "demo-only"}]
    shared = run(engine, "DescribeSnapshots", {"SnapshotId": [sid]}, user=trudy)["Snapshots"]
    assert shared[0]["OwnerId"] == "demo" and shared[0]["Tags"] == []
    by_tag = {"Filter": [{"Name": "tag:secret", "Value": ["demo-only"]}]}
    assert run(engine, "DescribeSnapshots", by_tag, user=trudy)["Snapshots"] == []
    assert [
        s["SnapshotId"] for s in run(engine, "DescribeSnapshots", by_tag, user="demo")["Snapshots"]
    ] == [sid]
    assert run(engine, "DescribeTags", {}, user=trudy)["Tags"] == []
    # a volume shared in OpenNebula is still its owner's alone: not listed, tags and all
    sim.as_admin("one.image.chmod", int(vid[4:]), -1, -1, -1, 1, -1, -1, -1, -1, -1)
    assert vid not in volumes(engine, user=trudy)
    run(engine, "DeleteSnapshot", {"SnapshotId": sid}, user="demo")
    run(engine, "DeleteVolume", {"VolumeId": vid}, user="demo")


@pytest.mark.parametrize("description", ["  padded  ", "a\rb", "trailing "])
def test_a_description_oned_would_change_is_refused(sim: Sim, engine, description: str) -> None:
    """oned trims a template value and stores a CR as LF: refused, naming Description, and
    nothing made (as tags and security groups), in CreateSnapshot, CreateImage, RegisterImage."""
    vid = run(engine, "CreateVolume", {"Size": 1}, user="demo")["VolumeId"]
    before = run(engine, "DescribeSnapshots", {"Owner": ["self"]}, user="demo")["Snapshots"]
    iid = new_instance(engine)
    for action, body in (
        ("CreateSnapshot", {"VolumeId": vid}),
        ("CreateImage", {"InstanceId": iid, "Name": "refused-description"}),
        ("RegisterImage", {"ImageLocation": AMI}),
    ):
        with pytest.raises(Ec2Error) as err:
            run(engine, action, {**body, "Description": description}, user="demo")
        assert err.value.code == "InvalidParameterValue", action
        assert "parameter Description" in err.value.message, action
    assert run(engine, "DescribeSnapshots", {"Owner": ["self"]}, user="demo")["Snapshots"] == before
    (ami,) = run(engine, "DescribeImages", {"ImageId": [AMI]}, user="demo")["Images"]
    assert ami.get("Description", "") != description
    run(engine, "TerminateInstances", {"InstanceId": [iid]}, user="demo")
    run(engine, "DeleteVolume", {"VolumeId": vid}, user="demo")


def test_a_snapshot_a_volume_is_made_from_is_in_use(slow: Sim) -> None:
    engine = slow.engine()
    try:
        _, sid = volume_and_snapshot(engine)
        run(engine, "CreateVolume", {"SnapshotId": sid}, user="demo")
        for dry in (True, False):
            with pytest.raises(Ec2Error) as err:
                run(engine, "DeleteSnapshot", {"SnapshotId": sid, "DryRun": dry}, user="demo")
            assert err.value.code == "InvalidSnapshot.InUse"
            assert err.value.message == (
                f"The snapshot {sid} is in use: a volume is being created from it"
            )
    finally:
        engine.close()


def test_dry_runs_refuse_what_the_request_refuses(sim: Sim, engine, trudy: str) -> None:
    from tests.engine.test_instance_status import put_state

    vid = run(engine, "CreateVolume", {"Size": 1}, user="demo")["VolumeId"]
    sid = run(engine, "CreateSnapshot", {"VolumeId": vid}, user="demo")["SnapshotId"]
    sim.as_admin("one.image.chmod", int(sid[5:]), -1, 1, -1, 1, 1, -1, -1, -1, -1)  # group MANAGE
    # a snapshot shared with you is still its owner's (EC2), whatever OpenNebula would allow
    for dry in (True, False):
        with pytest.raises(Ec2Error) as err:
            run(engine, "DeleteSnapshot", {"SnapshotId": sid, "DryRun": dry}, user=trudy)
        assert (err.value.code, err.value.status) == ("UnauthorizedOperation", 403)
    assert code_of(
        run, engine, "DeleteSnapshot", {"SnapshotId": sid, "DryRun": True}, user="demo"
    ) == ("DryRunOperation")
    iid = new_instance(engine)
    run(engine, "AttachVolume", {"VolumeId": vid, "InstanceId": iid, "Device": "sdf"}, user="demo")
    put_state(sim, iid, 3, 18)  # SHUTDOWN_POWEROFF: stopping, no disk can be saved
    for dry in (True, False):
        with pytest.raises(Ec2Error) as err:
            run(engine, "CreateSnapshot", {"VolumeId": vid, "DryRun": dry}, user="demo")
        assert err.value.code == "IncorrectState" and "stopping" in err.value.message
    put_state(sim, iid, 3, 3)
    assert code_of(
        run, engine, "CreateSnapshot", {"VolumeId": vid, "DryRun": True}, user="demo"
    ) == ("DryRunOperation")
    run(engine, "DetachVolume", {"VolumeId": vid}, user="demo")
    run(engine, "TerminateInstances", {"InstanceId": [iid]}, user="demo")
    run(engine, "DeleteSnapshot", {"SnapshotId": sid}, user="demo")
    run(engine, "DeleteVolume", {"VolumeId": vid}, user="demo")


def test_two_attachments_at_once(slow: Sim) -> None:
    """EC2 takes two AttachVolume at once; oned hot-plugs one disk at a time (the second is
    refused "wrong state HOTPLUG"): econe waits for the first and plugs the second. One volume
    attached twice at once: the second is VolumeInUse, as on EC2, not oned's words."""
    from concurrent.futures import ThreadPoolExecutor

    engine = slow.engine()

    def attach(vid: str, iid: str, device: str) -> str:
        body = {"VolumeId": vid, "InstanceId": iid, "Device": device}
        try:
            return run(engine, "AttachVolume", body, user="demo")["State"]
        except Ec2Error as exc:
            return f"{exc.code}: {exc.message}"

    try:
        iid, other = new_instance(engine), new_instance(engine)
        state = {"Filter": [{"Name": "instance-state-name", "Value": ["running"]}]}
        wait(lambda: len(run(engine, "DescribeInstances", state, user="demo")["Reservations"]) >= 2)
        first, second = (
            run(engine, "CreateVolume", {"Size": 1}, user="demo")["VolumeId"] for _ in "12"
        )
        wait(lambda: volumes(engine, VolumeId=[second])[second]["State"] == "available")
        wait(lambda: volumes(engine, VolumeId=[first])[first]["State"] == "available")
        # both requests past their checks before oned sees either
        slow.as_admin("onesim.fault.set", "one.vm.attach", 0, "", 0.2, 2)
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(attach, (first, second), (iid, iid), ("/dev/sdf", "/dev/sdg")))
        assert answers == ["attaching", "attaching"]
        wait(
            lambda: all(
                volumes(engine, VolumeId=[v])[v]["State"] == "in-use" for v in (first, second)
            )
        )
        for v in (first, second):
            run(engine, "DetachVolume", {"VolumeId": v}, user="demo")
        wait(
            lambda: all(
                volumes(engine, VolumeId=[v])[v]["State"] == "available" for v in (first, second)
            )
        )
        slow.as_admin("onesim.fault.set", "one.vm.attach", 0, "", 0.2, 2)
        with ThreadPoolExecutor(2) as pool:
            answers = sorted(pool.map(attach, (first, first), (iid, other), ("sdh", "sdh")))
        assert answers == [
            "VolumeInUse: " + f"{first} is already attached to an instance",
            "attaching",
        ]
        run(engine, "TerminateInstances", {"InstanceId": [iid, other]}, user="demo")
    finally:
        slow.as_admin("onesim.fault.clear")
        engine.close()


def _share_with_group(sim: Sim, instance: str, flag: int) -> None:
    """oneadmin opens (1) or closes (0) the group's USE and MANAGE rights on a VM."""
    sim.as_admin("one.vm.chmod", int(instance[2:]), -1, -1, -1, flag, flag, -1, -1, -1, -1)


def test_a_volume_attaches_only_to_its_owners_instances(sim: Sim, engine, trudy: str) -> None:
    """EC2 attaches a volume to an instance of its own account. OpenNebula lets trudy manage a
    VM demo shares with the group: still not hers to attach to. A volume attached there before
    (OpenNebula let her) is detached by the instance's owner; trudy, once the share is gone, is
    told who can, and sees the attachment without what she may no longer read."""
    iid = new_instance(engine)
    _share_with_group(sim, iid, 1)
    tv = run(engine, "CreateVolume", {"Size": 1}, user=trudy)["VolumeId"]
    body = {"VolumeId": tv, "InstanceId": iid, "Device": "sdf"}
    for dry in (True, False):
        with pytest.raises(Ec2Error) as err:
            run(engine, "AttachVolume", {**body, "DryRun": dry}, user=trudy)
        assert err.value.code == "InvalidInstanceID.NotFound" and iid in err.value.message
    assert volumes(engine, user=trudy)[tv]["State"] == "available"

    # attached while OpenNebula let her (as econe did before): then the share ends
    disk = f'DISK=[IMAGE_ID="{int(tv[4:])}",TARGET="sdf",EC2_VOLUME_ID="{tv}",EC2_DEVICE="sdf"]'
    sim.as_admin("one.vm.attach", int(iid[2:]), disk)
    _share_with_group(sim, iid, 0)
    (shown,) = volumes(engine, user=trudy)[tv]["Attachments"]
    assert shown["InstanceId"] == iid and shown["State"] == "attached"
    assert "Device" not in shown and "AttachTime" not in shown  # demo's VM: not hers to read
    with pytest.raises(Ec2Error) as err:
        run(engine, "DetachVolume", {"VolumeId": tv}, user=trudy)
    assert err.value.code == "UnauthorizedOperation" and iid in err.value.message
    assert code_of(run, engine, "DeleteVolume", {"VolumeId": tv}, user=trudy) == "VolumeInUse"

    # the instance's owner sees it among the instance's devices and detaches it
    (res,) = run(engine, "DescribeInstances", {"InstanceId": [iid]}, user="demo")["Reservations"]
    assert [m["Ebs"]["VolumeId"] for m in res["Instances"][0]["BlockDeviceMappings"]] == [tv]
    other = new_instance(engine)
    wrong = {"VolumeId": tv, "InstanceId": other}
    assert code_of(run, engine, "DetachVolume", wrong, user="demo") == "InvalidAttachment.NotFound"
    # a disk that is no volume attached with AttachVolume (the AMI's root disk) is not one
    root = {"VolumeId": f"vol-{AMI[4:]}", "InstanceId": iid}
    assert code_of(run, engine, "DetachVolume", root, user="demo") == "InvalidVolume.NotFound"
    assert code_of(run, engine, "DescribeVolumes", {"VolumeId": [tv]}, user="demo") == (
        "InvalidVolume.NotFound"  # still trudy's volume
    )
    det = run(engine, "DetachVolume", {"VolumeId": tv, "DryRun": False}, user="demo")
    assert (det["VolumeId"], det["InstanceId"], det["State"]) == (tv, iid, "detaching")
    wait(lambda: volumes(engine, user=trudy)[tv]["State"] == "available")
    assert run(engine, "DeleteVolume", {"VolumeId": tv}, user=trudy) == {"Return": True}
    run(engine, "TerminateInstances", {"InstanceId": [iid, other]}, user="demo")


def test_a_snapshot_waits_for_the_attach_and_a_detach_for_the_snapshot(slow: Sim) -> None:
    """EC2 takes a snapshot while the attachment is `attaching` (boto3's volume_in_use waiter
    returns then), and a detach while a snapshot is pending: oned saves or plugs one disk of a
    VM at a time (HOTPLUG, then HOTPLUG_SAVEAS), so each waits for the other."""
    engine = slow.engine()
    try:
        iid = running_instance(engine)
        vid = run(engine, "CreateVolume", {"Size": 1}, user="demo")["VolumeId"]
        wait(lambda: volumes(engine, VolumeId=[vid])[vid]["State"] == "available")
        body = {"VolumeId": vid, "InstanceId": iid, "Device": "sdf"}
        run(engine, "AttachVolume", body, user="demo")
        assert volumes(engine, VolumeId=[vid])[vid]["Attachments"][0]["State"] == "attaching"
        snap = run(engine, "CreateSnapshot", {"VolumeId": vid}, user="demo")
        assert snap["VolumeId"] == vid
        assert slow.vm(int(iid[2:])).findtext("LCM_STATE") == "26"  # HOTPLUG_SAVEAS
        det = run(engine, "DetachVolume", {"VolumeId": vid}, user="demo")
        assert det["State"] == "detaching"
        wait(lambda: volumes(engine, VolumeId=[vid])[vid]["State"] == "available")
        sid = {"SnapshotId": [snap["SnapshotId"]]}
        wait(
            lambda: (
                run(engine, "DescribeSnapshots", sid, user="demo")["Snapshots"][0]["State"]
                == "completed"
            )
        )
        run(engine, "TerminateInstances", {"InstanceId": [iid]}, user="demo")
    finally:
        engine.close()


def test_a_volume_being_copied_into_a_snapshot_is_attached_once_copied(
    slow: Sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """oned cannot give a VM an image it is cloning (a snapshot of a detached volume): the
    attach waits for the copy, as for another hotplug, and past that wait both the dry run and
    the request say so in EC2's words."""
    volumes_mod = importlib.import_module("handlers.volumes")
    engine = slow.engine()
    try:
        iid = running_instance(engine)
        vid, _ = volume_and_snapshot(engine)
        body = {"VolumeId": vid, "InstanceId": iid, "Device": "sdf"}
        run(engine, "CreateSnapshot", {"VolumeId": vid}, user="demo")
        assert image(slow, vid).findtext("STATE") == "6"  # CLONE
        assert volumes(engine, VolumeId=[vid])[vid]["State"] == "available"
        monkeypatch.setattr(volumes_mod, "HOTPLUG_WAIT", 0.0)
        for dry in (True, False):
            with pytest.raises(Ec2Error) as err:
                run(engine, "AttachVolume", {**body, "DryRun": dry}, user="demo")
            assert err.value.code == "IncorrectState", dry
            assert vid in err.value.message and "snapshot" in err.value.message
            assert "CLONE" not in err.value.message
        monkeypatch.undo()
        assert run(engine, "AttachVolume", body, user="demo")["State"] == "attaching"
        assert image(slow, vid).findtext("STATE") != "6"
        run(engine, "TerminateInstances", {"InstanceId": [iid]}, user="demo")
    finally:
        engine.close()


def test_restorable_by_self_lists_your_own_snapshots(sim: Sim, engine, trudy: str) -> None:
    """EC2: `self` is the snapshots "you own or have explicit permissions" for; another's
    public snapshot is `all`'s."""
    vid = run(engine, "CreateVolume", {"Size": 1}, user="demo")["VolumeId"]
    mine, shared, public = (
        run(engine, "CreateSnapshot", {"VolumeId": vid}, user="demo")["SnapshotId"]
        for _ in range(3)
    )
    sim.as_admin("one.image.chmod", int(shared[5:]), -1, -1, -1, 1, -1, -1, -1, -1, -1)
    sim.as_admin("one.image.chmod", int(public[5:]), -1, -1, -1, -1, -1, -1, 1, -1, -1)

    def restorable(user: str, *by: str) -> set[str]:
        body = {"RestorableBy": list(by)}
        found = run(engine, "DescribeSnapshots", body, user=user)["Snapshots"]
        return {s["SnapshotId"] for s in found} & {mine, shared, public}

    assert restorable("demo", "self") == {mine, shared, public}
    assert restorable("demo", "demo") == {mine, shared, public}
    assert restorable(trudy, "self") == {shared}
    assert restorable(trudy, "all") == {public}
    assert restorable("demo", trudy) == {shared, public}  # yours that others may use
    for sid in (mine, shared, public):
        run(engine, "DeleteSnapshot", {"SnapshotId": sid}, user="demo")
    run(engine, "DeleteVolume", {"VolumeId": vid}, user="demo")


def test_a_ruby_snapshot_shows_its_name_as_description(sim: Sim, engine) -> None:
    """The Ruby econe named a snapshot after its Description (or "ec2-<uuid>") and kept no
    EBS_VOLUME_ID for the disk of an attached volume: the name is the Description, and no
    VolumeId is made up."""
    vid = run(engine, "CreateVolume", {"Size": 1}, user="demo")["VolumeId"]
    ruby, unnamed = (
        run(engine, "CreateSnapshot", {"VolumeId": vid}, user="demo")["SnapshotId"] for _ in "12"
    )
    core = sim.server.sim
    for sid, name in ((ruby, "nightly backup"), (unnamed, "ec2-0b3c2d2e")):
        with core.lock:  # as the Ruby econe left it
            img = core.store.get("image", int(sid[5:]))
            img["name"] = name
            img["template"] = [p for p in img["template"] if p[0] != "EBS_VOLUME_ID"]
            core.store.put("image", img)
    found = run(engine, "DescribeSnapshots", {"SnapshotId": [ruby, unnamed]}, user="demo")
    shown = {s["SnapshotId"]: s for s in found["Snapshots"]}
    assert shown[ruby]["Description"] == "nightly backup" and "VolumeId" not in shown[ruby]
    assert shown[unnamed]["Description"] == ""
    by = {"Filter": [{"Name": "description", "Value": ["nightly backup"]}]}
    assert [
        s["SnapshotId"] for s in run(engine, "DescribeSnapshots", by, user="demo")["Snapshots"]
    ] == [ruby]
    for sid in (ruby, unnamed):
        run(engine, "DeleteSnapshot", {"SnapshotId": sid}, user="demo")
    run(engine, "DeleteVolume", {"VolumeId": vid}, user="demo")
