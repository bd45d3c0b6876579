"""EBS volumes and snapshots on OpenNebula images (DESIGN §5).

* volume   = the user's persistent DATABLOCK image with `EBS_VOLUME="YES"` (`vol-%08d`); created
  empty (`one.image.allocate`, SIZE = GiB·1024, FSTYPE = :ebs_fstype:, in :datastore_id:) or
  from a snapshot (`one.image.clone`, `EBS_FROM_SNAPSHOT_ID`).
* snapshot = an image with `EBS_SNAPSHOT="YES"`, `EBS_VOLUME_ID="vol-…"` (`snap-%08d`): a clone of
  a detached volume, or `one.vm.disksaveas` of the disk while it is attached (oned cannot clone a
  persistent image in use).
* attachment = the VM DISK with the volume's IMAGE_ID (the image's `VMS` lists the VMs). Device
  `/dev/sdf` or `sdf` ↔ DISK TARGET `sdf`; the DISK keeps the name as given (`EC2_DEVICE`) with
  `EC2_VOLUME_ID` and `EC2_ATTACH_TIME`, for the answers and the instance's mappings.

Templates of new images are written whole (update type 0) only right after econe created them,
before anyone else knows their id; existing images are only ever merged.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from lxml import etree

from econe.errors import Ec2Error, invalid_value, missing_parameter
from econe.mapping.filters import paginate
from econe.mapping.ids import format_id, required_id
from econe.one.errors import out_of_space
from econe.query import as_list
from handlers.escaping import Attr, as_given, element_attrs, template_xml
from handlers.images import discard_image, savable
from handlers.instances import check_zone, user_vm
from handlers.locks import held
from handlers.tags import tag_attrs, tag_specs
from handlers.tokens import (
    DIGEST,
    TOKEN,
    check_same_request,
    client_token,
    creating,
    in_flight,
    request_digest,
    still_in_progress,
)

log = logging.getLogger("econe.handlers.volumes")
# EC2's (and Linux's) names of block devices a volume can be attached as; the TARGET is the name
_DEVICE = re.compile(r"(?:/dev/)?((?:sd|xvd)[a-z][a-z]?|(?:vd|hd)[a-z])")
_TOKEN = etree.XPath("/IMAGE_POOL/IMAGE[TEMPLATE/EC2_CLIENT_TOKEN = $t]")
_EC2_MARKS = (
    "EBS_VOLUME",
    "EBS_SNAPSHOT",
    "EBS_VOLUME_ID",
    "EBS_FROM_SNAPSHOT_ID",
    "EC2_TAGS",
    "EC2_AMI",
    "EC2_CLIENT_TOKEN",
    "EC2_REQUEST_DIGEST",
    "EC2_VOLUME_TYPE",
    "DESCRIPTION",
)
MAX_SIZE_GIB = 16384
# how long AttachVolume/DetachVolume wait for oned to finish another hotplug of the instance
HOTPLUG_WAIT = 10.0
HOTPLUG_POLL = 0.2


def _image(rt: Any, number: int, raw: str, view: str, not_found: str) -> dict:
    """The image as `view`, or `not_found` when absent, invisible, hidden or not of that kind."""
    missing = Ec2Error(not_found, f"The {view} '{raw}' does not exist.")
    element = rt.fetch("one.image.info", number, missing)
    item = rt.view(view, element)
    flag = "_volume" if view == "volume" else "_snapshot"
    if not item.get(flag) or not item.get("State"):
        raise missing
    if view == "volume" and item.get("_owner") != rt.principal.name:
        raise missing  # volumes are the owner's only (EC2 accounts)
    item["_element"] = element
    return item


def volume(rt: Any, raw: Any) -> dict:
    number = required_id(raw, "vol", "InvalidVolumeID.Malformed", "VolumeId")
    return _image(rt, number, str(raw), "volume", "InvalidVolume.NotFound")


def snapshot(rt: Any, raw: Any) -> dict:
    number = required_id(raw, "snap", "InvalidSnapshotID.Malformed", "SnapshotId")
    return _image(rt, number, str(raw), "snapshot", "InvalidSnapshot.NotFound")


def _busy(instance: str) -> Ec2Error:
    return Ec2Error(
        "IncorrectState",
        f"The instance '{instance}' is busy with another volume (attaching, detaching or saving "
        "one); try again",
    )


def _hotplug_ready(vm: etree._Element, instance: str, what: str) -> None:
    """oned attaches and detaches disks of RUNNING and POWEROFF VMs only: checked first, so a
    dry run fails where the real request would."""
    state, lcm = vm.findtext("STATE"), vm.findtext("LCM_STATE")
    if not (state == "3" and lcm == "3") and state != "8":
        raise Ec2Error(
            "IncorrectState",
            f"The instance '{instance}' is not in a state to {what} a volume now; it must be "
            "running or stopped, with no other operation in progress",
        )


def _gone(instance: Any, what: str) -> Ec2Error:
    """A terminated instance DescribeInstances still lists is there, in the wrong state."""
    return Ec2Error(
        "IncorrectInstanceState",
        f"The instance '{instance}' is not in a state to {what} a volume (terminated).",
    )


def _disk(vm: etree._Element, image_id: int) -> etree._Element | None:
    for disk in vm.findall("TEMPLATE/DISK"):
        if disk.findtext("IMAGE_ID") == str(image_id):
            return disk
    return None


def _device_name(value: Any) -> re.Match:
    match = _DEVICE.fullmatch(str(value))
    if match is None:  # EC2's own words
        raise invalid_value("device", value, f"{value} is not a valid EBS device name.")
    return match


def _epoch(text: str | None) -> datetime | None:
    """A DISK's EC2_ATTACH_TIME as a time (filters compare it as EC2 shows it, ISO 8601); a
    value a user wrote there that is no time is none."""
    try:
        return datetime.fromtimestamp(int(text or 0), UTC) if int(text or 0) > 0 else None
    except (ValueError, OverflowError, OSError):
        return None


def _device(disk: etree._Element) -> str:
    """The device name AttachVolume was given (`xvdh`, `/dev/sdf`), else /dev/ and the TARGET."""
    return disk.findtext("EC2_DEVICE") or "/dev/" + (disk.findtext("TARGET") or "")


def _copy(rt: Any, call: tuple, errors: dict[str, str], full: str) -> int:
    """The id of the copy of a disk or an image `call` makes; oned's "Not enough space in
    datastore" (an ACTION error, as a wrong state is) becomes `full`, not IncorrectState."""
    try:
        return int(rt.call(*call, errors=errors))
    except Ec2Error as exc:
        if out_of_space(exc.message):
            raise Ec2Error(full, exc.message) from None
        raise


def _attachment_state(vm: etree._Element | None, disk: etree._Element | None) -> str:
    """oned marks the one DISK being hot-plugged ATTACH="YES"; powered off, its LCM state says
    whether it comes (HOTPLUG_PROLOG_POWEROFF) or goes (HOTPLUG_EPILOG_POWEROFF). Running
    (HOTPLUG) it does not, but the operation closed the VM's history record with its action
    (vm.info shows every record): 22, DISK_DETACH_ACTION, when it goes."""
    if vm is None or disk is None or disk.findtext("ATTACH") != "YES":
        return "attached"
    if vm.findtext("LCM_STATE") == "34":
        return "detaching"
    records = vm.findall("HISTORY_RECORDS/HISTORY")
    closed = records[-2].findtext("ACTION") if len(records) > 1 else None
    return "detaching" if closed == "22" else "attaching"


def _attachments(rt: Any, volumes: list[dict]) -> None:
    """Attachments from each volume's VMS and the DISK of those VMs (one vm.info per VM)."""
    vms: dict[str, etree._Element | None] = {}
    for vol in volumes:
        out = []
        for vm_id in vol.get("_vms") or []:
            if vm_id not in vms:
                try:
                    vms[vm_id] = rt.xml(rt.call("one.vm.info", int(vm_id)))
                except Ec2Error:
                    vms[vm_id] = None  # not visible to the user: no device to show
            vm = vms[vm_id]
            disk = _disk(vm, vol["_id"]) if vm is not None else None
            since = disk.findtext("EC2_ATTACH_TIME") if disk is not None else None
            out.append(
                {
                    "VolumeId": vol["VolumeId"],
                    "InstanceId": format_id("i", vm_id),
                    "Device": _device(disk) if disk is not None else None,
                    "State": _attachment_state(vm, disk),
                    "AttachTime": _epoch(since),
                    "DeleteOnTermination": False,
                }
            )
        vol["Attachments"] = out


# -- volumes -----------------------------------------------------------------------------------


def describe_volumes(rt: Any) -> dict:
    body = rt.body
    requested = body.get("VolumeId")
    requested = as_list(requested)
    if requested and body.get("MaxResults") is not None:
        raise Ec2Error(
            "InvalidParameterCombination",
            "The parameter VolumeId cannot be used with the parameter MaxResults",
        )
    if requested:
        unique: dict[int, Any] = {}  # vol-3 and vol-00000003 are one volume, listed once
        for raw in requested:
            unique.setdefault(required_id(raw, "vol", "InvalidVolumeID.Malformed", "VolumeId"), raw)
        items = [
            _image(rt, n, str(raw), "volume", "InvalidVolume.NotFound") for n, raw in unique.items()
        ]
    else:
        pool = rt.xml(rt.call("one.imagepool.info", -3, -1, -1))  # the user's own images
        scope = rt.scope()
        items = [
            i
            for i in (rt.view("volume", e) for e in pool.iterfind("IMAGE"))
            if i.get("_volume") and i.get("State")
        ]
        items = [i for i in items if i.get("_owner") == scope["principal"].name]
    _attachments(rt, items)
    items = rt.filter(items)
    items, token = paginate(items, body.get("MaxResults"), body.get("NextToken"), "_id", 5, 500)
    for item in items:
        item.pop("_element", None)
    return {"Volumes": items, "NextToken": token}


def _by_token(rt: Any, token: str) -> dict | None:
    pool = rt.xml(rt.call("one.imagepool.info", -3, -1, -1))
    for element in _TOKEN(pool, t=token):
        item = rt.view("volume", element)
        # one being deleted is what a failed attempt left (discard_image): never the answer
        if item.get("_volume") and item.get("State") not in (None, "deleting"):
            check_same_request([element.findtext(f"TEMPLATE/{DIGEST}")], rt.body)
            return item
    if rt.body.get("SnapshotId"):
        # oned made the copy of an attempt that gave up waiting before marking it: it is this
        # token's volume (finished now), or, if oned failed to make it, in the way
        for element in _UNMARKED(pool, n=_copy_prefix(rt, token)):
            state = element.findtext("STATE")
            if state == "7":  # DELETE: what a failed attempt left, going
                continue
            if state == "4":  # LOCKED: oned is still copying
                raise still_in_progress("volume", token)
            number = int(element.findtext("ID"))
            if state != "1":  # not READY: what oned could not make
                discard_image(rt, number)
                continue
            snap = snapshot(rt, rt.body["SnapshotId"])
            _finish_copy(rt, number, snap, _marks(rt.body, tag_specs(rt.body, "volume"), token))
            return rt.view("volume", rt.xml(rt.call("one.image.info", number)))
    return None


# a copy an attempt makes from a snapshot is named after the user and token (and the attempt),
# so that a retry finds it even when the attempt gave up before marking it
_UNMARKED = etree.XPath("/IMAGE_POOL/IMAGE[starts-with(NAME, $n) and not(TEMPLATE/EBS_VOLUME)]")


def _copy_prefix(rt: Any, token: str) -> str:
    key = f"{rt.principal.uid}\0{token}".encode()
    return f"ec2-vol-{hashlib.sha256(key).hexdigest()[:24]}-"


def _copy_name(rt: Any, token: str | None) -> str:
    if token is None:
        return f"ec2-vol-{uuid.uuid4().hex}"
    return _copy_prefix(rt, token) + uuid.uuid4().hex[:8]


def _marks(body: dict, tags: list, token: str | None) -> list[Attr]:
    marks: list[Attr] = [("EBS_VOLUME", "YES"), *tag_attrs(tags)]
    if body.get("VolumeType"):  # OpenNebula has none: kept, so tools see what they asked for
        marks.append(("EC2_VOLUME_TYPE", str(body["VolumeType"])))
    if token:
        marks += [(TOKEN, token), (DIGEST, request_digest(body))]
    return marks


def _finish_copy(rt: Any, new_id: int, snap: dict, marks: list[Attr]) -> None:
    """A snapshot's copy made a volume: marked, persistent; removed again if that fails."""
    try:
        element = rt.xml(rt.call("one.image.info", new_id))
        _replace_template(
            rt, new_id, element, [*marks, ("EBS_FROM_SNAPSHOT_ID", snap["SnapshotId"])]
        )
        _persistent(rt, new_id, element, True)
    except Ec2Error:
        discard_image(rt, new_id)
        raise


def _size(body: dict) -> int | None:
    size = body.get("Size")
    if size is None:
        return None
    try:
        number = int(size)
    except (TypeError, ValueError):
        raise invalid_value("Size", size) from None
    if not 1 <= number <= MAX_SIZE_GIB:
        raise invalid_value("Size", size, f"Expecting 1 to {MAX_SIZE_GIB} GiB.")
    return number


def _replace_template(rt: Any, image_id: int, element: etree._Element, extra: list[Attr]) -> None:
    """Rewrite the template of an image econe just made (nobody else knows its id yet)."""
    tmpl = element.find("TEMPLATE")
    kept = [a for a in element_attrs(tmpl) if a[0] not in _EC2_MARKS] if tmpl is not None else []
    rt.call("one.image.update", image_id, template_xml(kept + extra), 0)


def _persistent(rt: Any, image_id: int, element: etree._Element, flag: bool) -> None:
    if (element.findtext("PERSISTENT") == "1") != flag:
        rt.call("one.image.persistent", image_id, flag)


def create_volume(rt: Any) -> dict:
    body = rt.body
    if body.get("AvailabilityZone") and body.get("AvailabilityZoneId"):  # EC2: one or the other
        raise Ec2Error(
            "InvalidParameterCombination",
            "The parameters AvailabilityZone and AvailabilityZoneId cannot be used together",
        )
    check_zone(rt, rt.body)
    size = _size(body)
    tags = tag_specs(body, "volume")
    token = client_token(body)
    if token is None:
        return _new_volume(rt, size, tags, None)
    # a retry in this process waits for the first request with its token, then finds its volume
    with held("client token", rt.principal.uid, token):
        previous = _by_token(rt, token)
        if previous is not None:
            return previous
        in_flight(rt, "volume", token)  # an attempt oned did not answer may still make it
        with creating(rt, "volume", token):
            return _new_volume(rt, size, tags, token)


def _new_volume(rt: Any, size: int | None, tags: list, token: str | None) -> dict:
    body = rt.body
    marks = _marks(body, tags, token)
    name = _copy_name(rt, token)
    errors = {"QUOTA": "VolumeLimitExceeded", "AUTHORIZATION": "UnauthorizedOperation"}
    if body.get("SnapshotId"):
        snap = snapshot(rt, body["SnapshotId"])
        if snap["State"] != "completed":
            raise Ec2Error(
                "IncorrectState", f"Snapshot {snap['SnapshotId']} is {snap['State']}, not completed"
            )
        if size is not None and size != snap["VolumeSize"]:
            raise invalid_value(
                "Size",
                size,
                f"A volume from {snap['SnapshotId']} has its size, {snap['VolumeSize']} GiB.",
            )
        new_id = _copy(
            rt,
            ("one.image.clone", snap["_id"], name, -1),
            {**errors, "ALLOCATE": "IncorrectState", "ACTION": "IncorrectState"},
            "InsufficientVolumeCapacity",
        )
        _finish_copy(rt, new_id, snap, marks)
    else:
        if size is None:
            raise missing_parameter("Size")
        template = [
            ("NAME", name),
            ("TYPE", "DATABLOCK"),
            ("SIZE", str(size * 1024)),
            ("FSTYPE", str(rt.config.ebs_fstype)),
            ("PERSISTENT", "YES"),
            *marks,
        ]
        new_id = int(
            rt.call(
                "one.image.allocate",
                template_xml(template),
                int(rt.config.datastore_id),
                # ACTION: "Not enough space in datastore"
                errors={**errors, "ACTION": "InsufficientVolumeCapacity"},
            )
        )
    try:
        return rt.view("volume", rt.xml(rt.call("one.image.info", new_id)))
    except Ec2Error:
        discard_image(rt, new_id)  # the client hears of no volume: none is left
        raise


# LCM states in which oned works on one disk of a VM and takes no other (one at a time):
# HOTPLUG, HOTPLUG_PROLOG/EPILOG_POWEROFF, and a disk being saved (a snapshot of an attached
# volume) from RUNNING, POWEROFF, SUSPENDED, UNDEPLOYED, STOPPED: HOTPLUG_SAVEAS*
_DISK_BUSY = ("17", "33", "34", "26", "27", "28", "67", "68")
_CLONE = 6  # image state CLONE: oned copies the volume into a snapshot


def _hotplugging(vm: etree._Element) -> bool:
    return vm.findtext("STATE") == "3" and vm.findtext("LCM_STATE") in _DISK_BUSY


class _Wait(Exception):
    """A step's refusal that passes once oned is done with what it is doing: the step is
    tried again until HOTPLUG_WAIT is over, then `error` is the answer."""

    def __init__(self, error: Ec2Error) -> None:
        super().__init__(error.message)
        self.error = error


def _refused_busy(exc: Ec2Error) -> bool:
    """oned's words when it started another disk operation on the VM since econe read it:
    "… wrong state HOTPLUG…" (attach, detach), "VM has to be RUNNING, POWEROFF or SUSPENDED to
    save disks." (disk save; the state is read again, so a VM truly in another state is
    refused in econe's words)."""
    return "wrong state HOTPLUG" in exc.message or "to save disks" in exc.message


def _own(rt: Any, vm: etree._Element, instance: str) -> None:
    """EC2 attaches a volume to an instance of the same account only; OpenNebula lets a user
    manage a VM shared with them, and a volume attached there would be stuck once the share
    ends. Another's instance is not found, as EC2 answers for another account's."""
    if vm.findtext("UNAME") != rt.principal.name:
        raise Ec2Error(
            "InvalidInstanceID.NotFound",
            f"The instance ID '{instance}' does not exist among yours: a volume can be attached "
            "only to an instance of its owner",
        )


def _on_settled_vm(
    rt: Any,
    number: int,
    instance: str,
    what: str,
    step: Any,
    ready: Any = _hotplug_ready,
    own: bool = False,
) -> Any:
    """`step(vm)` on the instance's VM (with `own`, the caller's alone) once oned is done with
    another disk operation (EC2 takes two attachments at once, oned one at a time) and
    `ready(vm, instance, what)` passed: waited for, and tried again when oned answers that it
    started one meanwhile (or the step raises _Wait), for at most HOTPLUG_WAIT seconds."""
    deadline = time.monotonic() + HOTPLUG_WAIT
    pause = HOTPLUG_POLL
    while True:
        vm = user_vm(rt, number, instance, _gone(instance, what))
        if own:
            _own(rt, vm, instance)
        if _hotplugging(vm):
            if time.monotonic() >= deadline:
                raise _busy(instance)
        else:
            ready(vm, instance, what)
            try:
                return step(vm)
            except _Wait as wait:
                error = wait.error
            except Ec2Error as exc:
                if not _refused_busy(exc):
                    raise
                error = _busy(instance)
            if time.monotonic() >= deadline:
                raise error
        time.sleep(pause)  # a worker thread waits: less and less often
        pause = min(pause * 1.5, 1.0)


def _being_copied(vol: dict) -> _Wait:
    return _Wait(
        Ec2Error(
            "IncorrectState",
            f"The volume {vol['VolumeId']} is being copied into a snapshot; try again when the "
            "snapshot is completed",
        )
    )


def attach_volume(rt: Any) -> dict:
    body = rt.body
    for param in ("VolumeId", "InstanceId", "Device"):
        if not body.get(param):
            raise missing_parameter(param)
    target = _device_name(body["Device"]).group(1)
    vol = volume(rt, body["VolumeId"])
    vm_number = required_id(body["InstanceId"], "i", "InvalidInstanceID.Malformed", "InstanceId")
    in_use = Ec2Error("VolumeInUse", f"{vol['VolumeId']} is already attached to an instance")
    device = str(body["Device"])  # shown as given (Terraform finds the attachment by it)
    now = rt.scope()["now"]

    def attach(vm: etree._Element) -> None:
        current = volume(rt, body["VolumeId"])  # again: it may have changed while waiting
        if current["State"] == "in-use" or current.get("_vms"):
            raise in_use
        if current["_state"] == _CLONE:  # oned cannot acquire it until the copy is done
            raise _being_copied(current)
        if current["State"] != "available":
            raise Ec2Error(
                "IncorrectState",
                f"The volume {vol['VolumeId']} is '{current['State']}', not available",
            )
        used = {t.text for t in vm.iterfind("TEMPLATE/DISK/TARGET")}
        used |= {t.text for t in vm.iterfind("TEMPLATE/CONTEXT/TARGET")}
        if target in used:
            raise invalid_value("Device", device, f"Attachment point {device} is already in use.")
        # The EC2_* marks stay on the VM's DISK: the instance's BlockDeviceMappings read them.
        marks = [("EC2_VOLUME_ID", vol["VolumeId"]), ("EC2_ATTACH_TIME", str(now))]
        marks.append(("EC2_DEVICE", device))
        disk = [("DISK", [("IMAGE_ID", str(vol["_id"])), ("TARGET", target), *marks])]
        try:
            rt.call(
                "one.vm.attach",
                vm_number,
                template_xml(disk),
                errors={
                    "ACTION": "IncorrectState",
                    "INTERNAL": "IncorrectState",
                    "NO_EXISTS": "InvalidInstanceID.NotFound",
                    "AUTHORIZATION": "UnauthorizedOperation",
                },
            )
        except Ec2Error as exc:
            # oned: "Cannot acquire image N, it is persistent and already in use": another
            # request attached it first
            if "already in use" in exc.message:
                raise in_use from None
            if "in state: CLONE" in exc.message:  # a snapshot of it began meanwhile
                raise _being_copied(current) from None
            raise

    _on_settled_vm(rt, vm_number, str(body["InstanceId"]), "attach", attach, own=True)
    return {
        "VolumeId": vol["VolumeId"],
        "InstanceId": format_id("i", vm_number),
        "Device": device,
        "State": "attaching",
        "AttachTime": now,
        "DeleteOnTermination": False,
    }


def _on_own_instances(rt: Any, number: int, vol_id: str) -> list[int]:
    """The caller's VMs (not terminated) with a DISK AttachVolume made for volume `vol_id`
    (image `number`): another user's volume attached to an instance of the caller's while
    OpenNebula let that user manage it. The EC2_VOLUME_ID mark is required, so that no other
    disk of an image (an AMI's root disk) is taken for a volume."""
    pool = rt.xml(rt.call("one.vmpool.infoextended", -3, -1, -1, -1))
    return [
        int(vm.findtext("ID"))
        for vm in pool.iterfind("VM")
        if (disk := _disk(vm, number)) is not None and disk.findtext("EC2_VOLUME_ID") == vol_id
    ]


def detach_volume(rt: Any) -> dict:
    body = rt.body
    try:
        vol = volume(rt, body.get("VolumeId"))
        number, vol_id = vol["_id"], vol["VolumeId"]
        attached = [int(v) for v in vol.get("_vms") or []]
        if not attached:
            raise Ec2Error("IncorrectState", f"Volume '{vol_id}' is in the 'available' state.")
    except Ec2Error as exc:
        if exc.code != "InvalidVolume.NotFound":
            raise
        # not the caller's volume: the owner of the instance it is attached to may detach it
        # (EC2: an instance's owner can always detach its volumes); oned authorizes a detach
        # on the VM alone
        number = required_id(body["VolumeId"], "vol", "InvalidVolumeID.Malformed", "VolumeId")
        vol_id = format_id("vol", number)
        attached = _on_own_instances(rt, number, vol_id)
        if not attached:
            raise
    if body.get("InstanceId"):
        vm_number = required_id(
            body["InstanceId"], "i", "InvalidInstanceID.Malformed", "InstanceId"
        )
        if vm_number not in attached:
            raise Ec2Error(
                "InvalidAttachment.NotFound",
                f"The volume {vol_id} is not attached to {body['InstanceId']}",
            )
    else:
        vm_number = attached[0]
    instance = format_id("i", vm_number)
    asked = body.get("Device")
    match = _device_name(asked) if asked else None

    def detach(vm: etree._Element) -> etree._Element:
        disk = _disk(vm, number)
        if disk is None or (match and match.group(1) != disk.findtext("TARGET")):
            raise Ec2Error(
                "InvalidAttachment.NotFound",
                f"The volume {vol_id} is not attached to {instance} as {asked or 'a disk'}",
            )
        rt.call(
            "one.vm.detach",
            vm_number,
            int(disk.findtext("DISK_ID")),
            errors={
                "ACTION": "IncorrectState",
                "NO_EXISTS": "InvalidInstanceID.NotFound",
                "AUTHORIZATION": "UnauthorizedOperation",
            },
        )
        return disk

    try:
        disk = _on_settled_vm(rt, vm_number, instance, "detach", detach)
    except Ec2Error as exc:
        if exc.code != "InvalidInstanceID.NotFound":
            raise
        # the volume lists the VM, so it exists: another user's, which the caller no longer
        # may manage (attached while OpenNebula let them); its owner can detach the volume
        raise Ec2Error(
            "UnauthorizedOperation",
            f"The volume {vol_id} is attached to {instance}, an instance of another user you "
            "cannot manage: its owner can detach it (DetachVolume) or terminate it",
        ) from None
    return {
        "VolumeId": vol_id,
        "InstanceId": instance,
        "Device": _device(disk),
        "State": "detaching",
        "DeleteOnTermination": False,
    }


# -- snapshots ---------------------------------------------------------------------------------


def create_snapshot(rt: Any) -> dict:
    body = rt.body
    vol = volume(rt, body.get("VolumeId"))
    # refused, not changed: oned would trim it and turn a CR into a LF
    description = as_given(body.get("Description") or "", "Description")
    tags = tag_specs(body, "snapshot")
    if vol["State"] not in ("available", "in-use"):
        raise Ec2Error("IncorrectState", f"The volume {vol['VolumeId']} is '{vol['State']}'")
    name = f"ec2-snap-{uuid.uuid4().hex}"
    errors = {
        "QUOTA": "SnapshotLimitExceeded",
        "ACTION": "IncorrectState",
        "INTERNAL": "IncorrectState",
        "ALLOCATE": "IncorrectState",  # oned: "Cannot clone image in current state"
        "AUTHORIZATION": "UnauthorizedOperation",
    }
    attached = [int(v) for v in vol.get("_vms") or []]
    if attached:  # a persistent image in use cannot be cloned: save the VM's disk instead
        instance = format_id("i", attached[0])

        def ready(vm: etree._Element, instance: str, _: str) -> None:
            if not savable(vm):  # checked here, so that a dry run fails as the request would
                state = rt.view("instance", vm)["State"]["Name"]
                if state == "running":  # a migration, or a host oned lost
                    state += ", OpenNebula is busy with it"
                raise Ec2Error(
                    "IncorrectState",
                    f"The volume {vol['VolumeId']} is attached to {instance}, which is {state}: "
                    "its disk cannot be saved now",
                )

        def save(vm: etree._Element) -> int:
            disk = _disk(vm, vol["_id"])
            if disk is None:
                raise Ec2Error("IncorrectState", f"The volume {vol['VolumeId']} is being attached")
            disk_id = int(disk.findtext("DISK_ID"))
            call = ("one.vm.disksaveas", attached[0], disk_id, name, "DATABLOCK", -1)
            return _copy(rt, call, errors, "ResourceLimitExceeded")  # as CreateImage's

        # as an attach or detach, the save waits for oned to finish one (such as the attach
        # that made this attachment: boto3's volume_in_use waiter does not wait for it)
        new_id = _on_settled_vm(rt, attached[0], instance, "snapshot", save, ready)
    else:
        call = ("one.image.clone", vol["_id"], name, -1)
        new_id = _copy(rt, call, errors, "ResourceLimitExceeded")  # as CreateImage's
    marks: list[Attr] = [("EBS_SNAPSHOT", "YES"), ("EBS_VOLUME_ID", vol["VolumeId"])]
    if description:
        marks.append(("DESCRIPTION", description))
    marks += tag_attrs(tags)
    try:
        element = rt.xml(rt.call("one.image.info", new_id))
        _replace_template(rt, new_id, element, marks)
        _persistent(rt, new_id, element, False)
    except Ec2Error:
        discard_image(rt, new_id)
        raise
    return rt.view("snapshot", rt.xml(rt.call("one.image.info", new_id)))
