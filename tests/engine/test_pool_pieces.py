"""DescribeInstances over a pool answer parsed in many pieces gives what one piece gives:
the same instances, in order, through filters and pagination."""

from __future__ import annotations

import pytest

from econe.one import decode
from tests.engine.conftest import Sim, run

AMI = "ami-00000000"


def describe_all(engine, body: dict) -> list[dict]:
    out = run(engine, "DescribeInstances", body, user="demo")
    return [i for r in out["Reservations"] for i in r["Instances"]]


@pytest.fixture(scope="module")
def launched(sim: Sim, engine) -> Sim:
    run(engine, "RegisterImage", {"ImageLocation": AMI}, user="demo")
    run(engine, "RunInstances", {"ImageId": AMI, "MinCount": 12, "MaxCount": 12}, user="demo")
    return sim


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"Filter": [{"Name": "instance-state-name", "Values": ["pending", "running"]}]},
        {"MaxResults": 5},
    ],
    ids=["all", "filtered", "paginated"],
)
def test_pieces_change_nothing(launched, engine, monkeypatch, body):
    whole = describe_all(engine, body)
    assert len(whole) >= 5
    monkeypatch.setattr(decode, "PIECE", 2048)  # a VM body is ~4 KB: a piece per VM or so
    monkeypatch.setattr(decode, "TEXT_BUFFER", 1024)
    pieces: list[int] = []
    parse_piece = decode._parse_piece
    monkeypatch.setattr(decode, "_parse_piece", lambda d: pieces.append(1) or parse_piece(d))
    assert describe_all(engine, body) == whole
    assert len(pieces) > 5  # it really went through pieces
