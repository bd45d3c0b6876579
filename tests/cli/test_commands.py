"""Argument parsing and what each subcommand sends and prints, against a stubbed boto3 client."""

from __future__ import annotations

import datetime as dt
import http.server
import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from econe.client.base import instance_count, normalize_id, split_list
from econe.client.commands import COMMANDS
from econe.client_cli import build_parser, main
from tests.cli.conftest import CREDS, DEMO_SECRET, free_port, run_cli

LEGACY = [
    "upload", "register", "describe-images", "run-instances", "describe-instances",
    "terminate-instances", "start-instances", "stop-instances", "reboot-instances",
    "allocate-address", "describe-addresses", "associate-address", "disassociate-address",
    "release-address", "create-volume", "delete-volume", "describe-volumes", "attach-volume",
    "detach-volume", "create-keypair", "delete-keypair", "describe-keypairs",
]  # fmt: skip


def instance(n: int, state: str = "running", **extra):
    codes = {
        "pending": 0,
        "running": 16,
        "shutting-down": 32,
        "terminated": 48,
        "stopping": 64,
        "stopped": 80,
    }
    return {
        "InstanceId": f"i-{n:08d}",
        "ImageId": "ami-00000001",
        "State": {"Code": codes[state], "Name": state},
        "InstanceType": "m1.small",
        **extra,
    }


# ---------------------------------------------------------------- parsing


def test_every_ruby_tool_is_a_subcommand_and_regions_zones_images_are_extra():
    names = [c.name for c in COMMANDS]
    assert [n for n in names if n in LEGACY] == LEGACY
    assert set(names) - set(LEGACY) == {
        "create-image",
        "describe-regions",
        "describe-availability-zones",
    }
    assert [c.name for c in COMMANDS if c.legacy] == LEGACY


def test_global_options_before_or_after_the_subcommand():
    parser = build_parser()
    before = parser.parse_args(["-K", "a", "--json", "describe-instances", "i-1"])
    after = parser.parse_args(["describe-instances", "i-1", "-K", "a", "--json"])
    for args in (before, after):
        assert (args.access_key, args.json, args.ids) == ("a", True, ["i-1"])
    assert not hasattr(parser.parse_args(["describe-images"]), "access_key")


def test_run_instances_defaults_and_options():
    args = build_parser().parse_args(["run-instances", "ami-00000001"])
    assert (args.type, args.instance_count, args.user_data, args.keypair) == (
        "m1.small",
        (1, 1),
        None,
        None,
    )
    args = build_parser().parse_args(
        ["run-instances", "5", "-t", "m1.large", "-k", "kp", "-n", "2-4", "-d", "hi"]
    )
    assert (args.type, args.instance_count, args.keypair, args.user_data) == (
        "m1.large",
        (2, 4),
        "kp",
        "hi",
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["run-instances"],
        ["run-instances", "ami-1", "-n", "0"],
        ["run-instances", "ami-1", "-n", "3-2"],
        ["run-instances", "ami-1", "-n", "x"],
        ["run-instances", "ami-1", "-d", "a", "--user-data-file", "f"],
        ["terminate-instances"],
        ["attach-volume", "vol-1", "-i", "i-1"],
        ["create-volume"],
        ["create-volume", "-s", "0"],
        ["associate-address", "1.2.3.4"],
        ["no-such-command"],
        [],
        ["upload", "x", "--progress", "--no-progress"],
        ["--timeout", "-1", "describe-regions"],
        ["--timeout", "0", "describe-regions"],
        ["--timeout", "soon", "describe-regions"],
        ["run-instances", "ami-1", "--wait-timeout", "0"],
        ["reboot-instances", "i-1", "--wait"],  # a reboot shows no state to wait for
    ],
)
def test_usage_errors_exit_2(argv, capsys):
    assert run_cli([*CREDS, *argv]).code == 2
    assert "usage:" in capsys.readouterr().err


def test_an_unknown_option_is_reported_by_the_subcommand(capsys):
    assert run_cli([*CREDS, "describe-instances", "--bogus"]).code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: econe describe-instances ")
    assert err.endswith("econe describe-instances: error: unrecognized arguments: --bogus\n")


def test_help_and_version_exit_0(capsys):
    assert run_cli(["--help"]).code == 0
    text = capsys.readouterr().out
    assert "ONE_AUTH" in text and "SHA-256" in text and "exit codes" in text
    assert "3  the endpoint is unreachable" in text and "4  --wait gave up" in text
    assert run_cli(["run-instances", "--help"]).code == 0
    assert "m1.small" in capsys.readouterr().out
    assert run_cli(["-V"]).code == 0
    assert capsys.readouterr().out.startswith("econe ")


def test_ids():
    assert normalize_id("i", "15") == "i-00000015"
    assert normalize_id("ami", "ami-7") == "ami-7"
    assert normalize_id("vol", " 3 ") == "vol-00000003"
    assert split_list(["i-1,i-2", "i-3", ",i-4,"]) == ["i-1", "i-2", "i-3", "i-4"]
    assert instance_count("3") == (3, 3) and instance_count("1-5") == (1, 5)


def test_missing_credentials_exit_2(tmp_path):
    result = run_cli(["describe-instances"], env={"HOME": str(tmp_path)})
    assert result.code == 2 and "no credentials" in result.err


# ---------------------------------------------------------------- commands


def test_describe_instances_table(stub):
    launch = dt.datetime(2026, 11, 23, 20, 0, tzinfo=dt.UTC)
    stub.add_response(
        "describe_instances",
        {
            "Reservations": [
                {
                    "OwnerId": "demo",
                    "Instances": [
                        instance(1, PrivateIpAddress="10.0.0.5", LaunchTime=launch),
                        instance(2, "stopped"),
                    ],
                }
            ]
        },
        {},
    )
    result = run_cli([*CREDS, "describe-instances"])
    assert result.code == 0, result.err
    assert result.out == (
        "Owner  Id          ImageId       State    IP        Type\n"
        "demo   i-00000001  ami-00000001  running  10.0.0.5  m1.small\n"
        "demo   i-00000002  ami-00000001  stopped  -         m1.small\n"
    )


def test_describe_instances_ids_and_pages(stub):
    page1 = {"Reservations": [{"OwnerId": "demo", "Instances": [instance(1)]}], "NextToken": "t"}
    page2 = {"Reservations": [{"OwnerId": "demo", "Instances": [instance(2)]}]}
    ids = ["i-00000001", "i-00000002"]
    stub.add_response("describe_instances", page1, {"InstanceIds": ids})
    stub.add_response("describe_instances", page2, {"InstanceIds": ids, "NextToken": "t"})
    result = run_cli([*CREDS, "--json", "describe-instances", "1,i-00000002"])
    data = json.loads(result.out)
    assert "ResponseMetadata" not in data and "NextToken" not in data
    assert [r["Instances"][0]["InstanceId"] for r in data["Reservations"]] == ids


def test_run_instances_sends_everything(stub, tmp_path):
    script = tmp_path / "cloud-init"
    script.write_bytes(b"#cloud-config\n")
    stub.add_response(
        "run_instances",
        {"OwnerId": "demo", "ReservationId": "r-1", "Instances": [instance(7, "pending")]},
        {
            "ImageId": "ami-00000003",
            "InstanceType": "m1.large",
            "MinCount": 1,
            "MaxCount": 2,
            "KeyName": "kp",
            "UserData": b"#cloud-config\n",  # boto3 base64-encodes it after this check
        },
    )
    argv = ["run-instances", "3", "-t", "m1.large", "-n", "1-2", "-k", "kp"]
    result = run_cli([*CREDS, *argv, "--user-data-file", str(script)])
    assert result.code == 0, result.err
    # the Ruby tool's column order: scripts use `awk '{print $3}'` for the instance id
    assert result.out.splitlines()[1].split()[2] == "i-00000007"


def test_run_instances_user_data_string(stub):
    stub.add_response(
        "run_instances",
        {"OwnerId": "demo", "Instances": [instance(8, "pending")]},
        {
            "ImageId": "ami-00000001",
            "InstanceType": "m1.small",
            "MinCount": 1,
            "MaxCount": 1,
            "UserData": "hello",
        },
    )
    assert run_cli([*CREDS, "run-instances", "ami-00000001", "-d", "hello"]).code == 0


@pytest.mark.parametrize(
    ("command", "operation", "key"),
    [
        ("terminate-instances", "terminate_instances", "TerminatingInstances"),
        ("start-instances", "start_instances", "StartingInstances"),
        ("stop-instances", "stop_instances", "StoppingInstances"),
    ],
)
def test_state_changes(stub, command, operation, key):
    changes = [
        {
            "InstanceId": f"i-0000000{n}",
            "PreviousState": {"Code": 16, "Name": "running"},
            "CurrentState": {"Code": 32, "Name": "shutting-down"},
        }
        for n in (1, 2, 3)
    ]
    ids = ["i-00000001", "i-00000002", "i-00000003"]
    stub.add_response(operation, {key: changes}, {"InstanceIds": ids})
    result = run_cli([*CREDS, command, "i-00000001,i-00000002", "3"])
    assert result.code == 0, result.err
    assert result.out.splitlines()[0].split() == ["InstanceId", "PreviousState", "CurrentState"]
    assert result.out.splitlines()[3].split() == ["i-00000003", "running", "shutting-down"]


def _described(*instances):
    return {"Reservations": [{"OwnerId": "demo", "Instances": list(instances)}]}


def _by_id(name, *ids):
    return {"Filters": [{"Name": name, "Values": list(ids)}]}


def test_wait_prints_the_state_reached(stub):
    change = {
        "InstanceId": "i-00000001",
        "PreviousState": {"Code": 16, "Name": "running"},
        "CurrentState": {"Code": 64, "Name": "stopping"},
    }
    stub.add_response(
        "stop_instances", {"StoppingInstances": [change]}, {"InstanceIds": ["i-00000001"]}
    )
    stub.add_response(
        "describe_instances",
        _described(instance(1, "stopped")),
        _by_id("instance-id", "i-00000001"),
    )
    result = run_cli([*CREDS, "--no-headers", "stop-instances", "1", "--wait"])
    assert (result.code, result.out, result.err) == (0, "i-00000001  running  stopped\n", "")
    volume = {"VolumeId": "vol-00000002", "Size": 1, "State": "creating"}
    stub.add_response("create_volume", volume, {"Size": 1})
    stub.add_response(
        "describe_volumes",
        {"Volumes": [dict(volume, State="available")]},
        _by_id("volume-id", "vol-00000002"),
    )
    result = run_cli([*CREDS, "--json", "create-volume", "-s", "1", "--wait"])
    assert (result.code, json.loads(result.out)["State"]) == (0, "available")


def test_wait_for_terminated_takes_an_instance_gone_for_terminated(stub):
    change = {
        "InstanceId": "i-00000001",
        "PreviousState": {"Code": 16, "Name": "running"},
        "CurrentState": {"Code": 32, "Name": "shutting-down"},
    }
    stub.add_response(
        "terminate_instances", {"TerminatingInstances": [change]}, {"InstanceIds": ["i-00000001"]}
    )
    stub.add_response(
        "describe_instances", {"Reservations": []}, _by_id("instance-id", "i-00000001")
    )
    result = run_cli([*CREDS, "--no-headers", "terminate-instances", "1", "--wait-timeout", "30"])
    assert (result.code, result.out) == (0, "i-00000001  running  terminated\n")


def test_wait_fails_at_once_when_the_state_cannot_come(stub):
    stub.add_response(
        "run_instances",
        {"OwnerId": "demo", "Instances": [instance(7, "pending")]},
        {"ImageId": "ami-00000001", "InstanceType": "m1.small", "MinCount": 1, "MaxCount": 1},
    )
    failed = instance(
        7,
        "terminated",
        StateReason={
            "Code": "Server.InternalError",
            "Message": "Server.InternalError: boot failed",
        },
    )
    stub.add_response("describe_instances", _described(failed), _by_id("instance-id", "i-00000007"))
    result = run_cli([*CREDS, "--no-headers", "run-instances", "1", "--wait"])
    assert result.code == 1
    # the launch is printed all the same: the script learns which instance to look at
    assert result.out.split()[2:] == ["i-00000007", "m1.small", "pending"]
    assert result.err == (
        "econe: i-00000007 is terminated, not running (Server.InternalError: boot failed)\n"
    )
    stub.add_response(
        "create_image", {"ImageId": "ami-00000009"}, {"InstanceId": "i-00000001", "Name": "web"}
    )
    stub.add_response("describe_images", {"Images": []}, _by_id("image-id", "ami-00000009"))
    result = run_cli([*CREDS, "create-image", "1", "--name", "web", "--wait"])
    assert (result.code, result.out, result.err) == (
        1,
        "ami-00000009\n",
        "econe: ami-00000009 is gone, not available\n",
    )


def test_reboot(stub):
    stub.add_response("reboot_instances", {}, {"InstanceIds": ["i-00000001"]})
    result = run_cli([*CREDS, "--no-headers", "reboot-instances", "i-00000001"])
    assert (result.code, result.out) == (0, "i-00000001  reboot\n")


def test_images_register_and_regions(stub):
    stub.add_response(
        "describe_images",
        {
            "Images": [
                {
                    "ImageId": "ami-00000001",
                    "OwnerId": "oneadmin",
                    "State": "available",
                    "Public": True,
                    "Name": "ttylinux",
                    "ImageLocation": "abc123",
                }
            ]
        },
        {},
    )
    stub.add_response(
        "register_image",
        {"ImageId": "ami-00000004"},
        {"ImageLocation": "ami-00000004"},  # no Name: the image keeps its own
    )
    result = run_cli([*CREDS, "describe-images"])
    assert result.out.splitlines() == [
        "Owner     ImageId       Status     Visibility  Location  Name",
        "oneadmin  ami-00000001  available  public      abc123    ttylinux",
    ]
    assert run_cli([*CREDS, "register", "4"]).out == "ami-00000004\n"
    stub.add_response("register_image", {"ImageId": "ami-00000005"}, {"Name": "my-disk"})
    assert run_cli([*CREDS, "register", "--name", "my-disk"]).out == "ami-00000005\n"
    assert run_cli([*CREDS, "register"]).code == 2
    stub.add_response(
        "describe_regions",
        {"Regions": [{"RegionName": "opennebula", "Endpoint": "http://ec2.test:4567"}]},
        {},
    )
    assert run_cli([*CREDS, "describe-regions"]).out.splitlines()[1].split() == [
        "opennebula",
        "http://ec2.test:4567",
    ]


def test_addresses(stub):
    stub.add_response("allocate_address", {"PublicIp": "192.0.2.10", "Domain": "standard"}, {})
    stub.add_response(
        "associate_address", {}, {"PublicIp": "192.0.2.10", "InstanceId": "i-00000001"}
    )
    stub.add_response("disassociate_address", {}, {"PublicIp": "192.0.2.10"})
    stub.add_response("release_address", {}, {"PublicIp": "192.0.2.10"})
    stub.add_response(
        "describe_addresses",
        {"Addresses": [{"PublicIp": "192.0.2.10", "InstanceId": "i-00000001"}]},
        {"PublicIps": ["192.0.2.10"]},
    )
    assert "192.0.2.10" in run_cli([*CREDS, "allocate-address"]).out
    assert run_cli([*CREDS, "associate-address", "192.0.2.10", "1"]).code == 0
    assert "disassociated" in run_cli([*CREDS, "disassociate-address", "192.0.2.10"]).out
    assert "released" in run_cli([*CREDS, "release-address", "192.0.2.10"]).out
    out = run_cli([*CREDS, "describe-addresses", "192.0.2.10"]).out
    assert out.splitlines()[1].split() == ["192.0.2.10", "i-00000001", "-"]


def test_volumes(stub):
    created = dt.datetime(2026, 11, 23, 20, 0, tzinfo=dt.UTC)
    volume = {"VolumeId": "vol-00000009", "Size": 2, "State": "creating", "CreateTime": created}
    attachment = {
        "VolumeId": "vol-00000009",
        "InstanceId": "i-00000001",
        "Device": "/dev/vdb",
        "State": "attaching",
    }
    stub.add_response("create_volume", volume, {"Size": 2})
    stub.add_response(
        "attach_volume",
        attachment,
        {"VolumeId": "vol-00000009", "InstanceId": "i-00000001", "Device": "/dev/vdb"},
    )
    stub.add_response(
        "describe_volumes",
        {"Volumes": [dict(volume, State="in-use", Attachments=[attachment])]},
        {},
    )
    stub.add_response(
        "detach_volume", dict(attachment, State="detaching"), {"VolumeId": "vol-00000009"}
    )
    stub.add_response("delete_volume", {}, {"VolumeId": "vol-00000009"})
    out = run_cli([*CREDS, "create-volume", "-s", "2"]).out
    assert out.splitlines()[1].split()[:4] == [
        "vol-00000009",
        "2",
        "creating",
        "2026-11-23T20:00:00Z",
    ]
    assert run_cli([*CREDS, "attach-volume", "9", "-i", "1", "-d", "/dev/vdb"]).code == 0
    out = run_cli([*CREDS, "describe-volumes"]).out
    assert out.splitlines()[1].split()[-2:] == ["i-00000001", "/dev/vdb"]
    assert "detaching" in run_cli([*CREDS, "detach-volume", "vol-00000009"]).out
    assert "deleted" in run_cli([*CREDS, "delete-volume", "vol-00000009"]).out


def test_keypairs(stub, tmp_path):
    pem = "-----BEGIN RSA PRIVATE KEY-----\rAAAA\r-----END RSA PRIVATE KEY-----"
    answer = {"KeyName": "kp", "KeyFingerprint": "aa:bb", "KeyMaterial": pem}
    stub.add_response("create_key_pair", answer, {"KeyName": "kp"})
    stub.add_response("create_key_pair", answer, {"KeyName": "kp"})
    stub.add_response("create_key_pair", answer, {"KeyName": "kp"})
    stub.add_response(
        "describe_key_pairs", {"KeyPairs": [{"KeyName": "kp", "KeyFingerprint": "aa:bb"}]}, {}
    )
    stub.add_response("delete_key_pair", {"Return": True}, {"KeyName": "kp"})
    stub.add_response("delete_key_pair", {"Return": False}, {"KeyName": "kp"})
    result = run_cli([*CREDS, "create-keypair", "kp"])
    assert result.out == pem.replace("\r", "\n") + "\n"  # bare CRs (Ruby econe) become newlines
    assert "aa:bb" in result.err
    key_file = tmp_path / "kp.pem"
    result = run_cli([*CREDS, "create-keypair", "kp", "-o", str(key_file)])
    assert result.code == 0 and "aa:bb" in result.out
    assert (
        key_file.read_text().startswith("-----BEGIN") and (key_file.stat().st_mode & 0o777) == 0o600
    )
    # --json with -o: the key goes to the file only, never to stdout (a CI log, say)
    json_file = tmp_path / "kp-json.pem"
    result = run_cli(["--json", *CREDS, "create-keypair", "kp", "-o", str(json_file)])
    assert result.code == 0 and "PRIVATE KEY" not in result.out and "aa:bb" in result.out
    assert json_file.read_text().startswith("-----BEGIN")
    assert run_cli([*CREDS, "describe-keypairs"]).out.splitlines()[1].split() == ["kp", "aa:bb"]
    assert run_cli([*CREDS, "delete-keypair", "kp"]).code == 0
    refused = run_cli([*CREDS, "delete-keypair", "kp"])
    assert refused.code == 1 and "answered false" in refused.err


# ---------------------------------------------------------------- errors


def test_ec2_error_exit_1_without_traceback(stub):
    stub.add_client_error(
        "describe_instances",
        service_error_code="InvalidInstanceID.NotFound",
        service_message="The instance ID 'i-00000099' does not exist",
        http_status_code=400,
    )
    result = run_cli([*CREDS, "describe-instances", "i-00000099"])
    assert result.code == 1
    assert result.err == (
        "econe: InvalidInstanceID.NotFound: The instance ID 'i-00000099' does not exist\n"
    )
    assert result.out == ""


def test_output_its_stream_cannot_encode_is_named_as_the_output(stub):
    stub.add_response("describe_key_pairs", {"KeyPairs": [{"KeyName": "d\u00e9bian"}]}, {})
    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")  # strict, as PYTHONIOENCODING=ascii
    err = io.StringIO()
    assert main([*CREDS, "describe-keypairs"], out=out, err=err, env={}) == 1
    assert err.getvalue() == (
        "econe: the output cannot hold '\u00e9' in its encoding (ascii); use a UTF-8 locale or "
        "--json\n"
    )  # it blamed the arguments


def test_verbose_shows_request_id(stub):
    stub.add_response(
        "describe_regions", {"Regions": [], "ResponseMetadata": {"RequestId": "req-123"}}, {}
    )
    result = run_cli([*CREDS, "-v", "describe-regions"])
    assert "request id req-123" in result.err and "from command line" in result.err


def test_unreachable_endpoint_exit_3():
    result = run_cli(
        [
            "-K",
            "demo",
            "-S",
            DEMO_SECRET,
            "-U",
            f"http://127.0.0.1:{free_port()}",
            "describe-regions",
        ]
    )
    assert result.code == 3
    assert result.err.startswith("econe: cannot reach endpoint")


def test_one_auth_secret_is_what_gets_signed(stub, tmp_path, monkeypatch):
    """ONE_AUTH user:password → the boto3 client is built with sha256(password)."""
    from econe.client import session as client_session

    seen = {}
    real = client_session.make_client

    def spy(creds, options, validate=True):
        seen["creds"] = creds
        return stub.client

    monkeypatch.setattr(client_session, "make_client", spy)
    auth = tmp_path / "one_auth"
    auth.write_text("demo:demo\n")
    stub.add_response("describe_regions", {"Regions": []}, {})
    assert run_cli(["describe-regions"], env={"ONE_AUTH": str(auth)}).code == 0
    assert (seen["creds"].access_key, seen["creds"].secret_key) == ("demo", DEMO_SECRET)
    assert real is not spy


def test_console_script_aliases_exist_and_run():
    bindir = Path(sys.executable).parent
    for name in LEGACY:
        assert (bindir / f"econe-{name}").exists(), f"econe-{name} not installed (pip install -e .)"
    env = dict(
        os.environ,
        EC2_URL=f"http://127.0.0.1:{free_port()}",
        EC2_ACCESS_KEY="a",
        EC2_SECRET_KEY="b",
    )
    proc = subprocess.run(
        [str(bindir / "econe-describe-instances")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    proc = subprocess.run(
        [str(bindir / "econe-run-instances"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "--instance-count" in proc.stdout


class _Garbage(http.server.BaseHTTPRequestHandler):
    status = 200
    body = b""

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (200, b"", "econe: bad answer from"),
        (200, b"<html>not EC2</html", "econe: bad answer from"),
        (502, b"<html><body>Bad Gateway</body></html>", "econe: 502: "),
    ],
)
def test_answers_that_are_not_ec2_xml_exit_1(status, body, message):
    handler = type("H", (_Garbage,), {"status": status, "body": body})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = run_cli(["-K", "demo", "-S", "x", "-U", url, "describe-regions"])
    finally:
        server.shutdown()
        server.server_close()
    assert result.code == 1
    assert result.err.startswith(message) and "Traceback" not in result.err
