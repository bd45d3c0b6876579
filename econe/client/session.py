"""One CLI invocation's state: credentials, the boto3 EC2 client, output streams.

Every call to the endpoint goes through :meth:`Context.call`, which turns botocore's
exceptions into :mod:`econe.client.errors` (and so into exit codes).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from econe.client.credentials import Credentials
from econe.client.errors import (
    CliError,
    EndpointUnreachable,
    ServerError,
    UsageError,
    error_document,
    not_ec2_answer,
    root_tag,
)
from econe.client.output import to_json

CALL_TIMEOUT = 60.0  # seconds a call may wait for each part of its answer


@dataclass
class Options:
    region: str = "opennebula"
    json: bool = False
    headers: bool = True
    verbose: bool = False
    timeout: float | None = None  # --timeout; each use has its default (CALL_TIMEOUT…)
    retries: int = 0
    verify_ssl: bool | str = True  # False: --no-verify-ssl; a path: the CA bundle to trust
    progress: bool | None = None  # None: only when stderr is a terminal


@dataclass
class Context:
    creds: Credentials
    options: Options = field(default_factory=Options)
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    _clients: dict[bool, Any] = field(default_factory=dict)

    @property
    def client(self) -> Any:
        return self._client(validate=True)

    def _client(self, validate: bool) -> Any:
        client = self._clients.get(validate)
        if client is None:
            client = self._clients[validate] = make_client(self.creds, self.options, validate)
            client.meta.events.register("before-parse.ec2", self._check_answer)
            if self.options.verbose and len(self._clients) == 1:
                self.note_endpoint()
        return client

    def _check_answer(self, operation_model: Any, response_dict: dict, **_: Any) -> None:
        """An answer with HTTP status 200 must be the action's own (`<ActionResponse>`):
        the Ruby econe-server answers errors with 200 and an error document, and a wrong
        endpoint (oned's XML-RPC port, a web server) answers 200 with anything."""
        if response_dict.get("status_code", 200) >= 300:
            return  # botocore reads error answers itself
        body = response_dict.get("body") or b""
        if root_tag(body) == f"{operation_model.name}Response":
            return
        raise error_document(body) or not_ec2_answer(self.creds.url, body)

    def note_endpoint(self) -> None:
        self.note(
            f"endpoint {self.creds.url}, access key {self.creds.access_key!r} "
            f"from {self.creds.source}"
        )

    def note(self, text: str) -> None:
        self.err.write(f"econe: {text}\n")

    def call(self, operation: str, *, validate: bool = True, **params: Any) -> dict[str, Any]:
        """Call one EC2 action (boto3 method name), mapping failures to CliErrors; without
        `validate`, boto3 does not check the parameters against AWS's model first (for what
        econe takes and AWS does not; the server checks them all)."""
        import botocore.exceptions as bex
        from botocore.parsers import ResponseParserError

        method = getattr(self._client(validate), operation)
        try:
            response = method(**params)
        except bex.ClientError as exc:
            error = exc.response.get("Error", {})
            meta = exc.response.get("ResponseMetadata", {})
            code = error.get("Code") or f"HTTP{meta.get('HTTPStatusCode', '?')}"
            raise ServerError(code, error.get("Message") or "", meta.get("RequestId")) from None
        except (
            bex.EndpointConnectionError,  # includes ConnectTimeoutError
            bex.ConnectionClosedError,
            bex.ReadTimeoutError,
            bex.SSLError,
            bex.ProxyConnectionError,
        ) as exc:
            raise EndpointUnreachable(
                f"cannot reach endpoint {self.creds.url}: {unreachable_reason(exc)}"
            ) from None
        except bex.ParamValidationError as exc:
            raise UsageError(str(exc).replace("\n", " ")) from None
        except (bex.BotoCoreError, ResponseParserError) as exc:
            text = " ".join(str(exc).split())
            raise CliError(f"bad answer from {self.creds.url}: {text}") from None
        if self.options.verbose:
            request_id = response.get("ResponseMetadata", {}).get("RequestId")
            action = self.client.meta.method_to_api_mapping.get(operation, operation)
            self.note(f"{action}: request id {request_id or '(none)'}")
        return response

    def call_all(self, operation: str, list_key: str, **params: Any) -> dict[str, Any]:
        """Call a Describe action, following NextToken and concatenating ``list_key``."""
        response = self.call(operation, **params)
        seen: set[str] = set()
        while (token := response.pop("NextToken", None)) and token not in seen:
            seen.add(token)
            page = self.call(operation, **params, NextToken=token)
            response[list_key] = response.get(list_key, []) + page.get(list_key, [])
            response["NextToken"] = page.get("NextToken")
        response.pop("NextToken", None)
        return response

    def emit(self, response: Mapping[str, Any], text: str) -> None:
        """Print ``text`` (a table), or the response as JSON with ``--json``."""
        self.write(to_json(response) if self.options.json else text)

    def write(self, text: str) -> None:
        """Write to the output; text its encoding cannot hold is an error that says so (main
        makes stdout escape such text instead, so this is for other streams)."""
        try:
            self.out.write(text)
        except UnicodeEncodeError as exc:
            raise CliError(
                f"the output cannot hold {exc.object[exc.start : exc.end]!r} in its encoding "
                f"({exc.encoding}); use a UTF-8 locale or --json"
            ) from None

    def check_return(self, response: Mapping[str, Any], what: str) -> None:
        if response.get("Return") is False:
            raise ServerError("Failed", f"the server answered false: {what} was not done")


def unreachable_reason(exc: BaseException) -> str:
    """The operating system's words for a connection failure, not urllib3's object dump."""
    error = getattr(exc, "kwargs", {}).get("error")
    for candidate in (getattr(error, "__cause__", None), getattr(error, "__context__", None)):
        if isinstance(candidate, OSError) and candidate.strerror:
            return candidate.strerror
    name = type(exc).__name__
    if "Timeout" in name:
        return "timed out"
    if name == "ConnectionClosedError":
        return "connection closed before an answer"
    return str(exc)


def make_client(creds: Credentials, options: Options, validate: bool = True) -> Any:
    import boto3
    from botocore.config import Config

    from econe.client import version

    if not options.verify_ssl:
        warnings.filterwarnings("ignore", message="Unverified HTTPS request")
    config = Config(
        region_name=options.region,
        retries={"mode": "standard", "total_max_attempts": 1 + max(0, options.retries)},
        connect_timeout=min(options.timeout or CALL_TIMEOUT, 30),
        read_timeout=options.timeout or CALL_TIMEOUT,
        user_agent_extra=f"econe-cli/{version()}",
        parameter_validation=validate,
    )
    session = boto3.session.Session(
        aws_access_key_id=creds.access_key,
        aws_secret_access_key=creds.secret_key,
        region_name=options.region,
    )
    return session.client("ec2", endpoint_url=creds.url, config=config, verify=options.verify_ssl)
