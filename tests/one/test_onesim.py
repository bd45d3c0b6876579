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


def test_user_directory_from_onesim_and_sigv4(tmp_path):
    """The whole identity path: pool read as serveradmin, boto-signed request -> principal,
    then oned accepts the impersonated session for that principal."""
    from econe.auth.authenticator import Authenticator
    from econe.auth.users import UserDirectory
    from econe.config import Config
    from tests.auth.conftest import sign_v4

    sim = SimServer(str(tmp_path / "state"), port=0, seed="demo", speed=0).start()
    try:
        auth_file = tmp_path / "ec2_auth"
        auth_file.write_text(sim.ec2_auth + "\n")
        auth_file.chmod(0o600)
        sessions = ServerCipherSessions(auth_file)
        client = OneClient(sim.url, timeout=10)
        config = Config(host="localhost", port=4567, one_xmlrpc=sim.url)
        users = UserDirectory.from_one(config, client, sessions)
        demo = users.get("demo")
        assert demo is not None and demo.auth_driver == "core"
        raw = sign_v4({"Action": "DescribeInstances"}, key="demo", secret=demo.password)
        principal = Authenticator(config, users).authenticate(raw)
        assert principal.name == "demo"
        me = etree.fromstring(
            client.call(sessions.session_for(principal.name), "one.user.info", -1)
        )
        assert int(me.findtext("ID")) == principal.uid
        client.close()
    finally:
        sim.stop()
