"""Tags: CreateTags, DeleteTags, DescribeTags for instances, AMIs, volumes, snapshots,
security groups, key pairs and elastic IPs (whose tags are JSON: in the TAGS of the key's
EC2_KEYPAIR vector, in the elastic-IP network's EC2_EIP_TAGS_<ip>; see handlers/keypairs.py
and handlers/addresses.py). Every change is a delta applied to the tags read again under a
lock, so concurrent changes in one gateway process all count.

Storage: one `EC2_TAGS = [ KEY = "…", VALUE = "…" ]` vector per tag — in the VM's USER_TEMPLATE
(`one.vm.update`), the IMAGE's TEMPLATE (`one.image.update`) or the SECURITY_GROUP's TEMPLATE
(`one.secgroup.update`), the format RunInstances writes and the views read (the Ruby econe's
single `EC2_TAGS = [K = v, …]` vector is read too, told apart as econe.mapping.views.ec2_tags
says, and rewritten in the new form on the next change).

Updates are merges (update type 1): oned replaces every attribute named in a merge, so a change
sends all the resource's EC2_TAGS vectors (read-modify-write of that attribute only; the rest of
the template is never rewritten). In one gateway process a change is applied, as a delta, to the
tags read again under the object's lock (held("template", kind, id)), so none is lost; two
gateway processes changing one resource's tags at the same instant can still lose one of them
(oned has no compare-and-swap). When no tag remains, `EC2_TAGS = ""` (ignored by readers) is merged, because a
merge cannot remove an attribute.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from lxml import etree

from econe.errors import Ec2Error, invalid_value, missing_parameter
from econe.mapping.filters import paginate
from econe.mapping.ids import format_id, key_pair_id, parse_id
from econe.mapping.loader import adds
from econe.mapping.views import ec2_tags
from econe.query import as_list
from handlers.escaping import Attr, as_given, template_xml
from handlers.locks import held

log = logging.getLogger("econe.handlers.tags")

MAX_TAGS = 50
_ALLOCATION_ID = re.compile(r"eipalloc-[0-9a-f]{1,17}")
_BY_NAME = ("key", "eipalloc")  # ids that are no OpenNebula number
# prefix → (EC2 resource type, OpenNebula object, NotFound code)
KINDS = {
    "i": ("instance", "vm", "InvalidInstanceID.NotFound"),
    "ami": ("image", "image", "InvalidAMIID.NotFound"),
    "vol": ("volume", "image", "InvalidVolume.NotFound"),
    "snap": ("snapshot", "image", "InvalidSnapshot.NotFound"),
    "sg": ("security-group", "secgroup", "InvalidGroup.NotFound"),
    "key": ("key-pair", "user", "InvalidKeyPair.NotFound"),
    "eipalloc": ("elastic-ip", "address", "InvalidAllocationID.NotFound"),
}
# prefix → (view, flag): an image is what Describe{Volumes,Snapshots,Images} show, so what can
# be tagged: its view has the flag and a State. DescribeTags names it by the first that fits.
_IMAGE_VIEWS = {
    "vol": ("volume", "_volume"),
    "snap": ("snapshot", "_snapshot"),
    "ami": ("image", "_ami"),
}


def others(rt: Any, element: etree._Element) -> bool:
    """True for an IMAGE or SECURITY_GROUP another user owns, which OpenNebula may share with
    this one (USE, even MANAGE): its tags are its owner's alone, not shown to this user nor
    changed by them, as EC2 does not share tags with the accounts it shares an AMI, snapshot
    or group with (own_tags_only, describe_tags, resource)."""
    return element.findtext("UNAME") != rt.principal.name


@adds("Tags")
def own_tags_only(rt: Any, items: list[dict]) -> None:
    """The `enrich:` hook of DescribeImages, DescribeSnapshots and DescribeSecurityGroups: what
    another user shares with this one shows no tags (see `others`), so tag filters do not find
    it by them."""
    me = rt.principal.name
    for item in items:
        if item.get("OwnerId") != me:
            item["Tags"] = []


def read_tags(parent: etree._Element | None, path: str) -> list[dict[str, str]]:
    """EC2_TAGS vectors under `parent` → [{Key, Value}] (both stored forms, as the views read
    them: econe.mapping.views.ec2_tags)."""
    return [] if parent is None else ec2_tags(parent.findall(path))


def not_reserved(key: str) -> str:
    """The key, unless it is one of AWS's own (`aws:…`), which no request sets or deletes."""
    if key.lower().startswith("aws:"):
        raise invalid_value("Tag.Key", key, "Tag keys starting with 'aws:' are reserved.")
    return key


def check_tag(key: Any, value: Any) -> tuple[str, str]:
    key = "" if key is None else str(key)
    value = "" if value is None else str(value)
    if not key or len(key) > 128:
        raise invalid_value("Tag.Key", key, "Tag keys have 1 to 128 characters.")
    not_reserved(key)
    if len(value) > 256:
        raise invalid_value("Tag.Value", value, "Tag values have at most 256 characters.")
    # OpenNebula trims template values: "Name " would be stored as a second "Name"
    return as_given(key, "Tag.Key"), as_given(value, "Tag.Value")


def checked_tags(entries: list[dict]) -> list[tuple[str, str]]:
    """Tag.N (of CreateTags or of one TagSpecification) → [(key, value)], each checked; a key
    given twice is refused, as EC2 does (not resolved to one of its values)."""
    tags: dict[str, str] = {}
    for entry in entries:
        key, value = check_tag(entry.get("Key"), entry.get("Value"))
        if key in tags:
            raise Ec2Error("InvalidParameterValue", f"Duplicate tag key '{key}' specified.")
        tags[key] = value
    return list(tags.items())


def tag_specs(
    body: dict, resource_type: str, ignored: tuple[str, ...] = ()
) -> list[tuple[str, str]]:
    """TagSpecification.N entries for `resource_type`, validated (for Create* actions). Those
    for an `ignored` type are validated too, then left out (what EC2 would tag that econe
    does not make)."""
    tags: list[tuple[str, str]] = []
    kinds: set[str] = set()
    for spec in body.get("TagSpecification") or []:
        kind = spec.get("ResourceType")
        if not kind:  # EC2 takes no default, even where one type only can be tagged
            raise Ec2Error(
                "InvalidParameterValue", "Tag specification resource type must have a value"
            )
        if kind != resource_type and kind not in ignored:
            raise invalid_value(
                "TagSpecification.ResourceType",
                spec.get("ResourceType"),
                f"Expecting '{resource_type}'.",
            )
        if kind in kinds:  # EC2 takes one specification per resource type
            raise invalid_value(
                "TagSpecification.ResourceType", kind, f"Duplicate resource type: {kind}."
            )
        kinds.add(kind)
        checked = checked_tags(spec.get("Tag") or spec.get("Tags") or [])
        if kind == resource_type:
            tags = checked
    if len(tags) > MAX_TAGS:
        raise Ec2Error("TagLimitExceeded", f"A resource can have at most {MAX_TAGS} tags")
    return tags


def json_tags(text: str | None) -> list[dict[str, str]]:
    """Tags kept as JSON [[key, value], …] where a vector cannot hold vectors (a key pair's
    EC2_KEYPAIR vector) → [{Key, Value}]."""
    try:
        return pair_tags(json.loads(text) if text else [])
    except ValueError:
        return []


def pair_tags(pairs: Any) -> list[dict[str, str]]:
    """[[key, value], …] read from JSON → [{Key, Value}] (anything else is no tag)."""
    if not isinstance(pairs, list):
        return []
    return [
        {"Key": str(p[0]), "Value": str(p[1])} for p in pairs if isinstance(p, list) and len(p) == 2
    ]


def json_text(tags: list[tuple[str, str]]) -> str:
    return json.dumps([[k, v] for k, v in tags], ensure_ascii=False) if tags else ""


def tag_attrs(tags: list[tuple[str, str]]) -> list[Attr]:
    return [("EC2_TAGS", [("KEY", k), ("VALUE", v)]) for k, v in tags]


def tags_update(tags: list[tuple[str, str]]) -> str:
    """The merge template that leaves exactly `tags` on the object."""
    return template_xml(tag_attrs(tags)) if tags else 'EC2_TAGS = ""'


class Resource:
    def __init__(self, raw: str, prefix: str, number: int, element: etree._Element):
        self.raw, self.prefix, self.number, self.element = raw, prefix, number, element
        self.kind, self.obj, self.not_found = KINDS[prefix]
        parent = element.find("USER_TEMPLATE" if self.obj == "vm" else "TEMPLATE")
        self.tags = [(t["Key"], t["Value"]) for t in read_tags(parent, "EC2_TAGS")]

    @property
    def ec2_id(self) -> str:
        return format_id(self.prefix, self.number)

    def write(self, rt: Any, tags: list[tuple[str, str]]) -> None:
        self.write_change(rt, _delta(self.tags, tags))

    def undo(self, rt: Any, written: list[tuple[str, str]]) -> None:
        """Take back what writing `written` changed (and only that)."""
        self.write_change(rt, _delta(written, self.tags))

    def write_change(self, rt: Any, change: Any) -> None:
        """Apply `change` to the tags read again under this process's lock of the object, so
        that concurrent changes of one resource in this process all count."""
        errors = {"NO_EXISTS": self.not_found, "AUTHORIZATION": "UnauthorizedOperation"}
        with held("template", self.obj, self.number):
            element = rt.xml(rt.call(f"one.{self.obj}.info", self.number, errors=errors))
            parent = element.find("USER_TEMPLATE" if self.obj == "vm" else "TEMPLATE")
            now = [(t["Key"], t["Value"]) for t in read_tags(parent, "EC2_TAGS")]
            rt.call(
                f"one.{self.obj}.update", self.number, tags_update(change(now)), 1, errors=errors
            )


def _delta(before: list[tuple[str, str]], after: list[tuple[str, str]]) -> Any:
    """The change from `before` to `after` as a function of the tags read again when writing,
    so that two changes of one resource in this process both count."""
    old, new = dict(before), dict(after)
    set_ = {k: v for k, v in new.items() if old.get(k) != v}
    gone = old.keys() - new.keys()

    def change(now: list[tuple[str, str]]) -> list[tuple[str, str]]:
        tags = [(k, set_.get(k, v)) for k, v in now if k not in gone]
        have = {k for k, _ in tags}
        tags += [(k, v) for k, v in set_.items() if k not in have]
        if len(tags) > MAX_TAGS:  # with what another request added meanwhile
            raise Ec2Error("TagLimitExceeded", f"A resource can have at most {MAX_TAGS} tags")
        return tags

    return change


class KeyPair(Resource):
    """A key pair: its tags are the TAGS of its EC2_KEYPAIR vector in the user's template."""

    def __init__(self, raw: str, pair: dict):
        self.raw, self.prefix, self.number, self.element = raw, "key", raw, None
        self.kind, self.obj, self.not_found = KINDS["key"]
        self.tags = [(t["Key"], t["Value"]) for t in pair["Tags"]]

    @property
    def ec2_id(self) -> str:
        return self.raw

    def write_change(self, rt: Any, change: Any) -> None:
        from handlers.keypairs import set_tags

        set_tags(rt, self.raw, change)


class ElasticIp(KeyPair):
    """An elastic IP: its tags are the EC2_TAGS of its address range (handlers/addresses.py)."""

    def __init__(self, raw: str, address: dict):
        self.raw, self.prefix, self.number, self.element = raw, "eipalloc", raw, None
        self.kind, self.obj, self.not_found = KINDS["eipalloc"]
        self.tags = [(t["Key"], t["Value"]) for t in address["Tags"]]

    def write_change(self, rt: Any, change: Any) -> None:
        from handlers.addresses import set_tags

        set_tags(rt, self.raw, change)


def _elastic_ip(rt: Any, text: str) -> ElasticIp:
    from handlers.addresses import my_addresses

    for address in my_addresses(rt):
        if address.get("AllocationId") == text:
            return ElasticIp(text, address)
    raise _not_found("InvalidAllocationID.NotFound", text)


def _key_pair(rt: Any, text: str) -> KeyPair:
    from handlers.keypairs import key_pairs

    for pair in key_pairs(rt, rt.xml(rt.call("one.user.info", -1))):
        if pair["KeyPairId"] == text:
            if pair.get("_legacy"):
                raise Ec2Error(
                    "UnsupportedOperation",
                    f"Key pair {text} was made by the Ruby econe and cannot hold tags: "
                    "import it again to tag it",
                )
            return KeyPair(text, pair)
    raise _not_found("InvalidKeyPair.NotFound", text)


def _not_found(code: str, raw: str) -> Ec2Error:
    return Ec2Error(code, f"The ID '{raw}' does not exist")


def _numbered(text: str) -> tuple[str, int | None]:
    """(id prefix, OpenNebula number) of an EC2 id; None for ids that are not numbers."""
    prefix = text.partition("-")[0]
    return prefix, parse_id(prefix, text) if prefix in KINDS and prefix not in _BY_NAME else None


def resource(rt: Any, raw: Any) -> Resource:
    """A tag-able resource by EC2 id, checked visible and of the right kind."""
    text = str(raw)
    prefix, number = _numbered(text)
    if prefix == "key" and key_pair_id(text):
        return _key_pair(rt, text)
    if prefix == "eipalloc" and _ALLOCATION_ID.fullmatch(text):
        return _elastic_ip(rt, text)
    if number is None:
        raise Ec2Error("InvalidID", f"The ID '{text}' is not valid")
    _, obj, not_found = KINDS[prefix]
    element = rt.fetch(f"one.{obj}.info", number, _not_found(not_found, text))
    if obj == "vm":
        shown = listed_instance(rt, element) is not None
    elif obj == "secgroup":
        from handlers.security_groups import dry_run_manage

        dry_run_manage(rt, element)  # what oned would answer the change
        shown = True  # DescribeSecurityGroups shows every group the user may use
    else:
        shown = _shown_as(rt, prefix, element) is True
    if not shown:
        raise _not_found(not_found, text)
    if obj in ("image", "secgroup") and others(rt, element):
        # a shared AMI's, snapshot's or group's tags are its owner's, also where OpenNebula
        # grants MANAGE (the changer could never see them)
        raise Ec2Error(
            "UnauthorizedOperation",
            f"You are not authorized to change the tags of {text}: they are its owner's",
        )
    return Resource(text, prefix, number, element)


def listed_instance(rt: Any, vm: etree._Element) -> dict | None:
    """The VM's instance view when DescribeInstances shows it (the instance actions' one
    rule: views/instance.yaml's `where:`), else None."""
    m = rt.engine.mappings["DescribeInstances"]
    scope = rt.scope()
    item = m.view.apply(vm, scope)
    return item if m.where is None or m.where({**scope, "item": item}) else None


def _resources(rt: Any) -> list[Resource]:
    ids = rt.body.get("ResourceId")
    ids = as_list(ids)
    if not ids:
        raise missing_parameter("ResourceId")
    # one lookup per resource however often (and in which form) it is named: 1000 copies of
    # one id made 1000 oned calls, a way for one user to keep the workers from everyone else
    named, seen, out = set(), set(), []
    for raw in ids:
        prefix, number = _numbered(str(raw))
        same = str(raw) if number is None else (prefix, number)
        if same in named:
            continue
        named.add(same)
        res = resource(rt, raw)
        if (res.prefix, res.number) not in seen:
            seen.add((res.prefix, res.number))
            out.append(res)
    return out


def _write_all(rt: Any, changes: list[tuple[Resource, list[tuple[str, str]]]]) -> None:
    """Write every resource's new tags, all or nothing: the limit is checked for all first,
    and when OpenNebula refuses one (another user's public AMI: no MANAGE right), those
    already written get their old tags back."""
    for res, tags in changes:
        if len(tags) > MAX_TAGS:
            raise Ec2Error("TagLimitExceeded", f"{res.raw} would have more than {MAX_TAGS} tags")
    done: list[tuple[Resource, list[tuple[str, str]]]] = []
    try:
        for res, tags in changes:
            res.write(rt, tags)
            done.append((res, tags))
    except Ec2Error:
        for res, tags in reversed(done):
            try:
                res.undo(rt, tags)
            except Ec2Error as exc:
                log.error("tags of %s could not be put back: %s", res.raw, exc.message)
        raise


def create_tags(rt: Any) -> dict:
    wanted = checked_tags(rt.body.get("Tag") or [])
    if not wanted:
        raise missing_parameter("Tag")
    changes = []
    for res in _resources(rt):  # every id checked before anything is written
        tags = dict(res.tags)
        tags.update(wanted)
        changes.append((res, list(tags.items())))
    _write_all(rt, changes)
    return {"Return": True}


def delete_tags(rt: Any) -> dict:
    """Tag.N.Key alone deletes the key; with Tag.N.Value only when the value matches; no Tag
    at all deletes every tag of the resources. An `aws:` key is refused, as in CreateTags."""
    specs = rt.body.get("Tag")
    for spec in specs or []:
        not_reserved(str(spec.get("Key") or ""))
    changes = []
    for res in _resources(rt):
        if specs is None or specs == []:
            kept: list[tuple[str, str]] = []
        else:
            kept = [
                (k, v)
                for k, v in res.tags
                if not any(
                    str(s.get("Key") or "") == k and ("Value" not in s or str(s["Value"]) == v)
                    for s in specs
                )
            ]
        if kept != res.tags:
            changes.append((res, kept))
    _write_all(rt, changes)
    return {"Return": True}


def _shown_as(rt: Any, prefix: str, image: etree._Element) -> bool | None:
    """True: the image is shown as a `prefix` resource; False: it is one, hidden (its state);
    None: it is not one."""
    view, flag = _IMAGE_VIEWS[prefix]
    item = rt.view(view, image)
    if not item.get(flag):
        return None
    if prefix == "vol" and item.get("_owner") != rt.principal.name:
        return False  # a volume is its owner's alone, shared in OpenNebula or not (volumes.py)
    return item.get("State") is not None


def _image_kind(rt: Any, image: etree._Element) -> tuple[str, str] | None:
    """(EC2 resource type, id prefix) of an image a Describe* action shows, else None."""
    for prefix in _IMAGE_VIEWS:
        shown = _shown_as(rt, prefix, image)
        if shown is not None:
            return (KINDS[prefix][0], prefix) if shown else None
    return None


def describe_tags(rt: Any) -> dict:
    items: list[dict] = []

    def add(rank: int, number: int, kind: str, prefix: str, tags: list[dict]) -> None:
        for index, tag in enumerate(tags[:1024]):
            items.append(
                {
                    "_n": (rank << 42) | (number << 10) | index,
                    "ResourceId": format_id(prefix, number),
                    "ResourceType": kind,
                    "Key": tag["Key"],
                    "Value": tag["Value"],
                    "_tags": [tag],
                }
            )

    config = rt.config
    state = -2 if config.describe_with_terminated_instances else -1
    vms = rt.xml(rt.call("one.vmpool.infoextended", -2, -1, -1, state))
    for vm in vms.iterfind("VM"):
        if vm.find("USER_TEMPLATE/EC2_TAGS") is None or listed_instance(rt, vm) is None:
            continue
        add(0, int(vm.findtext("ID")), "instance", "i", read_tags(vm, "USER_TEMPLATE/EC2_TAGS"))
    images = rt.xml(rt.call("one.imagepool.info", -2, -1, -1))
    for image in images.iterfind("IMAGE"):
        if image.find("TEMPLATE/EC2_TAGS") is None:
            continue
        if others(rt, image):
            continue  # shared with the user: its tags are its owner's
        kind = _image_kind(rt, image)
        if kind is not None:
            add(
                1,
                int(image.findtext("ID")),
                kind[0],
                kind[1],
                read_tags(image, "TEMPLATE/EC2_TAGS"),
            )
    from handlers.keypairs import key_pairs

    for index, pair in enumerate(key_pairs(rt, rt.xml(rt.call("one.user.info", -1)))):
        for n, tag in enumerate(pair["Tags"][:1024]):
            items.append(
                {
                    "_n": (3 << 42) | (index << 10) | n,
                    "ResourceId": pair["KeyPairId"],
                    "ResourceType": "key-pair",
                    "Key": tag["Key"],
                    "Value": tag["Value"],
                    "_tags": [tag],
                }
            )
    from handlers.addresses import my_addresses

    try:
        addresses = my_addresses(rt)
    except Ec2Error as exc:  # the other tags are still worth answering
        log.error("DescribeTags without elastic IPs: %s", exc.message)
        addresses = []
    for address in addresses:
        for n, tag in enumerate(address["Tags"][:1024]):
            items.append(
                {
                    "_n": (4 << 42) | (address["_ar_id"] << 10) | n,
                    "ResourceId": address["AllocationId"],
                    "ResourceType": "elastic-ip",
                    "Key": tag["Key"],
                    "Value": tag["Value"],
                    "_tags": [tag],
                }
            )
    groups = rt.xml(rt.call("one.secgrouppool.info", -2, -1, -1))
    for group in groups.iterfind("SECURITY_GROUP"):
        if group.find("TEMPLATE/EC2_TAGS") is not None and not others(rt, group):
            add(
                2,
                int(group.findtext("ID")),
                "security-group",
                "sg",
                read_tags(group, "TEMPLATE/EC2_TAGS"),
            )
    items = rt.filter(items)
    items, token = paginate(
        items, rt.body.get("MaxResults"), rt.body.get("NextToken"), "_n", 5, 1000
    )
    return {"Tags": items, "NextToken": token}
