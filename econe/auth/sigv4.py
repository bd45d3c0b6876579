"""AWS Signature Version 4, in the Authorization header or presigned in the query string.

Verified over exactly what the client declared: its credential scope (region and service are
whatever it signed; boto2 signs region `0`, service `127` for 127.0.0.1), its SignedHeaders (the
JS SDK signs eight), the Host header as received (port included) and the raw body.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote

from econe.auth.common import (
    incomplete_signature,
    parse_amz_date,
    request_expired,
    rfc3986,
    signature_mismatch,
)
from econe.context import RawRequest
from econe.errors import Ec2Error

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED = "UNSIGNED-PAYLOAD"
MAX_PRESIGN_EXPIRES = 7 * 24 * 3600  # AWS's limit for X-Amz-Expires
_AUTH_PARAM = re.compile(r"([A-Za-z]+)=([^,\s]*)")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass(frozen=True)
class SigV4Credential:
    """What the client declared; `signature` is only compared, never logged."""

    access_key: str
    date: str
    region: str
    service: str
    terminator: str
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str
    presigned: bool
    expires: int | None = None

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{self.terminator}"

    def __repr__(self) -> str:  # keep the signature out of any log line
        return f"SigV4Credential({self.access_key!r}, {self.scope!r}, presigned={self.presigned})"


def query_pairs(query_string: str | bytes) -> list[tuple[str, str]]:
    """Decoded (name, value) pairs in order; bytes that are not UTF-8 survive as surrogates so
    that re-encoding gives the original bytes back."""
    if isinstance(query_string, bytes):
        query_string = query_string.decode("latin-1")
    return parse_qsl(query_string, keep_blank_values=True, errors="surrogateescape")


def is_header_auth(req: RawRequest) -> bool:
    auth = req.headers.get("authorization", "")
    return auth[: len(ALGORITHM)].upper() == ALGORITHM


def is_presigned(req: RawRequest) -> bool:
    return any(k == "X-Amz-Algorithm" for k, _ in query_pairs(req.query_string))


def _split_credential(credential: str) -> tuple[str, str, str, str, str]:
    parts = credential.rsplit("/", 4)  # the access key itself may contain '/'
    if len(parts) != 5 or not all(parts):
        raise incomplete_signature(
            "Credential must have the form <access key>/<date>/<region>/<service>/aws4_request, "
            f"not {credential!r}."
        )
    return parts[0], parts[1], parts[2], parts[3], parts[4]


# A request has a few dozen headers at most; every name in SignedHeaders puts its header's
# value into the string that is hashed, so a repeated name (or thousands of them) would make
# a small request cost gigabytes before any secret is checked.
MAX_SIGNED_HEADERS = 64


def _signed_headers(value: str) -> tuple[str, ...]:
    names = tuple(h.strip().lower() for h in value.split(";") if h.strip())
    if "host" not in names:
        raise incomplete_signature("SignedHeaders must include host.")
    if len(set(names)) != len(names):
        raise incomplete_signature("SignedHeaders names a header more than once.")
    if len(names) > MAX_SIGNED_HEADERS:
        raise incomplete_signature(f"SignedHeaders names more than {MAX_SIGNED_HEADERS} headers.")
    return names


def parse_header(req: RawRequest) -> SigV4Credential:
    """Read `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`
    (with or without spaces after the commas)."""
    auth = req.headers.get("authorization", "")
    fields = dict(_AUTH_PARAM.findall(auth[len(ALGORITHM) :]))
    missing = [k for k in ("Credential", "SignedHeaders", "Signature") if not fields.get(k)]
    if missing:
        raise incomplete_signature(
            f"Authorization header requires {', '.join(missing)}: "
            "AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…"
        )
    amz_date = req.headers.get("x-amz-date", "").strip()
    if not amz_date:
        raise incomplete_signature("Authorization header requires an X-Amz-Date header.")
    akid, date, region, service, term = _split_credential(fields["Credential"])
    return SigV4Credential(
        akid,
        date,
        region,
        service,
        term,
        _signed_headers(fields["SignedHeaders"]),
        fields["Signature"],
        amz_date,
        presigned=False,
    )


def parse_presigned(req: RawRequest) -> SigV4Credential:
    """Read the X-Amz-* query parameters of a presigned URL."""
    q = dict(query_pairs(req.query_string))
    needed = ("X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders")
    missing = [k for k in (*needed, "X-Amz-Signature") if not q.get(k)]
    if missing:
        raise incomplete_signature(f"Presigned request requires {', '.join(missing)}.")
    if q["X-Amz-Algorithm"] != ALGORITHM:
        raise incomplete_signature(f"X-Amz-Algorithm must be {ALGORITHM}.")
    try:
        expires = int(q["X-Amz-Expires"])
    except ValueError:
        expires = -1
    if not 1 <= expires <= MAX_PRESIGN_EXPIRES:
        raise Ec2Error(
            "InvalidParameterValue",
            f"Value ({q['X-Amz-Expires']}) for parameter X-Amz-Expires is invalid: "
            f"it must be between 1 and {MAX_PRESIGN_EXPIRES} seconds.",
        )
    akid, date, region, service, term = _split_credential(q["X-Amz-Credential"])
    return SigV4Credential(
        akid,
        date,
        region,
        service,
        term,
        _signed_headers(q["X-Amz-SignedHeaders"]),
        q["X-Amz-Signature"],
        q["X-Amz-Date"].strip(),
        presigned=True,
        expires=expires,
    )


def _payload_hash(req: RawRequest) -> str:
    declared = req.headers.get("x-amz-content-sha256")
    if declared is None:
        return hashlib.sha256(req.body).hexdigest()
    declared = declared.strip()
    if declared == UNSIGNED or declared.startswith("STREAMING-"):
        # For EC2 the form body carries the Action and all its parameters: leaving it unsigned
        # would let anyone who sees one request rewrite it. Only bodiless requests may say so.
        if req.body:
            raise signature_mismatch(f"{declared} is not accepted for a request with a body.")
        return declared
    actual = hashlib.sha256(req.body).hexdigest().encode()
    # bytes: compare_digest refuses str with non-ASCII characters (a header may carry any)
    if not hmac.compare_digest(declared.lower().encode("utf-8", "surrogateescape"), actual):
        raise signature_mismatch("The x-amz-content-sha256 header does not match the body.")
    return declared


def canonical_request(req: RawRequest, cred: SigV4Credential) -> str:
    # RawRequest.path is decoded (ASGI scope["path"]); the client encoded it once on the wire
    # and SigV4 for non-S3 services encodes that again (botocore does the same).
    path = quote(quote(req.path or "/", safe="/~"), safe="/~")
    pairs = [
        (rfc3986(k), rfc3986(v))
        for k, v in query_pairs(req.query_string)
        if not (cred.presigned and k == "X-Amz-Signature")
    ]
    query = "&".join(f"{k}={v}" for k, v in sorted(pairs))
    headers = "".join(
        f"{name}:{' '.join(req.headers.get(name, '').split())}\n" for name in cred.signed_headers
    )
    return "\n".join(
        [
            req.method.upper(),
            path,
            query,
            headers,
            ";".join(cred.signed_headers),
            _payload_hash(req),
        ]
    )


def signing_key(secret: str, cred: SigV4Credential) -> bytes:
    key = ("AWS4" + secret).encode("utf-8")
    for part in (cred.date, cred.region, cred.service, cred.terminator):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


def expected_signature(req: RawRequest, cred: SigV4Credential, secret: str) -> str:
    creq = canonical_request(req, cred)
    sts = "\n".join(
        [ALGORITHM, cred.amz_date, cred.scope, hashlib.sha256(creq.encode("utf-8")).hexdigest()]
    )
    return hmac.new(signing_key(secret, cred), sts.encode("utf-8"), hashlib.sha256).hexdigest()


def verify(req: RawRequest, cred: SigV4Credential, secret: str, *, now: float, window: int) -> None:
    """Raise SignatureDoesNotMatch, RequestExpired or IncompleteSignature; return if valid."""
    try:
        signed_at = parse_amz_date(cred.amz_date)
    except ValueError:
        raise incomplete_signature(
            f"X-Amz-Date {cred.amz_date!r} is not of the form YYYYMMDDTHHMMSSZ."
        ) from None
    if cred.date != cred.amz_date[:8]:
        raise signature_mismatch(
            "The date in the credential scope does not match the date of X-Amz-Date."
        )
    if not _HEX64.match(cred.signature):
        raise signature_mismatch()
    good = expected_signature(req, cred, secret)
    if not hmac.compare_digest(good, cred.signature.lower()):
        raise signature_mismatch()
    # Time is checked only once the signature holds, so only the key holder learns about it.
    if signed_at > now + window:
        raise request_expired(f"X-Amz-Date {cred.amz_date} is in the future.")
    if cred.presigned:
        if now > signed_at + (cred.expires or 0):
            raise request_expired(
                f"The presigned URL expired at {cred.amz_date} + {cred.expires} seconds."
            )
    elif now - signed_at > window:
        raise request_expired(
            f"X-Amz-Date {cred.amz_date} is more than {window} seconds in the past."
        )
