"""AMIs: RegisterImage marks an existing OpenNebula image as an AMI (EC2_AMI="YES", merged);
CreateImage saves an instance's root disk (`one.vm.disksaveas`) as a new image and marks it."""

from __future__ import annotations

import logging
import re
from typing import Any

from econe.errors import Ec2Error, invalid_value, missing_parameter
from econe.mapping.ids import format_id, parse_id, required_id
from handlers.escaping import TemplateError, as_given, template_xml
from handlers.instances import user_vm
from handlers.tags import tag_attrs, tag_specs

log = logging.getLogger("econe.handlers.images")

_PLAIN = re.compile(r"[0-9]{1,10}")


def _by_location(location: str) -> int:
    number = parse_id("ami", location)
    if number is None and _PLAIN.fullmatch(location):
        number = int(location)
    if number is None:
        raise invalid_value("ImageLocation", location, "Expecting ami-N or N, an OpenNebula image.")
    return number


def _my_images(rt: Any) -> list[dict]:
    pool = rt.xml(rt.call("one.imagepool.info", -3, -1, -1))
    return [{**rt.view("image", i), "_element": i} for i in pool.iterfind("IMAGE")]


def _by_name(rt: Any, name: str) -> int:
    """The user's image named `name`: an AMI of that name first, else the OpenNebula NAME."""
    images = _my_images(rt)
    for image in sorted(images, key=lambda i: not i.get("_ami")):
        if image.get("Name") == name or image["_element"].findtext("NAME") == name:
            return image["_id"]
    raise Ec2Error("InvalidAMIID.NotFound", f"You own no image named '{name}'")


def _name_in_use(rt: Any, name: str, but: int | None = None) -> bool:
    """Whether an AMI of the user's (other than image `but`) shows as `name` (DescribeImages
    hides those in DELETE/DISABLED states: they hold no name)."""
    return any(
        i.get("_ami") and i.get("State") and i.get("Name") == name and i["_id"] != but
        for i in _my_images(rt)
    )


def register_image(rt: Any) -> dict:
    body = rt.body
    location = body.get("ImageLocation")
    if location:
        number = _by_location(str(location))
    elif body.get("Name"):
        number = _by_name(rt, str(body["Name"]))
    else:
        raise Ec2Error(
            "MissingParameter", "The request must contain the parameter ImageLocation or Name"
        )
    ami = format_id("ami", number)
    named = str(location) if location else ami  # as sent: an EC2-form id maps to no number
    missing = Ec2Error("InvalidAMIID.NotFound", f"The image id '[{named}]' does not exist")
    image = rt.view("image", rt.fetch("one.image.info", number, missing))
    if image.get("State") is None:  # DescribeImages hides it (DISABLED): not found here either
        raise missing
    if image["OwnerId"] != rt.principal.name:
        # an image shared with you is its owner's to register, rename, tag or deregister (EC2),
        # also where OpenNebula grants MANAGE; refused before any call, so a dry run is too
        raise Ec2Error(
            "UnauthorizedOperation", f"You may not register {ami}: it is {image['OwnerId']}'s"
        )
    if image.get("_volume"):
        raise Ec2Error("InvalidParameterValue", f"{ami} is an EBS volume, not an image")
    if image.get("_snapshot"):
        raise Ec2Error("InvalidParameterValue", f"{ami} is an EBS snapshot, not an image")
    attrs = [("EC2_AMI", "YES")]
    name = image.get("Name")
    if location and body.get("Name"):  # the AMI's name, as EC2 takes it (CreateImage's place)
        name = _ami_name(body["Name"])
        attrs.append(("EC2_AMI_NAME", name))
    if name and _name_in_use(rt, name, but=number):
        raise Ec2Error("InvalidAMIName.Duplicate", f"AMI name {name} is already in use")
    if body.get("Description"):  # refused, not changed (trimmed, CR as LF) by oned
        attrs.append(("DESCRIPTION", as_given(body["Description"], "Description")))
    if body.get("Architecture"):
        attrs.append(("ARCH", _one_arch(str(body["Architecture"]))))
    tags = tag_specs(body, "image")
    if image.get("_ami"):
        # EC2 makes a new AMI each time; here the image is the AMI, so registering it again
        # changes nothing under those who use it: the same request is answered as before,
        # another name, description, architecture or tags is refused. The mark is written
        # again (a no-op), so that oned says whether the owner may still change the image.
        changed = [
            member
            for member, differs in (
                ("Name", name != image.get("Name")),
                (
                    "Description",
                    (body.get("Description") or "") not in ("", image.get("Description") or ""),
                ),
                ("Architecture", body.get("Architecture") not in (None, image.get("Architecture"))),
                ("TagSpecification", bool(tags)),
            )
            if differs
        ]
        if not (changed and rt.dry_run):
            _mark(rt, number, [("EC2_AMI", "YES")])
        if changed:
            raise Ec2Error(
                "InvalidParameterValue",
                f"{ami} is registered already: registering it again cannot change its "
                f"{', '.join(changed)} (DeregisterImage it first)",
            )
        return {"ImageId": ami}
    _mark(rt, number, attrs + tag_attrs(tags))  # given: the new AMI's tags
    return {"ImageId": ami}


def _mark(rt: Any, number: int, attrs: list) -> None:
    try:
        update = template_xml(attrs)
    except TemplateError as exc:
        raise Ec2Error("InvalidParameterValue", str(exc)) from exc
    rt.call(
        "one.image.update",
        number,
        update,
        1,
        errors={"NO_EXISTS": "InvalidAMIID.NotFound", "AUTHORIZATION": "UnauthorizedOperation"},
    )


# EC2's architectures → OpenNebula's OS/ARCH (views/architectures.yaml the other way)
_ONE_ARCHES = {"x86_64": "x86_64", "i386": "i686", "arm64": "aarch64"}


def _one_arch(value: str) -> str:
    if value not in _ONE_ARCHES:
        raise invalid_value(
            "Architecture", value, f"This cloud takes {', '.join(sorted(_ONE_ARCHES))}."
        )
    return _ONE_ARCHES[value]


def discard_image(rt: Any, image_id: int) -> None:
    """Remove an image this request made and could not finish. One still being copied (LOCKED)
    goes only with force, which oned grants with ADMIN rights only: the server admin does it."""
    try:
        rt.call("one.image.delete", image_id)
        return
    except Ec2Error:
        pass
    try:
        rt.call("one.image.delete", image_id, True, admin=True)
    except Ec2Error as exc:
        log.error("image %s of a failed request is left behind: %s", image_id, exc.message)


# EC2's AMI name rule; OpenNebula refuses some of these characters too (/ and '), and says so.
_AMI_NAME = re.compile(r"[A-Za-z0-9()\[\] ./\-'@_]{3,128}")
# OpenNebula states an instance's disk can be saved from: RUNNING, or STOPPED, SUSPENDED,
# POWEROFF, UNDEPLOYED (VirtualMachine::set_saveas_state)
_SAVABLE = {"4", "5", "8", "9"}


def savable(vm: Any) -> bool:
    """Whether oned saves a disk of the VM (one.vm.disksaveas) in its present state."""
    state, lcm = vm.findtext("STATE"), vm.findtext("LCM_STATE")
    return (state == "3" and lcm == "3") or state in _SAVABLE


def _instance_disk(rt: Any, raw: Any) -> tuple[int, int]:
    """The VM number of InstanceId and the DISK_ID of its root disk (its first image disk)."""
    number = required_id(raw, "i", "InvalidInstanceID.Malformed", "InstanceId")
    gone = Ec2Error(  # still shown by DescribeInstances: not "does not exist"
        "IncorrectInstanceState",
        f"The instance '{raw}' is not in a state from which an image can be created (terminated).",
    )
    vm = user_vm(rt, number, str(raw), terminated=gone)
    if not savable(vm):
        name = rt.view("instance", vm)["State"]["Name"]
        if name == "running":  # a migration, a hotplug, or a host oned lost (UNKNOWN)
            name += ", OpenNebula is busy with it or has lost its host"
        raise Ec2Error(
            "IncorrectInstanceState",
            f"The instance '{raw}' is not in a state from which an image can be created ({name}).",
        )
    for disk in vm.iterfind("TEMPLATE/DISK"):
        if disk.findtext("IMAGE_ID"):
            return number, int(disk.findtext("DISK_ID"))
    raise Ec2Error("IncorrectInstanceState", f"The instance '{raw}' has no disk to save.")


_SAVEAS_ERRORS = {
    "INTERNAL": "IncorrectInstanceState",  # its state changed meanwhile
    "ACTION": "ResourceLimitExceeded",  # "Not enough space in datastore"
    "QUOTA": "ResourceLimitExceeded",
    "NO_EXISTS": "InvalidInstanceID.NotFound",
    "AUTHORIZATION": "UnauthorizedOperation",
    "ALLOCATE": "InvalidAMIName.Malformed",  # a name OpenNebula refuses (/ and ')
}


_NAME_TRIES = 20


def _save_disk(rt: Any, vm_number: int, disk_id: int, name: str) -> int:
    """one.vm.disksaveas into a new image named `name`; when a user's image holds that NAME
    but no AMI shows it (a deregistered AMI: EC2 lets its name be used again; an AMI
    registered under another name), `name (2)`, `name (3)`…, so that oned's per-user name
    uniqueness still decides between two requests for one name at once. The AMI name is kept
    in EC2_AMI_NAME either way."""
    duplicate = Ec2Error("InvalidAMIName.Duplicate", f"AMI name {name} is already in use")
    if _name_in_use(rt, name):
        raise duplicate
    for n in range(1, _NAME_TRIES + 1):
        candidate = name if n == 1 else f"{name[:120]} ({n})"
        try:
            return int(
                rt.call(
                    "one.vm.disksaveas",
                    vm_number,
                    disk_id,
                    candidate,
                    "",
                    -1,
                    errors=_SAVEAS_ERRORS,
                )
            )
        except Ec2Error as exc:
            if "already taken" not in exc.message:
                raise
        holder = next(
            (i for i in _my_images(rt) if i["_element"].findtext("NAME") == candidate), None
        )
        if holder is not None and holder.get("State"):
            saving = holder["_element"].findtext("TEMPLATE/SAVE_AS_HOT") == "YES"
            if saving or (holder.get("_ami") and holder.get("Name") == name):
                raise duplicate  # an AMI of this name, or one a request is making right now
    raise duplicate


def _ami_name(name: Any) -> str:
    if not name:
        raise missing_parameter("Name")
    if not _AMI_NAME.fullmatch(str(name)):
        raise Ec2Error(
            "InvalidAMIName.Malformed",
            "AMI names are 3 to 128 letters, digits, spaces and ( ) [ ] . / - ' @ _",
        )
    return str(name)


def create_image(rt: Any) -> dict:
    """A new AMI from the instance's root disk, pending while OpenNebula copies it, then
    available. OpenNebula copies a running instance's disk as it is, and econe never reboots
    the instance, whatever NoReboot says (Terraform sends false): stop it first for a
    consistent image."""
    body = rt.body
    name = _ami_name(body.get("Name"))
    description = as_given(body.get("Description") or "", "Description")  # as RegisterImage
    # snapshot tags are EC2's for the snapshots behind an AMI; econe makes none to tag
    tags = tag_specs(body, "image", ignored=("snapshot",))
    vm_number, disk_id = _instance_disk(rt, body.get("InstanceId"))
    image_id = _save_disk(rt, vm_number, disk_id, name)
    marks: list = [("EC2_AMI", "YES"), ("EC2_AMI_NAME", name)]
    if description:
        marks.append(("DESCRIPTION", description))
    marks += tag_attrs(tags)
    try:
        rt.call("one.image.update", image_id, template_xml(marks), 1)
    except Ec2Error:
        discard_image(rt, image_id)
        raise
    return {"ImageId": format_id("ami", image_id)}
