"""The AWS SDK for JavaScript v3 (@aws-sdk/client-ec2) as an EC2 client of econe.

`js/ec2_flow.mjs` runs one user's session with the SDK (its own SigV4 signer, XML parser,
waiters and paginator) against `econe-server run --simulator`, started as a user starts it,
and prints what the SDK returned; this module checks that, and what reached OpenNebula.
`make test` installs the SDK (`npm ci` in tests/clients/js, from its package-lock.json).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.conftest import DEMO_SECRET, start_demo, stop_demo
from tests.e2e.test_resources import vm_xml

JS = Path(__file__).parent / "js"


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    """(what the SDK saw, the demo cloud) after one run of ec2_flow.mjs on a fresh server."""
    node = shutil.which("node")
    if node is None or not (JS / "node_modules" / "@aws-sdk" / "client-ec2").is_dir():
        pytest.fail("needs Node.js and the SDK: run `make test` (npm ci in tests/clients/js)")
    proc, demo = start_demo(tmp_path_factory.mktemp("js-sdk"))
    try:
        env = dict(os.environ, ECONE_ENDPOINT=demo.url, ECONE_KEY="demo", ECONE_SECRET=DEMO_SECRET)
        run = subprocess.run(
            [node, "ec2_flow.mjs"], cwd=JS, env=env, capture_output=True, text=True, timeout=300
        )
        assert run.returncode == 0, f"ec2_flow.mjs failed:\n{run.stderr}"
        yield json.loads(run.stdout), demo
    finally:
        stop_demo(proc)


def test_discovery(flow):
    seen, _ = flow
    assert seen["regions"] == ["opennebula"]
    assert seen["zones"] == ["opennebula"]
    assert "ami-00000000" in seen["images"]


def test_launch_with_client_token_and_user_data(flow):
    seen, demo = flow
    run = seen["run"]
    assert len(run["ids"]) == 2 and run["reservation"].startswith("r-")
    assert run["types"] == ["m1.small"] * 2 and run["images"] == [seen["images"][0]] * 2
    # the same ClientToken gives the same reservation, no new instances
    assert (run["retry_reservation"], run["retry_ids"]) == (run["reservation"], run["ids"])
    ctx = vm_xml(demo, run["ids"][0]).find("TEMPLATE/CONTEXT")
    assert base64.b64decode(ctx.findtext("USERDATA")) == b"#cloud-config\nhostname: js-sdk\n"
    assert ctx.findtext("USERDATA_ENCODING") == "base64"


def test_waiters_see_the_life_cycle(flow):
    seen, _ = flow
    now = datetime.now(UTC)
    for inst in seen["running"]:
        assert (inst["state"], inst["code"], inst["zone"]) == ("running", 16, "opennebula")
        assert inst["ip"] and inst["ip"].count(".") == 3
        launched = datetime.fromisoformat(inst["launch"].replace("Z", "+00:00"))
        assert now - timedelta(minutes=10) < launched <= now
    assert set(seen["run"]["ids"]) <= set(seen["filtered"])
    assert seen["stopping"] == [["running", "stopping"]] and seen["stopped"] == ["stopped"]
    assert seen["starting"] == ["pending"] and seen["restarted"] == ["running"]
    assert seen["reboot"] == 200
    assert set(seen["terminating"]) == {"shutting-down"}
    assert seen["terminated"] == ["terminated"] * 6


def test_status_checks_attributes_types_and_a_saved_image(flow):
    seen, _ = flow
    assert seen["status"] == [["running", "ok", "ok"]] * 2  # the SDK's instance-status-ok waiter
    assert seen["attributes"] == {"type": "m1.small", "protection": False}
    assert seen["types"] == [["m1.small", 1, 256]]
    ((image_id, name, state),) = seen["image"]  # the SDK's image-available waiter
    assert image_id.startswith("ami-") and name.startswith("js-sdk-") and state == "available"


def test_tags_key_pairs_and_elastic_ips(flow):
    seen, _ = flow
    assert seen["tags"] == [{"Key": "role", "Value": "web & <db>"}]
    pair = seen["keypair"]
    assert pair["pem"] and pair["listed"] == [pair["name"]]
    assert len(pair["fingerprint"].split(":")) == 20  # SHA-1 of the private key, as AWS
    address = seen["address"]
    assert address["associated"] == [seen["run"]["ids"][0]]
    assert address["instance_public_ip"] == address["ip"]


def test_paginator_walks_every_page(flow):
    seen, _ = flow
    assert seen["paginated"]["pages"] == 2  # 6 instances, pages of 5
    assert len(seen["paginated"]["ids"]) == len(set(seen["paginated"]["ids"])) == 6


def test_errors_reach_the_sdk_as_aws_errors(flow):
    errors = flow[0]["errors"]
    expected = {
        "not_found": ("InvalidInstanceID.NotFound", 400, "i-99999999"),
        "malformed": ("InvalidInstanceID.Malformed", 400, "i-nothex"),
        "bad_filter": ("InvalidParameterValue", 400, "no-such-filter"),
        "missing": ("MissingParameter", 400, "InstanceId"),
        "dry_run": ("DryRunOperation", 412, "DryRun"),
        "wrong_secret": ("SignatureDoesNotMatch", 403, "signature"),
        "unknown_key": ("AuthFailure", 401, "credentials"),
    }
    for case, (name, status, said) in expected.items():
        got = errors[case]
        assert got is not None, f"{case}: the SDK saw no error"
        assert (got["name"], got["status"]) == (name, status), case
        assert said in got["message"], (case, got["message"])
