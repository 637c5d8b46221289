"""Soak: steady mixed load on all three servers over HTTPS on 127.0.0.1; memory and p99 must stay flat.

    python -m tests.bench.soak --seconds 600      # `make soak`
    python -m tests.bench.soak --seconds 60       # what `make bench` runs (tests/bench/bench_soak.py)

One child process serves the real webhook, extender and API apps (static example cluster, one
FakeCluster holding the quota ledger) exactly as `accel serve` wires them, each on its own TLS
port. This process runs `--concurrency` closed-loop clients over a fixed request mix (webhook
mutate/validate of a GPU pod, half of them dryRun; extender filter/prioritize over every node;
API profile list, node view and an estimate). The child's RSS is read from /proc every second.

Pass (printed with the ratios):
- RSS at the end <= 1.10 x RSS at the end of warm-up (the first 20 % of the run, at least one
  window: imports, caches, the learned workload mix, TLS sessions);
- p99 of the last window <= 1.5 x p99 of the first window after warm-up (p99 flat);
- no failed request (anything but the expected status, or a transport error).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson

RSS_GROWTH_LIMIT = 1.10
WARM_UP_SHARE = 0.2
P99_FLAT_LIMIT = 1.5
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Call:
    app: str
    method: str
    path: str
    body: bytes | None = None


def request_mix() -> list[Call]:
    from tests.corpus.make_corpus import review
    from tests.fuzz import apps

    dry = review(dryRun=True)
    wet = review()
    names = [str(n["metadata"]["name"]) for n in apps.example_objects()["nodes"]]
    pod = wet["request"]["object"] | {"metadata": {**wet["request"]["object"]["metadata"], "uid": "soak-uid"}}
    args = orjson.dumps({"Pod": pod, "Nodes": None, "NodeNames": names})
    estimate = orjson.dumps({"model": "llama-3-8b", "tokens": 1e10, "precision": "bf16", "gpus": 8})
    return [
        Call("webhook", "POST", "/mutate", orjson.dumps(dry)),
        Call("webhook", "POST", "/validate", orjson.dumps(dry)),
        Call("webhook", "POST", "/mutate", orjson.dumps(wet)),
        Call("webhook", "POST", "/validate", orjson.dumps(wet)),
        Call("extender", "POST", "/filter", args),
        Call("extender", "POST", "/prioritize", args),
        Call("api", "GET", "/api/hardware-profiles"),
        Call("api", "GET", "/api/nodes"),
        Call("api", "POST", "/api/estimates", estimate),
    ]


# --- the server process -------------------------------------------------------------------------


async def serve_all(cert_dir: str) -> None:
    """Serve the three apps on free TLS ports; print `ports webhook=N extender=N api=N`; stop on SIGTERM."""
    from serving.metrics import Metrics
    from serving.run import serve
    from serving.tls import ReloadingTLS
    from tests.fuzz import apps

    cluster = apps.example_cluster()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    ports: dict[str, int] = {}
    tasks = []
    for name in apps.APP_NAMES:
        app = apps.make_app(name, apps.static_state(), apps.AppDeps(cluster=cluster, metrics=Metrics()))
        started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        tasks.append(asyncio.create_task(serve(app, host="127.0.0.1", port=0, tls=ReloadingTLS(cert_dir),
                                               stop=stop, on_started=started.set_result)))  # fmt: skip
        ports[name] = await started
    print("ports " + " ".join(f"{k}={v}" for k, v in ports.items()), flush=True)
    await asyncio.gather(*tasks)


# --- the load side ------------------------------------------------------------------------------


@dataclass
class Window:
    latencies: list[float] = field(default_factory=list)
    failures: int = 0
    rss_kib: list[int] = field(default_factory=list)

    def p99_ms(self) -> float:
        if len(self.latencies) < 2:
            return float("nan")
        return statistics.quantiles(self.latencies, n=100)[98] * 1000


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def drive(ports: dict[str, int], ctx: ssl.SSLContext, *, seconds: float, window_s: float,
                concurrency: int, pid: int) -> list[Window]:  # fmt: skip
    from tests.fuzz import apps

    mix = request_mix()
    windows = [Window() for _ in range(max(1, round(seconds / window_s)))]
    start = time.monotonic()
    deadline = start + seconds

    def current() -> Window:
        return windows[min(len(windows) - 1, int((time.monotonic() - start) / window_s))]

    async def client(worker: int, session: aiohttp.ClientSession) -> None:
        i = worker
        while time.monotonic() < deadline:
            call = mix[i % len(mix)]
            i += 1
            url = f"https://localhost:{ports[call.app]}{call.path}"
            headers = {"Content-Type": "application/json", **apps.auth_headers(call.app)}
            began = time.perf_counter()
            try:
                async with session.request(
                    call.method, url, data=call.body, headers=headers, ssl=ctx
                ) as resp:
                    await resp.read()
                    ok = resp.status == 200
            except (aiohttp.ClientError, OSError, TimeoutError):
                ok = False
            window = current()
            window.latencies.append(time.perf_counter() - began)
            window.failures += 0 if ok else 1

    async def sample_rss() -> None:
        while time.monotonic() < deadline:
            current().rss_kib.append(rss_kib(pid))
            await asyncio.sleep(1.0)

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        await asyncio.gather(sample_rss(), *(client(w, session) for w in range(concurrency)))
    return windows


def verdict(windows: list[Window]) -> tuple[bool, list[str]]:
    """Print-ready lines and pass/fail per the module docstring."""
    lines = [
        f"{'window':>6} {'requests':>9} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'fail':>5} {'RSS MiB':>8}"
    ]
    for i, w in enumerate(windows):
        p50 = statistics.median(w.latencies) * 1000 if w.latencies else float("nan")
        rss = max(w.rss_kib) / 1024 if w.rss_kib else float("nan")
        lines.append(f"{i:>6} {len(w.latencies):>9} {len(w.latencies) / WINDOW_S[0]:>7.0f} {p50:>7.1f} "
                     f"{w.p99_ms():>7.1f} {w.failures:>5} {rss:>8.1f}")  # fmt: skip
    # Warm-up = the first 20 % of the run (at least one window): imports, caches sized by the
    # cluster, the learned workload mix, TLS sessions. Growth after it is what a leak looks like.
    warm = windows[max(0, math.ceil(len(windows) * WARM_UP_SHARE) - 1)]
    base_rss = max(warm.rss_kib)
    end_rss = max(windows[-1].rss_kib)
    first = windows[1] if len(windows) > 2 else windows[0]
    p99_ratio = windows[-1].p99_ms() / first.p99_ms()
    rss_ratio = end_rss / base_rss
    failures = sum(w.failures for w in windows)
    total = sum(len(w.latencies) for w in windows)
    ok = rss_ratio <= RSS_GROWTH_LIMIT and p99_ratio <= P99_FLAT_LIMIT and failures == 0
    lines += [
        f"requests: {total}, failed: {failures}",
        f"RSS end/warm: {rss_ratio:.3f} (limit {RSS_GROWTH_LIMIT}) [{base_rss / 1024:.1f} -> "
        f"{end_rss / 1024:.1f} MiB]",
        f"p99 last/first window: {p99_ratio:.2f} (limit {P99_FLAT_LIMIT}) "
        f"[{first.p99_ms():.1f} -> {windows[-1].p99_ms():.1f} ms]",
        f"SOAK {'PASS' if ok else 'FAIL'}",
    ]
    return ok, lines


WINDOW_S = [60.0]


def run(seconds: float, *, concurrency: int = 8, window_s: float | None = None) -> int:
    """Start the server process, drive it for `seconds`, print the table and verdict; 0 = pass."""
    from tests.integration.tls_fixtures import client_context, make_cert_dir

    WINDOW_S[0] = window_s or (60.0 if seconds >= 300 else max(5.0, seconds / 6))
    with tempfile.TemporaryDirectory(prefix="accel-soak-") as tmp:
        state = make_cert_dir(Path(tmp))
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.soak", "--serve", tmp],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().split()
            if not line or line[0] != "ports":
                raise RuntimeError(f"soak server did not start: {line}")
            ports = {k: int(v) for k, v in (item.split("=") for item in line[1:])}
            windows = asyncio.run(
                drive(
                    ports,
                    client_context(state.bundle),
                    seconds=seconds,
                    window_s=WINDOW_S[0],
                    concurrency=concurrency,
                    pid=proc.pid,
                )
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    ok, lines = verdict(windows)
    print(
        f"soak: {seconds:.0f}s, {concurrency} clients, mixed load over webhook/extender/api (HTTPS, loopback)"
    )
    print("\n".join(lines), flush=True)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--window", type=float, default=None, help="window length in seconds (default: 60)")
    parser.add_argument("--serve", metavar="CERT_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(serve_all(args.serve))
        return 0
    return run(args.seconds, concurrency=args.concurrency, window_s=args.window)


if __name__ == "__main__":
    sys.exit(main())
