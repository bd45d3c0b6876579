"""Connexion resolver and the app at the end of Connexion's middleware stack.

Every operation (operationId = EC2 action) resolves to an `Ec2Operation`: an ASGI endpoint that
Connexion's routing and request-validation middlewares hand each request to. It checks that
the front rewrote the request (private marker), then calls
`engine.run(action, body, ctx, render=…)` (which answers `DryRun=true` after its checks) — the engine runs the action's mapping or a named
handler from `handlers/` and renders the result dict as EC2 XML with the serializer.

`Ec2Operations` takes the place of Connexion's AsyncApp framework layer (a second router and a
parameter-injecting decorator built anew for every request, about a fifth of a small request's
time): routing and validation stay Connexion's, the operation is called directly.
"""

from __future__ import annotations

import json
from typing import Any

from connexion.middleware.abstract import RoutedAPI, RoutedMiddleware
from connexion.resolver import Resolution, Resolver

from econe.context import RequestContext
from econe.errors import Ec2Error
from econe.front import XML_CONTENT_TYPE, GatewayState, ec2_info


class Ec2Operation:
    """The endpoint of `POST /<action>` once Connexion has routed and validated it."""

    def __init__(self, state: GatewayState, action: str):
        self.state = state
        self.action = action
        self.__name__ = f"ec2_{action}"  # Connexion names operations after their function

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        action = self.action
        info = ec2_info(scope)
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
        body = await _json_body(receive)
        xml = await run_action(self.state, action, body, ctx)
        headers = [(b"content-type", XML_CONTENT_TYPE), (b"content-length", b"%d" % len(xml))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": xml})


async def _json_body(receive: Any) -> dict:
    """The validated JSON body (Connexion's validator replays what it read)."""
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    data = b"".join(chunks)
    body = json.loads(data) if data else None
    return body if isinstance(body, dict) else {}


async def run_action(
    state: GatewayState, action: str, body: dict[str, Any], ctx: RequestContext
) -> bytes:
    """The engine, which renders the result as EC2 XML in its worker thread (and answers
    DryRun requests after their checks); it raises Ec2Error for every failure."""
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
    """Resolves each operation to `Ec2Operation(state, operationId)`."""

    def __init__(self, state: GatewayState):
        super().__init__()
        self.state = state

    def resolve(self, operation: Any) -> Resolution:
        action = operation.operation_id
        return Resolution(Ec2Operation(self.state, action), action)


class Ec2Api(RoutedAPI[Ec2Operation]):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_paths()

    def make_operation(self, operation: Any) -> Ec2Operation:
        return operation.function


class Ec2Operations(RoutedMiddleware[Ec2Api]):
    """The innermost app: calls the operation Connexion's routing chose."""

    api_cls = Ec2Api

    def __init__(self) -> None:
        super().__init__(_not_routed)


async def _not_routed(scope: dict, receive: Any, send: Any) -> None:
    raise Ec2Error("InvalidAction", "The requested action is not valid for this web service.")
