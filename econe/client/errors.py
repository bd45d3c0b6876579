"""Errors of the econe CLI and the exit code each one means."""

from __future__ import annotations

EXIT_OK = 0
EXIT_EC2_ERROR = 1  # the endpoint answered with an EC2 error (or something unusable)
EXIT_USAGE = 2  # bad arguments, missing credentials, unreadable files
EXIT_UNREACHABLE = 3  # no answer from the endpoint: refused, DNS, TLS, timeout
EXIT_WAIT_TIMEOUT = 4  # --wait gave up: the state was not reached within --wait-timeout


class CliError(Exception):
    """An error printed as ``econe: <message>`` with ``exit_code``."""

    exit_code = EXIT_EC2_ERROR

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class UsageError(CliError):
    exit_code = EXIT_USAGE


class EndpointUnreachable(CliError):
    exit_code = EXIT_UNREACHABLE


class WaitTimeout(CliError):
    exit_code = EXIT_WAIT_TIMEOUT


def error_document(body: bytes) -> ServerError | None:
    """The ServerError an EC2 error document states (`<Response><Errors><Error><Code>…`, as
    EC2 and the Ruby econe-server send it, the latter with HTTP 200), else None."""
    from xml.etree import ElementTree

    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return None
    found = {el.tag.rpartition("}")[2]: (el.text or "").strip() for el in root.iter()}
    if root.tag.rpartition("}")[2] not in ("Response", "ErrorResponse") and "Code" not in found:
        return None
    request_id = found.get("RequestID") or found.get("RequestId") or found.get("requestId")
    return ServerError(found.get("Code") or "UnknownError", found.get("Message", ""), request_id)


def root_tag(body: bytes) -> str | None:
    """The local name of the document's root element (read from its start only), or None."""
    from xml.etree import ElementTree

    parser = ElementTree.XMLPullParser(events=("start",))
    try:
        parser.feed(body[:4096])
        for _, element in parser.read_events():
            return element.tag.rpartition("}")[2]
    except ElementTree.ParseError:
        pass
    return None


def not_ec2_answer(url: str, body: bytes) -> CliError:
    """The error for an answer that is neither the action's own nor an EC2 error document:
    what a wrong endpoint (oned's XML-RPC port, a web server) sends."""
    root = root_tag(body)
    what = f"<{root}>" if root else "not XML"
    return CliError(f"bad answer from {url}: not an EC2 answer ({what})")


class ServerError(CliError):
    """An EC2 error document from the server: printed as ``econe: <Code>: <Message>``."""

    exit_code = EXIT_EC2_ERROR

    def __init__(self, code: str, message: str, request_id: str | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.error_message = message
        self.request_id = request_id
