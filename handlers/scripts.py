"""Running the administrator's elastic-IP scripts (`:associate_script:`, `:disassociate_script:`).

The configured value is split with `shlex.split` (so it may carry fixed leading arguments, e.g.
`/usr/lib/econe/record-elastic-ip-call associate`); the action's arguments are appended as
separate argv entries. No shell is involved at any point: a request value can never become
shell syntax. The script gets no stdin (`/dev/null`), `:script_timeout:` seconds, and a minimal
environment (`script_env`), never the gateway's own, which may hold credentials such as
ONE_CIPHER_AUTH: of the server's variables only PATH, HOME, LANG, LC_ALL, LC_CTYPE, TZ,
IPTABLES and those starting with EIP_ or ECONE_EIP_ (the shipped scripts' settings), as far as
the server has them, plus TMPDIR = :tmpdir:. It runs in its own process group, which is killed
as a whole on timeout. `run_script` blocks, so it must run in a worker thread (the engine's pool), never on
the event loop; it refuses to run on a thread that has a running event loop.

Any failure (non-zero exit, timeout, missing or non-executable program, empty configuration)
raises `ScriptError` whose `message` is the script's own explanation (stderr, else stdout),
trimmed to one readable line of at most `MESSAGE_LIMIT` characters. XML escaping of that text
happens where every EC2 error is rendered (`econe.errors.error_xml`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

log = logging.getLogger("econe.handlers.scripts")

MESSAGE_LIMIT = 500
_BLANKS = re.compile(r"\s+")
# Characters that are neither printable nor ordinary whitespace (ANSI escapes, NULs, …).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class ScriptError(Exception):
    """The script did not succeed; `message` says why in the script's own words."""

    def __init__(self, message: str, returncode: int | None = None, argv: Sequence[str] = ()):
        super().__init__(message)
        self.message = message
        self.returncode = returncode
        self.argv = list(argv)


@dataclass
class ScriptResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def tidy(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """Script output → one trimmed line: control characters dropped, whitespace collapsed."""
    text = _BLANKS.sub(" ", _CONTROL.sub("", text)).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def command(configured: str, args: Sequence[str]) -> list[str]:
    """The argv list: the configured program and its fixed arguments, then `args`."""
    try:
        argv = shlex.split(configured or "")
    except ValueError as exc:
        raise ScriptError(
            f"the configured command {configured!r} cannot be parsed: {exc}"
        ) from None
    if not argv:
        raise ScriptError("no script is configured")
    for arg in args:
        if "\x00" in str(arg):
            raise ScriptError("a script argument contains a NUL character")
    return argv + [str(a) for a in args]


_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "IPTABLES")
_ENV_PREFIXES = ("EIP_", "ECONE_EIP_")  # settings of the shipped scripts


def script_env(tmpdir: str | None = None) -> dict[str, str]:
    """The scripts' environment (see the module doc); TMPDIR = `tmpdir` (:tmpdir:, as the Ruby
    econe-server exported it) when given."""
    env = {k: v for k, v in os.environ.items() if k in _ENV or k.startswith(_ENV_PREFIXES)}
    if tmpdir:
        env["TMPDIR"] = str(tmpdir)
    return env


def _short(argv: Sequence[str]) -> list[str]:
    """argv for the log: long arguments (the base64 VNET) shortened."""
    return [a if len(a) <= 64 else f"{a[:24]}…({len(a)} chars)" for a in argv]


def _assert_not_on_event_loop() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError("run_script blocks: call it from a worker thread, not the event loop")


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            proc.kill()
        except ProcessLookupError:
            pass


def run_script(
    configured: str,
    args: Sequence[str],
    timeout: float = 30.0,
    name: str = "script",
    env: dict[str, str] | None = None,
) -> ScriptResult:
    """Run `configured` + `args` without a shell, with `env` (default: `script_env()`); raise
    ScriptError unless it exits 0."""
    _assert_not_on_event_loop()
    argv = command(configured, args)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            shell=False,
            close_fds=True,
            start_new_session=True,  # own process group: a timeout kills its children too
            env=script_env() if env is None else env,
        )
    except OSError as exc:  # gone or changed since the start checked it: the path is logged only
        log.error("the %s %s cannot be run: %s", name, argv[0], exc.strerror)
        raise ScriptError(f"the {name} cannot be run", None, argv) from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # a grandchild escaped the group and holds the pipes
            out, err = b"", b""
        log.error("%s timed out after %ss: %s", name, timeout, _short(argv))
        detail = tidy(err.decode("utf-8", "replace") or out.decode("utf-8", "replace"))
        raise ScriptError(
            f"the {name} did not finish within {timeout:g} seconds"
            + (f": {detail}" if detail else ""),
            None,
            argv,
        ) from None
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    result = ScriptResult(
        argv,
        proc.returncode,
        out.decode("utf-8", "replace"),
        err.decode("utf-8", "replace"),
        time.monotonic() - started,
    )
    if result.returncode != 0:
        detail = tidy(result.stderr) or tidy(result.stdout)
        status = (
            f"killed by signal {-result.returncode}"
            if result.returncode < 0
            else f"exit status {result.returncode}"
        )
        log.error("%s failed (%s): %s: %s", name, status, _short(argv), detail)
        raise ScriptError(
            f"the {name} failed ({status})" + (f": {detail}" if detail else ""),
            result.returncode,
            argv,
        )
    log.info("%s ran in %.2fs: %s", name, result.seconds, _short(argv))
    return result
