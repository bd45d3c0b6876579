"""The OpenNebula side of UploadImage (blocking calls: run them on a worker thread).

The new image's template is XML built with lxml (oned parses a template starting with `<` as
XML), so nothing a client sends can act as template syntax:

    <TEMPLATE><NAME>…</NAME><TYPE>OS</TYPE><PATH>/var/tmp/econe-upload-….img</PATH>
              <EC2_UPLOAD_SHA256>…</EC2_UPLOAD_SHA256></TEMPLATE>

Retry safety: before allocating, the user's own images (`one.imagepool.info(-3, -1, -1)`) are
searched for the same NAME with the same EC2_UPLOAD_SHA256; a match is answered instead of a
second image. Two identical uploads racing both miss, one allocation then fails with oned's
"NAME is already taken", and that one answers the winner's id after a second look.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from lxml import etree

from econe.errors import Ec2Error
from econe.mapping.ids import format_id
from econe.one.client import ALLOCATE, NO_EXISTS, OneError, OneUnavailable
from econe.one.errors import ec2_error_from_one, one_message, out_of_space

SHA_ATTR = "EC2_UPLOAD_SHA256"
# states of an image a retry must not be handed (RegisterImage and RunInstances would not
# find it, or find it failed): why, in the client's words
_NOT_REUSABLE = {
    3: "is disabled in OpenNebula (state DISABLED): enable or delete that image",
    5: "failed in OpenNebula (state ERROR): delete that image",
    7: "is being deleted in OpenNebula (state DELETE): try again once it is gone",
}
_NAME_TAKEN = re.compile(r"NAME is already taken", re.IGNORECASE)


@dataclass(frozen=True)
class Existing:
    image_id: int
    state: int
    sha256: str | None


def upload_template(name: str, path: str, sha256: str) -> str:
    root = etree.Element("TEMPLATE")
    for key, value in (("NAME", name), ("TYPE", "OS"), ("PATH", path), (SHA_ATTR, sha256)):
        etree.SubElement(root, key).text = value
    return etree.tostring(root, encoding="unicode")


def _one_failure(exc: OneError | OneUnavailable) -> Ec2Error:
    if isinstance(exc, OneError) and out_of_space(one_message(exc)):  # as CreateImage
        return Ec2Error("ResourceLimitExceeded", one_message(exc))
    return ec2_error_from_one(exc, quota_code="ResourceLimitExceeded")


def find_by_name(one: Any, session: str, name: str) -> Existing | None:
    """The caller's own image called `name`, if any (names are unique per owner)."""
    try:
        text = one.call(session, "one.imagepool.info", -3, -1, -1)
    except (OneError, OneUnavailable) as exc:
        raise _one_failure(exc) from None
    pool = etree.fromstring(text.encode("utf-8") if isinstance(text, str) else text)
    for image in pool.iterfind("IMAGE"):
        if image.findtext("NAME") == name:
            return Existing(
                int(image.findtext("ID")),
                int(image.findtext("STATE") or -1),
                image.findtext(f"TEMPLATE/{SHA_ATTR}"),
            )
    return None


def reuse(existing: Existing | None, name: str, sha256: str) -> int | None:
    """The id to answer for a retried upload, None if there is nothing to reuse, or an error
    when the name is held by different content, or by this content in an image that cannot be
    used (failed, disabled or being deleted)."""
    if existing is None:
        return None
    ami = format_id("ami", existing.image_id)
    if existing.sha256 != sha256:
        raise Ec2Error(
            "InvalidAMIName.Duplicate",
            f"AMI name {name} is already in use by {ami}, which holds different content.",
        )
    why = _NOT_REUSABLE.get(existing.state)
    if why:
        raise Ec2Error(
            "IncorrectState",
            f"An earlier upload of this file as {name} ({ami}) {why}, or upload under another "
            "name.",
        )
    return existing.image_id


def allocate(
    one: Any, session: str, name: str, path: str, sha256: str, ds_id: int
) -> tuple[int, bool]:
    """(image id, created): a new image for the uploaded file at `path`, or (id, False) for
    the caller's existing image with the same name and content."""
    found = reuse(find_by_name(one, session, name), name, sha256)
    if found is not None:
        return found, False
    template = upload_template(name, path, sha256)
    try:
        return int(one.call(session, "one.image.allocate", template, ds_id)), True
    except OneError as exc:
        if exc.code == ALLOCATE and _NAME_TAKEN.search(exc.message):
            found = reuse(find_by_name(one, session, name), name, sha256)  # lost a race
            if found is not None:
                return found, False
        raise _one_failure(exc) from None
    except OneUnavailable as exc:
        raise _one_failure(exc) from None


def image_state(one: Any, session: str, admin_session: str, image_id: int) -> int | None:
    """The image's STATE; None once it no longer exists. Falls back to the admin session
    when the user's own session is refused (user deleted or disabled meanwhile)."""
    for sess in (session, admin_session):
        try:
            text = one.call(sess, "one.image.info", image_id, False)
        except OneError as exc:
            if exc.code == NO_EXISTS:
                return None
            if sess is admin_session:
                raise
            continue
        element = etree.fromstring(text.encode("utf-8") if isinstance(text, str) else text)
        return int(element.findtext("STATE") or -1)
    return None
