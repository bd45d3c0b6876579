"""Errors of the econe CLI and the exit code each one means."""

from __future__ import annotations

EXIT_OK = 0
EXIT_EC2_ERROR = 1  # the endpoint answered with an EC2 error (or something unusable)
EXIT_USAGE = 2  # bad arguments, missing credentials, unreadable files
EXIT_UNREACHABLE = 3  # no answer from the endpoint: refused, DNS, TLS, timeout


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


class ServerError(CliError):
    """An EC2 error document from the server: printed as ``econe: <Code>: <Message>``."""

    exit_code = EXIT_EC2_ERROR

    def __init__(self, code: str, message: str, request_id: str | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.error_message = message
        self.request_id = request_id
