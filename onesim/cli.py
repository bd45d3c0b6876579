"""``onesim`` console script."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from .server import SimServer


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="onesim", description="OpenNebula 7.4 oned XML-RPC simulator")
    p.add_argument("--state-dir", required=True, help="directory for the SQLite state and .one/")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=2633)
    p.add_argument("--seed", choices=("demo", "none"), default="demo")
    p.add_argument(
        "--speed",
        type=float,
        default=None,
        help="seconds per lifecycle step (default $ONESIM_SPEED or 1.0; 0 = instant)",
    )
    p.add_argument(
        "--server-x509-cert",
        help="PEM certificate that server_x509 users' tokens are checked with (:core_auth: x509)",
    )
    p.add_argument("--max-conn", type=int, default=15, help="oned.conf MAX_CONN")
    p.add_argument("--keepalive-timeout", type=int, default=15, help="oned.conf KEEPALIVE_TIMEOUT")
    p.add_argument(
        "--keepalive-max-conn", type=int, default=30, help="oned.conf KEEPALIVE_MAX_CONN"
    )
    a = p.parse_args(argv)
    if a.speed is None:
        a.speed = float(os.environ.get("ONESIM_SPEED", "1.0"))
    seed = None if a.seed == "none" else a.seed
    sim = SimServer(
        a.state_dir,
        a.host,
        a.port,
        seed,
        a.speed,
        a.server_x509_cert,
        max_conn=a.max_conn,
        keepalive_timeout=a.keepalive_timeout,
        keepalive_max_conn=a.keepalive_max_conn,
    )
    print(f"onesim 7.4.0 listening on {sim.url}", flush=True)
    print(f"one_auth: {os.path.join(sim.state_dir, '.one', 'one_auth')}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        sim.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sim.httpd.server_close()
        with sim.sim.lock:
            sim.sim.store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
