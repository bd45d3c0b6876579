"""EC2 errors: one exception type, rendered as EC2 XML in one place."""

from __future__ import annotations

import re
from xml.sax.saxutils import escape

# Characters outside the XML 1.0 Char production make the document unparseable (botocore then
# raises ResponseParserError instead of ClientError), so they are dropped, not escaped.
_NOT_XML_CHAR = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

# HTTP status per EC2 error code where AWS does not answer 400.
_STATUS = {
    "AuthFailure": 401,
    "SignatureDoesNotMatch": 403,
    "MissingAuthenticationToken": 403,
    "UnauthorizedOperation": 403,
    "OptInRequired": 403,
    "DryRunOperation": 412,
    "InternalError": 500,
    "InsufficientInstanceCapacity": 500,  # a server error for EC2, whichever action meets it
    "Unavailable": 503,
    "ServiceUnavailable": 503,
    "RequestLimitExceeded": 503,
}


def xml_text(value: object) -> str:
    """Escape a value for XML text or attribute content, dropping non-XML characters."""
    return escape(_NOT_XML_CHAR.sub("", str(value)), {'"': "&quot;"})


class Ec2Error(Exception):
    """An error the client sees as `<Error><Code>code</Code><Message>message</Message>`."""

    def __init__(self, code: str, message: str, status: int | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status if status is not None else _STATUS.get(code, 400)


def error_xml(code: str, message: str, request_id: str) -> str:
    """The EC2 error document botocore parses into ClientError."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{xml_text(code)}</Code>"
        f"<Message>{xml_text(message)}</Message></Error></Errors>"
        f"<RequestID>{xml_text(request_id)}</RequestID></Response>"
    )


def missing_parameter(name: str) -> Ec2Error:
    return Ec2Error("MissingParameter", f"The request must contain the parameter {name}")


def invalid_value(name: str, value: object, why: str = "") -> Ec2Error:
    text = f"Value ({value}) for parameter {name} is invalid."
    return Ec2Error("InvalidParameterValue", f"{text} {why}".strip())


def dry_run_succeeded() -> Ec2Error:
    """What EC2 answers to a `DryRun=true` request that would have succeeded."""
    return Ec2Error("DryRunOperation", "Request would have succeeded, but DryRun flag is set.")
