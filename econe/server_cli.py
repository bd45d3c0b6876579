"""`econe-server run|start|stop|restart|status`: the EC2 Query server's command line.

`run` serves in the foreground; `start` runs the same thing as a daemon with a pid file and a
log file (the seed's "Starting the Cloud Service"); `run --simulator` brings up onesim with the
demo cloud in the same process, so econe can be tried without an OpenNebula cloud.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from econe import listen
from econe.config import Config, ConfigError, default_config_path, load_config
from econe.logs import reopen_log, setup_logging, streams_writing_to

DEMO_USER = "demo"
DEMO_PASSWORD = "demo"
DEMO_ELASTIC_IP_VNET = 1


def _var_dir() -> Path:
    if os.environ.get("ONE_LOCATION"):
        return Path(os.environ["ONE_LOCATION"]) / "var"
    return Path("/var/run/one")


def _default_pid_file() -> Path:
    return _var_dir() / "econe-server.pid"


def _default_log_file() -> Path:
    if os.environ.get("ONE_LOCATION"):
        return Path(os.environ["ONE_LOCATION"]) / "var" / "econe-server.log"
    return Path("/var/log/one/econe-server.log")


def _load(args: argparse.Namespace, **overrides) -> Config:
    path = args.config or default_config_path()
    return load_config(path, host=args.host, port=args.port, **overrides)


def _start_simulator(args: argparse.Namespace):
    """Start onesim with the demo cloud; return (sim, config overrides)."""
    from onesim.server import SimServer

    state_dir = Path(args.state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    sim = SimServer(
        str(state_dir), host="127.0.0.1", port=args.sim_port, seed="demo", speed=args.sim_speed
    )
    sim.start()
    scripts = Path(__file__).resolve().parent / "scripts"
    overrides = {
        "one_xmlrpc": sim.url,
        "ec2_auth": str(state_dir / ".one" / "ec2_auth"),
        "elasticips_vnet_id": DEMO_ELASTIC_IP_VNET,
        "tmpdir": str(state_dir / "upload"),
    }
    recorder = scripts / "record-elastic-ip-call"
    if recorder.exists():  # records its calls in <state-dir>/upload/econe-elastic-ip-calls.jsonl
        run = f"{shlex.quote(sys.executable)} {shlex.quote(str(recorder))}"
        overrides["associate_script"] = f"{run} associate"
        overrides["disassociate_script"] = f"{run} disassociate"
    (state_dir / "upload").mkdir(exist_ok=True)
    return sim, overrides


def _print_demo_banner(cfg: Config) -> None:
    secret = hashlib.sha256(DEMO_PASSWORD.encode()).hexdigest()
    url = cfg.ssl_server if cfg.unix_socket else f"http://{cfg.host}:{cfg.port}"
    lines = [
        "econe demo cloud is up (onesim, an OpenNebula 7.4 simulator, behind the EC2 gateway)",
        f"  endpoint:    {url or 'your proxy'} (econe on unix socket {cfg.unix_socket})"
        if cfg.unix_socket
        else f"  endpoint:    {url}",
        f"  access key:  {DEMO_USER}",
        f"  secret key:  {secret}   (sha256 of the OpenNebula password '{DEMO_PASSWORD}')",
        f"  region:      {cfg.region}",
    ]
    if url:
        lines += [
            "Try:",
            f"  AWS_ACCESS_KEY_ID={DEMO_USER} AWS_SECRET_ACCESS_KEY={secret} "
            f"aws ec2 describe-instances --endpoint-url {url} --region {cfg.region}",
        ]
    print("\n".join(lines) + "\n", flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    import uvicorn

    from econe import connections

    sim = None
    try:
        overrides = {}
        if args.simulator:
            if args.host is None:
                args.host = "127.0.0.1"
            sim, overrides = _start_simulator(args)
        cfg = _load(args, **overrides)
        setup_logging(cfg.debug_level, args.log_file or cfg.log_file)
    except ConfigError as exc:
        print(f"econe-server: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the simulator's port taken, the log file not writable
        if sim is not None:
            sim.stop()
        where = exc.filename or f"port {args.sim_port or 2633} of the simulator"
        print(f"econe-server: cannot use {where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    problem = listen.unresolvable(cfg, cfg.host)
    if problem:
        if sim is not None:
            sim.stop()
        print(f"econe-server: {problem}", file=sys.stderr)
        return 2
    if listen.answering(cfg, cfg.host):
        if sim is not None:
            sim.stop()
        print(f"econe-server: {listen.where(cfg, cfg.host)} is busy", file=sys.stderr)
        return 1
    from econe.app import (
        check_instance_types,
        check_mappings,
        check_server_credentials,
        create_app,
        make_sessions,
    )
    from econe.mapping import MappingError
    from econe.one.session import SessionConfigError

    try:
        # refuse to start on missing, open or malformed credentials, or ones oned refuses
        check_server_credentials(cfg, make_sessions(cfg))
        check_mappings()  # a broken mapping: one line, before the banner
        for warning in check_instance_types(cfg):
            logging.getLogger("econe").warning(warning)
        app = create_app(cfg)
    except (SessionConfigError, ConfigError, MappingError) as exc:
        print(f"econe-server: {exc}", file=sys.stderr)
        if sim is not None:
            sim.stop()
        return 2
    if args.simulator:
        _print_demo_banner(cfg)
    log_file = args.log_file or cfg.log_file
    if log_file:  # logrotate moves the file away, then sends SIGHUP
        streams = streams_writing_to(log_file)
        signal.signal(signal.SIGHUP, lambda *_: reopen_log(log_file, streams))
    if cfg.auth in ("x509", "remote") and not cfg.trusted_proxies and not cfg.unix_socket:
        what = "client certificate" if cfg.auth == "x509" else "user name"
        logging.getLogger("econe").warning(
            f":auth: {cfg.auth} takes the {what} from a proxy, and no proxy is in "
            ":trusted_proxies: (nor is :unix_socket: set): every request will be refused"
        )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=cfg.host,
            port=cfg.port,
            log_config=None,
            access_log=False,
            # econe decides itself which proxies to believe (:trusted_proxies:); uvicorn's own
            # handling would let any local client claim another address with X-Forwarded-For.
            proxy_headers=False,
            server_header=False,
            # uvicorn's httptools protocol with a deadline and a size for each request's
            # head and a cap on connections (econe.connections)
            http=connections.protocol_class(
                cfg.header_timeout, connections.max_connections(cfg.max_connections)
            ),
        )
    )
    if not log_file:  # a hang-up (the terminal closed): stop as for SIGTERM, cleaning up
        signal.signal(signal.SIGHUP, lambda *_: setattr(server, "should_exit", True))
    sockets, inode = None, None
    if cfg.unix_socket:
        try:
            sock, inode = listen.bind_unix(cfg)
        except (OSError, ConfigError) as exc:
            if sim is not None:
                sim.stop()
            print(f"econe-server: cannot listen on {cfg.unix_socket}: {exc}", file=sys.stderr)
            return 2
        sockets = [sock]
        logging.getLogger("econe").info("listening on unix socket %s", cfg.unix_socket)
    # uvicorn, done, raises again the signal it stopped on; ending here instead lets the
    # cleanup below run (socket file, simulator)
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, _stopped)
    try:
        server.run(sockets=sockets)
    except _Stopped:
        pass
    finally:
        if inode is not None:
            listen.remove_unix(cfg, inode)
        if sim is not None:
            sim.stop()
    return 0


class _Stopped(Exception):
    """SIGTERM or SIGINT, once uvicorn has shut down."""


def _stopped(*_: Any) -> None:
    raise _Stopped


def _is_econe(pid: int) -> bool:
    """Whether process `pid` is the daemon `start` runs (`python -m econe.server_cli run …`,
    where /proc tells): a stale pid file may name any process, even one whose command line
    mentions econe-server (`tail -f econe-server.log`)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no /proc here: the pid is all there is
    except OSError:
        return False
    return argv[1:4] == [b"-m", b"econe.server_cli", b"run"]


def _address_file(pid_file: Path) -> Path:
    """Where `start` notes what the daemon listens on (the pid file keeps the pid alone, for
    `kill $(cat …)`)."""
    return pid_file.with_name(pid_file.name + ".addr")


def _forget(pid_file: Path) -> None:
    pid_file.unlink(missing_ok=True)
    _address_file(pid_file).unlink(missing_ok=True)


def _read_pid(pid_file: Path) -> int | None:
    """The pid in `pid_file` when that process runs and is an econe server, else None."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid if pid > 0 and _is_econe(pid) else None


def _preflight(args: argparse.Namespace) -> Config | None:
    """The configuration `start` would run with, checked as `run` checks it (keys, values, the
    server credentials unless the simulator makes them, the mappings); None once the reason
    is printed."""
    from econe.app import (
        check_instance_types,
        check_mappings,
        check_server_credentials,
        make_sessions,
    )
    from econe.mapping import MappingError
    from econe.one.session import SessionConfigError

    try:
        cfg = _load(args)
        problem = listen.unresolvable(cfg, _listen_host(args, cfg))
        if problem:
            raise ConfigError(problem)
        if not args.simulator:
            check_server_credentials(cfg, make_sessions(cfg))
        check_mappings()  # a broken mapping must not take a running server down on restart
        for warning in check_instance_types(cfg):  # the daemon logs them too
            print(f"econe-server: warning: {warning}", file=sys.stderr)
    except (ConfigError, SessionConfigError, MappingError) as exc:
        print(f"econe-server: {exc}", file=sys.stderr)
        return None
    return cfg


def _listen_host(args: argparse.Namespace, cfg: Config) -> str:
    return "127.0.0.1" if args.simulator and args.host is None else cfg.host


def cmd_start(args: argparse.Namespace, cfg: Config | None = None) -> int:
    """`cfg`: the configuration restart checked already."""
    pid_file = Path(args.pid_file or _default_pid_file())
    cfg = cfg or _preflight(args)
    if cfg is None:
        return 2
    log_file = Path(args.log_file or cfg.log_file or _default_log_file())
    try:
        for path in (pid_file, log_file):
            path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(pid_file.with_name(pid_file.name + ".lock"), "w")  # noqa: SIM115
        log = open(log_file, "ab")  # noqa: SIM115
    except OSError as exc:
        print(f"econe-server: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    with lock, log:
        try:  # one start at a time: two at once would both write the pid file
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            print("econe-server: another start is under way", file=sys.stderr)
            return 1
        return _start_locked(args, cfg, pid_file, log_file, log)


def _start_locked(
    args: argparse.Namespace, cfg: Config, pid_file: Path, log_file: Path, log: Any
) -> int:
    if _read_pid(pid_file):
        print(f"econe-server is already running (pid file {pid_file})", file=sys.stderr)
        return 1
    host = _listen_host(args, cfg)
    if listen.answering(cfg, host):
        print(f"econe-server: {listen.where(cfg, host)} is busy", file=sys.stderr)
        return 1
    cmd = [sys.executable, "-m", "econe.server_cli", "run", "--log-file", str(log_file)]
    cmd += _passthrough(args)
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
    )
    try:
        pid_file.write_text(f"{proc.pid}\n")
        _address_file(pid_file).write_text(listen.where(cfg, host) + "\n")  # restart reads it
    except OSError as exc:
        proc.terminate()
        print(f"econe-server: cannot write {pid_file}: {exc.strerror}", file=sys.stderr)
        return 2
    # answering and the child still alive: the port is the child's, not another process's
    if not listen.wait_until_answering(cfg, host, proc, timeout=30) or proc.poll() is not None:
        _forget(pid_file)
        proc.terminate()
        print(f"econe-server failed to start; see {log_file}", file=sys.stderr)
        return 1
    print(
        f"econe-server started (pid {proc.pid}), listening on {listen.where(cfg, host)}, "
        f"log {log_file}"
    )
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    pid_file = Path(args.pid_file or _default_pid_file())
    pid = _read_pid(pid_file)
    if pid is None:
        print("econe-server is not running", file=sys.stderr)
        _forget(pid_file)
        return 1
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass  # ended meanwhile
    except PermissionError:
        print(f"econe-server: not allowed to stop pid {pid}", file=sys.stderr)
        return 1
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _read_pid(pid_file):
        time.sleep(0.1)
    if _read_pid(pid_file):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _forget(pid_file)
    print(f"econe-server stopped (pid {pid})")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    pid = _read_pid(Path(args.pid_file or _default_pid_file()))
    if pid is None:
        print("econe-server is not running")
        return 3
    print(f"econe-server is running (pid {pid})")
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    cfg = _preflight(args)
    if cfg is None:  # a configuration that cannot start leaves the server up
        return 2
    pid_file = Path(args.pid_file or _default_pid_file())
    if _read_pid(pid_file):
        # a new address someone else holds: the running server stays up too
        host = _listen_host(args, cfg)
        try:
            was = _address_file(pid_file).read_text().strip()  # where start said it listens
        except OSError:
            was = ""  # started by an econe that did not say: as before, not checked
        now = listen.where(cfg, host)
        if was and not listen.same_place(was, now) and listen.answering(cfg, host):
            print(f"econe-server: {now} is busy", file=sys.stderr)
            return 1
        cmd_stop(args)
    return cmd_start(args, cfg)


def _passthrough(args: argparse.Namespace) -> list[str]:
    out: list[str] = []
    for flag in ("config", "host", "port", "sim_port", "state_dir", "sim_speed"):
        value = getattr(args, flag, None)
        if value is not None:
            out += [f"--{flag.replace('_', '-')}", str(value)]
    if args.simulator:
        out.append("--simulator")
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="econe-server", description="Amazon EC2 Query API server for OpenNebula."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, helptext in (
        ("run", "serve in the foreground (logs to stderr unless --log-file)"),
        ("start", "start as a daemon (pid file, log file; SIGHUP opens the log file again)"),
        ("stop", "stop the daemon (exit 1 when none runs)"),
        ("restart", "check the configuration, stop the daemon, start it again (give the "
         "options start had: they are not remembered)"),
        ("status", "tell whether the daemon runs (exit 0) or not (exit 3)"),
    ):  # fmt: skip
        p = sub.add_parser(name, help=helptext, description=helptext)
        # every subcommand takes every option (scripts pass one set to all of them); --help
        # shows those that do something there
        _serving_options(p, shown=name in ("run", "start", "restart"))
        p.add_argument(
            "--pid-file",
            help="daemon pid file (default /var/run/one/econe-server.pid"
            " or $ONE_LOCATION/var/econe-server.pid)"
            if name != "run"
            else argparse.SUPPRESS,
        )
    return parser


def _serving_options(p: argparse.ArgumentParser, shown: bool) -> None:
    def add(*flags: str, **kw: Any) -> None:
        if not shown:
            kw["help"] = argparse.SUPPRESS
        p.add_argument(*flags, **kw)

    add(
        "--config",
        help="econe.conf (default: $ONE_LOCATION/etc/econe.conf, "
        "/etc/one/econe.conf, then the shipped etc/econe.conf)",
    )
    add("--host", help="listen address (overrides :host:)")
    add("--port", type=int, help="listen port (overrides :port:; default 4567)")
    add(
        "--simulator",
        action="store_true",
        help="start onesim with the demo cloud and serve it (the demo mode)",
    )
    add(
        "--sim-port",
        type=int,
        default=None,
        help="onesim's XML-RPC port with --simulator (default 2633)",
    )
    add(
        "--state-dir",
        default=None,
        help="onesim state directory with --simulator (default ./var/demo)",
    )
    add(
        "--sim-speed",
        type=float,
        default=None,
        help="seconds per VM life-cycle step in onesim (default 1; 0 = instant)",
    )
    add(
        "--log-file",
        help="log file (default for start: /var/log/one/econe-server.log or "
        "$ONE_LOCATION/var/econe-server.log; run logs to stderr)",
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run" and args.simulator:
        args.sim_port = 2633 if args.sim_port is None else args.sim_port
        args.state_dir = args.state_dir or "var/demo"
        args.sim_speed = 1.0 if args.sim_speed is None else args.sim_speed
    handler = {
        "run": cmd_run,
        "start": cmd_start,
        "stop": cmd_stop,
        "restart": cmd_restart,
        "status": cmd_status,
    }[args.command]
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
