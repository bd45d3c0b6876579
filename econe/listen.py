"""Where econe listens: `:host:`/`:port:` (TCP), or `:unix_socket:` for a proxy on the same
host.

Behind a Unix socket, whoever may connect is a trusted proxy (auth.common.from_trusted_proxy):
the socket file's owner, group (`:unix_socket_group:`) and mode (`:unix_socket_mode:`) say who,
where on TCP loopback any local user could bind the proxy's address.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

from econe.config import Config, ConfigError, group_id


def where(cfg: Config, host: str) -> str:
    """What econe listens on, for messages."""
    return f"unix socket {cfg.unix_socket}" if cfg.unix_socket else f"{host}:{cfg.port}"


def unresolvable(cfg: Config, host: str) -> str | None:
    """Why econe cannot listen on `host` (a name that resolves to no address), else None."""
    if cfg.unix_socket:
        return None
    try:
        socket.getaddrinfo(host or None, cfg.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        return f"cannot listen on {host!r} (:host: or --host): {getattr(exc, 'strerror', exc)}"
    return None


def same_place(one: str, other: str) -> bool:
    """Whether two `where()` descriptions name one listening place: the same socket file, or
    the same port on addresses that overlap (a name and its address, a wildcard and any)."""
    unix = "unix socket "
    if one.startswith(unix) or other.startswith(unix):
        return (
            one.startswith(unix)
            and other.startswith(unix)
            and (os.path.realpath(one[len(unix) :]) == os.path.realpath(other[len(unix) :]))
        )
    (host_a, _, port_a), (host_b, _, port_b) = one.rpartition(":"), other.rpartition(":")
    if port_a != port_b:
        return False
    a, b = _addresses(host_a, port_a), _addresses(host_b, port_b)
    return bool(a & b) or bool((a | b) & {"0.0.0.0", "::"})


def _addresses(host: str, port: str) -> set[str]:
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return {host}
    return {info[4][0] for info in infos}


def answering(cfg: Config, host: str) -> bool:
    """Whether something accepts connections where econe would listen."""
    if cfg.unix_socket:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            try:
                s.connect(cfg.unix_socket)
                return True
            except OSError:
                return False
    try:
        with socket.create_connection((host, cfg.port), timeout=2):
            return True
    except OSError:
        return False


def wait_until_answering(
    cfg: Config, host: str, proc: subprocess.Popen | None, timeout: float
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answering(cfg, host):
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.1)
    return False


def bind_unix(cfg: Config) -> tuple[socket.socket, int]:
    """The Unix socket at `:unix_socket:`, listening, with its group and mode, and the inode
    of its file (see remove_unix).

    The socket is made in a private directory beside the path (mode 0700), given its group
    and mode there and renamed onto the path: where other users may write the directory, none
    can swap the file for a symlink meanwhile and have econe (root) chown or chmod another
    file. It listens before the rename, so a second econe finds it live. A socket file nobody
    answers on (left by an econe that died) is replaced; a live one, or any other file, is
    refused (ConfigError)."""
    path = Path(cfg.unix_socket)
    gid = group_id(cfg.unix_socket_group) if cfg.unix_socket_group is not None else -1
    private = Path(tempfile.mkdtemp(prefix=".econe-", dir=path.parent))
    made = private / "s"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(made))
        os.chown(made, -1, gid)
        os.chmod(made, cfg.unix_socket_mode)
        sock.listen()
        _refuse_unless_stale(path)
        os.rename(made, path)
        inode = path.lstat().st_ino
    except BaseException:
        sock.close()
        made.unlink(missing_ok=True)
        raise
    finally:
        with contextlib.suppress(OSError):
            private.rmdir()
    return sock, inode


def _refuse_unless_stale(path: Path) -> None:
    """ConfigError unless nothing is at `path` or a socket nobody listens on."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f":unix_socket: {path} exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2)
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:
            return  # left behind: nobody listens
        except OSError as exc:
            raise ConfigError(
                f":unix_socket: cannot tell whether {path} is in use: {exc.strerror or exc}"
            ) from None
    raise ConfigError(f"unix socket {path} is busy")


def remove_unix(cfg: Config, inode: int) -> None:
    """Remove the socket file, unless another server has put its own there meanwhile."""
    with contextlib.suppress(OSError):
        if os.lstat(cfg.unix_socket).st_ino == inode:
            os.unlink(cfg.unix_socket)
