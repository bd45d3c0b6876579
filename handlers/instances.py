"""The instance handlers. RunInstances: instance types (Jinja2 files or OpenNebula VM
templates), user data, key pairs, ClientToken idempotency and all-or-nothing MinCount.
DescribeInstanceTypes, TerminateInstances (deferred while oned is busy with a VM) and
ModifyInstanceAttribute (type, user data); `user_vm`, the user's VM by instance id, for the
other handler modules. Runs in the engine's thread pool."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import re
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import jinja2
from lxml import etree

from econe.errors import Ec2Error, invalid_value, missing_parameter
from econe.mapping.filters import paginate
from econe.mapping.ids import format_id, parse_id
from econe.mapping.loader import adds
from econe.mapping.onecall import OneError, OneUnavailable, error_name
from econe.paths import data_dir
from econe.query import as_list
from handlers.addresses import disassociate_instances
from handlers.escaping import (
    Attr,
    TemplateError,
    element_attrs,
    parse_template,
    quote,
    storable,
    template_xml,
)
from handlers.keypairs import context_key
from handlers.locks import held
from handlers.security_groups import (
    group_ids,
    group_numbers,
    instance_groups,
    set_instance_groups,
)
from handlers.tags import listed_instance, tag_attrs, tag_specs
from handlers.tokens import (
    DIGEST,
    TOKEN,
    check_same_request,
    client_token,
    creating,
    in_flight,
    request_digest,
)

log = logging.getLogger("econe.handlers.instances")

USER_DATA_LIMIT = 16 * 1024
MAX_COUNT_LIMIT = 100  # instances one RunInstances makes at most
EC2_USER_ATTRS = (
    "EC2_INSTANCE_TYPE",
    "IMAGE_ID",
    "EC2_CLIENT_TOKEN",
    "EC2_REQUEST_DIGEST",
    "EC2_LAUNCH_COUNT",
    "EC2_ROLLED_BACK",
    "EC2_RESERVATION_ID",
    "EC2_LAUNCH_INDEX",
    "EC2_KEYNAME",
    "EC2_TAGS",
    "EC2_HIBERNATION",
    "EC2_PLATFORM",
)
# What RunInstances puts in CONTEXT, by what the request gives: each group replaces the
# template's attributes of that group, and only when the request gives it (a type's CONTEXT may
# carry its own, such as SSH_PUBLIC_KEY="$USER[SSH_PUBLIC_KEY]", for launches without).
USER_DATA_CONTEXT = ("USERDATA", "USERDATA_ENCODING", "EC2_USER_DATA")
KEY_CONTEXT = ("SSH_PUBLIC_KEY", "EC2_PUBLIC_KEY", "EC2_KEYNAME")
_TEMPLATES = jinja2.Environment(
    finalize=quote, autoescape=False, undefined=jinja2.StrictUndefined, keep_trailing_newline=True
)
# A VM made by a launch that did not reach MinCount is marked so, and never found by its token.
ROLLED_BACK = "EC2_ROLLED_BACK"
# How many VMs a launch with a ClientToken makes: MaxCount, written on each as it is made, and
# corrected to what it made when it ended short of that. A retry that finds fewer VMs under the
# token than this knows the launch is still under way (in another gateway process).
LAUNCH_COUNT = "EC2_LAUNCH_COUNT"
_BY_TOKEN = etree.XPath(
    "/VM_POOL/VM[(USER_TEMPLATE/EC2_CLIENT_TOKEN = $t or TEMPLATE/EC2_CLIENT_TOKEN = $t)"
    " and not(USER_TEMPLATE/EC2_ROLLED_BACK)]"
)


def _count(body: dict, name: str, default: int) -> int:
    value = body.get(name, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise invalid_value(name, value) from None
    if number < 1:
        raise invalid_value(name, value, "Expecting a value of at least 1.")
    if number <= MAX_COUNT_LIMIT:
        return number
    if name == "MaxCount":  # as many as can be launched, as EC2 does past its capacity
        return MAX_COUNT_LIMIT
    raise Ec2Error(
        "InstanceLimitExceeded",
        f"MinCount {number}: one request launches at most {MAX_COUNT_LIMIT} instances.",
    )


def _user_data(raw: Any) -> str | None:
    """User data as the request gave it (base64, at most USER_DATA_LIMIT bytes decoded)."""
    if raw is None or raw == "":
        return None
    text = "".join(str(raw).split())  # MIME line breaks are fine
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Ec2Error("InvalidParameterValue", "Invalid BASE64 encoding of user data") from None
    if len(data) > USER_DATA_LIMIT:
        raise Ec2Error("InvalidParameterValue", f"User data is limited to {USER_DATA_LIMIT} bytes")
    return text


# what else RunInstances' TagSpecification may name (EC2's list): econe makes none of them, so
# tags for them are refused (never dropped); an empty list asks for nothing
_UNTAGGED_WITH_INSTANCE = (
    "volume",
    "network-interface",
    "spot-instances-request",
    "elastic-gpu",
    "elastic-inference",
)


def check_zone(rt: Any, given: dict, where: str = "") -> None:
    """`AvailabilityZone` / `AvailabilityZoneId` in `given` name the one zone (as
    DescribeAvailabilityZones shows it: the region's name, id `<region>-az1`)."""
    region = rt.config.region
    for member, only in (("AvailabilityZone", region), ("AvailabilityZoneId", f"{region}-az1")):
        value = given.get(member)
        if value and value != only:
            raise invalid_value(where + member, value, f"The only zone is {only}.")


def _image(rt: Any, image_id: Any) -> dict:
    number = parse_id("ami", image_id)
    if number is None:
        raise Ec2Error(
            "InvalidAMIID.Malformed", f"Invalid id: '{image_id}' (expecting 'ami-' and a number)"
        )
    not_found = Ec2Error("InvalidAMIID.NotFound", f"The image id '[{image_id}]' does not exist")
    image = rt.view("image", rt.fetch("one.image.info", number, not_found))
    if not image.get("_ami") or not image.get("State"):
        raise not_found
    if image["State"] == "failed":
        raise _unavailable(image_id, "it failed in OpenNebula (image state ERROR)")
    if image["_state"] in _IN_USE_PERSISTENT:
        raise _unavailable(image_id, _PERSISTENT_IN_USE)
    return image


# a persistent image in use (USED_PERS, LOCKED_USED_PERS): oned gives it to one VM at a time
_IN_USE_PERSISTENT = {8, 10}
_PERSISTENT_IN_USE = "it is persistent and already in use (OpenNebula gives it to one instance)"
# oned's refusal to put an image on a new VM's disk (ImagePool::acquire_disk)
_NOT_ACQUIRED = re.compile(r"Cannot acquire image (\d+), (.*)")


def _unavailable(image_id: Any, why: str) -> Ec2Error:
    """EC2's answer for an AMI that exists but cannot be launched now: a client error (400),
    never retried by the SDKs as the InternalError oned's refusal would be."""
    return Ec2Error("InvalidAMIID.Unavailable", f"The image '{image_id}' cannot be launched: {why}")


def user_vm(rt: Any, number: int, raw: str, terminated: Ec2Error | None = None) -> etree._Element:
    """The VM of instance `raw` (number `number`) as the user sees it (one.vm.info with their
    session): one the instance actions do not find (another user's, a missing one, a rolled-back
    launch's, a terminated one past :terminated_instances_expiration_time:: views/instance.yaml)
    is InvalidInstanceID.NotFound, and one shown terminated (OpenNebula's failure states too)
    is that as well unless the caller says what else (`terminated`)."""
    missing = Ec2Error("InvalidInstanceID.NotFound", f"The instance ID '{raw}' does not exist")
    vm = rt.fetch("one.vm.info", number, missing)
    item = listed_instance(rt, vm)
    if item is None:
        raise missing
    if item["State"]["Name"] == "terminated":
        raise terminated or missing
    return vm


def _bad_mapping(message: str) -> Ec2Error:
    return Ec2Error("InvalidBlockDeviceMapping", message)


def _root_size(mappings: list[dict], image: dict) -> int | None:
    """The root disk's SIZE (MB) a BlockDeviceMapping asks for, or None. Only the root device
    (the AMI's RootDeviceName, or that name + "1" as EC2 habits write it) can be given, with a
    VolumeSize no smaller than the image; a NoDevice for any other device is accepted (there
    is nothing to suppress). Volumes are made with CreateVolume and AttachVolume instead."""
    root, size = image["RootDeviceName"], None
    seen: set[str] = set()
    for mapping in mappings:
        device = mapping.get("DeviceName")
        if not device:
            raise missing_parameter("BlockDeviceMapping.N.DeviceName")
        same = root if device == f"{root}1" else device  # both names of the root device
        if same in seen:
            raise _bad_mapping(
                f"The device '{device.removeprefix('/dev/')}' is used in more than one "
                "block-device mapping"
            )
        seen.add(same)
        if device not in (root, f"{root}1"):
            if "NoDevice" in mapping and not mapping.get("Ebs") and not mapping.get("VirtualName"):
                continue
            raise _bad_mapping(
                f"Only the root device ({root}) can be given; make volumes with CreateVolume "
                "and AttachVolume"
            )
        ebs = mapping.get("Ebs") or {}
        if "NoDevice" in mapping or mapping.get("VirtualName"):
            raise _bad_mapping(f"The root device {device} cannot be removed or replaced")
        if ebs.get("SnapshotId"):
            raise _bad_mapping(f"The root device {device} is made from the AMI, not a snapshot")
        if ebs.get("Encrypted") is True:
            raise _bad_mapping("Encrypted volumes are not available on this cloud")
        if ebs.get("DeleteOnTermination") is False:
            raise _bad_mapping(
                f"The root device {device} is deleted with the instance; keep data on a volume"
            )
        if ebs.get("VolumeSize") is not None:
            size = int(ebs["VolumeSize"]) * 1024
            fixed = (
                "persistent" if image["_persistent"] else "a CD-ROM" if image["_type"] == 1 else ""
            )
            if fixed and size != image["_size_mb"]:  # OpenNebula resizes neither
                raise _bad_mapping(
                    f"The image {image['ImageId']} is {fixed}: OpenNebula cannot give it "
                    f"another size than {image['_size_mb']} MB"
                )
            if size < image["_size_mb"]:
                raise _bad_mapping(
                    f"Volume of size {ebs['VolumeSize']}GB is smaller than the image "
                    f"{image['ImageId']} ({image['_size_mb']} MB)"
                )
    return size


def _sized(attrs: list[Attr], size_mb: int | None) -> list[Attr]:
    """`attrs` with SIZE set on the first DISK (the AMI's), when a size was asked for."""
    if size_mb is None:
        return attrs
    out, done = [], False
    for name, value in attrs:
        if name == "DISK" and isinstance(value, list) and not done:
            value = [(k, v) for k, v in value if k != "SIZE"] + [("SIZE", str(size_mb))]
            done = True
        out.append((name, value))
    return out


def _key_pair(rt: Any, name: str | None) -> str | None:
    """The public key of `name` from the user's template (EC2_KEYPAIR vectors, or the Ruby
    econe's base64 JSON EC2_KEYPAIRS), as CONTEXT can carry it (context_key). An unknown name
    is InvalidKeyPair.NotFound, as on EC2."""
    if not name:
        return None
    user = rt.xml(rt.call("one.user.info", -1))
    for vec in user.findall("TEMPLATE/EC2_KEYPAIR"):
        if vec.findtext("NAME") == name:
            return context_key(name, vec.findtext("PUBLIC_KEY") or "")
    for blob in user.findall("TEMPLATE/EC2_KEYPAIRS"):
        try:
            pairs = json.loads(base64.b64decode(blob.text or ""))
            line = str(pairs[name]["public_key"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            continue
        return context_key(name, line)
    raise Ec2Error("InvalidKeyPair.NotFound", f"The key pair '{name}' does not exist")


class TypeUnusable(Ec2Error):
    """See _misconfigured."""


def _misconfigured(type_name: str, why: Any) -> Ec2Error:
    """An instance type the administrator defined so that it cannot launch (a template file
    missing or failing, CPU or MEMORY oned refuses, a network that is not there): logged with
    why, and for the user EC2's answer for a type not offered here (400, not retried)."""
    log.error("instance type %s cannot be launched: %s", type_name, why)
    return TypeUnusable(
        "Unsupported",
        f"Instance type {type_name} cannot be launched here: its definition is broken "
        "(the administrator's log says why)",
    )


def _template_file(config: Any, type_name: str, spec: dict) -> tuple[str, Path | None]:
    """(the template file name econe.conf gives the type, the file found for it, or None)."""
    name = str(spec.get("template") or f"{type_name}.j2")
    for directory in (Path(config.template_location), data_dir("templates")):
        for candidate in (name, name[:-4] + ".j2" if name.endswith(".erb") else None):
            if candidate and (directory / candidate).is_file() and not candidate.endswith(".erb"):
                return name, directory / candidate
    return name, None


def _file_template(rt: Any, type_name: str, spec: dict) -> Path:
    name, path = _template_file(rt.config, type_name, spec)
    if path is None:
        raise _misconfigured(type_name, f"template {name} not found")
    return path


def check_instance_types(config: Any) -> tuple[list[str], list[str]]:
    """(errors, warnings) of econe.conf's instance types, for start-up: a template file that
    is missing or is not Jinja2 is an error; one that fails when rendered as a launch without
    user data or key pair (or that renders no OpenNebula template) is a warning, since a
    launch with them may still work."""
    errors, warnings = [], []
    for type_name, spec in config.instance_types.items():
        name, path = _template_file(config, type_name, spec)
        where = f":instance_types: {type_name}"
        if path is None:
            errors.append(f"{where}: template {name} not found in {config.template_location}")
            continue
        try:
            template = _TEMPLATES.from_string(path.read_text())
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(f"{where}: cannot read {path}: {exc}")
            continue
        except jinja2.TemplateSyntaxError as exc:
            errors.append(f"{where}: {path}, line {exc.lineno}: {exc.message}")
            continue
        values = {**_NO_LAUNCH, "user": "oneadmin", "config": config}
        values.update(instance_type=type_name, network_id=int(spec.get("network_id") or 0))
        try:
            parse_template(template.render(**values))
        except Exception as exc:  # noqa: BLE001 - the administrator's template code: any failure
            warnings.append(f"{where}: {path} fails for a launch without user data: {exc}")
    return errors, warnings


def _template(rt: Any, path: Path) -> jinja2.Template:
    """The compiled Jinja2 template, recompiled when the file changes."""
    key = ("instance-type", str(path), path.stat().st_mtime_ns)
    template = rt.engine.cache.get(key)
    if template is None:
        template = rt.engine.cache[key] = _TEMPLATES.from_string(path.read_text())
    return template


def _type_templates(rt: Any, pool: etree._Element | None = None) -> dict[str, etree._Element]:
    """Instance type name → the VM template (tagged EC2_INSTANCE_TYPE) defining it: one of the
    cloud administrators' (owned by oneadmin, or in group oneadmin), else one of the caller's
    own. Templates other users share are never used: anyone could otherwise publish
    `m1.large` with their own CONTEXT and key. One pass over the pool (one.templatepool.info's
    answer, `pool` when read already), whatever its size."""
    if pool is None:
        pool = rt.xml(rt.call("one.templatepool.info", -2, -1, -1))
    admins: dict[str, etree._Element] = {}
    mine: dict[str, etree._Element] = {}
    uid = str(rt.principal.uid)
    for tmpl in pool.iterfind("VMTEMPLATE"):
        name = tmpl.findtext("TEMPLATE/EC2_INSTANCE_TYPE")
        if not name:
            continue
        if tmpl.findtext("UID") == "0" or tmpl.findtext("GID") == "0":
            admins.setdefault(name, tmpl)
        elif tmpl.findtext("UID") == uid:
            mine.setdefault(name, tmpl)
    return {**mine, **admins}


# OpenNebula's OS/ARCH → EC2's names (others, such as ppc64le, are shown as they are)
_ARCHES = {"aarch64": "arm64", "i686": "i386", "amd64": "x86_64"}  # as views/architectures.yaml


def _type_info(name: str, attrs: list[Attr]) -> dict | None:
    """An EC2 InstanceTypeInfo from an instance type's OpenNebula template attributes: its
    VCPU (else CPU, rounded up) and MEMORY (MB); the rest as EC2 says of a plain KVM type.
    None when oned would refuse them (VCPU or MEMORY not a positive integer, CPU not a
    positive number)."""
    top = {k: v for k, v in attrs if isinstance(v, str)}
    os_arch = next(
        (dict(v).get("ARCH") for k, v in attrs if k == "OS" and isinstance(v, list)), None
    )
    try:
        cpu = float(top.get("CPU") or 0)
        if not math.isfinite(cpu):  # "nan", "inf"
            return None
        vcpus = int(top["VCPU"]) if top.get("VCPU") else math.ceil(cpu)
        memory_mib = int(top.get("MEMORY") or 0)  # oned takes a whole number of MB only
    except (ValueError, OverflowError):
        return None
    if vcpus <= 0 or cpu <= 0 or memory_mib <= 0:
        return None
    return {
        "InstanceType": name,
        "CurrentGeneration": True,
        "FreeTierEligible": False,
        "SupportedUsageClasses": ["on-demand"],
        "SupportedRootDeviceTypes": ["ebs"],
        "SupportedVirtualizationTypes": ["hvm"],
        "BareMetal": False,
        "ProcessorInfo": {"SupportedArchitectures": [_ARCHES.get(os_arch, os_arch or "x86_64")]},
        "VCpuInfo": {"DefaultVCpus": vcpus, "DefaultCores": vcpus, "DefaultThreadsPerCore": 1},
        "MemoryInfo": {"SizeInMiB": memory_mib},
        "InstanceStorageSupported": False,
        "EbsInfo": {
            "EbsOptimizedSupport": "unsupported",
            "EncryptionSupport": "unsupported",
            "NvmeSupport": "unsupported",
        },
        "NetworkInfo": {
            "MaximumNetworkInterfaces": 1,
            "Ipv6Supported": False,
            "EnaSupport": "unsupported",
            "EfaSupported": False,
            "EncryptionInTransitSupported": False,
        },
        "NitroEnclavesSupport": "unsupported",
        "NitroTpmSupport": "unsupported",
        "HibernationSupported": True,  # OpenNebula's suspend keeps the memory
        "BurstablePerformanceSupported": False,
        "DedicatedHostsSupported": False,
        "AutoRecoverySupported": False,
    }


# the template variables of a launch, as a type's template is rendered to read it
_NO_LAUNCH = {
    "image_id": 0,
    "ec2_image_id": "ami-00000000",
    "network_id": 0,
    "user_data": None,
    "key_name": None,
    "public_key": None,
    "client_token": None,
    "reservation_id": "r-0",
    "launch_index": 0,
}


def _render(rt: Any, path: Path, **launch: Any) -> list[Attr]:
    """An econe.conf instance type's template rendered with a launch's values and parsed."""
    values = {**_NO_LAUNCH, "user": rt.principal.name, "config": rt.config, **launch}
    return parse_template(_template(rt, path).render(**values))


def _instance_types(rt: Any) -> dict[str, list[Attr] | None]:
    """The instance types RunInstances takes from this user, with their OpenNebula template
    attributes: econe.conf's (their template rendered as for a launch; None when it is broken:
    the name is still econe.conf's) and the VM templates tagged EC2_INSTANCE_TYPE that
    `_type_templates` picks."""
    types: dict[str, list[Attr] | None] = {}
    for name, spec in rt.config.instance_types.items():
        types[name] = None
        try:
            path = _file_template(rt, name, spec)
            network = int(spec.get("network_id") or 0)
            types[name] = _render(rt, path, instance_type=name, network_id=network)
        except Ec2Error:
            pass  # logged
        except Exception as exc:  # noqa: BLE001 - the administrator's template code: any failure
            log.error("instance type %s: %s: %s", name, type(exc).__name__, exc)
    for name, tmpl in _type_templates(rt).items():
        if name not in types:
            types[name] = element_attrs(tmpl.find("TEMPLATE"))
    return types


def describe_instance_types(rt: Any) -> dict:
    """The instance types RunInstances takes from this user, as EC2 InstanceTypeInfo (those
    whose numbers oned would refuse are left out). Terraform's aws_instance reads its type."""
    infos = {n: _type_info(n, a) for n, a in _instance_types(rt).items() if a is not None}
    usable = {name: info for name, info in infos.items() if info is not None}
    wanted = [str(t) for t in rt.body.get("InstanceType") or []]
    missing = [t for t in wanted if t not in usable]
    if missing:
        raise Ec2Error(
            "InvalidInstanceType",
            f"The following supplied instance types do not exist: [{', '.join(missing)}]",
        )
    items = [usable[t] for t in sorted(usable) if not wanted or t in wanted]
    body = rt.body
    items, token = paginate(  # by name: a page stays in place as types come and go
        rt.filter(items), body.get("MaxResults"), body.get("NextToken"), "InstanceType", 5, 100, str
    )
    return {"InstanceTypes": items, "NextToken": token}


def _merge(attrs: list[Attr], user: list[Attr], context: list[tuple[str, str]]) -> list[Attr]:
    """Replace the EC2 attributes in `attrs` by ours; put `context` into the last CONTEXT, in
    place of the template's attributes of each group (USER_DATA_CONTEXT, KEY_CONTEXT) it
    carries: the template's others stay."""
    out = [(n, v) for n, v in attrs if n not in EC2_USER_ATTRS]
    given = {k for k, _ in context}
    replaced = {
        n for group in (USER_DATA_CONTEXT, KEY_CONTEXT) if given & set(group) for n in group
    }
    contexts = [i for i, (n, _) in enumerate(out) if n == "CONTEXT" and isinstance(out[i][1], list)]
    if contexts:
        i = contexts[-1]
        kept = [(k, v) for k, v in out[i][1] if k not in replaced]
        out[i] = ("CONTEXT", kept + context)
    elif context:
        out.append(("CONTEXT", context))
    return out + user


class Launch:
    """Everything one RunInstances needs to create its VMs."""

    def __init__(self, rt: Any):
        body = rt.body
        self.rt = rt
        self.min_count = _count(body, "MinCount", 1)
        self.max_count = _count(body, "MaxCount", self.min_count)
        if self.max_count < self.min_count:
            raise invalid_value(
                "MaxCount", self.max_count, "MaxCount must not be less than MinCount."
            )
        check_zone(rt, body.get("Placement") or {}, "Placement.")
        self.user_data = _user_data(body.get("UserData"))
        self.tags = tag_specs(body, "instance", ignored=_UNTAGGED_WITH_INSTANCE)
        for spec in body.get("TagSpecification") or []:
            kind = spec.get("ResourceType")
            if kind in _UNTAGGED_WITH_INSTANCE and (spec.get("Tag") or spec.get("Tags")):
                raise Ec2Error(
                    "UnsupportedOperation",
                    f"TagSpecification ResourceType {kind}: an instance here has no {kind} "
                    "of its own to tag (its disks are the AMI's copy; volumes are CreateVolume's)",
                )
        self.image_id = body.get("ImageId")
        self.platform: str | None = None
        if not self.image_id:
            raise Ec2Error("MissingParameter", "The request must contain the parameter ImageId")
        self.type_name = str(body.get("InstanceType") or "m1.small")
        self.key_name = body.get("KeyName") or None
        self.token = client_token(body)
        for name, value in (
            ("KeyName", self.key_name),
            ("ImageId", self.image_id),
            ("InstanceType", self.type_name),
        ):
            try:
                storable(value, name)
            except TemplateError as exc:
                raise Ec2Error("InvalidParameterValue", str(exc)) from None

    def resolve(self) -> None:
        rt = self.rt
        image = _image(rt, self.image_id)
        self.image = image["_id"]
        self.platform = image.get("Platform")  # the AMI's (windows): the instance shows it
        self.root_size = _root_size(rt.body.get("BlockDeviceMapping") or [], image)
        spec = rt.config.instance_types.get(self.type_name)
        self.file = _file_template(rt, self.type_name, spec) if spec is not None else None
        self.vm_template = None if spec is not None else _type_templates(rt).get(self.type_name)
        if self.file is None and self.vm_template is None:
            raise Ec2Error(
                "InvalidParameterValue", f"Invalid value '{self.type_name}' for InstanceType."
            )
        if self.vm_template is not None and (
            _type_info(self.type_name, element_attrs(self.vm_template.find("TEMPLATE"))) is None
        ):  # what DescribeInstanceTypes omits
            raise _misconfigured(self.type_name, "its VM template's CPU, VCPU or MEMORY")
        self.network_id = int((spec or {}).get("network_id") or 0)
        self.public_key = _key_pair(rt, self.key_name)
        self.groups = group_ids(
            rt, as_list(rt.body.get("SecurityGroup")), as_list(rt.body.get("SecurityGroupId"))
        )
        if self.token:
            digest = hashlib.sha256(f"{rt.principal.name}\0{self.token}".encode()).hexdigest()
            self.reservation = "r-" + digest[:17]
        else:
            self.reservation = "r-" + secrets.token_hex(9)[:17]

    def attributes(self, index: int) -> tuple[list[Attr], list[tuple[str, str]]]:
        """(USER_TEMPLATE attributes, CONTEXT values) of launch number `index`."""
        user: list[Attr] = [
            ("EC2_INSTANCE_TYPE", self.type_name),
            ("IMAGE_ID", format_id("ami", self.image)),
            ("EC2_RESERVATION_ID", self.reservation),
            ("EC2_LAUNCH_INDEX", str(index)),
        ]
        if self.token:
            user.append((TOKEN, str(self.token)))
            user.append((DIGEST, request_digest(self.rt.body)))
            user.append((LAUNCH_COUNT, str(self.max_count)))
        if self.key_name:
            user.append(("EC2_KEYNAME", str(self.key_name)))
        if self.platform:
            user.append(("EC2_PLATFORM", str(self.platform)))
        if (self.rt.body.get("HibernationOptions") or {}).get("Configured"):
            user.append(("EC2_HIBERNATION", "YES"))  # StopInstances' Hibernate suspends it
        user += tag_attrs(self.tags)
        context: list[tuple[str, str]] = []
        if self.user_data:
            context += [
                ("USERDATA", self.user_data),
                ("USERDATA_ENCODING", "base64"),
                ("EC2_USER_DATA", self.user_data),
            ]
        if self.public_key:  # the key's name only in USER_TEMPLATE: oned would expand a `$`
            context += [("SSH_PUBLIC_KEY", self.public_key), ("EC2_PUBLIC_KEY", self.public_key)]
        return user, context

    def in_groups(self, attrs: list[Attr]) -> list[Attr]:
        """SecurityGroup(Id).N: every NIC also in those groups (oned adds its network's)."""
        if not self.groups:
            return attrs
        out: list[Attr] = []
        for name, value in attrs:
            if name == "NIC" and isinstance(value, list):
                ids = sorted({*self.groups, *group_numbers(dict(value).get("SECURITY_GROUPS"))})
                value = [(k, v) for k, v in value if k != "SECURITY_GROUPS"]
                value.append(("SECURITY_GROUPS", ",".join(map(str, ids))))
            out.append((name, value))
        if not any(name == "NIC" for name, _ in out):
            raise Ec2Error(
                "InvalidParameterCombination",
                f"Instance type {self.type_name} has no network interface to put in security groups",
            )
        return out

    def placement(self, attrs: list[Attr]) -> list[Attr]:
        """`:cluster_id:`: the VM goes to that cluster, unless its template says where."""
        cluster = self.rt.config.cluster_id
        if cluster is None or any(name == "SCHED_REQUIREMENTS" for name, _ in attrs):
            return []
        return [("SCHED_REQUIREMENTS", f"CLUSTER_ID = {int(cluster)}")]

    def create(self, index: int) -> int:
        user, context = self.attributes(index)
        errors = {"QUOTA": "InstanceLimitExceeded", "NO_EXISTS": "Unsupported"}
        try:
            return self._create(user, context, index, errors)
        except (TemplateError, jinja2.TemplateError) as exc:
            if isinstance(exc, TemplateError) and "cannot be stored" in str(exc):
                raise Ec2Error("InvalidParameterValue", str(exc)) from exc
            raise _misconfigured(self.type_name, exc) from exc
        except TypeUnusable:
            raise
        except Ec2Error as exc:
            # something the type names is not there: its VM template (NO_EXISTS), a network or
            # image its template names (oned's INTERNAL "… with ID: 9 does not exist")
            if exc.code == "Unsupported" or (
                exc.code == "InternalError" and "does not exist" in exc.message
            ):
                raise _misconfigured(self.type_name, exc.message) from exc
            refused = _NOT_ACQUIRED.search(exc.message) if exc.code == "InternalError" else None
            if refused and int(refused.group(1)) == self.image:  # its state changed since read
                why = _PERSISTENT_IN_USE if "persistent" in refused.group(2) else refused.group(2)
                raise _unavailable(self.image_id, why) from exc
            raise
        except Exception as exc:  # noqa: BLE001 - the administrator's template code: any failure
            raise _misconfigured(self.type_name, f"{type(exc).__name__}: {exc}") from exc

    def _create(self, user: list[Attr], context: list, index: int, errors: dict) -> int:
        rt = self.rt
        if self.file is not None:
            rendered = _render(
                rt,
                self.file,
                image_id=self.image,
                ec2_image_id=format_id("ami", self.image),
                instance_type=self.type_name,
                network_id=self.network_id,
                user_data=self.user_data,
                key_name=self.key_name,
                public_key=self.public_key,
                client_token=self.token,
                reservation_id=self.reservation,
                launch_index=index,
            )
            if _type_info(self.type_name, rendered) is None:  # what DescribeInstanceTypes omits
                raise _misconfigured(self.type_name, "CPU, VCPU or MEMORY that oned refuses")
            attrs = self.in_groups(_sized(rendered, self.root_size))
            xml = template_xml(_merge(attrs + self.placement(attrs), user, context))
            return int(rt.call("one.vm.allocate", xml, False, errors=errors))
        tmpl = element_attrs(self.vm_template.find("TEMPLATE"))
        disks = [("DISK", [("IMAGE_ID", str(self.image))])]
        disks += [a for a in tmpl if a[0] == "DISK" and isinstance(a[1], list)]
        ctx = [a for a in tmpl if a[0] == "CONTEXT" and isinstance(a[1], list)][-1:]
        if self.groups:  # the template's NICs, sent again with the groups added
            disks += self.in_groups([a for a in tmpl if a[0] == "NIC"])
        placement = self.placement(tmpl)
        xml = template_xml(_merge(_sized(disks, self.root_size) + ctx + placement, user, context))
        tid = int(self.vm_template.findtext("ID"))
        return int(rt.call("one.template.instantiate", tid, "", False, xml, False, errors=errors))


def _reservation(rt: Any, vms: list[etree._Element]) -> dict:
    instances = sorted(
        ({**rt.view("instance", vm), "_element": vm} for vm in vms),
        key=lambda i: (i.get("AmiLaunchIndex") or 0, i["_id"]),
    )
    instance_groups(rt, instances)
    return {
        "ReservationId": instances[0]["_reservation"],
        "OwnerId": instances[0].get("_owner") or rt.principal.name,
        "Groups": [],
        "Instances": instances,
    }


def run_instances(rt: Any) -> dict:
    launch = Launch(rt)
    if not launch.token:
        return _launch(rt, launch)
    # a retry in this process waits for the first request with its token, then finds its VMs
    with held("client token", rt.principal.uid, launch.token):
        pool = rt.xml(rt.call("one.vmpool.infoextended", -3, -1, -1, -2))
        previous = _BY_TOKEN(pool, t=str(launch.token))
        if previous:
            check_same_request([vm.findtext(f"USER_TEMPLATE/{DIGEST}") for vm in previous], rt.body)
            if len(previous) >= _launch_count(previous, launch.min_count):
                return _reservation(rt, previous)
            # Fewer than the launch makes: one still under way in another gateway process, or
            # one whose gateway stopped before it ended (crashed, or gave up waiting for oned,
            # which made the VM later). Each VM is made within one_timeout of the one before:
            # past twice that since the newest, the launch is over and what it left is final,
            # kept if it reached MinCount, else rolled back as that launch would have.
            newest = max(int(vm.findtext("STIME") or 0) for vm in previous)
            in_flight(rt, "launch", launch.token, newest)
            if len(previous) >= launch.min_count:
                return _reservation(rt, previous)
            _roll_back(rt, [int(vm.findtext("ID")) for vm in previous])
        else:
            in_flight(rt, "launch", launch.token)  # one this process gave up waiting for
        with creating(rt, "launch", launch.token):
            return _launch(rt, launch)


def _launch_count(vms: list[etree._Element], min_count: int) -> int:
    """How many VMs the launch that made `vms` makes (the smallest count written on them: a
    correction may have reached only some); `min_count` for VMs made before econe wrote it."""
    counts = [vm.findtext(f"USER_TEMPLATE/{LAUNCH_COUNT}") for vm in vms]
    numbers = [int(c) for c in counts if c and c.isdigit()]
    return min(numbers) if numbers else min_count


def _launch(rt: Any, launch: Launch) -> dict:
    launch.resolve()
    created: list[int] = []
    failure: Ec2Error | None = None
    for index in range(launch.max_count):
        try:
            created.append(launch.create(index))
        except Ec2Error as exc:
            failure = exc
            break
    if len(created) < launch.min_count:
        _roll_back(rt, created)
        raise failure or Ec2Error(
            "InsufficientInstanceCapacity", "Not enough instances could be started"
        )
    if failure is not None:
        log.warning(
            "RunInstances created %d of %d: %s", len(created), launch.max_count, failure.message
        )
        if launch.token:  # a retry must know the launch is over: it made these only
            _correct_count(rt, created)
    vms = [rt.xml(rt.call("one.vm.info", vm_id)) for vm_id in created]
    return _reservation(rt, vms)


def _correct_count(rt: Any, vm_ids: list[int]) -> None:
    """Write on the VMs of a launch that ended short of MaxCount how many it made. One that
    fails leaves retries answering Unavailable until the launch's window is over."""
    count = template_xml([(LAUNCH_COUNT, str(len(vm_ids)))])
    for vm_id in vm_ids:
        try:
            rt.call("one.vm.update", vm_id, count, 1)
        except Ec2Error as exc:
            log.error("launch of VM %s: cannot record its count: %s", vm_id, exc.message)


def _roll_back(rt: Any, vm_ids: list[int]) -> None:
    """Terminate the VMs of a launch that did not reach MinCount. Each is first marked rolled
    back (its token no longer finds it) and to be terminated: a VM oned cannot terminate yet
    (PROLOG, BOOT) is terminated as soon as it can, as TerminateInstances does."""
    for vm_id in vm_ids:
        since = int(time.time())
        marks = template_xml([(ROLLED_BACK, str(since)), (TERMINATE_MARK, str(since))])
        try:
            rt.call("one.vm.update", vm_id, marks, 1)
        except Ec2Error as exc:  # keep rolling back: terminating matters most
            log.error("rollback of VM %s: cannot mark it: %s", vm_id, exc.message)
        try:
            rt.call(
                "one.vm.action",
                "terminate-hard",
                vm_id,
                errors={"ACTION": "IncorrectInstanceState"},
            )
        except Ec2Error as exc:
            if exc.code == "IncorrectInstanceState":
                _start_watch(rt, vm_id, since)  # not yet: finished once oned accepts it
            else:
                log.error("rollback of VM %s failed: %s", vm_id, exc.message)


# -- TerminateInstances: terminating pending instances -----------------------------------------
#
# oned refuses terminate/terminate-hard while a VM is in PROLOG, BOOT, a hotplug or another
# transient ACTIVE state, but EC2 lets users terminate an instance at once. econe then records
# the intent on the VM itself (USER_TEMPLATE EC2_TERMINATE_REQUESTED="<epoch>", a merge), answers
# `shutting-down` (the instance view shows marked VMs so) and completes the terminate as soon as
# oned accepts it: a background thread of this engine retries for TERMINATE_RETRY_SECONDS, and
# any DescribeInstances or TerminateInstances that sees the mark on a VM oned would now terminate
# does it, so another or a restarted gateway process finishes the job. No gateway state.

TERMINATE_MARK = "EC2_TERMINATE_REQUESTED"
TERMINATE_RETRY_SECONDS = 900
TERMINATE_POLL_SECONDS = 0.5
SHUTTING_DOWN = {"Code": 32, "Name": "shutting-down"}
_FAILURE_LCM = {14, 36, 37, 38, 39, 40, 41, 42, 44, 46, 47, 48, 49, 50, 61}
_watch_lock = threading.Lock()


def terminable(state: int | None, lcm: int | None) -> bool:
    """Whether oned accepts terminate-hard in this state (DispatchManager::terminate)."""
    if state in (0, 1, 2, 4, 5, 8, 9, 10, 11):
        return True
    # SHUTDOWN_POWEROFF, SHUTDOWN_UNDEPLOY: terminate-hard cuts a power-off short (SHUTDOWN too,
    # but that is a terminate on its way already: asking again would only restart it)
    return state == 3 and (lcm in (3, 16, 18, 29) or lcm in _FAILURE_LCM)


def _watch(engine: Any, user: str, vm_id: int, until: float) -> None:
    """Background: terminate-hard VM `vm_id` (as `user`) once oned accepts it, until `until`."""
    try:
        while time.time() < until and not engine.closing.wait(TERMINATE_POLL_SECONDS):
            try:
                session = engine.sessions.session_for(user)
                vm = etree.fromstring(engine.one.call(session, "one.vm.info", vm_id).encode())
            except OneUnavailable:
                continue
            except OneError as exc:
                if error_name(exc) in ("NO_EXISTS", "AUTHORIZATION"):
                    return
                continue
            except Exception:  # noqa: BLE001 - a background thread must not die noisily
                log.exception("deferred terminate of VM %s: cannot read it", vm_id)
                return
            state, lcm = int(vm.findtext("STATE") or -1), int(vm.findtext("LCM_STATE") or -1)
            if state == 6 or vm.find(f"USER_TEMPLATE/{TERMINATE_MARK}") is None:
                return
            if not terminable(state, lcm):
                continue
            try:
                engine.one.call(session, "one.vm.action", "terminate-hard", vm_id)
                log.info("deferred terminate of VM %s done", vm_id)
                return
            except OneUnavailable:
                continue
            except OneError as exc:
                if error_name(exc) != "ACTION":
                    log.error("deferred terminate of VM %s failed: %s", vm_id, exc)
                    return
    finally:
        with _watch_lock:
            engine.cache.pop(("terminate-watch", vm_id), None)


def _start_watch(rt: Any, vm_id: int, since: int) -> None:
    until = since + TERMINATE_RETRY_SECONDS
    if time.time() >= until or rt.engine.closing.is_set():
        return
    key = ("terminate-watch", vm_id)
    with _watch_lock:
        if key in rt.engine.cache:
            return
        thread = threading.Thread(
            target=_watch,
            args=(rt.engine, rt.principal.name, vm_id, until),
            name=f"econe-terminate-{vm_id}",
            daemon=True,
        )
        rt.engine.cache[key] = thread
    thread.start()


def _defer_terminate(rt: Any, item: dict) -> None:
    vm_id = item["_id"]
    since = item.get("_terminate")
    if not since:
        since = int(time.time())
        rt.call(
            "one.vm.update",
            vm_id,
            template_xml([(TERMINATE_MARK, str(since))]),
            1,
            errors={"NO_EXISTS": "InvalidInstanceID.NotFound"},
        )
    _start_watch(rt, vm_id, int(since))


def terminate_instances(rt: Any) -> dict:
    """TerminateInstances: every id validated first (the mapping's by_id), then terminate
    (RUNNING) or terminate-hard; a VM oned cannot terminate yet is marked and finished later."""
    requested = rt.body.get("InstanceId")
    requested = as_list(requested)
    if not requested:
        raise Ec2Error("MissingParameter", "The request must contain the parameter InstanceId")
    scope = rt.scope()
    items = rt.engine.fetch_by_ids(rt, rt.mapping, requested, scope)
    changes = []
    for item in items:
        after = _terminate(rt, item, scope)
        if item["State"]["Name"] == "terminated":  # a failed VM, cleaned up: never back from it
            after = {**after, "State": item["State"]}
        changes.append({"item": item, "before": item, "after": after})
    # A terminated instance loses its elastic IP (running :disassociate_script:), as on EC2.
    disassociate_instances(rt, [c["item"]["_id"] for c in changes if c["item"].get("_state") != 6])
    return {
        "TerminatingInstances": [
            {
                "InstanceId": c["item"]["InstanceId"],
                "CurrentState": c["after"]["State"],
                "PreviousState": c["before"]["State"],
            }
            for c in changes
        ]
    }


def _terminate(rt: Any, item: dict, scope: dict) -> dict:
    """Terminate one instance view; its view afterwards. oned refusing the action is retried
    once on a fresh read: the VM may have moved on (PENDING to PROLOG) since it was read."""
    vm_id, current = item["_id"], item
    for attempt in (1, 2):
        state, lcm = current.get("_state"), current.get("_lcm")
        if state == 6:
            return current
        action = "terminate" if state == 3 and lcm == 3 else "terminate-hard"
        try:
            rt.call(
                "one.vm.action",
                action,
                vm_id,
                errors={"ACTION": "IncorrectInstanceState"},
                not_found="InvalidInstanceID.NotFound",
            )
            return rt.engine.fetch_one(rt, rt.mapping, vm_id, scope) or current
        except Ec2Error as exc:
            if exc.code != "IncorrectInstanceState":
                raise
        if attempt == 1:
            current = rt.engine.fetch_one(rt, rt.mapping, vm_id, scope) or current
    if current["State"]["Name"] in ("shutting-down", "terminated") and not current.get(
        "_terminate"
    ):
        return current  # already on its way out: success, as on EC2
    if current.get("_state") == 3:
        _defer_terminate(rt, current)
        return {**current, "State": SHUTTING_DOWN}
    raise Ec2Error(
        "IncorrectInstanceState",
        f"The instance '{item['InstanceId']}' is not in a state from which it "
        f"can be terminated ({current['State']['Name']}).",
    )


@adds("PrivateIpAddress", "PublicIpAddress", "PrivateDnsName", "BlockDeviceMappings")
def forget_what_terminated_ones_had(rt: Any, items: list[dict]) -> None:
    """DescribeInstances `enrich:` hook: a terminated instance shows no private address, no
    public one and no block devices, as on EC2 (OpenNebula keeps a DONE VM's NICs and DISKs in
    its template, and an elastic IP stays recorded while its disassociate script fails, until
    the sweeper or DisassociateAddress takes it), so filters on them find only instances that
    have them (OpenNebula's failure states are shown terminated too). It runs after
    add_public_ips. A view field cannot drop a list by the VM's state without an expression
    per instance."""
    for item in items:
        if item["State"]["Name"] == "terminated":
            item["PrivateIpAddress"] = item["PublicIpAddress"] = None
            item["PrivateDnsName"] = ""
            item["BlockDeviceMappings"] = []


@adds("BlockDeviceMappings")
def see_which_way_disks_go(rt: Any, items: list[dict]) -> None:
    """DescribeInstances `enrich:` hook: a pool shows a VM's last history record only, so a
    disk a running VM is detaching looks like one it is attaching (the view reads which way
    from the record the hotplug closed). The rare instance in the middle of one is read again
    with vm.info, which shows every record."""
    for item in items:
        element = item.get("_element")
        if (
            item.get("_lcm") != 17
            or element is None
            or element.find("HISTORY_RECORDS/HISTORY[2]") is not None
        ):
            continue  # not hot-plugging, or its records are all there
        if not any(b["Ebs"]["Status"] == "attaching" for b in item["BlockDeviceMappings"]):
            continue
        try:
            vm = rt.xml(rt.call("one.vm.info", item["_id"]))
        except Ec2Error:
            continue  # gone meanwhile: as the pool showed it
        item["BlockDeviceMappings"] = rt.view("instance", vm)["BlockDeviceMappings"]


@adds()
def finish_terminations(rt: Any, items: list[dict], changes: list) -> None:
    """DescribeInstances `after:` hook: complete the deferred terminate of every marked instance
    oned would now terminate (or make sure this process keeps retrying for it)."""
    for item in items:
        since = item.get("_terminate")
        if not since or item.get("_state") == 6:
            continue
        if terminable(item.get("_state"), item.get("_lcm")):
            try:
                rt.call("one.vm.action", "terminate-hard", item["_id"])
                continue
            except Ec2Error as exc:
                log.info("deferred terminate of %s: %s", item["InstanceId"], exc.message)
        _start_watch(rt, item["_id"], int(since))


# ModifyInstanceAttribute: what may be asked of each attribute. A value that asks for nothing
# (what every instance here already is, or none where DescribeInstanceAttribute shows none:
# kernel, ramdisk, sriovNetSupport) is accepted; a value EC2 would not take is
# InvalidParameterValue; any other is UnsupportedOperation.
_ATTRIBUTE_MEMBERS = {
    "instanceType": "InstanceType",
    "kernel": "Kernel",
    "ramdisk": "Ramdisk",
    "userData": "UserData",
    "disableApiTermination": "DisableApiTermination",
    "instanceInitiatedShutdownBehavior": "InstanceInitiatedShutdownBehavior",
    "sourceDestCheck": "SourceDestCheck",
    "groupSet": "GroupId",  # the wire names of the request's members
    "ebsOptimized": "EbsOptimized",
    "sriovNetSupport": "SriovNetSupport",
    "enaSupport": "EnaSupport",
    "disableApiStop": "DisableApiStop",
    "blockDeviceMapping": "BlockDeviceMapping",
    "enclaveOptions": "EnclaveOptions",
}
_AS_IS = {
    "DisableApiTermination": "false",
    "InstanceInitiatedShutdownBehavior": "stop",
    "SourceDestCheck": "true",
    "EbsOptimized": "false",
    "EnaSupport": "false",
    "DisableApiStop": "false",
    "EnclaveOptions": "false",
    "Kernel": "",
    "Ramdisk": "",
    "SriovNetSupport": "",
}
_VALUES = {"InstanceInitiatedShutdownBehavior": ("stop", "terminate")}  # what EC2 takes


def _asked(body: dict) -> tuple[str, Any]:
    """The one attribute a ModifyInstanceAttribute sets and its value (EC2 takes one)."""
    given = [m for m in _ATTRIBUTE_MEMBERS.values() if body.get(m) not in (None, [], {})]
    if body.get("Attribute"):
        if "Value" not in body:
            raise missing_parameter("Value")
        attribute = str(body["Attribute"])
        if attribute not in _ATTRIBUTE_MEMBERS:  # DescribeInstanceAttribute's only (productCodes…)
            raise invalid_value("Attribute", attribute, "This attribute cannot be modified.")
        given.append(_ATTRIBUTE_MEMBERS[attribute])
    if len(given) != 1:
        raise Ec2Error(
            "InvalidParameterCombination", "ModifyInstanceAttribute sets exactly one attribute"
        )
    member = given[0]
    if body.get("Attribute"):
        return member, body.get("Value")
    value = body[member]
    if isinstance(value, dict):  # {Value: …}, or EnclaveOptions' {Enabled: …}
        value = value.get("Value", value.get("Enabled"))
    return member, value


def modify_instance_attribute(rt: Any) -> dict:
    """Change a stopped instance's type or user data, an instance's security groups; accept
    what asks for nothing; refuse the rest (UnsupportedOperation)."""
    member, value = _asked(rt.body)
    (instance,) = rt.engine.fetch_by_ids(rt, rt.mapping, [rt.body.get("InstanceId")], rt.scope())
    if instance["State"]["Name"] == "terminated":  # still listed a while, as on EC2
        raise Ec2Error(
            "IncorrectInstanceState",
            f"The instance '{instance['InstanceId']}' is not in a state from which it can be "
            "modified (terminated).",
        )
    if member == "GroupId":  # running or stopped, as EC2
        set_instance_groups(rt, instance, value)
        return {}
    if member not in ("InstanceType", "UserData"):
        if isinstance(value, bool):
            value = "true" if value else "false"
        text = "" if value is None else str(value)
        if member in _AS_IS and text.lower() == _AS_IS[member]:  # Attribute/Value: text
            return {}
        if member in _VALUES and text not in _VALUES[member]:
            raise invalid_value(member, text, f"Expecting one of: {', '.join(_VALUES[member])}.")
        raise Ec2Error("UnsupportedOperation", f"Changing {member} is not supported by this cloud")
    user_data = _user_data(value) if member == "UserData" else None
    # oned resizes and reconfigures POWEROFF and UNDEPLOYED VMs only; other "stopped" ones say why
    shown, state, iid = instance["State"]["Name"], instance["_state"], instance["InstanceId"]
    if shown != "stopped":
        raise Ec2Error(
            "IncorrectInstanceState", f"The instance '{iid}' is not in the 'stopped' state."
        )
    if state in (4, 5):  # SUSPENDED (StopInstances Hibernate), STOPPED: the memory is kept
        raise Ec2Error(
            "IncorrectInstanceState",
            f"The instance '{iid}' is hibernated: its type and user data cannot change while its "
            "memory is kept (start it, then stop it without Hibernate).",
        )
    if state not in (8, 9):
        raise Ec2Error(
            "IncorrectInstanceState",
            f"The instance '{iid}' is stopped, but OpenNebula is busy with it (a disk operation):"
            " try again when it is done.",
        )
    if member == "UserData":
        _set_user_data(rt, instance, user_data or "")
    else:
        _set_type(rt, instance, str(value or ""))
    return {}


def _set_user_data(rt: Any, instance: dict, user_data: str) -> None:
    """The user data in CONTEXT, where RunInstances puts it (one.vm.updateconf, merged: the
    rest of the context stays); empty values take it away. A context's FILES goes along as it
    is: oned refuses a user's CONTEXT whose restricted FILES differs from the VM's."""
    encoding = "base64" if user_data else ""
    context = [("USERDATA", user_data), ("USERDATA_ENCODING", encoding)]
    context.append(("EC2_USER_DATA", user_data))
    files = instance["_element"].findtext("TEMPLATE/CONTEXT/FILES")
    if files is not None:
        context.append(("FILES", files))
    if user_data:
        update = template_xml([("CONTEXT", context)])
    else:  # oned takes an XML element without text for no attribute: empty values need text
        update = "CONTEXT = [ " + ", ".join(f"{k} = {quote(v)}" for k, v in context) + " ]"
    try:
        rt.call("one.vm.updateconf", instance["_id"], update, 1)
    except Ec2Error as exc:
        if "does not have context" in exc.message:  # launched from a template without one
            raise Ec2Error(
                "UnsupportedOperation",
                "This instance has no contextualization (CONTEXT) to carry user data",
            ) from exc
        if "cannot be updated in state" in exc.message:  # started since it was read
            raise Ec2Error("IncorrectInstanceState", exc.message) from exc
        raise


def _set_type(rt: Any, instance: dict, wanted: str) -> None:
    """EC2_INSTANCE_TYPE in the user template, then one.vm.resize to the new type's CPU, VCPU
    and MEMORY; the name is put back if oned refuses the resize."""
    attrs = _instance_types(rt).get(wanted)
    info = _type_info(wanted, attrs) if attrs is not None else None
    if info is None:
        raise Ec2Error(
            "InvalidInstanceAttributeValue",
            f"Value ({wanted}) for parameter instanceType is invalid.",
        )
    vcpus = str(info["VCpuInfo"]["DefaultVCpus"])  # all three, as a launch of that type gets
    cpu = next((v for k, v in attrs if k == "CPU" and isinstance(v, str)), vcpus)
    sizes = {"CPU": cpu, "VCPU": vcpus, "MEMORY": str(info["MemoryInfo"]["SizeInMiB"])}
    # The type's name first: it can always be written back, where a resize cannot take an
    # attribute away (a template without VCPU); the resize is what oned may refuse (quota,
    # host capacity). The name goes back only when oned surely did not resize (it answered).
    vm_id = instance["_id"]
    rt.call("one.vm.update", vm_id, template_xml([("EC2_INSTANCE_TYPE", wanted)]), 1)
    refused = {"ACTION": "IncorrectInstanceState", "QUOTA": "InstanceLimitExceeded"}
    try:
        rt.call("one.vm.resize", vm_id, template_xml(list(sizes.items())), False, errors=refused)
    except Ec2Error as exc:
        if exc.code != "Unavailable":
            old = template_xml([("EC2_INSTANCE_TYPE", instance.get("InstanceType") or "")])
            try:
                rt.call("one.vm.update", vm_id, old, 1)
            except Ec2Error as back:
                log.error("instance %s keeps type %s: %s", vm_id, wanted, back.message)
        if "Not enough" in exc.message:  # the host's CPU or memory (oned's capacity check)
            raise Ec2Error("InsufficientInstanceCapacity", exc.message) from exc
        raise
