"""A throwaway PKI and a real nginx TLS front, both living in a pytest tmp directory.

`make_pki` issues a CA, a server certificate for localhost/127.0.0.1 and client certificates;
`Nginx` renders one of the documented site configs in docs/nginx/ (placeholders filled in),
wraps it in a minimal main config whose pid, logs and temp paths are in tmp, and runs
`nginx -g 'daemon off; master_process off;'` on loopback. Nothing under /etc is touched.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REPO = Path(__file__).resolve().parents[2]
NGINX_DOCS = REPO / "docs" / "nginx"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

_SHORT = {
    NameOID.COUNTRY_NAME: "C",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.LOCALITY_NAME: "L",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.COMMON_NAME: "CN",
    NameOID.EMAIL_ADDRESS: "emailAddress",
}


def one_dn(name: x509.Name) -> str:
    """The DN as OpenNebula's x509 driver stores it: OpenSSL's one-line form
    (`/C=ES/O=ONE/CN=Jane Doe`) with every whitespace character written as `\\<hex>`."""
    text = "".join(f"/{_SHORT.get(a.oid, a.oid.dotted_string)}={a.value}" for a in name)
    return "".join(f"\\{ord(c):x}" if c.isspace() else c for c in text)


@dataclass
class Identity:
    cert: Path
    key: Path
    pem: str
    dn: str  # escaped, as OpenNebula stores it

    @property
    def nginx_header(self) -> str:
        """SSL_CLIENT_CERT as nginx's $ssl_client_escaped_cert sends it (URL-encoded PEM)."""
        return quote(self.pem, safe="")

    @property
    def apache_header(self) -> str:
        """The PEM on one line, newlines turned into spaces (Apache's `%{SSL_CLIENT_CERT}s`)."""
        return " ".join(self.pem.strip().splitlines())


@dataclass
class Pki:
    dir: Path
    ca: Path
    server: Identity
    clients: dict[str, Identity] = field(default_factory=dict)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(**attrs: str) -> x509.Name:
    oids = {
        "C": NameOID.COUNTRY_NAME,
        "O": NameOID.ORGANIZATION_NAME,
        "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
        "CN": NameOID.COMMON_NAME,
    }
    return x509.Name([x509.NameAttribute(oids[k], v) for k, v in attrs.items()])


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key, expired: bool = False
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    start, end = (
        (now - dt.timedelta(days=30), now - dt.timedelta(days=1))
        if expired
        else (now - dt.timedelta(hours=1), now + dt.timedelta(days=2))
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
    )


class _Ca:
    def __init__(self, name: x509.Name):
        self.key = _key()
        self.name = name
        self.cert = (
            _builder(name, name, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )

    def issue(
        self, dir: Path, stem: str, subject: x509.Name, *, server: bool, expired: bool = False
    ) -> Identity:
        key = _key()
        builder = _builder(subject, self.name, key.public_key(), expired)
        builder = builder.add_extension(
            x509.BasicConstraints(ca=False, path_length=None), critical=True
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            ).add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        else:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
        cert = builder.sign(self.key, hashes.SHA256())
        pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        cert_path, key_path = dir / f"{stem}.pem", dir / f"{stem}-key.pem"
        cert_path.write_text(pem)
        _write_key(key_path, key)
        return Identity(cert_path, key_path, pem, one_dn(subject))


def make_pki(dir: Path) -> Pki:
    """CA, server cert (localhost, 127.0.0.1), clients `alice`, `bob`, `mallory` (unknown to
    OpenNebula), `alice-expired` (alice's DN, expired) and `rogue` (alice's DN, issued by
    another CA of the same name)."""
    dir.mkdir(parents=True, exist_ok=True)
    ca = _Ca(_name(C="ES", O="econe tests", CN="econe test CA"))
    ca_path = dir / "ca.pem"
    ca_path.write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    pki = Pki(dir, ca_path, ca.issue(dir, "server", _name(CN="localhost"), server=True))
    for stem, cn in (("alice", "Alice Example"), ("bob", "Bob Example"), ("mallory", "Mallory")):
        pki.clients[stem] = ca.issue(
            dir, stem, _name(C="ES", O="ONE", OU="DEV", CN=cn), server=False
        )
    pki.clients["alice-expired"] = ca.issue(
        dir,
        "alice-expired",
        _name(C="ES", O="ONE", OU="DEV", CN="Alice Example"),
        server=False,
        expired=True,
    )
    other = _Ca(_name(C="ES", O="econe tests", CN="econe test CA"))  # same name, other key
    pki.clients["rogue"] = other.issue(
        dir, "rogue", _name(C="ES", O="ONE", OU="DEV", CN="Alice Example"), server=False
    )
    return pki


# ------------------------------------------------------------------------------ nginx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def render(template: Path, values: dict[str, str]) -> str:
    """The documented config with its {{PLACEHOLDERS}} filled in; all of them must be."""
    text = template.read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "{{" not in body, (
        f"unfilled placeholder in {template.name}: {body[body.index('{{') :][:40]}"
    )
    return text


class Nginx:
    """nginx running one rendered site file from docs/nginx/."""

    def __init__(self, dir: Path, site: str, values: dict[str, str]):
        self.dir = dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = int(values["LISTEN"].rsplit(":", 1)[1])
        self.access_log = dir / "econe.access.log"
        values = {"ACCESS_LOG": str(self.access_log), **values}
        self.site = dir / site
        self.site.write_text(render(NGINX_DOCS / site, values))
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (dir / sub).mkdir(exist_ok=True)
        self.error_log = dir / "error.log"
        self.conf = dir / "nginx.conf"
        self.conf.write_text(
            f"""# test wrapper around {site}: everything nginx writes stays in {dir}
pid {dir}/nginx.pid;
error_log {self.error_log} info;
events {{ worker_connections 64; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {self.site};
}}
"""
        )
        self.proc: subprocess.Popen | None = None

    def cmd(self, *extra: str) -> list[str]:
        return [NGINX, "-p", str(self.dir), "-e", str(self.error_log), "-c", str(self.conf), *extra]

    def start(self, timeout: float = 15) -> Nginx:
        check = subprocess.run(self.cmd("-t"), capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, f"nginx -t failed:\n{check.stderr}"
        self.proc = subprocess.Popen(
            self.cmd("-g", "daemon off; master_process off;"),
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "stderr.log", "wb"),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not open its port: {self.log()}")

    def log(self) -> str:
        parts = []
        for path in (self.dir / "stderr.log", self.error_log):
            if path.exists():
                parts.append(path.read_text()[-3000:])
        return "\n".join(parts)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


def nginx_available() -> bool:
    return os.path.exists(NGINX) and os.access(NGINX, os.X_OK)
