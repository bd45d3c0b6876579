"""Connexion resolver: every operation (operationId = EC2 action) → one generic handler.

The handler checks that the front rewrote the request (private marker), answers
`DryRunOperation` (412) for `DryRun=true` once authentication and validation have passed,
then calls `engine.run(action, body, ctx, render=…)` — the engine runs the action's mapping or
a named handler from `handlers/` and, in the same worker thread, renders the result dict as EC2
XML with the serializer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from connexion.resolver import Resolution, Resolver
from starlette.responses import Response

from econe.context import RequestContext
from econe.errors import Ec2Error
from econe.front import GatewayState, ec2_info

XML_MEDIA_TYPE = "text/xml;charset=UTF-8"


def _current_scope() -> dict[str, Any]:
    from connexion import request

    return request.scope


def make_handler(state: GatewayState, action: str) -> Callable[..., Awaitable[Response]]:
    """The endpoint Connexion calls for `POST /<action>` with the validated JSON body."""

    async def handler(body: dict | None = None) -> Response:
        info = ec2_info(_current_scope())
        if info is None or info["action"] != action:
            raise Ec2Error(
                "InvalidAction", f"The action {action} is not valid for this web service."
            )
        ctx = RequestContext(
            request_id=info["request_id"],
            action=action,
            version=info["version"],
            principal=info["principal"],
        )
        xml = await run_action(state, action, body or {}, ctx)
        return Response(xml, media_type=XML_MEDIA_TYPE)

    handler.__name__ = f"ec2_{action}"
    handler.__qualname__ = f"ec2_{action}"
    return handler


async def run_action(
    state: GatewayState, action: str, body: dict[str, Any], ctx: RequestContext
) -> bytes:
    """DryRun check, then the engine, which renders the result as EC2 XML in its worker
    thread; the engine raises Ec2Error for every failure."""
    act = state.spec.action(action)
    if act is not None and act.has_dry_run and body.get("DryRun") is True:
        raise Ec2Error("DryRunOperation", "Request would have succeeded, but DryRun flag is set.")
    engine = state.engine
    if engine is None:
        raise Ec2Error("Unavailable", "The service is starting; try again.")

    def render(result: Any) -> bytes:
        if result is None:
            result = {}
        if not isinstance(result, dict):
            raise Ec2Error("InternalError", f"{action} produced no result")
        xml = state.serializer.render(action, ctx.version, ctx.request_id, result)
        return xml.encode("utf-8")

    return await engine.run(action, body, ctx, render=render)


class Ec2Resolver(Resolver):
    """Resolves each operation to `make_handler(state, operationId)`."""

    def __init__(self, state: GatewayState):
        super().__init__()
        self.state = state

    def resolve(self, operation: Any) -> Resolution:
        action = operation.operation_id
        return Resolution(make_handler(self.state, action), action)
