"""The EC2 Query front: ASGI middleware in front of Connexion's per-action virtual routes.

For every HTTP request: read the body (capped), merge query and form parameters, authenticate
the raw request, find the `Action`, unflatten + coerce the parameters by the action's request
schema, and rewrite the request to the virtual `POST /<Action>` with a JSON body. The scope
then carries `scope["extensions"]["ec2"] = {action, version, request_id, principal, front,
wire_indexes}`, where `front` is a private marker: the resolver refuses requests without it, so
the virtual routes cannot be reached around authentication, and `wire_indexes` lets validation
errors name list items by the index the client sent (econe.query.unflatten). Every failure here is answered as EC2 XML
by the front itself (an exception escaping a middleware placed before Connexion's
ExceptionMiddleware becomes an empty 500, connexion#2059). One access-log line per request
goes to the `econe.access` logger.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import ipaddress
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from econe.auth.common import from_trusted_proxy
from econe.config import Config
from econe.context import Principal, RawRequest, request_id_var
from econe.errors import Ec2Error, error_xml
from econe.one.client import NeedsOned, no_blocking
from econe.query import Params
from econe.spec import ApiSpec
from econe.upload import UploadJanitor, handle_upload, is_upload_request
from econe.upload.wire import request_headers

log = logging.getLogger("econe.front")
access_log = logging.getLogger("econe.access")

# Proof that a scope was rewritten by the front (compared by identity, never serialized).
FRONT_MARK = object()

XML_CONTENT_TYPE = b"text/xml;charset=UTF-8"
DEV_PATHS = ("/openapi.json", "/openapi.yaml", "/ui")


@dataclass
class GatewayState:
    """What the front, the resolver and the error handlers share; one per app."""

    config: Config
    spec: ApiSpec
    authenticator: Any = None  # .authenticate(RawRequest) -> Principal, raises Ec2Error
    engine: Any = None  # async .run(action, body, ctx) -> dict, raises Ec2Error
    serializer: Any = None
    json_principal: Principal | None = None  # test/dev only: virtual JSON routes without auth
    dev_routes: bool = False  # /openapi.json and /ui/ reachable
    extras: dict[str, Any] = field(default_factory=dict)


def ec2_info(scope: dict[str, Any]) -> dict[str, Any] | None:
    """The front's per-request record, or None if the front did not rewrite this request."""
    info = (scope.get("extensions") or {}).get("ec2")
    if isinstance(info, dict) and info.get("front") is FRONT_MARK:
        return info
    return None


class BodyTooLarge(Ec2Error):
    def __init__(self, limit: int):
        super().__init__(
            "RequestEntityTooLarge", f"The request body exceeds {limit} bytes.", status=413
        )


async def read_body(receive: Any, limit: int, declared: int | None) -> bytes:
    """The whole request body, refusing (without reading on) anything over `limit` bytes."""
    if declared is not None and declared > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Ec2Error("RequestTimeout", "The client closed the connection.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _client(scope: dict[str, Any]) -> str | None:
    client = scope.get("client")
    return client[0] if client else None


def _client_for_log(scope: dict[str, Any], config: Config | None) -> str:
    """The client's address for the access line: the peer's, or behind a trusted proxy (whose
    own address, or a Unix socket's "-", says nothing) the one it forwards: X-Forwarded-For's
    last entry, the address the proxy saw."""
    peer = _client(scope)
    if config is not None and from_trusted_proxy(peer, config):
        for name, value in scope.get("headers", ()):
            if name == b"x-forwarded-for":
                last = value.decode("latin-1").rsplit(",", 1)[-1].strip()
                with contextlib.suppress(ValueError):
                    return str(ipaddress.ip_address(last))  # never free text in the log
    return peer or "-"


async def send_error(send: Any, exc: Ec2Error, request_id: str, extra_headers=()) -> None:
    body = error_xml(exc.code, exc.message, request_id).encode("utf-8")
    headers = [
        (b"content-type", XML_CONTENT_TYPE),
        (b"content-length", str(len(body)).encode()),
        *extra_headers,
    ]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Ec2QueryFront:
    """ASGI middleware; add with `MiddlewarePosition.BEFORE_EXCEPTION` and `state=`."""

    def __init__(self, app: Any, state: GatewayState):
        self.app = app
        self.state = state
        self._auth_is_async: bool | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        record = {"request_id": str(uuid.uuid4()), "action": "-", "user": "-", "status": 0}
        request_id_var.set(record["request_id"])  # this request's task alone

        async def send_(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                record["status"] = message["status"]
            await send(message)

        try:
            if self.state.dev_routes and scope["path"].startswith(DEV_PATHS):
                record["action"] = scope["path"]
                await self.app(scope, receive, send_)
                return
            if is_upload_request(scope):  # UploadImage streams: before any body is read
                await self._upload(scope, receive, send_, record)
                return
            inner_scope, inner_receive = await self.prepare(scope, receive, record)
            await self.app(inner_scope, inner_receive, send_)
        except Ec2Error as exc:
            await self._answer(send_, exc, record)
        except Exception:  # noqa: BLE001 - every failure must still be EC2 XML
            log.exception("request %s failed in the front", record["request_id"])
            await self._answer(
                send_,
                Ec2Error("InternalError", "An internal error has occurred."),
                record,
            )
        finally:
            access_log.info(
                "%s %s %s %s %s %d %.1fms",
                _client_for_log(scope, self.state.config),
                record["request_id"],
                record["user"],
                scope.get("method", "-"),
                record["action"],
                record["status"],
                (time.perf_counter() - started) * 1000,
            )

    async def _upload(self, scope: dict[str, Any], receive: Any, send: Any, record: dict) -> None:
        """Multipart POST: econe.upload answers it completely (EC2 XML either way)."""
        state = self.state
        janitor = state.extras.get("upload_janitor")
        if janitor is None:  # one per app: temp files outlive their request
            janitor = state.extras["upload_janitor"] = UploadJanitor()
        outcome = await handle_upload(
            scope,
            receive,
            send,
            config=state.config,
            authenticator=state.authenticator,
            one=getattr(state.engine, "one", None),
            sessions=getattr(state.engine, "sessions", None),
            request_id=record["request_id"],
            janitor=janitor,
        )
        record["action"], record["user"] = outcome.action, outcome.user or "-"

    async def _answer(self, send: Any, exc: Ec2Error, record: dict[str, Any]) -> None:
        if record["status"]:  # the response has started: nothing more can be said
            log.error("request %s failed after its response started: %s", record["request_id"], exc)
            return
        extra = [(b"allow", b"GET, POST")] if exc.status == 405 else []
        await send_error(send, exc, record["request_id"], extra)

    # -- the request --------------------------------------------------------------------------

    async def prepare(
        self, scope: dict[str, Any], receive: Any, record: dict[str, Any]
    ) -> tuple[dict[str, Any], Any]:
        """Authenticate and rewrite `scope` to the action's virtual route."""
        from econe.query import parse_params

        state = self.state
        headers = request_headers(scope)
        method = scope.get("method", "GET").upper()
        if state.json_principal is not None and self._is_json_call(scope, headers):
            return self._json_call(scope, receive, record)
        if method not in ("GET", "POST"):
            raise Ec2Error(
                "UnsupportedHttpVerb",
                f"The HTTP method {method} is not supported; use GET or POST.",
                status=405,
            )
        query_string = scope.get("query_string", b"")
        content_type = headers.get("content-type", "")
        declared = headers.get("content-length")
        try:
            declared_len = int(declared) if declared is not None else None
        except ValueError as exc:
            raise Ec2Error("InvalidRequest", "The Content-Length header is malformed.") from exc
        try:  # a client dripping its body byte by byte must not hold a worker for ever
            async with asyncio.timeout(state.config.body_timeout):
                body = await read_body(receive, state.config.max_body_size, declared_len)
        except TimeoutError:
            raise Ec2Error(
                "RequestTimeout",
                f"The request body did not arrive within {state.config.body_timeout:g} s.",
            ) from None
        params = parse_params(method, query_string, body, content_type or None)
        # the action asked for, in the access line even when authentication refuses it (quoted
        # and cut unless the spec has it: a client cannot forge log lines)
        asked = params.get("Action")
        if asked:
            record["action"] = asked if self.state.spec.action(asked) else ascii(asked[:64])
        principal = await self._authenticate(self._raw(scope, headers, body, params))
        return self._dispatch(scope, receive, record, params, principal)

    def _raw(
        self, scope: dict[str, Any], headers: dict[str, str], body: bytes, params: dict[str, str]
    ) -> RawRequest:
        return RawRequest(
            method=scope.get("method", "GET").upper(),
            path=scope.get("path", "/"),
            query_string=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
            body=body,
            params=params,
            client_addr=_client(scope),
        )

    def _dispatch(
        self,
        scope: dict[str, Any],
        receive: Any,
        record: dict[str, Any],
        params: Params,
        principal: Principal,
    ) -> tuple[dict[str, Any], Any]:
        from econe.query import coerce, repeated_parameter, unflatten

        record["user"] = principal.name
        # checked once authenticated, as the names are below: a request changed on the way
        # is SignatureDoesNotMatch, whatever was added to it
        if params.repeated:
            raise repeated_parameter(params.repeated)
        action = params.get("Action")
        if not action:
            raise Ec2Error("MissingAction", "The request must contain the parameter Action.")
        act = self.state.spec.action(action)
        # unknown names are logged quoted and cut, so a client cannot forge log lines
        record["action"] = action if act is not None else ascii(action[:64])
        if act is None:
            raise Ec2Error(
                "InvalidAction", f"The action {action} is not valid for this web service."
            )
        version = params.get("Version") or self.state.spec.api_version
        wire_indexes: dict[tuple, list[int]] = {}
        payload = coerce(unflatten(params, wire_indexes), act.request_schema)
        return self._rewrite(
            scope, receive, act.name, version, record, principal, payload, wire_indexes
        )

    async def _authenticate(self, raw: RawRequest) -> Principal:
        auth = self.state.authenticator
        if auth is None:
            raise Ec2Error("Unavailable", "The service is starting; try again.")
        if self._auth_is_async is None:
            self._auth_is_async = inspect.iscoroutinefunction(auth.authenticate)
        if self._auth_is_async:
            return await auth.authenticate(raw)
        # From the cached user pool when it can be (no thread hop); user look-ups that call
        # oned never run on the event loop thread (see econe.one.client.no_blocking).
        token = no_blocking.set(True)
        try:
            return auth.authenticate(raw)
        except NeedsOned:
            pass
        finally:
            no_blocking.reset(token)
        return await asyncio.get_running_loop().run_in_executor(
            None, contextvars.copy_context().run, auth.authenticate, raw
        )

    def _rewrite(
        self,
        scope: dict[str, Any],
        receive: Any,
        action: str,
        version: str,
        record: dict[str, Any],
        principal: Principal,
        payload: Any,
        wire_indexes: dict[tuple, list[int]],
    ) -> tuple[dict[str, Any], Any]:
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        kept = [
            (k, v)
            for k, v in scope.get("headers", [])
            if k.lower() not in (b"content-type", b"content-length", b"transfer-encoding")
        ]
        kept += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(data)).encode()),
        ]
        extensions = dict(scope.get("extensions") or {})
        extensions["ec2"] = {
            "action": action,
            "version": version,
            "request_id": record["request_id"],
            "principal": principal,
            "front": FRONT_MARK,
            "wire_indexes": wire_indexes,  # for errors naming a parameter as it was sent
        }
        path = f"/{action}"
        inner = dict(scope)
        inner.update(
            method="POST",
            path=path,
            raw_path=path.encode("ascii"),
            root_path="",  # behind a proxy prefix the virtual route is still /<Action>
            query_string=b"",
            headers=kept,
            extensions=extensions,
        )
        sent = False

        async def receive_() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": data, "more_body": False}
            return await receive()

        return inner, receive_

    # -- the virtual JSON API, only with an explicitly injected principal (tests, dev) ----------

    def _is_json_call(self, scope: dict[str, Any], headers: dict[str, str]) -> bool:
        path = scope.get("path", "")
        kind = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        return path != "/" and path[1:] in self.state.spec.actions and kind == "application/json"

    def _json_call(
        self, scope: dict[str, Any], receive: Any, record: dict[str, Any]
    ) -> tuple[dict[str, Any], Any]:
        principal = self.state.json_principal
        assert principal is not None
        action = scope["path"][1:]
        record["action"], record["user"] = action, principal.name
        extensions = dict(scope.get("extensions") or {})
        extensions["ec2"] = {
            "action": action,
            "version": self.state.spec.api_version,
            "request_id": record["request_id"],
            "principal": principal,
            "front": FRONT_MARK,
        }
        inner = dict(scope)
        inner["extensions"] = extensions
        limit = self.state.config.max_body_size
        seen = 0

        async def receive_() -> dict[str, Any]:  # the same cap as the Query path
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
            return message

        return inner, receive_
