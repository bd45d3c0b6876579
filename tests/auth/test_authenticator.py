"""Authenticator: scheme choice, per-user EC2 keys, x509 and remote modes."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from econe.auth.authenticator import Authenticator
from econe.auth.users import UserDirectory
from econe.auth.x509 import escaped_dn
from econe.config import Config
from econe.context import RawRequest
from econe.errors import Ec2Error
from econe.keyseal import seal

from .conftest import (
    DESCRIBE,
    SEAL_KEY,
    USERS,
    X509_DN,
    Pool,
    _code,
    presign_v4,
    sign_v2,
    sign_v4,
    user_xml,
)


def _raw(headers=None, params=None, client_addr="127.0.0.1", query=""):
    return RawRequest(
        "GET",
        "/",
        query,
        {"host": "localhost:4567", **(headers or {})},
        b"",
        dict(params or DESCRIBE),
        client_addr,
    )


def test_no_signature_at_all(auth):
    assert _code(auth, _raw()) == ("MissingAuthenticationToken", 403)


def test_unsupported_authorization_scheme(auth):
    raw = _raw({"authorization": "AWS alice:c2lnbmF0dXJl"})
    assert _code(auth, raw) == ("AuthFailure", 401)


def test_botocore_parses_the_auth_errors_as_client_errors(auth):
    """Every auth refusal renders to the EC2 error XML botocore turns into ClientError."""
    import botocore.session
    from botocore.parsers import create_parser

    from econe.errors import error_xml

    model = botocore.session.get_session().get_service_model("ec2")
    op = model.operation_model("DescribeInstances")
    parser = create_parser("ec2")
    for raw in (_raw(), sign_v4(DESCRIBE, secret="bad"), sign_v4(DESCRIBE, key="ghost")):
        with pytest.raises(Ec2Error) as exc:
            auth.authenticate(raw)
        body = error_xml(exc.value.code, exc.value.message, "req-1").encode()
        parsed = parser.parse(
            {"status_code": exc.value.status, "headers": {}, "body": body}, op.output_shape
        )
        assert parsed["Error"]["Code"] == exc.value.code
        assert parsed["ResponseMetadata"]["HTTPStatusCode"] == exc.value.status


# ------------------------------------------------------------------ EC2_ACCESS_KEYS


def test_access_key_of_an_ldap_user(auth):
    for raw in (
        sign_v4(DESCRIBE, key="AKIAKIM1", secret="kim-secret-1"),
        sign_v2(DESCRIBE, key="AKIAKIM1", secret="kim-secret-1"),
        presign_v4(DESCRIBE, key="AKIAKIM1", secret="kim-secret-1"),
    ):
        principal = auth.authenticate(raw)
        assert (principal.name, principal.uid, principal.auth_driver) == ("kim", 7, "ldap")
        assert principal.template["SSH_PUBLIC_KEY"] == "ssh-ed25519 AAAA"


def test_inactive_access_key(auth):
    raw = sign_v4(DESCRIBE, key="AKIAKIM2", secret="kim-secret-2")
    assert _code(auth, raw) == ("AuthFailure", 401)


def test_access_key_wrong_secret(auth):
    raw = sign_v4(DESCRIBE, key="AKIAKIM1", secret="kim-secret-2")
    assert _code(auth, raw) == ("SignatureDoesNotMatch", 403)


def test_custom_secret_resolver(config, pool):
    auth = Authenticator(
        config, UserDirectory(pool), secret_resolver=lambda e: "other", seal_key=SEAL_KEY
    )
    assert auth.authenticate(sign_v4(DESCRIBE, key="AKIAKIM2", secret="other")).name == "kim"


# ------------------------------------------------------------------ pool refresh


def test_unknown_keys_do_not_flood_the_pool(config):
    pool = Pool()
    now = [1000.0]
    users = UserDirectory(pool, ttl=60, min_refresh_interval=2, clock=lambda: now[0])
    auth = Authenticator(config, users)
    for _ in range(50):
        assert _code(auth, sign_v4(DESCRIBE, key="ghost"))[0] == "AuthFailure"
    assert pool.calls == 1
    now[0] += 2.5
    _code(auth, sign_v4(DESCRIBE, key="ghost"))
    assert pool.calls == 2


def test_access_keys_do_not_refresh_the_pool(config):
    """An access key id is no user name: its requests must not count as misses (each one
    re-reading the whole user pool every min_refresh_interval)."""
    pool = Pool()
    now = [1000.0]
    users = UserDirectory(pool, ttl=60, min_refresh_interval=2, clock=lambda: now[0])
    auth = Authenticator(config, users, seal_key=SEAL_KEY)
    for _ in range(5):
        now[0] += 3
        raw = sign_v4(DESCRIBE, key="AKIAKIM1", secret="kim-secret-1")
        assert auth.authenticate(raw).name == "kim"
    assert pool.calls == 1


def test_new_user_found_after_refresh(config):
    from .conftest import ALICE_SECRET, USERS, user_xml

    pool = Pool([u for u in USERS if "<NAME>alice<" not in u])
    now = [1000.0]
    auth = Authenticator(config, UserDirectory(pool, clock=lambda: now[0]))
    assert _code(auth, sign_v4(DESCRIBE))[0] == "AuthFailure"
    pool.users.append(user_xml(42, "alice", password=ALICE_SECRET))
    assert _code(auth, sign_v4(DESCRIBE))[0] == "AuthFailure"  # rate-limited: no fetch yet
    now[0] += 3
    assert auth.authenticate(sign_v4(DESCRIBE)).uid == 42


def test_pool_unavailable_is_503(config):
    def down():
        raise ConnectionRefusedError("oned is down")

    auth = Authenticator(config, UserDirectory(down))
    assert _code(auth, sign_v4(DESCRIBE)) == ("Unavailable", 503)


# ------------------------------------------------------------------ :auth: x509


def _name(*parts):
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in parts])


CAROL = _name(
    (NameOID.COUNTRY_NAME, "ES"),
    (NameOID.ORGANIZATION_NAME, "OpenNebula"),
    (NameOID.COMMON_NAME, "Carol Smith"),
)


def _cert(subject, issuer, days=(-1, 30)):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=days[0]))
        .not_valid_after(now + dt.timedelta(days=days[1]))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture
def x509_auth(pool):
    config = Config(auth="x509", trusted_proxies=["127.0.0.1"])
    return Authenticator(config, UserDirectory(pool))


def test_a_dn_on_two_x509_users_belongs_to_nobody(pool):
    """An x509 user listing carol's DN in her own PASSWORD must not capture carol's logins."""
    from urllib.parse import quote

    pem = _cert(CAROL, _name((NameOID.COMMON_NAME, "Test CA")))
    header = quote(pem)
    config = Config(auth="x509", trusted_proxies=["127.0.0.1"])
    mallory = user_xml(12, "mallory", driver="x509", password=f"/CN=Mallory|{X509_DN}")
    for users in ([mallory, *USERS], [*USERS, mallory]):  # pool order must not matter
        auth = Authenticator(config, UserDirectory(Pool(users)))
        with pytest.raises(Ec2Error) as err:
            auth.authenticate(_raw({"ssl_client_cert": header}, params={}))
        assert err.value.code == "AuthFailure"


def test_dn_escaping():
    assert escaped_dn(CAROL) == X509_DN


def test_x509_user(x509_auth):
    pem = _cert(CAROL, _name((NameOID.COMMON_NAME, "Test CA")))
    header = pem.strip().replace("\n", " ")  # Apache passes the PEM with spaces
    principal = x509_auth.authenticate(_raw({"ssl_client_cert": header}, params={}))
    assert (principal.name, principal.via) == ("carol", "x509")


def test_x509_url_encoded_header(x509_auth):
    from urllib.parse import quote

    pem = _cert(CAROL, _name((NameOID.COMMON_NAME, "Test CA")))
    principal = x509_auth.authenticate(_raw({"ssl-client-cert": quote(pem)}))
    assert principal.name == "carol"


def test_x509_proxy_certificate_uses_issuer(x509_auth):
    proxy_subject = _name(*[(a.oid, a.value) for a in CAROL], (NameOID.COMMON_NAME, "proxy"))
    pem = _cert(proxy_subject, CAROL)
    assert x509_auth.authenticate(_raw({"ssl-client-cert": pem})).name == "carol"


def test_x509_issuer_counts_only_for_proxy_certificates(x509_auth):
    """A CA whose DN happens to be a user's must not log every certificate it issued in."""
    pem = _cert(_name((NameOID.COMMON_NAME, "Mallory")), CAROL)
    assert _code(x509_auth, _raw({"ssl-client-cert": pem})) == ("AuthFailure", 401)


def test_x509_untrusted_peer(x509_auth):
    pem = _cert(CAROL, _name((NameOID.COMMON_NAME, "Test CA")))
    raw = _raw({"ssl-client-cert": pem}, client_addr="198.51.100.7")
    assert _code(x509_auth, raw) == ("AuthFailure", 401)


def test_x509_absent_or_null(x509_auth):
    assert _code(x509_auth, _raw())[0] == "MissingAuthenticationToken"
    assert _code(x509_auth, _raw({"ssl-client-cert": "(null)"}))[0] == "MissingAuthenticationToken"


def test_x509_unknown_or_expired_or_garbage(x509_auth):
    stranger = _cert(_name((NameOID.COMMON_NAME, "Mallory")), _name((NameOID.COMMON_NAME, "CA")))
    assert _code(x509_auth, _raw({"ssl-client-cert": stranger}))[0] == "AuthFailure"
    expired = _cert(CAROL, _name((NameOID.COMMON_NAME, "CA")), days=(-10, -1))
    assert _code(x509_auth, _raw({"ssl-client-cert": expired}))[0] == "AuthFailure"
    garbage = "-----BEGIN CERTIFICATE----- bm90IGEgY2VydA== -----END CERTIFICATE-----"
    assert _code(x509_auth, _raw({"ssl-client-cert": garbage}))[0] == "AuthFailure"


# ------------------------------------------------------------------ :auth: remote


@pytest.fixture
def remote_auth(pool):
    return Authenticator(
        Config(auth="remote", trusted_proxies=["::1", "127.0.0.0/8"]), UserDirectory(pool)
    )


def test_remote_user(remote_auth):
    principal = remote_auth.authenticate(_raw({"x-auth-username": "rem"}))
    assert (principal.name, principal.via) == ("rem", "remote")
    assert remote_auth.authenticate(_raw({"remote-user": "rem"}, client_addr="::1")).name == "rem"
    mapped = _raw({"x-auth-username": "rem"}, client_addr="::ffff:127.0.0.2")
    assert remote_auth.authenticate(mapped).name == "rem"


def test_remote_user_rules(remote_auth):
    # public driver with PASSWORD == name only; never from an untrusted peer
    assert _code(remote_auth, _raw({"x-auth-username": "pub"}))[0] == "AuthFailure"
    assert _code(remote_auth, _raw({"x-auth-username": "alice"}))[0] == "AuthFailure"
    assert _code(remote_auth, _raw({"x-auth-username": "ghost"}))[0] == "AuthFailure"
    untrusted = _raw({"x-auth-username": "rem"}, client_addr="192.0.2.5")
    assert _code(remote_auth, untrusted)[0] == "AuthFailure"
    assert _code(remote_auth, _raw())[0] == "MissingAuthenticationToken"


def test_signature_window_uses_clock(config, pool):
    auth = Authenticator(config, UserDirectory(pool), clock=lambda: time.time() + 10_000)
    assert _code(auth, sign_v2(DESCRIBE))[0] == "RequestExpired"


# ------------------------------------------------------------------ fresh user check


class LivePool(Pool):
    """A pool whose users can change; fetch_user answers one.user.info from the same list."""

    def __init__(self):
        super().__init__()
        self.user_calls = 0

    def user(self, uid):
        from lxml import etree

        self.user_calls += 1
        for u in self.users:
            if f"<ID>{uid}</ID><GID>" in u:
                return etree.tostring(etree.fromstring(u))
        err = RuntimeError(f"[one.user.info] Error getting user [{uid}].")
        err.code = 0x400
        raise err


def _live(config, **kw):
    live = LivePool()
    users = UserDirectory(live, fetch_user=live.user, **kw)
    return live, Authenticator(config, users)


def _replace(live, name, new_xml):
    live.users = [new_xml if f"<NAME>{name}</NAME>" in u else u for u in live.users]


def test_user_disabled_while_cached_is_refused_at_once(config):
    from .conftest import ALICE_SECRET, user_xml

    live, auth = _live(config)
    assert auth.authenticate(sign_v4(DESCRIBE)).name == "alice"
    _replace(live, "alice", user_xml(2, "alice", password=ALICE_SECRET, enabled=False))
    assert _code(auth, sign_v4(DESCRIBE)) == ("AuthFailure", 401)
    assert _code(auth, sign_v2(DESCRIBE)) == ("AuthFailure", 401)
    assert live.calls == 1  # the pool was not re-read; one.user.info was


def test_user_deleted_while_cached(config):
    live, auth = _live(config)
    assert auth.authenticate(sign_v4(DESCRIBE)).name == "alice"
    live.users = [u for u in live.users if "<NAME>alice<" not in u]
    assert _code(auth, sign_v4(DESCRIBE)) == ("AuthFailure", 401)


def test_old_secret_refused_after_password_change(config):
    from .conftest import user_xml

    live, auth = _live(config)
    assert auth.authenticate(sign_v4(DESCRIBE)).name == "alice"
    _replace(live, "alice", user_xml(2, "alice", password="f" * 64))
    assert _code(auth, sign_v4(DESCRIBE)) == ("SignatureDoesNotMatch", 403)


def test_new_secret_works_at_once_after_password_change(config):
    """The cached pool still has the old password: a request signed with the new one reads
    the user again and passes; wrong signatures read it at most once per confirm TTL."""
    from .conftest import user_xml

    now = [1000.0]
    live, auth = _live(config, confirm_ttl=1, clock=lambda: now[0])
    assert auth.authenticate(sign_v4(DESCRIBE)).name == "alice"
    new = "e" * 64
    _replace(live, "alice", user_xml(2, "alice", password=new))
    now[0] += 1.5  # the user was confirmed (with the old password) over a confirm TTL ago
    live.user_calls = 0
    assert auth.authenticate(sign_v4(DESCRIBE, secret=new)).name == "alice"
    assert auth.authenticate(sign_v2(DESCRIBE, secret=new)).name == "alice"
    for _ in range(5):
        assert _code(auth, sign_v4(DESCRIBE, secret="0" * 64)) == ("SignatureDoesNotMatch", 403)
    assert live.user_calls == 1  # one re-read served them all


def test_driver_changed_to_ldap_while_cached(config):
    from .conftest import user_xml

    live, auth = _live(config)
    _replace(live, "alice", user_xml(2, "alice", driver="ldap", password="uid=alice"))
    assert _code(auth, sign_v4(DESCRIBE)) == ("AuthFailure", 401)


def test_confirm_ttl_reuses_answers(config):
    live, auth = _live(config, confirm_ttl=30)
    for _ in range(3):
        auth.authenticate(sign_v4(DESCRIBE))
    assert live.user_calls == 1


def test_confirm_ttl_bounds_how_long_a_disabled_user_is_served(config):
    from .conftest import ALICE_SECRET, user_xml

    now = [100.0]
    live, auth = _live(config, confirm_ttl=1.0, clock=lambda: now[0])
    assert auth.authenticate(sign_v4(DESCRIBE)).name == "alice"
    _replace(live, "alice", user_xml(2, "alice", password=ALICE_SECRET, enabled=False))
    now[0] += 0.5
    assert auth.authenticate(sign_v4(DESCRIBE)).name == "alice"  # the answer is reused
    now[0] += 0.5
    assert _code(auth, sign_v4(DESCRIBE)) == ("AuthFailure", 401)
    assert live.user_calls == 2


def test_on_the_loop_answers_from_the_cache_or_asks_for_oned(config):
    """What the front does on the event loop: authenticate without calling oned when the
    caches suffice, else NeedsOned (and then the same call in a worker thread)."""
    from econe.one.client import NeedsOned, no_blocking

    def on_the_loop(raw):
        token = no_blocking.set(True)
        try:
            return auth.authenticate(raw)
        finally:
            no_blocking.reset(token)

    now = [100.0]
    live, auth = _live(config, confirm_ttl=1.0, clock=lambda: now[0])
    with pytest.raises(NeedsOned):  # nothing cached yet: the pool must be read
        on_the_loop(sign_v4(DESCRIBE))
    assert live.calls == 0
    assert auth.authenticate(sign_v4(DESCRIBE)).name == "alice"  # in a worker: reads both
    calls = (live.calls, live.user_calls)
    assert on_the_loop(sign_v4(DESCRIBE)).name == "alice"
    assert (live.calls, live.user_calls) == calls  # no oned call at all
    now[0] += 1.0  # the re-read answer is too old now
    with pytest.raises(NeedsOned):
        on_the_loop(sign_v4(DESCRIBE))
    with pytest.raises(NeedsOned):  # an unknown key may be a new user: a refresh is due
        on_the_loop(sign_v4(DESCRIBE, key="newcomer"))
    assert (live.calls, live.user_calls) == calls


def test_x509_proxy_header_wins_over_client_spelling(x509_auth):
    ca = _name((NameOID.COMMON_NAME, "Test CA"))
    carol = _cert(CAROL, ca)
    stranger = _cert(_name((NameOID.COMMON_NAME, "Mallory")), ca)
    raw = _raw({"ssl_client_cert": stranger, "ssl-client-cert": carol})
    assert _code(x509_auth, raw)[0] == "AuthFailure"
    raw = _raw({"ssl_client_cert": carol, "ssl-client-cert": stranger})
    assert x509_auth.authenticate(raw).name == "carol"


def test_empty_proxy_header_is_not_filled_by_client_spelling(x509_auth, remote_auth):
    carol = _cert(CAROL, _name((NameOID.COMMON_NAME, "Test CA")))
    raw = _raw({"ssl_client_cert": "", "ssl-client-cert": carol})
    assert _code(x509_auth, raw)[0] == "MissingAuthenticationToken"
    raw = _raw({"x-auth-username": "", "remote-user": "rem"})
    assert _code(remote_auth, raw)[0] == "MissingAuthenticationToken"


# ------------------------------------------------------------------ garbage in, EC2 errors out

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_junk = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_auth_values = st.one_of(
    _junk,
    st.builds(lambda t: "AWS4-HMAC-SHA256 " + t, _junk),
    st.builds(
        lambda c, h, s: f"AWS4-HMAC-SHA256 Credential={c}, SignedHeaders={h}, Signature={s}",
        st.one_of(_junk, st.builds(lambda d: f"alice/{d}/r/ec2/aws4_request", _junk)),
        st.one_of(_junk, st.just("host;x-amz-date")),
        st.one_of(_junk, st.from_regex(r"[0-9a-f]{64}", fullmatch=True)),
    ),
)
_param_names = st.sampled_from(
    [
        "AWSAccessKeyId",
        "Signature",
        "SignatureMethod",
        "SignatureVersion",
        "Timestamp",
        "Expires",
        "X-Amz-Algorithm",
        "Action",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    auth_header=st.one_of(st.none(), _auth_values),
    amz_date=st.one_of(st.none(), _junk, st.just("20261123T184254Z")),
    params=st.one_of(
        st.dictionaries(_param_names, _junk, max_size=6),
        st.fixed_dictionaries(
            {"AWSAccessKeyId": st.just("alice"), "Signature": _junk},
            optional={"Timestamp": _junk, "Expires": _junk, "SignatureMethod": _junk},
        ),
    ),
    query=_junk,
    host=_junk,
)
def test_garbage_gives_ec2_errors_only(auth_header, amz_date, params, query, host):
    auth = Authenticator(Config(host="localhost", port=4567), UserDirectory(Pool()))
    headers = {"host": host}
    if auth_header is not None:
        headers["authorization"] = auth_header
    if amz_date is not None:
        headers["x-amz-date"] = amz_date
    raw = RawRequest("POST", "/", query, headers, b"", params, "127.0.0.1")
    try:
        auth.authenticate(raw)
    except Ec2Error as exc:
        assert 400 <= exc.status < 600
    else:
        raise AssertionError("garbage was authenticated")


def test_access_keys_need_the_servers_seal(config, pool):
    no_seal_key = Authenticator(config, UserDirectory(pool))
    raw = sign_v4(DESCRIBE, key="AKIAKIM1", secret="kim-secret-1")
    assert _code(no_seal_key, raw) == ("AuthFailure", 401)
    other_server = Authenticator(config, UserDirectory(pool), seal_key=b"z" * 32)
    assert _code(other_server, raw) == ("AuthFailure", 401)


def _keys(*entries: dict) -> str:
    return "".join(
        "<EC2_ACCESS_KEYS>"
        + "".join(f"<{k}>{v}</{k}>" for k, v in e.items())
        + "</EC2_ACCESS_KEYS>"
        for e in entries
    )


def test_an_unsealed_copy_of_a_key_id_does_not_take_the_key_from_its_owner(config):
    """Key ids are not secret (they travel in every request): a user pasting kim's id into
    their own template, without a seal, must not make it ambiguous and lock kim out."""
    copied = _keys({"ACCESS_KEY_ID": "AKIAKIM1", "SECRET": "x"})
    users = [*USERS, user_xml(9, "copycat", driver="ldap", password="-", template=copied)]
    directory = UserDirectory(Pool(users), seal_key=SEAL_KEY)
    auth = Authenticator(config, directory, seal_key=SEAL_KEY)
    raw = sign_v4(DESCRIBE, key="AKIAKIM1", secret="kim-secret-1")
    assert auth.authenticate(raw).name == "kim"


def test_a_key_id_sealed_on_two_users_belongs_to_nobody(config):
    entry = {"ACCESS_KEY_ID": "AKIADUP1", "SECRET": "dup-secret", "STATUS": "Active"}
    users = [
        user_xml(
            uid,
            name,
            driver="ldap",
            password="-",
            template=_keys({**entry, "SEAL": seal(SEAL_KEY, uid, entry)}),
        )
        for uid, name in ((9, "one"), (10, "two"))
    ]
    auth = Authenticator(config, UserDirectory(Pool(users), seal_key=SEAL_KEY), seal_key=SEAL_KEY)
    raw = sign_v4(DESCRIBE, key="AKIADUP1", secret="dup-secret")
    assert _code(auth, raw) == ("AuthFailure", 401)


def test_a_revoked_key_put_back_by_its_owner_stays_revoked(config):
    """`econe admin-keys revoke` lists the id in the server user's template, which kim cannot
    edit: her old sealed Active entry, written back into her own template, is refused."""
    raw = sign_v4(DESCRIBE, key="AKIAKIM1", secret="kim-secret-1")
    server = user_xml(
        1,
        "serveradmin",
        driver="server_cipher",
        password="x",
        template="<EC2_REVOKED_ACCESS_KEYS>AKIAOTHER AKIAKIM1</EC2_REVOKED_ACCESS_KEYS>",
    )
    users = [server if "<NAME>serveradmin<" in u else u for u in USERS]
    directory = UserDirectory(Pool(users), seal_key=SEAL_KEY, server_user="serveradmin")
    assert _code(Authenticator(config, directory, seal_key=SEAL_KEY), raw) == ("AuthFailure", 401)
    # the same list in a template the user can write (her own) revokes nothing
    directory = UserDirectory(Pool(users), seal_key=SEAL_KEY, server_user="kim")
    assert Authenticator(config, directory, seal_key=SEAL_KEY).authenticate(raw).name == "kim"


@pytest.mark.parametrize(
    ("host", "ssl_server", "url"),
    [
        ("fd00::2", None, "http://[fd00::2]:4567/"),  # an IPv6 :host:
        ("localhost", "https://[fd00::1]:8443/", "https://[fd00::1]:8443/"),  # behind TLS
    ],
)
def test_an_ipv6_endpoint_accepts_what_clients_sign(pool, host, ssl_server, url):
    """Clients sign the Host header with the brackets, :host: and URL hostnames have none."""
    auth = Authenticator(
        Config(host=host, port=4567, ssl_server=ssl_server), UserDirectory(pool, ttl=60)
    )
    assert auth.authenticate(sign_v4(DESCRIBE, url=url)).name == "alice"
    assert auth.authenticate(sign_v2(DESCRIBE, url=url)).name == "alice"
    assert Config(host="fd00::2", port=4567).public_endpoint == "http://[fd00::2]:4567"
