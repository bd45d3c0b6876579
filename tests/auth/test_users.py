"""UserDirectory: parsing, TTL, rate-limited refresh, thread safety."""

from __future__ import annotations

import threading
import time

import pytest

from econe.auth.users import UserDirectory, UserPoolUnavailable, parse_user_pool

from .conftest import X509_DN, Pool, user_xml


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_parse_records():
    users = {u.name: u for u in parse_user_pool(Pool()())}
    alice = users["alice"]
    assert (alice.id, alice.gid, alice.groups, alice.auth_driver, alice.enabled) == (
        2,
        1,
        (1,),
        "core",
        True,
    )
    assert users["dis"].enabled is False
    kim = users["kim"]
    assert kim.template["SSH_PUBLIC_KEY"] == "ssh-ed25519 AAAA"
    assert [k["ACCESS_KEY_ID"] for k in kim.access_keys()] == ["AKIAKIM1", "AKIAKIM2"]
    assert alice.password not in repr(alice)


def test_single_access_key_vector():
    xml = Pool(
        [
            user_xml(
                9,
                "z",
                "ldap",
                template=(
                    "<EC2_ACCESS_KEYS><ACCESS_KEY_ID>A1</ACCESS_KEY_ID><SECRET>s</SECRET></EC2_ACCESS_KEYS>"
                ),
            )
        ]
    )()
    (user,) = parse_user_pool(xml)
    assert user.access_keys() == [{"ACCESS_KEY_ID": "A1", "SECRET": "s"}]


def test_lookups():
    users = UserDirectory(Pool())
    assert users.get("alice").id == 2
    assert users.get("nobody") is None
    assert users.find_by_dn(X509_DN).name == "carol"
    assert users.find_by_dn("/CN=other").name == "carol"
    assert users.find_by_dn("/CN=alice") is None
    named, (user, entry) = users.find_signer("AKIAKIM1")
    assert named is None and (user.name, entry["SECRET"]) == ("kim", "kim-secret-1")
    assert users.find_signer("alice")[0].id == 2
    assert users.find_signer("nobody") == (None, None)


def test_ttl_refresh():
    pool, clock = Pool(), Clock()
    users = UserDirectory(pool, ttl=60, min_refresh_interval=2, clock=clock)
    users.get("alice")
    clock.now += 59
    users.get("alice")
    assert pool.calls == 1
    clock.now += 2
    users.get("alice")
    assert pool.calls == 2


def test_miss_refresh_is_rate_limited():
    pool, clock = Pool(), Clock()
    users = UserDirectory(pool, ttl=60, min_refresh_interval=2, clock=clock)
    for _ in range(100):
        assert users.get("ghost") is None
        assert users.find_by_dn("/CN=ghost") is None
        assert users.find_signer("AKIAGHOST") == (None, None)
    assert pool.calls == 1
    clock.now += 2.1
    users.get("ghost")
    users.get("ghost")
    assert pool.calls == 2


def test_failed_ttl_refresh_serves_stale_pool():
    pool, clock = Pool(), Clock()
    state = {"down": False, "calls": 0}

    def fetch():
        state["calls"] += 1
        if state["down"]:
            raise ConnectionRefusedError("oned is down")
        return pool()

    users = UserDirectory(fetch, ttl=60, min_refresh_interval=2, clock=clock)
    assert users.get("alice") is not None
    state["down"] = True
    clock.now += 61
    assert users.get("alice") is not None  # stale but answering
    assert state["calls"] == 2
    assert users.get("alice") is not None
    assert state["calls"] == 2  # not retried before min_refresh_interval
    clock.now += 3
    state["down"] = False
    assert users.get("alice") is not None
    assert state["calls"] == 3


def test_first_fetch_failure_raises():
    def broken():
        return "<USER_POOL><USER>"  # not XML

    with pytest.raises(UserPoolUnavailable):
        UserDirectory(broken).get("alice")


def test_concurrent_misses_share_one_fetch():
    calls = []

    def slow_pool():
        calls.append(1)
        time.sleep(0.05)
        return Pool()()

    users = UserDirectory(slow_pool, ttl=60, min_refresh_interval=2)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(users.get("alice"))) for _ in range(16)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert all(r is not None and r.name == "alice" for r in results)


def test_server_directory_reads_the_pool_as_serveradmin():
    """econe/app.py builds UserDirectory.from_one(config, one_client, sessions)."""
    from econe.config import Config

    class FakeClient:
        def __init__(self):
            self.calls = []

        def call(self, session, method, *args):
            self.calls.append((session, method, args))
            return Pool()()

    class FakeSessions:
        seal_key, srv_user = b"k" * 32, "serveradmin"

        def admin_session(self):
            return "serveradmin:serveradmin:tok"

    client = FakeClient()
    users = UserDirectory.from_one(
        Config(user_cache_ttl=5.0, user_confirm_ttl=2.5), client, FakeSessions()
    )
    assert (users.ttl, users.confirm_ttl) == (5.0, 2.5)
    assert users.get("alice").id == 2
    assert client.calls == [("serveradmin:serveradmin:tok", "one.userpool.info", ())]


def test_user_created_after_the_last_read_is_found_at_once():
    """The first miss after a read refreshes (a user created moments ago works at once); the
    next misses wait for min_refresh_interval."""
    from .conftest import USERS

    pool, clock = Pool([u for u in USERS if "<NAME>kim<" not in u]), Clock()
    users = UserDirectory(pool, ttl=60, min_refresh_interval=2, clock=clock)
    assert users.get("alice") is not None
    pool.users = list(USERS)  # kim is created
    clock.now += 0.5
    assert users.get("kim") is not None
    assert pool.calls == 2
    for _ in range(20):
        clock.now += 0.05
        assert users.get("ghost") is None
    assert pool.calls == 2
    clock.now += 2
    assert users.get("ghost") is None
    assert pool.calls == 3


@pytest.mark.parametrize(("key", "value"), [("user_confirm_ttl", "-1"), ("user_cache_ttl", ".inf")])
def test_cache_times_must_be_seconds(tmp_path, key, value):
    from econe.config import ConfigError, load_config

    conf = tmp_path / "econe.conf"
    conf.write_text(f":{key}: {value}\n")
    with pytest.raises(ConfigError, match=f":{key}:"):
        load_config(conf)
