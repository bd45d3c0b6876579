"""Fixtures for the econe client CLI tests: a stubbed boto3 client and a CLI runner."""

from __future__ import annotations

import hashlib
import io
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from econe.client import session as client_session
from econe.client_cli import main

DEMO_SECRET = hashlib.sha256(b"demo").hexdigest()
CREDS = ["-K", "demo", "-S", DEMO_SECRET, "-U", "http://ec2.test:4567"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: needs `econe-server run --simulator` (started by the test's fixture)"
    )


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(argv: list[str], env: dict[str, str] | None = None) -> Result:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, out=out, err=err, env=env if env is not None else {})
    return Result(code, out.getvalue(), err.getvalue())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def stub(monkeypatch) -> Iterator[Stubber]:
    """A botocore Stubber; every CLI run in the test uses its client instead of the network."""
    client = boto3.session.Session(
        aws_access_key_id="demo", aws_secret_access_key=DEMO_SECRET, region_name="opennebula"
    ).client(
        "ec2",
        endpoint_url="http://ec2.test:4567",
        config=Config(parameter_validation=False),  # the Stubber checks what was asked
    )
    stubber = Stubber(client)
    monkeypatch.setattr(client_session, "make_client", lambda creds, options, validate=True: client)
    with stubber:
        yield stubber
    stubber.assert_no_pending_responses()
