"""Where the econe CLI takes its endpoint and keys from.

Access key, secret key and URL are each taken from the first source that has them:

1. the command line: ``-K/--access-key``, ``-S/--secret-key``, ``-U/--url``;
2. ``EC2_ACCESS_KEY``, ``EC2_SECRET_KEY``, ``EC2_URL`` (the Ruby econe tools' variables);
3. ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL_EC2`` (then
   ``AWS_ENDPOINT_URL``), as the AWS CLI reads them;
4. only when no secret key was found: the OpenNebula auth file, ``$ONE_AUTH`` or
   ``~/.one/one_auth``, holding ``user:password``. The access key is the user name (a key given
   above must name the same user) and the secret key is the password **as oned stores it**:
   the SHA-256 hex digest of the password (OpenNebula >= 5.10), or the SHA-1 hex digest with
   ``--sha1-secret`` (OpenNebula <= 5.8, and what the Ruby tools always did), or the password
   itself with ``--plain-secret`` (a `public`-driver user: oned keeps that password as given).

The URL defaults to ``http://localhost:4567``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_URL = "http://localhost:4567"
DEFAULT_REGION = "opennebula"

ACCESS_ENV = ("EC2_ACCESS_KEY", "AWS_ACCESS_KEY_ID")
SECRET_ENV = ("EC2_SECRET_KEY", "AWS_SECRET_ACCESS_KEY")
URL_ENV = ("EC2_URL", "AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL")


class CredentialsError(Exception):
    """Credentials or endpoint missing or unusable (a usage error: exit code 2)."""


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    url: str
    source: str  # where the keys came from, for --verbose

    def __repr__(self) -> str:  # never print the secret by accident
        return (
            f"Credentials(access_key={self.access_key!r}, url={self.url!r}, source={self.source!r})"
        )


def password_secret(password: str, sha1: bool = False) -> str:
    """The EC2 secret key of an OpenNebula `core` user: the hex digest oned stores."""
    algorithm = hashlib.sha1 if sha1 else hashlib.sha256
    return algorithm(password.encode("utf-8")).hexdigest()


def one_auth_path(env: Mapping[str, str]) -> tuple[Path, bool]:
    """The OpenNebula auth file and whether it was named explicitly by ``$ONE_AUTH``."""
    if env.get("ONE_AUTH"):
        return Path(env["ONE_AUTH"]).expanduser(), True
    home = env.get("HOME") or os.path.expanduser("~")
    return Path(home) / ".one" / "one_auth", False


def read_one_auth(path: Path) -> tuple[str, str]:
    """``user:password`` from an OpenNebula auth file (the password may contain colons)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CredentialsError(f"cannot read ONE_AUTH file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CredentialsError(f"ONE_AUTH file {path} is not UTF-8 text") from None
    line = text.strip().splitlines()[0].strip() if text.strip() else ""
    user, sep, password = line.partition(":")
    if not sep or not user or not password:
        raise CredentialsError(f"ONE_AUTH file {path} does not hold 'user:password'")
    return user, password


def _first(cli_value: str | None, names: tuple[str, ...], env: Mapping[str, str]):
    if cli_value:
        return cli_value, "command line"
    for name in names:
        if env.get(name):
            return env[name], name
    return None, None


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CredentialsError(f"endpoint URL must be http(s)://host[:port][/path], not {url!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise CredentialsError(f"bad port in endpoint URL {url!r}") from None
    return url


def resolve(
    access_key: str | None = None,
    secret_key: str | None = None,
    url: str | None = None,
    sha1_secret: bool = False,
    env: Mapping[str, str] | None = None,
    plain_secret: bool = False,
) -> Credentials:
    """Resolve keys and URL by the precedence in this module's docstring."""
    env = os.environ if env is None else env
    url_value, _ = _first(url, URL_ENV, env)
    url_value = check_url(url_value or DEFAULT_URL)
    key, key_from = _first(access_key, ACCESS_ENV, env)
    secret, secret_from = _first(secret_key, SECRET_ENV, env)
    if secret:
        if not key:
            raise CredentialsError(
                f"secret key given ({secret_from}) but no access key: use -K/--access-key "
                "or EC2_ACCESS_KEY"
            )
        source = key_from if key_from == secret_from else f"{key_from} + {secret_from}"
        return Credentials(key, secret, url_value, source)
    path, explicit = one_auth_path(env)
    if not explicit and not path.exists():
        raise CredentialsError(
            "no credentials: give -K/--access-key and -S/--secret-key, set EC2_ACCESS_KEY and "
            f"EC2_SECRET_KEY, or write user:password to $ONE_AUTH or {path}"
        )
    user, password = read_one_auth(path)
    if key and key != user:
        raise CredentialsError(
            f"access key {key!r} ({key_from}) has no secret key, and ONE_AUTH file {path} is "
            f"for user {user!r}: give -S/--secret-key"
        )
    if plain_secret:
        return Credentials(user, password, url_value, f"ONE_AUTH {path} (as given)")
    hashing = "sha1" if sha1_secret else "sha256"
    return Credentials(
        user, password_secret(password, sha1_secret), url_value, f"ONE_AUTH {path} ({hashing})"
    )
