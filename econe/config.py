"""econe.conf, read once into a typed object.

The file is YAML with the seed's Ruby-symbol keys (`:host: localhost`); plain keys
(`host: localhost`) work too. Every key is documented in etc/econe.conf.
"""

from __future__ import annotations

import grp
import ipaddress
import os
import re
import shlex
import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from econe.paths import data_dir

AUTH_MODES = ("ec2", "x509", "remote")
CORE_AUTH_MODES = ("cipher", "x509")


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key and why."""


def _default_ec2_auth() -> str:
    if os.environ.get("ONE_CIPHER_AUTH"):
        return os.environ["ONE_CIPHER_AUTH"]
    if os.environ.get("ONE_LOCATION"):
        return os.path.join(os.environ["ONE_LOCATION"], "var", ".one", "ec2_auth")
    return "/var/lib/one/.one/ec2_auth"


@dataclass
class Config:
    # server
    one_xmlrpc: str = "http://localhost:2633/RPC2"
    host: str = "localhost"
    port: int = 4567
    unix_socket: str | None = None  # listen there instead of :host:/:port: (for a proxy)
    unix_socket_mode: int = 0o660
    unix_socket_group: str | None = None
    ssl_server: str | None = None
    one_timeout: float = 30.0
    one_keepalive: int = 4
    max_body_size: int = 1024 * 1024
    body_timeout: float = 60.0
    header_timeout: float = 10.0
    max_connections: int = 1000
    region: str = "opennebula"
    # auth
    auth: str = "ec2"
    core_auth: str = "cipher"
    ec2_auth: str = field(default_factory=_default_ec2_auth)
    server_x509_auth: str | None = None
    trusted_proxies: list[str] = field(default_factory=list)  # none unless configured
    signature_window: int = 900
    user_cache_ttl: float = 60.0
    user_confirm_ttl: float = 1.0
    # log
    debug_level: int = 3
    log_file: str | None = None
    # resources
    cluster_id: int | None = None
    datastore_id: int = 1
    tmpdir: str = "/var/tmp"
    upload_max_size: int = 64 * 1024**3
    upload_max_per_user: int = 2  # uploads one user may send at once
    upload_max_concurrent: int = 8  # uploads being received at once, all users
    upload_min_free: int = 1024**3  # bytes of :tmpdir:'s file system uploads leave free
    upload_min_rate: int = 16 * 1024  # bytes/s over each :body_timeout: of a file; 0: none
    instance_types: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"m1.small": {"template": "m1.small.j2"}}
    )
    template_location: str = field(default_factory=lambda: str(data_dir("templates")))
    describe_with_terminated_instances: bool = True
    terminated_instances_expiration_time: int = 900
    ebs_fstype: str = "ext3"
    # elastic IPs
    elasticips_vnet_id: int | None = None
    elastic_ips_per_user: int | None = None
    associate_script: str = "false"
    disassociate_script: str = "false"
    script_timeout: float = 30.0
    # where the config came from, for messages
    source: str | None = None

    @property
    def public_endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return self.ssl_server or f"http://{host}:{self.port}"


def _plain_keys(value: Any) -> Any:
    """Ruby-symbol keys (`:host`, `:m1.small`) → plain keys, recursively."""
    if isinstance(value, dict):
        return {str(k).strip(":"): _plain_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_keys(v) for v in value]
    return value


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
INSTANCE_TYPE_KEYS = {"template", "network_id"}
_WHOLE = re.compile(r"-?[0-9]+")


def _coerce(name: str, kind: Any, value: Any) -> Any:
    """The value as the key's type; what is not that type (`:port: true`, `:port: 4567.5`,
    a yes/no key set to `maybe`) is refused, never read as something else."""
    text = str(kind)
    if value is None:
        return None
    if text.startswith("int") or text == "<class 'int'>":
        if isinstance(value, float) and value.is_integer():
            return int(value)  # 900.0: a whole number written so
        if isinstance(value, bool) or not _WHOLE.fullmatch(str(value).strip()):
            raise ConfigError(f":{name}: must be a whole number, not {value!r}")
        return int(str(value).strip())
    if text.startswith("float") or text == "<class 'float'>":
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f":{name}: must be a number, not {value!r}") from None
    if text.startswith("bool") or text == "<class 'bool'>":
        word = str(value).strip().lower()
        if isinstance(value, bool) or word in _TRUE + _FALSE:
            return value if isinstance(value, bool) else word in _TRUE
        raise ConfigError(f":{name}: must be true or false, not {value!r}")
    if "list" in text:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list):
            raise ConfigError(f":{name}: must be a list, not {value!r}")
        return value
    if text.startswith("dict") and not isinstance(value, dict):
        raise ConfigError(f":{name}: must be a mapping (name: value lines), not {value!r}")
    if text.startswith("str") and isinstance(value, dict | list):
        raise ConfigError(f":{name}: must be a single value, not {value!r}")
    return str(value) if text.startswith("str") else value


def load_config(path: str | os.PathLike | None = None, **overrides: Any) -> Config:
    """Read `path` (YAML), apply overrides, check the values."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read configuration {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:  # one line: what and where
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            what = getattr(exc, "problem", None) or type(exc).__name__
            raise ConfigError(f"configuration {path} is not valid YAML: {what}{where}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"configuration {path} is not a YAML mapping")
    raw = _plain_keys(raw)
    if "server" in raw and "host" not in raw:  # 3.4 name of :host:
        raw["host"] = raw.pop("server")
    raw.pop("server", None)
    if "elastic_ips_vnet" in raw and "elasticips_vnet_id" not in raw:  # the name the guide uses
        raw["elasticips_vnet_id"] = raw.pop("elastic_ips_vnet")
    raw.pop("elastic_ips_vnet", None)
    raw.pop("use_file_templates", None)  # 4.4-5.x: which types; econe takes both kinds (README)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    for key in ("associate_script", "disassociate_script"):
        if raw.get(key) is False:  # YAML's unquoted false: the seed's "no script"
            raw[key] = "false"
    known = {f.name: f for f in fields(Config) if f.name != "source"}  # set by econe itself
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown configuration key(s): {', '.join(':' + k + ':' for k in unknown)}"
        )
    # a key left without a value (`:datastore_id:` uncommented alone) keeps its default
    if isinstance(raw.get("unix_socket_mode"), str):  # "0660": octal, as chmod reads it
        raw["unix_socket_mode"] = _octal_mode(raw["unix_socket_mode"])
    values = {k: _coerce(k, known[k].type, v) for k, v in raw.items() if v is not None}
    cfg = Config(**values, source=str(path) if path else None)
    if cfg.auth not in AUTH_MODES:
        raise ConfigError(f":auth: must be one of {', '.join(AUTH_MODES)}, not {cfg.auth!r}")
    if cfg.core_auth not in CORE_AUTH_MODES:
        raise ConfigError(
            f":core_auth: must be one of {', '.join(CORE_AUTH_MODES)}, not {cfg.core_auth!r}"
        )
    for key in ("user_cache_ttl", "user_confirm_ttl"):
        if not 0 <= getattr(cfg, key) < float("inf"):
            raise ConfigError(f":{key}: must be a number of seconds, 0 or more")
    if not 1 <= cfg.port <= 65535:
        raise ConfigError(f":port: must be 1 to 65535, not {cfg.port}")
    _check_unix_socket(cfg)
    # a wait of 0 never succeeds
    for key in ("one_timeout", "body_timeout", "header_timeout", "script_timeout"):
        if not 0 < getattr(cfg, key) < float("inf"):
            raise ConfigError(f":{key}: must be a number of seconds above 0")
    for key in ("signature_window", "max_body_size", "upload_max_size", "max_connections"):
        if getattr(cfg, key) <= 0:
            raise ConfigError(f":{key}: must be above 0")
    for key in ("upload_max_per_user", "upload_max_concurrent"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f":{key}: must be 1 or more uploads")
    for key in ("upload_min_free", "upload_min_rate"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f":{key}: must be 0 or more")
    if cfg.one_keepalive < 0:
        raise ConfigError(":one_keepalive: must be 0 or more connections")
    if cfg.terminated_instances_expiration_time < 0:
        raise ConfigError(":terminated_instances_expiration_time: must be 0 or more seconds")
    url = urlsplit(cfg.one_xmlrpc)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ConfigError(
            f":one_xmlrpc: must be oned's http(s)://host:port/RPC2, not {cfg.one_xmlrpc!r}"
        )
    if cfg.elasticips_vnet_id is not None:  # the scripts run only with elastic IPs
        for key in ("associate_script", "disassociate_script"):
            _check_command(key, getattr(cfg, key))
    if cfg.ssl_server is not None:
        _check_ssl_server(raw.get("ssl_server"), cfg.ssl_server)
    if cfg.datastore_id < 0:
        raise ConfigError(
            f":datastore_id: must be an OpenNebula datastore id, not {cfg.datastore_id}"
        )
    if cfg.cluster_id is not None and cfg.cluster_id < 0:
        raise ConfigError(f":cluster_id: must be an OpenNebula cluster id, not {cfg.cluster_id}")
    if Path(cfg.tmpdir).exists() and not Path(cfg.tmpdir).is_dir():  # made at first upload
        raise ConfigError(f":tmpdir: {cfg.tmpdir} is not a directory")
    if not Path(cfg.template_location).is_dir():
        raise ConfigError(f":template_location: {cfg.template_location} is not a directory")
    for proxy in cfg.trusted_proxies:
        try:
            ipaddress.ip_network(str(proxy).strip(), strict=False)
        except ValueError:
            raise ConfigError(
                f":trusted_proxies: {proxy!r} is not an IP address or a CIDR network"
            ) from None
    if cfg.elastic_ips_per_user is not None and cfg.elastic_ips_per_user < 0:
        raise ConfigError(":elastic_ips_per_user: must be 0 or more")
    if not 0 <= cfg.debug_level <= 3:
        raise ConfigError(":debug_level: must be 0 (ERROR) to 3 (DEBUG)")
    for name, spec in cfg.instance_types.items():
        if not isinstance(spec, dict):
            raise ConfigError(f":instance_types: entry {name!r} must be a mapping with :template:")
        unknown = sorted(set(spec) - INSTANCE_TYPE_KEYS)
        if unknown:  # a misspelt :network_id: launched on network 0
            raise ConfigError(
                f":instance_types: {name!r}: unknown key(s) {', '.join(':' + k + ':' for k in unknown)}"
                f"; known: {', '.join(':' + k + ':' for k in sorted(INSTANCE_TYPE_KEYS))}"
            )
        network = spec.get("network_id")
        network = 0 if network is None else network  # left without a value: the default
        if isinstance(network, bool) or not str(network).isascii() or not str(network).isdigit():
            raise ConfigError(
                f":instance_types: {name!r}: :network_id: must be an OpenNebula network id "
                f"(a number), not {network!r}"
            )
        if not isinstance(spec.get("template", ""), str):
            raise ConfigError(f":instance_types: {name!r}: :template: must be a file name")
    return cfg


def _check_ssl_server(given: Any, text: str) -> None:
    """The public URL behind a TLS proxy: https://name[:port]/ (or http), or as the guide
    also wrote it, name[:port] alone."""
    url = urlsplit(text if "//" in text else "//" + text)
    try:
        url.port  # noqa: B018 - raises ValueError for a port that is not one
    except ValueError:
        url = None
    if (
        not isinstance(given, str)
        or url is None
        or url.scheme not in ("", "http", "https")
        or not url.hostname
    ):
        raise ConfigError(
            f":ssl_server: must be the public URL clients use, such as "
            f"https://ec2.example.org/, not {given!r}"
        )


def _octal_mode(text: str) -> int:
    try:
        return int(text.strip(), 8)
    except ValueError:
        raise ConfigError(
            f":unix_socket_mode: must be a file mode such as 0660, not {text!r}"
        ) from None


def _check_unix_socket(cfg: Config) -> None:
    """Every peer of the socket is believed as a proxy: nobody beyond the owner and group may
    connect (connecting needs write permission)."""
    mode = cfg.unix_socket_mode
    if not 0 <= mode <= 0o777:  # 660 unquoted and without its 0 is decimal 660
        raise ConfigError(f":unix_socket_mode: must be a file mode such as 0660, not {mode}")
    if mode & 0o002:
        raise ConfigError(
            f":unix_socket_mode: {mode:04o} lets every local user connect, and econe believes "
            "whoever connects to its socket as a proxy: use 0660 (or 0600)"
        )
    if cfg.unix_socket is None:
        return
    if not cfg.unix_socket.strip():
        raise ConfigError(":unix_socket: must be the path of a socket file")
    if len(os.fsencode(cfg.unix_socket)) > 107:  # sun_path holds 108 bytes with its NUL
        raise ConfigError(f":unix_socket: {cfg.unix_socket} is longer than 107 bytes")
    if len(os.fsencode(str(Path(cfg.unix_socket).parent))) > 89:  # + /.econe-XXXXXXXX/s
        raise ConfigError(
            f":unix_socket: the directory of {cfg.unix_socket} is longer than 89 bytes"
        )
    if not Path(cfg.unix_socket).parent.is_dir():
        raise ConfigError(f":unix_socket: the directory of {cfg.unix_socket} does not exist")
    if cfg.unix_socket_group is not None:
        gid = group_id(cfg.unix_socket_group)
        if os.geteuid() != 0 and gid != os.getegid() and gid not in os.getgroups():
            raise ConfigError(
                f":unix_socket_group: econe's user is not in group {cfg.unix_socket_group}, "
                "so it cannot give the socket to that group"
            )
        if not mode & 0o020:  # connecting needs write permission
            raise ConfigError(
                f":unix_socket_mode: {mode:04o} gives :unix_socket_group: no write permission, "
                "which connecting needs: use 0660"
            )


def group_id(group: str) -> int:
    """A group name or number → its id (ConfigError when there is no such group)."""
    text = str(group).strip()
    if text.isdigit():
        return int(text)
    try:
        return grp.getgrnam(text).gr_gid
    except KeyError:
        raise ConfigError(f":unix_socket_group: there is no group {text!r}") from None


# The seed's defaults and an empty value: no script, association answers UnsupportedOperation.
_NO_SCRIPT = ("", "false", "/bin/false", "/usr/bin/false")


def script_is_set(value: str | None) -> bool:
    """Whether an elastic-IP script setting names a script: not for the seed's defaults
    (`false`, `/usr/bin/false`), YAML's unquoted `false` or an empty value. Unbalanced quotes
    count as set (the start-up check refuses them)."""
    try:
        argv = shlex.split(value or "")
    except ValueError:
        return True
    return " ".join(argv) not in _NO_SCRIPT


def _check_command(key: str, value: str) -> None:
    """An elastic-IP script: its program must be there and executable (a bare name: on PATH);
    none at all (`false`, empty) is a choice, checked by nobody."""
    if not script_is_set(value):
        return
    try:
        program = shlex.split(value)[0]
    except (ValueError, IndexError):
        raise ConfigError(f":{key}: {value!r} is not a command line") from None
    found = program if "/" in program else shutil.which(program)
    if not found or not os.access(found, os.X_OK) or not Path(found).is_file():
        raise ConfigError(f":{key}: {program} is not an executable program")


def default_config_path() -> Path | None:
    """`$ONE_LOCATION/etc/econe.conf`, `/etc/one/econe.conf`, then the shipped etc/econe.conf."""
    candidates = []
    if os.environ.get("ONE_LOCATION"):
        candidates.append(Path(os.environ["ONE_LOCATION"]) / "etc" / "econe.conf")
    candidates += [Path("/etc/one/econe.conf"), data_dir("etc") / "econe.conf"]
    return next((p for p in candidates if p.exists()), None)
