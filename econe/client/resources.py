"""Elastic IP, volume, key pair, region and zone subcommands."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from econe.client.base import (
    Command,
    Handler,
    id_list,
    ids,
    no_args,
    normalize_id,
    positive_int,
    show_headers,
    split_list,
)
from econe.client.errors import UsageError
from econe.client.output import Column, field, records_table, table
from econe.client.session import Context
from econe.client.wait import (
    ATTACHMENTS,
    VOLUMES,
    add_wait_options,
    shown_if_failing,
    wait_for,
    wanted,
)

# ---------------------------------------------------------------- elastic IPs

ADDRESS_COLUMNS: list[Column] = [
    ("PublicIp", field("PublicIp")),
    ("InstanceId", field("InstanceId")),
    ("Domain", field("Domain")),
]


def _run_allocate_address(ctx: Context, args: argparse.Namespace) -> None:
    response = ctx.call("allocate_address")
    ctx.emit(response, records_table(ADDRESS_COLUMNS, [response], show_headers(ctx)))


def _configure_describe_addresses(p: argparse.ArgumentParser) -> None:
    p.add_argument("ips", nargs="*", metavar="PUBLIC-IP", help="only these addresses")


def _run_describe_addresses(ctx: Context, args: argparse.Namespace) -> None:
    params = {"PublicIps": split_list(args.ips)} if args.ips else {}
    response = ctx.call("describe_addresses", **params)
    ctx.emit(
        response, records_table(ADDRESS_COLUMNS, response.get("Addresses", []), show_headers(ctx))
    )


def _configure_associate(p: argparse.ArgumentParser) -> None:
    p.add_argument("ip", metavar="PUBLIC-IP")
    p.add_argument("instance", metavar="INSTANCE-ID")


def _run_associate(ctx: Context, args: argparse.Namespace) -> None:
    instance = normalize_id("i", args.instance)
    response = ctx.call("associate_address", PublicIp=args.ip, InstanceId=instance)
    ctx.check_return(response, "the association")
    text = table(["PublicIp", "InstanceId"], [[args.ip, instance]], show_headers(ctx))
    ctx.emit(response, text)


def _configure_ip(p: argparse.ArgumentParser) -> None:
    p.add_argument("ip", metavar="PUBLIC-IP")


def _ip_action(operation: str, done: str) -> Handler:
    def run(ctx: Context, args: argparse.Namespace) -> None:
        response = ctx.call(operation, PublicIp=args.ip)
        ctx.check_return(response, operation.replace("_", " "))
        ctx.emit(response, table(["PublicIp", "Status"], [[args.ip, done]], show_headers(ctx)))

    return run


# ---------------------------------------------------------------- volumes

VOLUME_COLUMNS: list[Column] = [
    ("VolumeId", field("VolumeId")),
    ("Size", field("Size")),
    ("Status", field("State")),
    ("CreateTime", field("CreateTime")),
    ("InstanceId", lambda v: ",".join(a.get("InstanceId", "") for a in v.get("Attachments", []))),
    ("Device", lambda v: ",".join(a.get("Device", "") for a in v.get("Attachments", []))),
]

ATTACHMENT_COLUMNS: list[Column] = [
    ("VolumeId", field("VolumeId")),
    ("InstanceId", field("InstanceId")),
    ("Device", field("Device")),
    ("Status", field("State")),
    ("AttachTime", field("AttachTime")),
]


def _configure_create_volume(p: argparse.ArgumentParser) -> None:
    p.add_argument("-s", "--size", type=positive_int, required=True, help="size in GiB")
    p.add_argument("-z", "--availability-zone", help="zone to create it in (optional)")
    add_wait_options(p, "the volume is available")


NOT_TO_AVAILABLE = {"error", "deleting"}  # a volume's states that do not become available


def _run_create_volume(ctx: Context, args: argparse.Namespace) -> None:
    params: dict[str, Any] = {"Size": args.size}
    if args.availability_zone:
        params["AvailabilityZone"] = args.availability_zone
    response = ctx.call("create_volume", **params)

    def show(response: dict[str, Any]) -> None:
        ctx.emit(response, records_table(VOLUME_COLUMNS, [response], show_headers(ctx)))

    if wanted(args):
        volume = response["VolumeId"]
        with shown_if_failing(lambda: show(response)):
            wait_for(ctx, args, VOLUMES, [volume], "available", NOT_TO_AVAILABLE)
        response = {**response, "State": "available"}
    show(response)


def _configure_volume(p: argparse.ArgumentParser) -> None:
    p.add_argument("volume", metavar="VOLUME-ID", help="vol-N or N")


def _run_delete_volume(ctx: Context, args: argparse.Namespace) -> None:
    volume = normalize_id("vol", args.volume)
    response = ctx.call("delete_volume", VolumeId=volume)
    ctx.check_return(response, "the deletion")
    ctx.emit(response, table(["VolumeId", "Status"], [[volume, "deleted"]], show_headers(ctx)))


def _run_describe_volumes(ctx: Context, args: argparse.Namespace) -> None:
    params = {"VolumeIds": id_list("vol", args.ids)} if args.ids else {}
    response = ctx.call_all("describe_volumes", "Volumes", **params)
    ctx.emit(
        response, records_table(VOLUME_COLUMNS, response.get("Volumes", []), show_headers(ctx))
    )


def _configure_attach(p: argparse.ArgumentParser) -> None:
    _configure_volume(p)
    p.add_argument("-i", "--instance", required=True, help="instance id (i-N or N)")
    p.add_argument("-d", "--device", required=True, help="device name, e.g. /dev/vdb")
    add_wait_options(p, "the volume is attached")


def _run_attach(ctx: Context, args: argparse.Namespace) -> None:
    volume = normalize_id("vol", args.volume)
    response = ctx.call(
        "attach_volume",
        VolumeId=volume,
        InstanceId=normalize_id("i", args.instance),
        Device=args.device,
    )
    if wanted(args):  # gone from the volume's attachments: the hot-plug failed
        with shown_if_failing(lambda: _show_attachment(ctx, response)):
            wait_for(ctx, args, ATTACHMENTS, [volume], "attached", {"detaching", "detached"})
        response = {**response, "State": "attached"}
    _show_attachment(ctx, response)


def _configure_detach(p: argparse.ArgumentParser) -> None:
    _configure_volume(p)
    p.add_argument("-i", "--instance", help="instance id (default: the one it is attached to)")
    p.add_argument(
        "-d", "--device", help="device name: the server checks it is where the volume is attached"
    )
    add_wait_options(p, "the volume is available again")


def _run_detach(ctx: Context, args: argparse.Namespace) -> None:
    params = {"VolumeId": normalize_id("vol", args.volume)}
    if args.instance:
        params["InstanceId"] = normalize_id("i", args.instance)
    if args.device:
        params["Device"] = args.device
    response = ctx.call("detach_volume", **params)
    if wanted(args):
        with shown_if_failing(lambda: _show_attachment(ctx, response)):
            wait_for(ctx, args, VOLUMES, [params["VolumeId"]], "available", NOT_TO_AVAILABLE)
        response = {**response, "State": "detached"}
    _show_attachment(ctx, response)


def _show_attachment(ctx: Context, response: dict[str, Any]) -> None:
    ctx.emit(response, records_table(ATTACHMENT_COLUMNS, [response], show_headers(ctx)))


# ---------------------------------------------------------------- key pairs

KEYPAIR_COLUMNS: list[Column] = [
    ("KeyName", field("KeyName")),
    ("Fingerprint", field("KeyFingerprint")),
]


def _configure_create_keypair(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="KEY-NAME")
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write the private key to FILE (mode 0600, must not exist) instead of stdout",
    )


def _run_create_keypair(ctx: Context, args: argparse.Namespace) -> None:
    output = Path(args.output) if args.output else None
    fd = None
    if output:  # made before the key pair: a key pair whose key cannot be kept is not made
        if output.exists():
            raise UsageError(f"{output} exists; not overwriting a key file")
        try:
            fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise UsageError(f"cannot create {output}: {exc.strerror}") from None
    try:
        response = ctx.call("create_key_pair", KeyName=args.name)
    except BaseException:
        if fd is not None:
            os.close(fd)
            output.unlink()
        raise
    material = response.get("KeyMaterial", "").replace("\r\n", "\n").replace("\r", "\n")
    if not material.endswith("\n"):
        material += "\n"
    if fd is not None:
        with os.fdopen(fd, "w") as handle:
            handle.write(material)
    if ctx.options.json:  # with -o, the key went to the file only
        shown = {k: v for k, v in response.items() if k != "KeyMaterial"} if output else response
        ctx.emit(shown, "")
        return
    if output:
        ctx.write(records_table(KEYPAIR_COLUMNS, [response], show_headers(ctx)))
    else:
        ctx.write(material)
        ctx.note(
            f"key pair {response.get('KeyName', args.name)}, fingerprint "
            f"{response.get('KeyFingerprint', '?')}"
        )


def _configure_keyname(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="KEY-NAME")


def _run_delete_keypair(ctx: Context, args: argparse.Namespace) -> None:
    response = ctx.call("delete_key_pair", KeyName=args.name)
    ctx.check_return(response, f"deleting key pair {args.name} (is it in use?)")
    ctx.emit(response, table(["KeyName", "Status"], [[args.name, "deleted"]], show_headers(ctx)))


def _configure_describe_keypairs(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", metavar="KEY-NAME", help="only these key pairs")


def _run_describe_keypairs(ctx: Context, args: argparse.Namespace) -> None:
    params = {"KeyNames": args.names} if args.names else {}
    response = ctx.call("describe_key_pairs", **params)
    ctx.emit(
        response, records_table(KEYPAIR_COLUMNS, response.get("KeyPairs", []), show_headers(ctx))
    )


# ---------------------------------------------------------------- regions and zones


def _run_describe_regions(ctx: Context, args: argparse.Namespace) -> None:
    response = ctx.call("describe_regions")
    columns: list[Column] = [("RegionName", field("RegionName")), ("Endpoint", field("Endpoint"))]
    ctx.emit(response, records_table(columns, response.get("Regions", []), show_headers(ctx)))


def _run_describe_zones(ctx: Context, args: argparse.Namespace) -> None:
    response = ctx.call("describe_availability_zones")
    columns: list[Column] = [
        ("ZoneName", field("ZoneName")),
        ("State", field("State")),
        ("RegionName", field("RegionName")),
    ]
    zones = response.get("AvailabilityZones", [])
    ctx.emit(response, records_table(columns, zones, show_headers(ctx)))


COMMANDS: list[Command] = [
    Command("allocate-address", "allocate an elastic IP", no_args, _run_allocate_address),
    Command(
        "describe-addresses",
        "list your elastic IPs",
        _configure_describe_addresses,
        _run_describe_addresses,
    ),
    Command(
        "associate-address",
        "associate an elastic IP with an instance",
        _configure_associate,
        _run_associate,
    ),
    Command(
        "disassociate-address",
        "disassociate an elastic IP from its instance",
        _configure_ip,
        _ip_action("disassociate_address", "disassociated"),
    ),
    Command(
        "release-address",
        "release an elastic IP",
        _configure_ip,
        _ip_action("release_address", "released"),
    ),
    Command(
        "create-volume", "create an empty volume", _configure_create_volume, _run_create_volume
    ),
    Command("delete-volume", "delete a volume", _configure_volume, _run_delete_volume),
    Command("describe-volumes", "list volumes", ids("volume", False), _run_describe_volumes),
    Command("attach-volume", "attach a volume to an instance", _configure_attach, _run_attach),
    Command("detach-volume", "detach a volume", _configure_detach, _run_detach),
    Command(
        "create-keypair",
        "create a key pair; prints the private key",
        _configure_create_keypair,
        _run_create_keypair,
    ),
    Command("delete-keypair", "delete a key pair", _configure_keyname, _run_delete_keypair),
    Command(
        "describe-keypairs", "list key pairs", _configure_describe_keypairs, _run_describe_keypairs
    ),
    Command("describe-regions", "list regions", no_args, _run_describe_regions, legacy=False),
    Command(
        "describe-availability-zones",
        "list availability zones",
        no_args,
        _run_describe_zones,
        legacy=False,
    ),
]
