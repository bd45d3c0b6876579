"""Image and instance subcommands: upload, register, describe-images, run-instances, ….

Columns follow the Ruby ``econe-*`` tools (``econe-run-instances`` keeps
``Owner ImageId InstanceId …`` so scripts reading the third column still work).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from econe.client.base import (
    Command,
    Handler,
    id_list,
    ids,
    ids_arg,
    instance_count,
    normalize_id,
    show_headers,
)
from econe.client.errors import UsageError
from econe.client.output import Column, field, records_table, table
from econe.client.progress import Progress
from econe.client.session import Context
from econe.client.upload import file_sha256, image_size, upload_image
from econe.client.wait import (
    IMAGES,
    INSTANCES,
    add_wait_options,
    shown_if_failing,
    wait_for,
    wanted,
)

# ---------------------------------------------------------------- images


UPLOAD_DETAILS = """\
Sends the non-AWS UploadImage action as a multipart/form-data POST to the endpoint URL: the
text fields Action, Version, AWSAccessKeyId, SignatureVersion=2, SignatureMethod=HmacSHA256,
Timestamp, Name (when given), Checksum and Signature (SigV2 over POST, the Host header
host[:port], the URL path and those fields), then the image as the `file` part, streamed from
disk (memory use does not grow with the image). The new image is not an AMI yet: run
`econe register <ami-id>` next.

The signature does not cover the file itself: the Checksum field (the file's SHA-256, hex,
read once before sending) does, and the server refuses a file that does not match it. So a
signed upload someone captured cannot be sent again with other content. --no-checksum skips
that read (and that protection); use it only over TLS to a server you trust.

Retries: give --name; re-sending the same name and file is treated by the server as the same
image. The upload does not go through HTTP proxies.
"""


# an upload's answer comes once the server has stored the whole file: longer than a call's
UPLOAD_TIMEOUT = 300.0


def _configure_upload(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="IMAGE-PATH", help="image file to upload")
    p.add_argument("--name", help="image name; re-sending the same name and file is retry-safe")
    p.add_argument(
        "--checksum",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="read the file once first and send its SHA-256 as the signed Checksum field, so "
        "the server takes this content only (the default); --no-checksum: the file's content "
        "is then not authenticated",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="show a progress bar on stderr even when it is not a terminal",
    )
    group.add_argument(
        "--no-progress", dest="progress", action="store_false", help="never show a progress bar"
    )
    p.add_argument(
        "-M",
        "--multipart",
        action="store_true",
        help="accepted for compatibility with the Ruby tool (uploads are always multipart)",
    )


def _run_upload(ctx: Context, args: argparse.Namespace) -> None:
    path = Path(args.path)
    size = image_size(path)  # before the checksum reads it
    show = args.progress if args.progress is not None else ctx.err.isatty()
    if ctx.options.verbose:
        ctx.note_endpoint()
    checksum = None
    if args.checksum:
        if ctx.options.verbose:
            ctx.note(f"computing the SHA-256 of {path}")
        checksum = file_sha256(path)
    bar = Progress(size, stream=ctx.err) if show else None
    try:
        image_id, request_id = upload_image(
            ctx.creds,
            path,
            name=args.name,
            checksum=checksum,
            on_bytes=bar.update if bar else None,
            timeout=ctx.options.timeout or UPLOAD_TIMEOUT,
            verify=ctx.options.verify_ssl,
        )
    finally:
        if bar:
            bar.finish()
    if ctx.options.verbose:
        ctx.note(f"UploadImage: request id {request_id or '(none)'}")
    ctx.emit({"ImageId": image_id}, image_id + "\n")


def _configure_register(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", metavar="IMAGE-ID", nargs="?", help="ami-N or N (an uploaded image)")
    p.add_argument(
        "--name",
        help="without IMAGE-ID: register your image of this name; with it: sent as Name, "
        "which EC2 requires (default: the AMI id)",
    )
    p.add_argument("--description", help="description to store with the AMI")


def _run_register(ctx: Context, args: argparse.Namespace) -> None:
    if not args.image and not args.name:
        raise UsageError("register: give IMAGE-ID or --name")
    params: dict[str, Any] = {}
    if args.image:
        params["ImageLocation"] = normalize_id("ami", args.image)
    if args.name:
        params["Name"] = args.name
    if args.description:
        params["Description"] = args.description
    # without --name the image keeps its own name (as the Ruby econe-register): AWS's model
    # wants a Name, econe does not
    response = ctx.call("register_image", validate="Name" in params, **params)
    ctx.emit(response, f"{response.get('ImageId', params.get('ImageLocation'))}\n")


def _configure_create_image(p: argparse.ArgumentParser) -> None:
    p.add_argument("instance", metavar="INSTANCE-ID", help="i-N: the instance whose disk to save")
    p.add_argument("--name", required=True, help="name of the new AMI (unique among yours)")
    p.add_argument("--description", help="description to store with the AMI")
    add_wait_options(p, "the AMI is available")


def _run_create_image(ctx: Context, args: argparse.Namespace) -> None:
    params: dict[str, Any] = {
        "InstanceId": normalize_id("i", args.instance),
        "Name": args.name,
    }
    if args.description:
        params["Description"] = args.description
    response = ctx.call("create_image", **params)

    def show() -> None:
        ctx.emit(response, f"{response.get('ImageId')}\n")

    if wanted(args):
        with shown_if_failing(show):
            wait_for(ctx, args, IMAGES, [response["ImageId"]], "available", failures={"failed"})
    show()


IMAGE_COLUMNS: list[Column] = [  # the Ruby tool's five, then the name (it may hold spaces)
    ("Owner", lambda i: i.get("ImageOwnerAlias") or i.get("OwnerId")),
    ("ImageId", field("ImageId")),
    ("Status", field("State")),
    ("Visibility", lambda i: None if "Public" not in i else "public" if i["Public"] else "private"),
    ("Location", field("ImageLocation")),
    ("Name", field("Name")),
]


def _run_describe_images(ctx: Context, args: argparse.Namespace) -> None:
    params = {"ImageIds": id_list("ami", args.ids)} if args.ids else {}
    response = ctx.call_all("describe_images", "Images", **params)
    ctx.emit(response, records_table(IMAGE_COLUMNS, response.get("Images", []), show_headers(ctx)))


# ---------------------------------------------------------------- instances


def _instance_ip(instance: dict[str, Any]) -> Any:
    return instance.get("PublicIpAddress") or instance.get("PrivateIpAddress")


INSTANCE_COLUMNS: list[Column] = [
    ("Owner", field("_Owner")),
    ("Id", field("InstanceId")),
    ("ImageId", field("ImageId")),
    ("State", field("State", "Name")),
    ("IP", _instance_ip),
    ("Type", field("InstanceType")),
]

RUN_COLUMNS: list[Column] = [
    ("Owner", field("_Owner")),
    ("ImageId", field("ImageId")),
    ("InstanceId", field("InstanceId")),
    ("InstanceType", field("InstanceType")),
    ("State", field("State", "Name")),
]


def _configure_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", metavar="IMAGE-ID", help="the AMI to run (ami-N or N)")
    p.add_argument("-t", "--type", default="m1.small", help="instance type (default m1.small)")
    data = p.add_mutually_exclusive_group()
    data.add_argument("-d", "--user-data", help="user data string (sent Base64-encoded)")
    data.add_argument("--user-data-file", metavar="FILE", help="read the user data from FILE")
    p.add_argument("-k", "--keypair", help="name of the key pair to inject")
    p.add_argument(
        "-n",
        "--instance-count",
        type=instance_count,
        default=(1, 1),
        metavar="MIN[-MAX]",
        help="how many instances (default 1)",
    )
    add_wait_options(p, "the instances are running")


# the states from which an instance does not come to running, or to stopped, by itself
NOT_TO_RUNNING = {"stopping", "shutting-down", "terminated"}
NOT_TO_STOPPED = {"pending", "shutting-down", "terminated"}


def _run_run_instances(ctx: Context, args: argparse.Namespace) -> None:
    low, high = args.instance_count
    params: dict[str, Any] = {
        "ImageId": normalize_id("ami", args.image),
        "InstanceType": args.type,
        "MinCount": low,
        "MaxCount": high,
    }
    if args.user_data is not None:
        params["UserData"] = args.user_data
    elif args.user_data_file:
        try:
            params["UserData"] = Path(args.user_data_file).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {args.user_data_file}: {exc.strerror}") from None
    if args.keypair:
        params["KeyName"] = args.keypair
    response = ctx.call("run_instances", **params)

    def show(response: dict[str, Any]) -> None:
        rows = [dict(i, _Owner=response.get("OwnerId")) for i in response.get("Instances", [])]
        ctx.emit(response, records_table(RUN_COLUMNS, rows, show_headers(ctx)))

    if wanted(args):  # then print them as they are now (running, with their addresses)
        launched = response.get("Instances", [])
        ids = [i["InstanceId"] for i in launched]
        with shown_if_failing(lambda: show(response)):
            found = wait_for(ctx, args, INSTANCES, ids, "running", failures=NOT_TO_RUNNING)
        response = dict(response, Instances=[found.get(i["InstanceId"], i) for i in launched])
    show(response)


def _run_describe_instances(ctx: Context, args: argparse.Namespace) -> None:
    params = {"InstanceIds": id_list("i", args.ids)} if args.ids else {}
    response = ctx.call_all("describe_instances", "Reservations", **params)
    rows = [
        dict(instance, _Owner=reservation.get("OwnerId"))
        for reservation in response.get("Reservations", [])
        for instance in reservation.get("Instances", [])
    ]
    ctx.emit(response, records_table(INSTANCE_COLUMNS, rows, show_headers(ctx)))


STATE_CHANGE_COLUMNS: list[Column] = [
    ("InstanceId", field("InstanceId")),
    ("PreviousState", field("PreviousState", "Name")),
    ("CurrentState", field("CurrentState", "Name")),
]


def _configure_state_change(goal: str) -> Callable[[argparse.ArgumentParser], None]:
    def configure(p: argparse.ArgumentParser) -> None:
        ids_arg(p, "instance", True)
        add_wait_options(p, f"the instances are {goal}")

    return configure


def _state_change(operation: str, result_key: str, goal: str, failures: set[str]) -> Handler:
    def run(ctx: Context, args: argparse.Namespace) -> None:
        ids = id_list("i", args.ids)
        response = ctx.call(operation, InstanceIds=ids)

        def show(response: dict[str, Any]) -> None:
            changes = response.get(result_key, [])
            ctx.emit(response, records_table(STATE_CHANGE_COLUMNS, changes, show_headers(ctx)))

        if wanted(args):  # CurrentState: the one reached (one gone is terminated)
            with shown_if_failing(lambda: show(response)):
                found = wait_for(
                    ctx, args, INSTANCES, ids, goal, failures, gone_is_goal=goal == "terminated"
                )
            gone = {"Code": 48, "Name": "terminated"}
            changes = [
                dict(c, CurrentState=found.get(c["InstanceId"], {}).get("State", gone))
                for c in response.get(result_key, [])
            ]
            response = {**response, result_key: changes}
        show(response)

    return run


def _run_reboot(ctx: Context, args: argparse.Namespace) -> None:
    ids = id_list("i", args.ids)
    response = ctx.call("reboot_instances", InstanceIds=ids)
    ctx.check_return(response, "reboot")
    ctx.emit(
        response, table(["InstanceId", "Request"], [[i, "reboot"] for i in ids], show_headers(ctx))
    )


COMMANDS: list[Command] = [
    Command(
        "upload",
        "upload an image file (UploadImage); prints the new ami id",
        _configure_upload,
        _run_upload,
        details=UPLOAD_DETAILS,
    ),
    Command(
        "register",
        "make an uploaded image an AMI (RegisterImage)",
        _configure_register,
        _run_register,
    ),
    Command(
        "create-image",
        "save an instance's disk as a new AMI (CreateImage); prints its ami id",
        _configure_create_image,
        _run_create_image,
        legacy=False,
    ),
    Command("describe-images", "list AMIs", ids("image", False), _run_describe_images),
    Command("run-instances", "start instances of an AMI", _configure_run, _run_run_instances),
    Command(
        "describe-instances", "list instances", ids("instance", False), _run_describe_instances
    ),
    Command(
        "terminate-instances",
        "terminate instances",
        _configure_state_change("terminated"),
        _state_change("terminate_instances", "TerminatingInstances", "terminated", set()),
    ),
    Command(
        "start-instances",
        "start (resume) stopped instances",
        _configure_state_change("running"),
        _state_change("start_instances", "StartingInstances", "running", NOT_TO_RUNNING),
    ),
    Command(
        "stop-instances",
        "stop (power off) instances",
        _configure_state_change("stopped"),
        _state_change("stop_instances", "StoppingInstances", "stopped", NOT_TO_STOPPED),
    ),
    Command("reboot-instances", "reboot instances", ids("instance", True), _run_reboot),
]
