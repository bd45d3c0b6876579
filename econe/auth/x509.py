"""Client certificates passed by a TLS proxy, and DNs written the way OpenNebula stores them.

OpenNebula's x509 driver keeps the subject in OpenSSL's one-line form (`/C=ES/O=ONE/CN=Alice`,
Ruby's `X509::Name#to_s`) with every whitespace character replaced by a backslash and its hex
code (`CN=Alice\\20Smith`); a user's PASSWORD lists such DNs separated by `|`.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC
from urllib.parse import unquote

from cryptography import x509
from cryptography.x509.oid import NameOID

from econe.auth.common import auth_failure

# OpenSSL short names (what X509_NAME_oneline prints) for the attribute types seen in DNs.
_SHORT = {
    NameOID.COUNTRY_NAME: "C",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.LOCALITY_NAME: "L",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.COMMON_NAME: "CN",
    NameOID.EMAIL_ADDRESS: "emailAddress",
    NameOID.DOMAIN_COMPONENT: "DC",
    NameOID.USER_ID: "UID",
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.SURNAME: "SN",
    NameOID.GIVEN_NAME: "GN",
    NameOID.TITLE: "title",
    NameOID.INITIALS: "initials",
    NameOID.PSEUDONYM: "pseudonym",
    NameOID.GENERATION_QUALIFIER: "generationQualifier",
    NameOID.DN_QUALIFIER: "dnQualifier",
    NameOID.STREET_ADDRESS: "street",
    NameOID.POSTAL_CODE: "postalCode",
    NameOID.BUSINESS_CATEGORY: "businessCategory",
}
_WHITESPACE = re.compile(r"[ \t\n\r\f\v]")  # Ruby's \s
_PEM = re.compile(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.DOTALL)


def oneline_dn(name: x509.Name) -> str:
    """`/C=ES/O=ONE/CN=Alice Smith` (RDNs in certificate order, multi-valued joined by `+`)."""
    parts = []
    for rdn in name.rdns:
        attrs = [f"{_SHORT.get(a.oid, a.oid.dotted_string)}={a.value}" for a in rdn]
        parts.append("+".join(attrs))
    return "".join("/" + p for p in parts)


def escape_dn(dn: str) -> str:
    """Each whitespace character -> `\\` + its hex code, as OpenNebula's x509 driver does."""
    return _WHITESPACE.sub(lambda m: "\\" + format(ord(m.group()), "x"), dn)


def escaped_dn(name: x509.Name) -> str:
    return escape_dn(oneline_dn(name))


def load_client_cert(header: str) -> x509.Certificate:
    """Parse the SSL_CLIENT_CERT header: a PEM block whose newlines the proxy may have turned
    into spaces (Apache) or tabs, or that is URL-encoded (nginx `$ssl_client_escaped_cert`)."""
    text = header.strip()
    if "%" in text and "-----BEGIN CERTIFICATE-----" not in text:
        text = unquote(text)
    match = _PEM.search(text)
    if not match:
        raise auth_failure("SSL_CLIENT_CERT does not hold a PEM certificate.")
    body = re.sub(r"\s+", "", match.group(1))
    try:
        der = base64.b64decode(body, validate=True)
        return x509.load_der_x509_certificate(der)
    except ValueError:
        raise auth_failure("SSL_CLIENT_CERT does not hold a readable certificate.") from None


def check_validity(cert: x509.Certificate, now: float) -> None:
    """The proxy verified the chain; still refuse a certificate outside its validity period."""
    start = cert.not_valid_before_utc.replace(tzinfo=UTC).timestamp()
    end = cert.not_valid_after_utc.replace(tzinfo=UTC).timestamp()
    if not start <= now <= end:
        raise auth_failure("The client certificate is not valid at this time.")


_PROXY_CERT_INFO = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.14")  # RFC 3820


def is_proxy_certificate(cert: x509.Certificate) -> bool:
    """A proxy certificate (RFC 3820, or a legacy Globus proxy): it carries ProxyCertInfo, or
    its subject is its issuer's DN plus one CN. Only these may log in as their issuer."""
    try:
        cert.extensions.get_extension_for_oid(_PROXY_CERT_INFO)
        return True
    except x509.ExtensionNotFound:
        pass
    issuer, subject = list(cert.issuer.rdns), list(cert.subject.rdns)
    if len(subject) != len(issuer) + 1 or subject[: len(issuer)] != issuer:
        return False
    return all(a.oid == x509.NameOID.COMMON_NAME for a in subject[-1])
