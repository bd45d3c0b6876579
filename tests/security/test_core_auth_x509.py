"""`:core_auth: x509`: econe calls oned with server_x509 tokens signed by its certificate.

onesim checks them as oned's server_x509 driver does (the server user's password is the
certificate's DN; the token decrypts with the certificate's public key), so a wrong key gets
nothing done.
"""

from __future__ import annotations

import datetime
import subprocess
import sys
import xmlrpc.client
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from onesim.auth import x509_dn
from onesim.server import SimServer
from tests.e2e.conftest import Demo, free_port, stop_demo, wait_for_port

BIN = Path(sys.executable).parent


def server_cert(tmp: Path, name: str) -> tuple[Path, Path, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "econe test"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / f"{name}.pem", tmp / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path, cert


def start_econe(tmp: Path, sim: SimServer, cert: Path, key: Path):
    conf_dir = tmp / "etc"
    conf_dir.mkdir(exist_ok=True)
    (conf_dir / "server_x509_auth.conf").write_text(
        f":srv_user: x509srv\n:one_cert: {cert}\n:one_key: {key}\n"
    )
    port = free_port()
    conf = conf_dir / "econe.conf"
    conf.write_text(
        f":one_xmlrpc: {sim.url}\n:host: 127.0.0.1\n:port: {port}\n:core_auth: x509\n"
        f":server_x509_auth: {conf_dir / 'server_x509_auth.conf'}\n"
    )
    log = tmp / "econe.log"
    proc = subprocess.Popen(
        [str(BIN / "econe-server"), "run", "--config", str(conf)],
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, proc)
    except RuntimeError as exc:
        proc.kill()
        raise RuntimeError(f"{exc}\n{log.read_text()}") from exc
    return proc, Demo(f"http://127.0.0.1:{port}", port, sim.url, Path(sim.state_dir), log, "")


@pytest.fixture
def sim(tmp_path):
    cert, _key, certificate = server_cert(tmp_path, "econe-server")
    sim = SimServer(str(tmp_path / "one"), port=0, seed="demo", speed=0, server_x509_cert=str(cert))
    sim.start()
    admin = xmlrpc.client.ServerProxy(sim.url)
    ok, uid, *_ = admin.one.user.allocate(
        sim.one_auth, "x509srv", x509_dn(certificate.subject), "server_x509", [0]
    )
    assert ok, uid
    yield sim, admin
    sim.stop()


def vm_owners(sim: SimServer, admin) -> list[str]:
    ok, pool, *_ = admin.one.vmpool.info(sim.one_auth, -2, -1, -1, -2)
    assert ok, pool
    return [part.split("</UNAME>")[0] for part in pool.split("<UNAME>")[1:]]


def test_econe_acts_as_the_user_with_server_x509_tokens(tmp_path, sim):
    sim, admin = sim
    cert = tmp_path / "econe-server.pem"
    proc, demo = start_econe(tmp_path, sim, cert, tmp_path / "econe-server.key")
    try:
        ec2 = demo.client()
        res = ec2.run_instances(ImageId="ami-00000000", MinCount=1, MaxCount=1)
        iid = res["Instances"][0]["InstanceId"]
        listed = ec2.describe_instances(InstanceIds=[iid])
        assert listed["Reservations"][0]["Instances"][0]["InstanceId"] == iid
        assert vm_owners(sim, admin) == ["demo"]  # created as demo, not as the server user
    finally:
        stop_demo(proc)


def test_a_key_oned_does_not_know_gets_nothing_done(tmp_path, sim):
    """A server key oned does not trust: econe does not start (one line saying so), so no
    request is served with it."""
    sim, admin = sim
    other_cert, other_key, _ = server_cert(tmp_path, "impostor")
    with pytest.raises(RuntimeError) as exc:
        start_econe(tmp_path, sim, other_cert, other_key)
    assert "exited with 2" in str(exc.value)
    assert "refuses the server credentials of :server_x509_auth:" in str(exc.value)
    assert vm_owners(sim, admin) == []
