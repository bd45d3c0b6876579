"""Fixtures for in-process gateway tests: a fake authenticator and a scripted engine."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import botocore.session
import pytest
from botocore.parsers import create_parser

from econe.config import Config
from econe.context import Principal, RawRequest, RequestContext
from econe.errors import Ec2Error

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from econe.app import create_app

ALICE = Principal(name="alice", uid=5, gid=1, auth_driver="core", via="sigv4")
MODEL = botocore.session.get_session().get_service_model("ec2")


def botocore_parse(action: str, status: int, body: bytes, headers: dict | None = None) -> dict:
    """What boto3 would make of this response (raises if it is not parseable EC2 XML)."""
    op = MODEL.operation_model(action)
    parsed = create_parser("ec2").parse(
        {"body": body, "headers": headers or {}, "status_code": status}, op.output_shape
    )
    parsed.pop("ResponseMetadata", None)
    return parsed


class FakeAuthenticator:
    """Accepts everyone except `AWSAccessKeyId=bad` (AuthFailure) and `=forged` (403)."""

    def __init__(self) -> None:
        self.seen: list[RawRequest] = []

    def authenticate(self, raw: RawRequest) -> Principal:
        self.seen.append(raw)
        key = raw.params.get("AWSAccessKeyId")
        if key == "bad":
            raise Ec2Error(
                "AuthFailure", "AWS was not able to validate the provided access credentials"
            )
        if key == "forged":
            raise Ec2Error("SignatureDoesNotMatch", "The request signature does not match.")
        return ALICE


class ScriptedEngine:
    """`results[action]` is a dict, an exception, or a callable(body, ctx)."""

    def __init__(self, results: dict[str, Any] | None = None) -> None:
        self.results: dict[str, Any] = results or {}
        self.calls: list[tuple[str, dict, RequestContext]] = []

    async def run(self, action: str, body: dict, ctx: RequestContext, render: Any = None) -> Any:
        self.calls.append((action, body, ctx))
        result = self.results.get(action, {})
        if isinstance(result, BaseException):
            raise result
        if callable(result):
            result = result(body, ctx)
        return result if render is None else render(result)


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine()


@pytest.fixture
def auth() -> FakeAuthenticator:
    return FakeAuthenticator()


@pytest.fixture
def make_client(engine: ScriptedEngine, auth: FakeAuthenticator) -> Callable[..., Any]:
    def make(**kwargs: Any) -> Any:
        config = kwargs.pop("config", None) or Config()
        app = create_app(config, engine=engine, authenticator=auth, **kwargs)
        return app.test_client()

    return make


@pytest.fixture
def client(make_client: Callable[..., Any]) -> Any:
    with make_client() as c:
        yield c
