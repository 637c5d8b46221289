"""Extender filter+prioritize latency at 1000 and 5000 GPU nodes (NodeNames) vs a bare handler.

Baseline, measured in the same run over the same loopback HTTP: an aiohttp handler that reads
the same body with the same strict JSON reader and echoes the names back (the floor any
extender pays). Reported: p50/p99 per pair of calls (filter then prioritize, each pod new, so
the learned histogram keeps changing), the ratio to the bare p99 (target <= 2x) and the growth
from 1000 to 5000 nodes (slope in microseconds per node and the growth ratio over 5x nodes;
<= 1.0 means no worse than linear).
"""

from __future__ import annotations

import asyncio
import statistics
import time

import aiohttp
import orjson
from aiohttp import web

from accel.inventory import build_inventory
from extender.app import make_app
from serving.app import make_base_app
from serving.body import read_json
from serving.cluster_state import ClusterState
from serving.metrics import Metrics
from tests.unit.extender_builders import gpu_node, gpu_pod, sample_policy

SIZES = (1000, 5000)
REQUESTS = 200
WARMUP = 20
TYPES = ("nvidia-a100-80gb", "nvidia-h100-80gb", "nvidia-h200-141gb")


def cluster(n: int) -> ClusterState:
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
    parsed = sample_policy()
    inv = build_inventory(nodes, pods, [], catalog=parsed.catalog, policy=parsed.policy)
    return ClusterState.static(parsed, inv)


def bare_app() -> web.Application:
    app = make_base_app(
        name="bare", metrics=Metrics(), max_body_bytes=64 << 20, max_concurrency=64, ready=lambda: (True, "")
    )

    async def echo(request: web.Request) -> web.Response:
        body = await read_json(request)
        return web.Response(
            body=orjson.dumps({"NodeNames": body.get("NodeNames")}), content_type="application/json"
        )

    app.router.add_post("/filter", echo)
    app.router.add_post("/prioritize", echo)
    return app


async def measure(app: web.Application, names: list[str]) -> list[float]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    times: list[float] = []
    try:
        async with aiohttp.ClientSession() as session:
            for i in range(WARMUP + REQUESTS):
                gpus = (1, 2, 4, 8)[i % 4]
                pod = gpu_pod(f"p{i}", gpus, profile="large-any", labels={"accel.dev/job": f"j{i % 50}"})
                body = orjson.dumps({"Pod": pod, "Nodes": None, "NodeNames": names})
                started = time.perf_counter()
                for verb in ("filter", "prioritize"):
                    async with session.post(
                        f"http://127.0.0.1:{port}/{verb}",
                        data=body,
                        headers={"Content-Type": "application/json"},
                    ) as resp:
                        assert resp.status == 200, await resp.text()
                        await resp.read()
                if i >= WARMUP:
                    times.append(time.perf_counter() - started)
    finally:
        await runner.cleanup()
    return times


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def run() -> dict[int, dict[str, float]]:
    out: dict[int, dict[str, float]] = {}
    for n in SIZES:
        state = cluster(n)
        names = [f"gpu-{i:05d}" for i in range(n)]
        bare = await measure(bare_app(), names)
        ext = await measure(make_app(state, metrics=Metrics()), names)
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
    print("extender filter+prioritize (2 HTTP calls, NodeNames), ms:")
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
