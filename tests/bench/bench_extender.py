"""Extender filter+prioritize latency at 1000 and 5000 GPU nodes (NodeNames) vs a bare handler.

Baseline, measured in the same run over the same loopback HTTP, same client session and
connection reuse, both plaintext: an aiohttp handler (same base app and middlewares) that parses
the same body with orjson and echoes the names back, the floor any extender pays. The two servers
run side by side and each iteration sends one pair to each, so load bursts on a shared machine
hit both alike. A pair is filter on all nodes, then prioritize on the nodes filter passed (what
kube-scheduler sends), each pod new so the learned histogram keeps changing. Reported: p50/p99
per pair over REQUESTS pairs after WARMUP, the ratio to the bare p99 (target <= 2x), and the
growth from 1000 to 5000 nodes (slope in microseconds per node and the growth over 5x nodes;
<= 1.0 means no worse than linear).

A separate line gives the cost of a new state generation at 5000 nodes: the extender index built
from nothing, and rebuilt after one pod event (the incremental path every watch event takes).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from accel.inventory import Inventory, build_inventory
from accel.placement import ExtenderCore
from extender.app import make_app
from serving.app import make_base_app
from serving.cluster_state import ClusterState
from serving.metrics import Metrics
from tests.unit.extender_builders import gpu_node, gpu_pod, sample_policy

SIZES = (1000, 5000)
REQUESTS = 1000
WARMUP = 50
REBUILDS = 5
TYPES = ("nvidia-a100-80gb", "nvidia-h100-80gb", "nvidia-h200-141gb")


def objects(n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    nodes, pods = [], []
    for i in range(n):
        name = f"gpu-{i:05d}"
        nodes.append(gpu_node(name, TYPES[i % 3], leaf=f"l{i // 32}", spine=f"s{i // 512}"))
        used = i % 9 if i % 9 < 8 else 0
        if used:
            pods.append(
                gpu_pod(
                    f"run-{i}", used, profile="large-any", node=name, labels={"accel.dev/job": f"j{i // 64}"}
                )
            )
    return nodes, pods


def inventory_of(nodes: list[dict[str, Any]], pods: list[dict[str, Any]]) -> Inventory:
    parsed = sample_policy()
    return build_inventory(nodes, pods, [], catalog=parsed.catalog, policy=parsed.policy)


def cluster(n: int) -> ClusterState:
    return ClusterState.static(sample_policy(), inventory_of(*objects(n)))


def bare_app() -> web.Application:
    app = make_base_app(
        name="bare", metrics=Metrics(), max_body_bytes=64 << 20, max_concurrency=64, ready=lambda: (True, "")
    )

    async def echo(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        return web.Response(
            body=orjson.dumps({"NodeNames": body.get("NodeNames")}), content_type="application/json"
        )

    app.router.add_post("/filter", echo)
    app.router.add_post("/prioritize", echo)
    return app


async def start(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def call(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[float, bytes]:
    """(seconds, reply body) for one POST."""
    started = time.perf_counter()
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 200, await resp.text()
        reply = await resp.read()
    return time.perf_counter() - started, reply


async def measure(state: ClusterState, names: list[str]) -> tuple[list[float], list[float]]:
    """(bare, extender) seconds per filter+prioritize pair, interleaved.

    Prioritize gets the nodes the extender's filter passed, as kube-scheduler sends them; the
    bare handler gets the same two bodies. Building the second body is not timed.
    """
    (bare_runner, bare), (ext_runner, ext) = await start(bare_app()), await start(make_app(state, metrics=Metrics()))
    bare_times: list[float] = []
    ext_times: list[float] = []
    try:
        async with aiohttp.ClientSession() as session:
            for i in range(WARMUP + REQUESTS):
                gpus = (1, 2, 4, 8)[i % 4]
                pod = gpu_pod(f"p{i}", gpus, profile="large-any", labels={"accel.dev/job": f"j{i % 50}"})
                first = orjson.dumps({"Pod": pod, "Nodes": None, "NodeNames": names})
                filtered, reply = await call(session, f"{ext}/filter", first)
                passed = orjson.loads(reply)["NodeNames"]
                second = orjson.dumps({"Pod": pod, "Nodes": None, "NodeNames": passed})
                prioritized, _ = await call(session, f"{ext}/prioritize", second)
                bare_filter, _ = await call(session, f"{bare}/filter", first)
                bare_prioritize, _ = await call(session, f"{bare}/prioritize", second)
                if i >= WARMUP:
                    ext_times.append(filtered + prioritized)
                    bare_times.append(bare_filter + bare_prioritize)
    finally:
        await bare_runner.cleanup()
        await ext_runner.cleanup()
    return bare_times, ext_times


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def rebuild_cost(n: int) -> dict[str, float]:
    """ms to build the index from nothing, and to rebuild it after one pod event (medians)."""
    nodes, pods = objects(n)
    before = inventory_of(nodes, pods)
    event = gpu_pod("event", 1, profile="large-any", node=nodes[0]["metadata"]["name"])
    after = inventory_of(nodes, [*pods, event])
    policy = sample_policy().policy
    full, incremental = [], []
    generation = 0
    for _ in range(REBUILDS):
        core = ExtenderCore()
        generation += 1
        started = time.perf_counter()
        core.index(generation, policy, before)
        full.append(time.perf_counter() - started)
        for inventory in (after, before):
            generation += 1
            started = time.perf_counter()
            index = core.index(generation, policy, inventory)
            incremental.append(time.perf_counter() - started)
            assert index.rebuilt_nodes == 1, index.rebuilt_nodes
    return {"full": statistics.median(full) * 1000, "incremental": statistics.median(incremental) * 1000}


async def run() -> dict[int, dict[str, float]]:
    out: dict[int, dict[str, float]] = {}
    for n in SIZES:
        bare, ext = await measure(cluster(n), [f"gpu-{i:05d}" for i in range(n)])
        out[n] = {
            "bare_p50": pct(bare, 0.5),
            "bare_p99": pct(bare, 0.99),
            "p50": pct(ext, 0.5),
            "p99": pct(ext, 0.99),
            "mean": statistics.fmean(ext) * 1000,
        }
    return out


def main() -> int:
    results = asyncio.run(run())
    print(f"extender filter+prioritize (2 HTTP calls, NodeNames, {REQUESTS} pairs after {WARMUP}), ms:")
    for n, r in results.items():
        print(
            f"  {n:5d} nodes: p50 {r['p50']:.2f}  p99 {r['p99']:.2f}  | bare p50 {r['bare_p50']:.2f}  "
            f"p99 {r['bare_p99']:.2f}  | p99 ratio {r['p99'] / r['bare_p99']:.2f}x (target <= 2.0)"
        )
    lo, hi = (results[n] for n in SIZES)
    slope_us = (hi["p50"] - lo["p50"]) * 1000 / (SIZES[1] - SIZES[0])
    growth = (hi["p50"] / lo["p50"]) / (SIZES[1] / SIZES[0])
    print(
        f"  growth 1000->5000: slope {slope_us:.2f} us/node, p50 x{hi['p50'] / lo['p50']:.2f} for 5x nodes "
        f"(linear-normalised {growth:.2f}, <= 1.0 is no worse than linear)"
    )
    n = SIZES[-1]
    cost = rebuild_cost(n)
    print(
        f"  index per generation at {n} nodes: {cost['full']:.1f} ms from nothing, "
        f"{cost['incremental']:.1f} ms after one pod event (incremental, x{cost['full'] / cost['incremental']:.0f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
