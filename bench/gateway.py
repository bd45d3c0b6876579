"""Benchmark: DescribeInstances through the gateway vs. the bare oned call it makes.

Run: ``.venv/bin/python bench/gateway.py [--vms 10 10000] [--small 200] [--elastic-ips]``.

For each pool size it seeds onesim with that many VMs owned by `demo`, starts
`econe-server run` (uvicorn, one worker) against it, and measures in the same run:

- baseline: the bare ``one.vmpool.infoextended(-2,-1,-1,-1)`` XML-RPC call as `demo`
  (bytes on the wire, not parsed), what any OpenNebula client pays;
- gateway: a SigV4-signed ``DescribeInstances`` POST, until the last byte of the EC2 XML.

Both through one HTTP client that keeps connections alive, as boto3 does. oned (and onesim)
keep a connection open only when the request asks for it (`Connection: keep-alive`), as econe
does and pyone does not; the small requests' overhead is taken against the call on a kept-alive
connection, the quicker of the two (the one on a new connection is printed too).

It prints both, their ratio, and the gateway's own time (gateway − baseline). Then it sends
`--small` sequential small requests (DescribeInstances on the 10-VM pool, signed beforehand)
and prints the gateway overhead per request (median over interleaved rounds of oned calls and
gateway requests), and for scale the time of a DescribeRegions, which calls no oned at all
(HTTP, authentication, Connexion, rendering), and how long this process takes to parse oned's
answer right then, as a gauge of the machine's current speed (on a shared VM it drifts by half).
Targets (issue 3): 10,000 instances under 1 s of gateway time; under 2 ms of gateway overhead
per small request. Figures vary with the machine's load: read the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from pathlib import Path
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from onesim_pool import populate  # noqa: E402

from econe.one.aio import ack_at_once  # noqa: E402
from econe.one.decode import parse_document_response  # noqa: E402
from onesim.server import SimServer  # noqa: E402

CREDS = Credentials("demo", hashlib.sha256(b"demo").hexdigest())


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_CONNECTIONS: dict[str, http.client.HTTPConnection] = {}


def post(url: str, body: bytes, headers: dict[str, str]) -> bytes:
    """POST on a kept-alive connection per server, as boto3 (urllib3's pool) does; a server
    that closes after each answer (oned, onesim: `Connection: close`) costs a new one."""
    parts = urlsplit(url)
    conn = _CONNECTIONS.get(parts.netloc)
    if conn is None:
        conn = _CONNECTIONS[parts.netloc] = http.client.HTTPConnection(parts.netloc, timeout=300)
    try:
        conn.request("POST", parts.path or "/", body, headers)
        ack_at_once(conn.sock)  # as econe: no 40 ms wait for a kept-alive answer's body
        resp = conn.getresponse()
        data = resp.read()
    except (http.client.HTTPException, OSError):
        del _CONNECTIONS[parts.netloc]
        conn.close()
        raise
    if resp.will_close:
        del _CONNECTIONS[parts.netloc]
        conn.close()
    if resp.status != 200:
        raise OSError(f"{url} answered HTTP {resp.status}")
    return data


def timed(fn, args: list) -> float:
    """The best time of `fn(arg)` over the args."""
    best = float("inf")
    for arg in args:
        t = time.perf_counter()
        fn(arg)
        best = min(best, time.perf_counter() - t)
    return best


def signed(endpoint: str, action: str = "DescribeInstances") -> tuple[bytes, dict[str, str]]:
    """A SigV4-signed EC2 Query POST (body, headers), as boto3 sends it."""
    body = f"Action={action}&Version=2016-11-15"
    req = AWSRequest(
        "POST",
        endpoint + "/",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    SigV4Auth(CREDS, "ec2", "opennebula").add_auth(req)
    return body.encode(), dict(req.headers.items())


def ec2_call(endpoint: str, request: tuple[bytes, dict[str, str]] | None = None) -> bytes:
    body, headers = request or signed(endpoint)
    return post(endpoint + "/", body, headers)


def mean_time(fn, requests: list) -> float:
    t0 = time.perf_counter()
    for request in requests:
        fn(request)
    return (time.perf_counter() - t0) / len(requests)


def start_gateway(
    sim: SimServer, state: Path, elastic_ips: bool = False
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    conf = state / "econe.conf"
    conf.write_text(
        f":one_xmlrpc: {sim.url}\n:ec2_auth: {state / '.one' / 'ec2_auth'}\n:debug_level: 0\n"
        + (":elasticips_vnet_id: 1\n" if elastic_ips else "")  # the demo's address network
    )
    exe = Path(sys.executable).parent / "econe-server"
    cmd = [str(exe), "run", "--config", str(conf), "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            ec2_call(endpoint)
            return proc, endpoint
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                msg = proc.stderr.read().decode()
                raise SystemExit(f"econe-server did not start: {msg}") from None
            time.sleep(0.2)


ROUNDS = 10


def small_requests(sim: SimServer, endpoint: str, rpc: bytes, small: int) -> None:
    """`small` requests of each kind, in ROUNDS interleaved rounds so that the oned calls, the
    gateway's and the DescribeRegions see the same moments of the machine's load; the
    overhead is taken per round and the median printed (with the range over rounds)."""
    rounds = min(ROUNDS, small)
    per_round = max(1, small // rounds)
    # Signed beforehand, so the client's signing is not counted as the gateway's.
    describe = [signed(endpoint) for _ in range(per_round * rounds)]
    regions = [signed(endpoint, "DescribeRegions") for _ in range(per_round * rounds)]
    base, fresh, gate, floor = [], [], [], []
    kept = {"Content-Type": "text/xml", "Connection": "keep-alive"}
    for r in range(rounds):
        part = slice(r * per_round, (r + 1) * per_round)
        base.append(mean_time(lambda _: post(sim.url, rpc, kept), describe[part]))
        fresh.append(
            mean_time(lambda _: post(sim.url, rpc, {"Content-Type": "text/xml"}), describe[part])
        )
        gate.append(mean_time(lambda q: ec2_call(endpoint, q), describe[part]))
        floor.append(mean_time(lambda q: ec2_call(endpoint, q), regions[part]))
    over = sorted(g - b for g, b in zip(gate, base, strict=True))
    t_base, t_gate = statistics.median(base), statistics.median(gate)
    # How fast the machine is right now (a shared VM's speed drifts by half): the time this
    # process takes to parse the very answer oned gave, as the gateway must.
    answer = post(sim.url, rpc, {"Content-Type": "text/xml"})
    parse = [
        timed(lambda _: parse_document_response(answer, ("VM_POOL", "VM")), [0] * 50)
        for _ in range(5)
    ]
    print(
        f"{'':>6}      {per_round * rounds} small requests: oned {t_base * 1000:.2f} ms "
        f"({statistics.median(fresh) * 1000:.2f} ms on a new connection), gateway "
        f"{t_gate * 1000:.2f} ms each → overhead {statistics.median(over) * 1000:.2f} ms "
        f"per request (median of {rounds} rounds, {over[0] * 1000:.2f}–{over[-1] * 1000:.2f}; "
        f"ratio {t_gate / t_base:.2f}x); DescribeRegions (no oned call) "
        f"{statistics.median(floor) * 1000:.2f} ms; machine speed: parsing oned's answer "
        f"{statistics.median(parse) * 1000:.2f} ms"
    )


def measure(n: int, small: int, elastic_ips: bool = False) -> None:
    with tempfile.TemporaryDirectory() as d:
        sim = SimServer(d, port=0, seed="demo", speed=0).start()
        proc = None
        try:
            populate(sim, n)
            proc, endpoint = start_gateway(sim, Path(d), elastic_ips)
            rpc = xmlrpc.client.dumps(
                ("demo:demo", -2, -1, -1, -1), "one.vmpool.infoextended"
            ).encode()
            runs = 5 if n > 1000 else 20
            base = timed(lambda _: post(sim.url, rpc, {"Content-Type": "text/xml"}), [0] * runs)
            gate = timed(lambda q: ec2_call(endpoint, q), [signed(endpoint) for _ in range(runs)])
            size = len(ec2_call(endpoint))
            print(
                f"{n:>6} VMs  oned call {base * 1000:8.1f} ms   gateway {gate * 1000:8.1f} ms   "
                f"ratio {gate / base:5.2f}x   gateway's own time {(gate - base) * 1000:8.1f} ms   "
                f"({size / 1e6:.1f} MB of EC2 XML)"
            )
            if small and n <= 100:
                small_requests(sim, endpoint, rpc, small)
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=15)
            sim.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vms", type=int, nargs="+", default=[10, 10_000])
    ap.add_argument("--small", type=int, default=200)
    ap.add_argument(
        "--elastic-ips",
        action="store_true",
        help="with :elasticips_vnet_id: set: DescribeInstances also reads the address network",
    )
    args = ap.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    for n in args.vms:
        measure(n, args.small, args.elastic_ips)
    return 0


if __name__ == "__main__":
    sys.exit(main())
