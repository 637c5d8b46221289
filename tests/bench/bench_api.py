"""`GET /api/hardware-profiles` with 1,000 GPU nodes and 100 concurrent clients vs a bare handler.

Baseline, measured in the same run the same way: a bare aiohttp handler (same base app, same
middlewares) answering a JSON body of the same size. Each server runs in its own process (so the
100 clients in this process do not steal its event loop); callers rotate between anonymous,
two proxy-header teams and a ServiceAccount-style group, so the per-visibility cache is
exercised, and the state generation moves every GENERATION_EVERY requests so re-renders are part
of the measurement. Connection set-up is warmed up first (keep-alive clients, as a UI
behind a proxy would be). Target: p99 <= 100 ms.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import time
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from accel.capacity.inventory import build_inventory
from kube.testing import make_namespace, make_node, make_pod
from serving.app import make_base_app
from serving.metrics import Metrics

NODES = 1000
CLIENTS = 100
REQUESTS_PER_CLIENT = 40
WARMUP_ROUNDS = 3  # per client, unmeasured: opens the 100 keep-alive connections
TARGET_P99_MS = 100.0
GENERATION_EVERY = 500
PRODUCTS = (
    ("NVIDIA-H200", "8"), ("NVIDIA-H100-80GB-HBM3", "8"), ("NVIDIA-A100-SXM4-80GB", "8"), ("NVIDIA-L4", "4"),
)
HEADERS: tuple[dict[str, str], ...] = (
    {}, {"X-Forwarded-Groups": "team:nlp"}, {"X-Forwarded-Groups": "team:vision,devs"},
    {"X-Forwarded-Groups": "system:serviceaccounts:team-research"},
)


def _objects(busy_shift: int) -> tuple[list[Any], list[Any], list[Any]]:
    nodes, pods = [], []
    for i in range(NODES):
        product, count = PRODUCTS[i % len(PRODUCTS)]
        labels = {
            "nvidia.com/gpu.product": product,
            "nvidia.com/gpu.count": count,
            "nvidia.com/gpu.present": "true",
            "topology.kubernetes.io/zone": f"z{i % 3}",
            "network.topology.nvidia.com/leaf": f"leaf-{i // 32}",
        }
        nodes.append(
            make_node(f"gpu-{i:04d}", labels=labels, allocatable={"nvidia.com/gpu": count, "cpu": "96"})
        )
        used = (i + busy_shift) % (int(count) + 1)
        if used:
            pods.append(
                make_pod(f"job-{i}", "team-nlp", node=f"gpu-{i:04d}", requests={"nvidia.com/gpu": str(used)})
            )
    namespaces = [
        make_namespace(f"team-{t}", labels={"team": t}) for t in ("nlp", "vision", "research", "platform")
    ]
    return nodes, pods, namespaces


def _serve_api(port: int, ready: Any) -> None:
    from pathlib import Path

    from accel.cluster.catalog import load_builtin_catalog
    from accel.policy.loading import parse_policy
    from api.app import make_app
    from serving.cluster_state import ClusterState

    policy_dir = Path(__file__).resolve().parents[2] / "examples" / "policy"
    files = {p.name: p.read_text(encoding="utf-8") for p in policy_dir.glob("*.yaml")}
    files["settings.yaml"] += "\napi: {trustedProxyHeader: X-Forwarded-Groups}\n"
    parsed = parse_policy(files, load_builtin_catalog())
    inventories = []
    for shift in range(2):
        nodes, pods, namespaces = _objects(shift)
        inventories.append(
            build_inventory(nodes, pods, namespaces, catalog=parsed.catalog, policy=parsed.policy)
        )
    state = ClusterState.static(parsed, inventories[0])
    app = make_app(state, metrics=Metrics())
    counter = {"n": 0}

    @web.middleware
    async def churn(request: web.Request, handler: Handler) -> web.StreamResponse:
        counter["n"] += 1
        if counter["n"] % GENERATION_EVERY == 0:  # a watch event: the next request re-renders
            state.update_static(inventory=inventories[(counter["n"] // GENERATION_EVERY) % 2])
        return await handler(request)

    app.middlewares.append(churn)
    ready.set()
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def _serve_bare(port: int, size: int, ready: Any) -> None:
    body = b'{"profiles":"' + b"x" * max(0, size - 16) + b'"}'
    app = make_base_app(
        name="bare", metrics=Metrics(), max_body_bytes=1 << 16, max_concurrency=256, ready=lambda: (True, "")
    )

    async def handle(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app.router.add_get("/api/hardware-profiles", handle)
    ready.set()
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def _wait_up(url: str) -> None:
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.05)  # polling a real external process, with a deadline


async def _load(url: str) -> tuple[list[float], int]:
    """100 keep-alive clients; one unmeasured concurrent round first opens every connection."""
    connector = aiohttp.TCPConnector(limit=CLIENTS)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def client(c: int, rounds: int) -> tuple[list[float], int]:
            times, size = [], 0
            for r in range(rounds):
                started = time.perf_counter()
                async with session.get(url, headers=HEADERS[(c + r) % len(HEADERS)]) as resp:
                    assert resp.status == 200, await resp.text()
                    size = len(await resp.read())
                times.append(time.perf_counter() - started)
            return times, size

        warm = await asyncio.gather(*(client(c, WARMUP_ROUNDS) for c in range(CLIENTS)))
        results = await asyncio.gather(*(client(c, REQUESTS_PER_CLIENT) for c in range(CLIENTS)))
    return [t for times, _ in results for t in times], warm[0][1]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_server(target: Any, args: tuple[Any, ...]) -> tuple[list[float], int]:
    port = _free_port()
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    proc = ctx.Process(target=target, args=(port, *args, ready), daemon=True)
    proc.start()
    try:
        ready.wait(120)
        url = f"http://127.0.0.1:{port}/api/hardware-profiles"
        asyncio.run(_wait_up(url))
        return asyncio.run(_load(url))
    finally:
        proc.terminate()
        proc.join(10)


def main() -> int:
    api_times, size = _run_server(_serve_api, ())
    bare_times, _ = _run_server(_serve_bare, (size,))
    api_p50, api_p99 = _pct(api_times, 0.5), _pct(api_times, 0.99)
    bare_p50, bare_p99 = _pct(bare_times, 0.5), _pct(bare_times, 0.99)
    print(f"{NODES} nodes, {CLIENTS} concurrent clients x {REQUESTS_PER_CLIENT} requests, body {size} bytes, "
          f"state generation moves every {GENERATION_EVERY} requests")
    print(f"bare handler    p50 {bare_p50:7.2f} ms   p99 {bare_p99:7.2f} ms")
    print(f"hardware-profiles p50 {api_p50:7.2f} ms   p99 {api_p99:7.2f} ms   "
          f"(p99 ratio to bare {api_p99 / bare_p99:.2f}x; target p99 <= {TARGET_P99_MS:.0f} ms)")
    return 0 if api_p99 <= TARGET_P99_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
