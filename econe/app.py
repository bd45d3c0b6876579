"""The app factory: spec + front middleware + Connexion + resolver + serializer.

    app = create_app(config)                      # builds OneClient/sessions/users/engine
    app = create_app(config, engine=e, authenticator=a, spec_path=p, mappings_dir=d)

Uvicorn import string (workers, reload): `econe.app:app_from_env` (factory=True), reading
`ECONE_CONFIG` (econe.conf path; default search as econe-server), `ECONE_SPEC`,
`ECONE_MAPPINGS` and `ECONE_SWAGGER_UI=1` (development: /openapi.json and /ui/ unauthenticated).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import uuid
from pathlib import Path
from typing import Any

from connexion.apps.abstract import AbstractApp
from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from connexion.middleware import ConnexionMiddleware, MiddlewarePosition
from connexion.options import SwaggerUIOptions
from connexion.validators import MediaTypeDict
from starlette.exceptions import HTTPException

from econe.config import Config
from econe.context import Principal
from econe.errors import Ec2Error, error_xml
from econe.front import Ec2QueryFront, GatewayState, ec2_info
from econe.paths import data_dir
from econe.resolver import Ec2Operations, Ec2Resolver
from econe.serialize import Serializer
from econe.spec import load_spec
from econe.validation import Ec2BodyValidator

log = logging.getLogger("econe.app")

XML_MEDIA_TYPE = "text/xml"

# Problem statuses (Connexion's own checks, Starlette HTTP errors) → EC2 codes.
_PROBLEM_CODES = {
    400: "InvalidRequest",
    401: "AuthFailure",
    403: "UnauthorizedOperation",
    404: "InvalidAction",
    405: "UnsupportedHttpVerb",
    413: "RequestEntityTooLarge",
    415: "InvalidRequest",
}


def _request_id(request: ConnexionRequest) -> str:
    try:
        info = ec2_info(request.scope)
    except Exception:  # noqa: BLE001 - an id is always produced
        info = None
    return info["request_id"] if info else str(uuid.uuid4())


def _xml_response(
    status: int, code: str, message: str, request_id: str, headers: dict | None = None
) -> ConnexionResponse:
    return ConnexionResponse(
        status_code=status,
        mimetype=XML_MEDIA_TYPE,
        content_type="text/xml;charset=UTF-8",
        body=error_xml(code, message, request_id),
        headers=dict(headers or {}),
    )


def ec2_error_handler(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    assert isinstance(exc, Ec2Error)
    if exc.status >= 500:
        log.error("%s: %s", exc.code, exc.message)
    return _xml_response(exc.status, exc.code, exc.message, _request_id(request))


def problem_handler(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    status = getattr(exc, "status", None) or getattr(exc, "status_code", None) or 500
    detail = getattr(exc, "detail", None) or getattr(exc, "title", None) or "Request failed."
    headers = dict(getattr(exc, "headers", None) or {})
    code = _PROBLEM_CODES.get(status, "InternalError" if status >= 500 else "InvalidRequest")
    if status >= 500:
        log.error("request failed with %s: %s", status, detail)
        detail = "An internal error has occurred."
    if status == 404:
        detail = "The requested action is not valid for this web service."
    return _xml_response(status, code, str(detail), _request_id(request), headers)


def internal_error_handler(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    log.error("unhandled error", exc_info=exc)
    return _xml_response(
        500, "InternalError", "An internal error has occurred.", _request_id(request)
    )


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@contextlib.asynccontextmanager
async def _no_runtime(app: Any):
    yield


def make_sessions(config: Config) -> Any:
    """How econe calls oned as each user: `:core_auth: cipher` or `x509`."""
    from econe.one.session import sessions_from_config

    return sessions_from_config(config)


def check_server_credentials(config: Config, sessions: Any) -> None:
    """One call to oned as the server user. Credentials oned refuses stop the start
    (SessionConfigError): otherwise every request would be a retryable 503. oned not
    answering is only logged: it may come up after econe."""
    from econe.one.client import OneClient
    from econe.one.errors import AUTHENTICATION, OneError, OneUnavailable
    from econe.one.session import SessionConfigError

    one = OneClient(config.one_xmlrpc, timeout=min(config.one_timeout, 5.0), keepalive=0)
    try:
        one.call(sessions.admin_session(), "one.user.info", -1)
    except OneUnavailable as exc:
        log.warning("oned (%s) does not answer yet: %s", config.one_xmlrpc, exc.message)
    except OneError as exc:
        if exc.code == AUTHENTICATION:
            where = ":server_x509_auth:" if config.core_auth == "x509" else config.ec2_auth
            raise SessionConfigError(
                f"oned ({config.one_xmlrpc}) refuses the server credentials of {where}: "
                f"{exc.message}"
            ) from None
    finally:
        one.close()


def check_mappings(mappings_dir: Path | None = None) -> None:
    """The mappings loaded and checked against the spec as start-up will (MappingError
    naming the file and key), before anything is started."""
    from econe.mapping import check_against_spec, load_mappings

    check_against_spec(load_mappings(mappings_dir or data_dir("mappings")), load_spec())


def check_instance_types(config: Config) -> list[str]:
    """econe.conf's instance types as start-up finds them (handlers.instances): a template
    missing or not Jinja2 raises ConfigError naming the type, file and line; the warnings
    (a template failing for a launch without user data) are returned."""
    from econe.config import ConfigError
    from handlers.instances import check_instance_types as check

    errors, warnings = check(config)
    if errors:
        raise ConfigError("; ".join(errors))
    return warnings


def build_runtime(config: Config, state: GatewayState, mappings_dir: Path | None) -> list[Any]:
    """OneClient, sessions, user directory, authenticator and engine, where not injected.

    Returns the objects to close at shutdown."""
    from econe.one.client import OneClient

    closers: list[Any] = []
    one = OneClient(config.one_xmlrpc, timeout=config.one_timeout, keepalive=config.one_keepalive)
    closers.append(one)
    sessions = make_sessions(config)
    if state.authenticator is None:
        from econe.auth.authenticator import Authenticator
        from econe.auth.users import UserDirectory

        users = UserDirectory.from_one(config, one, sessions)
        state.authenticator = Authenticator(config, users, seal_key=sessions.seal_key)
    if state.engine is None:
        from econe.engine import Engine
        from econe.mapping import check_against_spec

        state.engine = Engine(config, one, sessions, mappings_dir)
        state.engine.known_filters = state.spec.known_filters()
        check_against_spec(state.engine.mappings, state.spec)
        closers.append(state.engine)
    return closers


class Ec2App(AbstractApp):
    """A Connexion app whose innermost layer is econe's operations (see econe.resolver):
    Connexion's middlewares route, validate and map errors; no web framework under them."""

    def __init__(self, import_name: str, **kwargs: Any) -> None:
        self._middleware_app = Ec2Operations()
        super().__init__(import_name, **kwargs)

    def add_url_rule(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("econe serves the actions of its spec only")

    def add_error_handler(self, code_or_exception: Any, function: Any) -> None:
        self.middleware.add_error_handler(code_or_exception, function)


def _middlewares(dev_routes: bool) -> list[Any]:
    """Connexion's default stack without the layers econe never uses: OpenAPI security (the
    front authenticates), response validation (off) and, unless development routes are on,
    the Swagger UI. Each layer costs every request a routing look-up."""
    unused = {"SecurityMiddleware", "ResponseValidationMiddleware"}
    if not dev_routes:
        unused.add("SwaggerUIMiddleware")
    return [m for m in ConnexionMiddleware.default_middlewares if m.__name__ not in unused]


def tune_gc() -> None:
    """Describing 10,000 instances allocates about a million objects. With Python's default
    thresholds the collector ran ~280 times in such a request, each older-generation pass
    re-scanning everything alive (~150 ms in all). Freezing what start-up built and collecting
    the young generation every 10,000 allocations instead of 700 brings that under 25 ms."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def create_app(
    config: Config,
    *,
    engine: Any = None,
    authenticator: Any = None,
    spec_path: str | os.PathLike | None = None,
    mappings_dir: str | os.PathLike | None = None,
    json_principal: Principal | None = None,
    swagger_ui: bool | None = None,
) -> Ec2App:
    """The ASGI app. Missing `engine`/`authenticator` are built at startup (lifespan).

    `json_principal` (tests, development only) lets `POST /<Action>` with a JSON body reach
    the virtual routes as that principal without a signature. `swagger_ui` (default: env
    `ECONE_SWAGGER_UI=1`) serves /openapi.json and /ui/ without authentication.
    """
    spec = load_spec(spec_path)
    dev_routes = _env_flag("ECONE_SWAGGER_UI") if swagger_ui is None else swagger_ui
    state = GatewayState(
        config=config,
        spec=spec,
        authenticator=authenticator,
        engine=engine,
        serializer=Serializer(spec),
        json_principal=json_principal,
        dev_routes=dev_routes,
    )
    mdir = Path(mappings_dir) if mappings_dir is not None else None
    if engine is not None:
        engine.known_filters = spec.known_filters()

    lifespan = _no_runtime
    if engine is None or authenticator is None:

        @contextlib.asynccontextmanager
        async def lifespan(app: Any):
            closers = build_runtime(config, state, mdir)
            tune_gc()
            try:
                yield
            finally:
                for obj in closers:
                    with contextlib.suppress(Exception):
                        obj.close()

    app = Ec2App(
        __name__,
        lifespan=lifespan,
        middlewares=_middlewares(dev_routes),
        validator_map={"body": MediaTypeDict({"*/*json": Ec2BodyValidator})},
    )
    app.add_middleware(Ec2QueryFront, position=MiddlewarePosition.BEFORE_EXCEPTION, state=state)
    app.add_api(
        spec.connexion_spec(),
        resolver=Ec2Resolver(state),
        swagger_ui_options=SwaggerUIOptions(serve_spec=dev_routes, swagger_ui=dev_routes),
        strict_validation=False,
        validate_responses=False,
    )
    app.add_error_handler(Ec2Error, ec2_error_handler)
    app.add_error_handler(ProblemException, problem_handler)
    app.add_error_handler(HTTPException, problem_handler)
    app.add_error_handler(404, problem_handler)
    app.add_error_handler(405, problem_handler)
    app.add_error_handler(Exception, internal_error_handler)
    app.econe_state = state  # for tests and the server CLI
    return app


def app_from_env() -> Ec2App:
    """uvicorn factory: `uvicorn --factory econe.app:app_from_env`."""
    from econe.config import default_config_path, load_config

    path = os.environ.get("ECONE_CONFIG") or default_config_path()
    config = load_config(path)
    return create_app(
        config,
        spec_path=os.environ.get("ECONE_SPEC") or None,
        mappings_dir=os.environ.get("ECONE_MAPPINGS") or None,
    )
