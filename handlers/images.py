"""RegisterImage: mark an existing OpenNebula image as an AMI (EC2_AMI="YES", merged)."""

from __future__ import annotations

import re
from typing import Any

from econe.errors import Ec2Error, invalid_value
from econe.mapping.ids import MAX_ONE_ID, format_id, parse_id
from handlers.escaping import TemplateError, template_xml

_PLAIN = re.compile(r"[0-9]{1,10}")


def _by_location(location: str) -> int:
    number = parse_id("ami", location)
    if number is None and _PLAIN.fullmatch(location):
        number = int(location)
    if number is None:
        raise invalid_value("ImageLocation", location, "Expecting ami-N or N, an OpenNebula image.")
    return number


def _by_name(rt: Any, name: str) -> int:
    pool = rt.xml(rt.call("one.imagepool.info", -3, -1, -1))
    for image in pool.iterfind("IMAGE"):
        if image.findtext("NAME") == name:
            return int(image.findtext("ID"))
    raise Ec2Error("InvalidAMIID.NotFound", f"You own no image named '{name}'")


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
    if number > MAX_ONE_ID:
        raise Ec2Error("InvalidAMIID.NotFound", f"The image id '[{ami}]' does not exist")
    not_found = {"NO_EXISTS": "InvalidAMIID.NotFound", "AUTHORIZATION": "InvalidAMIID.NotFound"}
    try:
        image = rt.view("image", rt.xml(rt.call("one.image.info", number, errors=not_found)))
    except Ec2Error as exc:
        if exc.code == "InvalidAMIID.NotFound":
            raise Ec2Error(exc.code, f"The image id '[{ami}]' does not exist") from None
        raise
    if image.get("_volume"):
        raise Ec2Error("InvalidParameterValue", f"{ami} is an EBS volume, not an image")
    if image.get("_snapshot"):
        raise Ec2Error("InvalidParameterValue", f"{ami} is an EBS snapshot, not an image")
    attrs = [("EC2_AMI", "YES")]
    if body.get("Description"):
        attrs.append(("DESCRIPTION", str(body["Description"])))
    if body.get("Architecture"):
        attrs.append(("ARCH", str(body["Architecture"])))
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
    return {"ImageId": ami}
