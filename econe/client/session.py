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
from econe.client.errors import CliError, EndpointUnreachable, ServerError, UsageError
from econe.client.output import to_json


@dataclass
class Options:
    region: str = "opennebula"
    json: bool = False
    headers: bool = True
    verbose: bool = False
    timeout: float = 60.0
    retries: int = 0
    verify_ssl: bool = True
    progress: bool | None = None  # None: only when stderr is a terminal


@dataclass
class Context:
    creds: Credentials
    options: Options = field(default_factory=Options)
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    _client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = make_client(self.creds, self.options)
            if self.options.verbose:
                self.note_endpoint()
        return self._client

    def note_endpoint(self) -> None:
        self.note(
            f"endpoint {self.creds.url}, access key {self.creds.access_key!r} "
            f"from {self.creds.source}"
        )

    def note(self, text: str) -> None:
        self.err.write(f"econe: {text}\n")

    def call(self, operation: str, **params: Any) -> dict[str, Any]:
        """Call one EC2 action (boto3 method name), mapping failures to CliErrors."""
        import botocore.exceptions as bex
        from botocore.parsers import ResponseParserError

        method = getattr(self.client, operation)
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
        self.out.write(to_json(response) if self.options.json else text)

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


def make_client(creds: Credentials, options: Options) -> Any:
    import boto3
    from botocore.config import Config

    from econe.client import version

    if not options.verify_ssl:
        warnings.filterwarnings("ignore", message="Unverified HTTPS request")
    config = Config(
        region_name=options.region,
        retries={"mode": "standard", "total_max_attempts": 1 + max(0, options.retries)},
        connect_timeout=min(options.timeout, 30),
        read_timeout=options.timeout,
        user_agent_extra=f"econe-cli/{version()}",
    )
    session = boto3.session.Session(
        aws_access_key_id=creds.access_key,
        aws_secret_access_key=creds.secret_key,
        region_name=options.region,
    )
    return session.client("ec2", endpoint_url=creds.url, config=config, verify=options.verify_ssl)
