"""The README's "Adding an action", done as an operator does it, in a temporary copy of the
project: one line in spec/overlay.yaml, tools/gen_spec.py, a mapping file and a view file;
then boto3 calls the new action on `econe-server run --simulator` of that copy. No Python."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import free_port, start_demo, stop_demo

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ["econe", "handlers", "onesim", "spec", "mappings", "templates", "etc", "tools"]

MAPPING = """\
action: DescribeSubnets
doc: OpenNebula virtual networks the user may use, as subnets.
source:
  call: one.vnpool.info
  args: [-2, -1, -1]
  items: /VNET_POOL/VNET
by_id:
  param: SubnetId
  prefix: subnet
  call: one.vn.info
  item: /VNET
  malformed: InvalidSubnetID.Malformed
  not_found: InvalidSubnetID.NotFound
  noun: subnet ID
view: subnet
filters:
  subnet-id: SubnetId
  state: State
output:
  Subnets: "{{ items }}"
"""
VIEW = """\
object: VNET
fields:
  _id: {path: ID, type: int}
  _size: {path: AR_POOL/AR/SIZE, type: int, default: 0}
  _used: {path: USED_LEASES, type: int, default: 0}
  SubnetId: {path: ID, id: subnet}
  AvailabilityZone: {expr: "config.region"}
  State: {value: available}
  AvailableIpAddressCount: {expr: "item._size - item._used"}
"""


@pytest.fixture(scope="module")
def extended(tmp_path_factory):
    copy = tmp_path_factory.mktemp("checkout")
    for name in PROJECT:
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    overlay = copy / "spec" / "overlay.yaml"
    text = overlay.read_text()
    overlay.write_text(text.replace("\nactions:\n", "\nactions:\n  - DescribeSubnets\n", 1))
    subprocess.run([sys.executable, str(copy / "tools" / "gen_spec.py")], check=True, cwd=copy)
    (copy / "mappings" / "DescribeSubnets.yaml").write_text(MAPPING)
    (copy / "mappings" / "views" / "subnet.yaml").write_text(VIEW)
    proc, demo = start_demo(tmp_path_factory.mktemp("run"), checkout=copy)
    yield demo
    stop_demo(proc)


def test_an_action_added_with_a_spec_line_and_yaml_answers_boto3(extended):
    ec2 = extended.client()
    subnets = ec2.describe_subnets()["Subnets"]
    assert subnets and all(s["SubnetId"].startswith("subnet-") for s in subnets)
    assert {s["AvailabilityZone"] for s in subnets} == {"opennebula"}
    assert all(s["AvailableIpAddressCount"] > 0 for s in subnets)
    first = subnets[0]["SubnetId"]
    assert [s["SubnetId"] for s in ec2.describe_subnets(SubnetIds=[first])["Subnets"]] == [first]
    with pytest.raises(ClientError) as exc:
        ec2.describe_subnets(SubnetIds=["subnet-99999"])
    assert exc.value.response["Error"]["Code"] == "InvalidSubnetID.NotFound"
    with pytest.raises(ClientError) as exc:
        ec2.describe_subnets(Filters=[{"Name": "colour", "Values": ["x"]}])
    assert exc.value.response["Error"]["Code"] == "InvalidParameterValue"
    # a filter EC2 documents for DescribeSubnets that the mapping leaves out matches nothing
    assert ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": ["*"]}])["Subnets"] == []
    # The copy still serves what it shipped with; the project itself does not know the action.
    assert ec2.describe_regions()["Regions"]
    assert "DescribeSubnets" not in (ROOT / "spec" / "ec2-query.yaml").read_text()


def test_a_broken_mapping_stops_the_start_in_one_line(tmp_path):
    """An operator's typo (the boto3 name instead of the wire name) would have started and
    answered every image to DescribeImages ImageId.N: now `run` names the file and key,
    exit 2, before the banner."""
    copy = tmp_path / "checkout"
    for name in PROJECT:
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    mapping = copy / "mappings" / "DescribeImages.yaml"
    mapping.write_text(mapping.read_text().replace("param: ImageId", "param: ImageIds", 1))
    out = subprocess.run(
        [sys.executable, "-m", "econe.server_cli", "run", "--simulator", "--port"]
        + [str(free_port()), "--sim-port", str(free_port()), "--state-dir", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=copy,
        env={**os.environ, "PYTHONPATH": str(copy)},
    )
    assert out.returncode == 2, out.stderr
    assert "is up" not in out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "DescribeImages.yaml: by_id.param" in lines[0], out.stderr
    assert "'ImageIds'" in lines[0]


def test_restart_with_a_broken_mapping_keeps_the_running_server(tmp_path):
    copy = tmp_path / "checkout"
    for name in PROJECT:
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(copy)}
    common = ["--pid-file", str(tmp_path / "econe.pid"), "--log-file", str(tmp_path / "log")]
    serve = ["--simulator", "--port", str(free_port()), "--sim-port", str(free_port())]
    serve += ["--state-dir", str(tmp_path / "state"), *common]

    def server(*argv: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "econe.server_cli", *argv]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=90, cwd=copy, env=env)

    started = server("start", *serve)
    assert started.returncode == 0, started.stderr
    try:
        mapping = copy / "mappings" / "DescribeImages.yaml"
        mapping.write_text(mapping.read_text().replace("param: ImageId", "param: ImageIds", 1))
        out = server("restart", *serve)
        assert out.returncode == 2 and "DescribeImages.yaml: by_id.param" in out.stderr
        assert server("status", *common).returncode == 0  # still running
    finally:
        assert server("stop", *common).returncode == 0
