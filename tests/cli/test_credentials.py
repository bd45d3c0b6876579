"""Credential and endpoint precedence, ONE_AUTH → SHA-256 (or SHA-1) secret."""

from __future__ import annotations

import hashlib

import pytest

from econe.client.credentials import (
    DEFAULT_URL,
    CredentialsError,
    password_secret,
    read_one_auth,
    resolve,
)


@pytest.fixture
def one_auth(tmp_path):
    path = tmp_path / "one_auth"
    path.write_text("alice:s3cr:et\n")
    return path


def test_secret_is_sha256_hex_of_the_password():
    assert password_secret("alicepw") == hashlib.sha256(b"alicepw").hexdigest()
    # econe.md §2.2 worked example: the SHA-1 era secret of 'alicepw'
    assert password_secret("alicepw", sha1=True) == "a5771e9d7527c46cfa8c3e1d16649757adc4e3d8"


def test_command_line_beats_every_environment_variable(one_auth):
    env = {
        "EC2_ACCESS_KEY": "ec2key",
        "EC2_SECRET_KEY": "ec2secret",
        "EC2_URL": "http://ec2-url:1",
        "AWS_ACCESS_KEY_ID": "awskey",
        "AWS_SECRET_ACCESS_KEY": "awssecret",
        "AWS_ENDPOINT_URL_EC2": "http://aws-url:2",
        "ONE_AUTH": str(one_auth),
    }
    creds = resolve("clikey", "clisecret", "http://cli-url:3", env=env)
    assert (creds.access_key, creds.secret_key, creds.url) == (
        "clikey",
        "clisecret",
        "http://cli-url:3",
    )
    assert creds.source == "command line"


def test_ec2_variables_beat_aws_variables():
    env = {
        "EC2_ACCESS_KEY": "ec2key",
        "EC2_SECRET_KEY": "ec2secret",
        "EC2_URL": "http://ec2-url:1",
        "AWS_ACCESS_KEY_ID": "awskey",
        "AWS_SECRET_ACCESS_KEY": "awssecret",
        "AWS_ENDPOINT_URL_EC2": "http://aws-url:2",
    }
    creds = resolve(env=env)
    assert (creds.access_key, creds.secret_key, creds.url) == (
        "ec2key",
        "ec2secret",
        "http://ec2-url:1",
    )


def test_aws_variables_and_generic_endpoint():
    env = {
        "AWS_ACCESS_KEY_ID": "awskey",
        "AWS_SECRET_ACCESS_KEY": "awssecret",
        "AWS_ENDPOINT_URL": "http://generic:9",
    }
    creds = resolve(env=env)
    assert (creds.access_key, creds.secret_key, creds.url) == (
        "awskey",
        "awssecret",
        "http://generic:9",
    )
    env["AWS_ENDPOINT_URL_EC2"] = "http://ec2-specific:8"
    assert resolve(env=env).url == "http://ec2-specific:8"


def test_keys_mix_per_field():
    creds = resolve(access_key="clikey", env={"EC2_SECRET_KEY": "envsecret"})
    assert (creds.access_key, creds.secret_key) == ("clikey", "envsecret")


def test_default_url(one_auth):
    assert resolve(env={"ONE_AUTH": str(one_auth)}).url == DEFAULT_URL == "http://localhost:4567"


def test_one_auth_gives_user_and_sha256_of_password(one_auth):
    creds = resolve(env={"ONE_AUTH": str(one_auth)})
    assert creds.access_key == "alice"
    assert creds.secret_key == hashlib.sha256(b"s3cr:et").hexdigest()  # colons stay in passwords
    assert "sha256" in creds.source


def test_one_auth_sha1_for_old_clouds(one_auth):
    creds = resolve(sha1_secret=True, env={"ONE_AUTH": str(one_auth)})
    assert creds.secret_key == hashlib.sha1(b"s3cr:et").hexdigest()


def test_one_auth_default_location_is_home(tmp_path):
    (tmp_path / ".one").mkdir()
    (tmp_path / ".one" / "one_auth").write_text("bob:pw")
    creds = resolve(env={"HOME": str(tmp_path)})
    assert (creds.access_key, creds.secret_key) == ("bob", hashlib.sha256(b"pw").hexdigest())


def test_one_auth_only_when_no_secret_given(one_auth):
    creds = resolve(env={"ONE_AUTH": str(one_auth), "EC2_ACCESS_KEY": "k", "EC2_SECRET_KEY": "s"})
    assert (creds.access_key, creds.secret_key) == ("k", "s")


def test_access_key_matching_one_auth_user_takes_its_secret(one_auth):
    creds = resolve(access_key="alice", env={"ONE_AUTH": str(one_auth)})
    assert creds.secret_key == hashlib.sha256(b"s3cr:et").hexdigest()


def test_access_key_of_another_user_without_secret_is_refused(one_auth):
    with pytest.raises(CredentialsError, match="give -S"):
        resolve(access_key="bob", env={"ONE_AUTH": str(one_auth)})


def test_secret_without_access_key_is_refused():
    with pytest.raises(CredentialsError, match="no access key"):
        resolve(secret_key="s", env={})


def test_nothing_at_all(tmp_path):
    with pytest.raises(CredentialsError, match="no credentials"):
        resolve(env={"HOME": str(tmp_path)})


def test_named_one_auth_file_must_exist(tmp_path):
    with pytest.raises(CredentialsError, match="cannot read ONE_AUTH"):
        resolve(env={"ONE_AUTH": str(tmp_path / "missing")})


@pytest.mark.parametrize("content", ["", "justuser", ":pw", "user:"])
def test_malformed_one_auth(tmp_path, content):
    path = tmp_path / "one_auth"
    path.write_text(content)
    with pytest.raises(CredentialsError, match="user:password"):
        read_one_auth(path)


def test_one_auth_that_is_not_text(tmp_path):
    path = tmp_path / "one_auth"
    path.write_bytes(b"user:\xff\xfe")
    with pytest.raises(CredentialsError, match="not UTF-8"):
        read_one_auth(path)


@pytest.mark.parametrize("url", ["localhost:4567", "ftp://x/", "http://", "http://h:notaport/"])
def test_bad_urls(url):
    with pytest.raises(CredentialsError):
        resolve("k", "s", url, env={})


def test_repr_hides_the_secret():
    creds = resolve("k", "topsecret", env={})
    assert "topsecret" not in repr(creds)
