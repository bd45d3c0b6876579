"""Integration: a server_cipher session made by econe is accepted by onesim as the user."""

from __future__ import annotations

from lxml import etree

from econe.one.client import AUTHENTICATION, OneClient, OneError
from econe.one.session import ServerCipherSessions
from onesim.server import SimServer


def test_server_cipher_session_acts_as_demo(tmp_path):
    sim = SimServer(str(tmp_path / "state"), port=0, seed="demo", speed=0).start()
    try:
        auth = tmp_path / "ec2_auth"
        auth.write_text(sim.ec2_auth + "\n")
        auth.chmod(0o600)
        sessions = ServerCipherSessions(auth)
        client = OneClient(sim.url, timeout=10)
        user = etree.fromstring(client.call(sessions.session_for("demo"), "one.user.info", -1))
        assert user.findtext("NAME") == "demo"
        admin = etree.fromstring(client.call(sessions.admin_session(), "one.user.info", -1))
        assert admin.findtext("NAME") == "serveradmin"
        wrong = auth.parent / "wrong_auth"
        wrong.write_text("serveradmin:not-the-password\n")
        wrong.chmod(0o600)
        try:
            client.call(ServerCipherSessions(wrong).session_for("demo"), "one.user.info", -1)
        except OneError as exc:
            assert exc.code == AUTHENTICATION
        else:
            raise AssertionError("a token made with the wrong password was accepted")
        client.close()
    finally:
        sim.stop()
