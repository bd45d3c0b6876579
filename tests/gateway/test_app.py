"""App factory: alternate spec path (extensibility), the uvicorn factory, lifespan wiring."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from .conftest import botocore_parse

ROOT = Path(__file__).resolve().parents[2]


def test_an_action_added_by_spec_entry_alone(make_client, engine, tmp_path):
    spec = tmp_path / "ec2-query.yaml"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "gen_spec.py"),
            "--add",
            "DescribeSubnets",
            "--out",
            str(spec),
        ],
        check=True,
    )
    result = {
        "Subnets": [
            {
                "SubnetId": "subnet-00000001",
                "CidrBlock": "10.0.0.0/24",
                "AvailabilityZone": "opennebula",
                "State": "available",
                "AvailableIpAddressCount": 250,
            }
        ]
    }
    engine.results["DescribeSubnets"] = result
    with make_client(spec_path=spec) as c:
        resp = c.post(
            "/",
            data={
                "Action": "DescribeSubnets",
                "SubnetId.1": "subnet-00000001",
            },
        )
    assert resp.status_code == 200, resp.text
    assert botocore_parse("DescribeSubnets", 200, resp.content) == result
    assert engine.calls[0][1] == {"SubnetId": ["subnet-00000001"]}


def test_app_from_env(monkeypatch, tmp_path):
    conf = tmp_path / "econe.conf"
    conf.write_text(":port: 4999\n:one_xmlrpc: http://127.0.0.1:1/RPC2\n")
    monkeypatch.setenv("ECONE_CONFIG", str(conf))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from econe.app import app_from_env

    app = app_from_env()
    state = app.econe_state
    assert state.config.port == 4999
    assert state.engine is None and state.authenticator is None  # built by the lifespan
    assert not state.dev_routes


def test_lifespan_failure_is_reported(tmp_path):
    """Without usable server credentials the runtime cannot be built: startup fails loudly."""
    from econe.app import create_app
    from econe.config import Config
    from econe.one.session import SessionConfigError

    app = create_app(
        Config(ec2_auth=str(tmp_path / "missing"), one_xmlrpc="http://127.0.0.1:1/RPC2")
    )
    with pytest.raises(SessionConfigError), app.test_client():
        pass
