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
    """The Unix socket at `:unix_socket:`, bound (not listening yet) with its group and mode,
    and the inode of its file (see remove_unix).

    A socket file left by an econe that died is replaced; any other file there is refused
    (ConfigError). The mode and group are set before the socket listens, so no connection is
    accepted while they are the umask's."""
    path = Path(cfg.unix_socket)
    gid = group_id(cfg.unix_socket_group) if cfg.unix_socket_group is not None else -1
    if path.is_symlink() or path.exists():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ConfigError(f":unix_socket: {path} exists and is not a socket")
        path.unlink()  # left behind (answering() said nothing listens there)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        try:
            os.chown(path, -1, gid)
            os.chmod(path, cfg.unix_socket_mode)
            inode = path.lstat().st_ino
        except OSError:
            path.unlink(missing_ok=True)
            raise
    except OSError:
        sock.close()
        raise
    return sock, inode


def remove_unix(cfg: Config, inode: int) -> None:
    """Remove the socket file, unless another server has put its own there meanwhile."""
    with contextlib.suppress(OSError):
        if os.lstat(cfg.unix_socket).st_ino == inode:
            os.unlink(cfg.unix_socket)
