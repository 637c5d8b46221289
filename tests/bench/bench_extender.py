"""Extender filter+prioritize latency at 1000 and 5000 GPU nodes (NodeNames) vs a bare handler.

Baseline, measured in the same run over the same loopback HTTP, same client session and
connection reuse, both plaintext: an aiohttp handler (same base app and middlewares) that parses
the same body with orjson and echoes the names back, the floor any extender pays. The two servers
run side by side in one process and each iteration sends one pair to each, so load bursts on a
shared machine hit both alike; the heap is frozen once both states are loaded, as `accel serve`
does (`cli.serve.freeze_heap`). A pair is filter on all nodes, then prioritize on the nodes filter
passed (what kube-scheduler sends), each pod new so the learned histogram keeps changing; pods
come in four shapes (1, 2, 4, 8 GPUs) and 50 jobs. Reported, as medians of
ROUNDS rounds (sizes interleaved): p50/p99 per pair over REQUESTS pairs after WARMUP, the ratio
to the bare p99 (target <= 2x; every round's ratio is printed too), the p99 ratio of each verb
on its own (per-request latency), and the growth from 1000 to 5000 nodes (slope in microseconds
per node, also net of the bare handler's own growth, and the growth over 5x nodes; <= 1.0 means
no worse than linear).

Separate lines give the filter's in-process cost at 5000 nodes when its decision is not reused
(the HTTP pods come in four shapes and nothing binds, so there it always is), and the cost of a
new state generation at 5000 nodes: the extender index built from nothing, and rebuilt after one
pod event (the incremental path every watch event takes).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from accel.capacity.inventory import Inventory, build_inventory
from accel.cluster.pods import parse_pod
from accel.placement.core import ExtenderCore
from accel.placement.state import FILTER_MEMO_LIMIT
from cli.serve import freeze_heap
from extender.app import make_app, warm_up
from extender.filter_reply import FilterRenderer
from extender.wire import ExtenderArgs, render_filter
from serving.app import make_base_app
from serving.cluster_state import ClusterState
from serving.metrics import Metrics
from tests.builders import named_gpu_pod, node_object, shared_example_policy

SIZES = (1000, 5000)
REQUESTS = 1000
WARMUP = 50
ROUNDS = 3
P99_TARGET = 2.0  # the pair's p99 over the bare echo's, at every size
FILTER_CALLS = 200
REBUILDS = 5
TYPES = ("nvidia-a100-80gb", "nvidia-h100-80gb", "nvidia-h200-141gb")


def objects(n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    nodes, pods = [], []
    for i in range(n):
        name = f"gpu-{i:05d}"
        nodes.append(node_object(name, TYPES[i % 3], leaf=f"l{i // 32}", spine=f"s{i // 512}"))
        used = i % 9 if i % 9 < 8 else 0
        if used:
            pods.append(
                named_gpu_pod(
                    f"run-{i}", used, profile="large-any", node=name, labels={"accel.dev/job": f"j{i // 64}"}
                )
            )
    return nodes, pods


def inventory_of(nodes: list[dict[str, Any]], pods: list[dict[str, Any]]) -> Inventory:
    parsed = shared_example_policy()
    return build_inventory(nodes, pods, [], catalog=parsed.catalog, policy=parsed.policy)


def cluster(n: int) -> ClusterState:
    return ClusterState.static(shared_example_policy(), inventory_of(*objects(n)))


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


Samples = dict[str, list[float]]  # "filter", "prioritize", "bare_filter", "bare_prioritize": seconds


async def measure(ext: str, bare: str, names: list[str], samples: Samples, tag: str) -> None:
    """One round: WARMUP + REQUESTS filter+prioritize pairs to the extender and the same two bodies
    to the bare handler, interleaved, over one client session (keep-alive, plaintext).

    Prioritize gets the nodes the extender's filter passed, as kube-scheduler sends them; the
    bare handler gets the same two bodies. Building the second body is not timed.
    """
    async with aiohttp.ClientSession() as session:
        for i in range(WARMUP + REQUESTS):
            gpus = (1, 2, 4, 8)[i % 4]
            pod = named_gpu_pod(
                f"p{i}-{tag}", gpus, profile="large-any", labels={"accel.dev/job": f"j{i % 50}"}
            )
            first = orjson.dumps({"Pod": pod, "Nodes": None, "NodeNames": names})
            filtered, reply = await call(session, f"{ext}/filter", first)
            passed = orjson.loads(reply)["NodeNames"]
            second = orjson.dumps({"Pod": pod, "Nodes": None, "NodeNames": passed})
            prioritized, _ = await call(session, f"{ext}/prioritize", second)
            bare_filter, _ = await call(session, f"{bare}/filter", first)
            bare_prioritize, _ = await call(session, f"{bare}/prioritize", second)
            if i >= WARMUP:
                for key, value in zip(
                    samples, (filtered, prioritized, bare_filter, bare_prioritize), strict=True
                ):
                    samples[key].append(value)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def summary(samples: Samples) -> dict[str, float]:
    """ms: p50/p99 per filter+prioritize pair (extender, bare) and p99 per request of each verb."""
    ext = [f + p for f, p in zip(samples["filter"], samples["prioritize"], strict=True)]
    bare = [f + p for f, p in zip(samples["bare_filter"], samples["bare_prioritize"], strict=True)]
    out = {
        "p50": pct(ext, 0.5),
        "p99": pct(ext, 0.99),
        "bare_p50": pct(bare, 0.5),
        "bare_p99": pct(bare, 0.99),
    }
    for key, values in samples.items():
        out[f"{key}_p99"] = pct(values, 0.99)
    return out


def rebuild_cost(n: int) -> dict[str, float]:
    """ms to build the index from nothing, and to rebuild it after one pod event (medians)."""
    nodes, pods = objects(n)
    before = inventory_of(nodes, pods)
    event = named_gpu_pod("event", 1, profile="large-any", node=nodes[0]["metadata"]["name"])
    after = inventory_of(nodes, [*pods, event])
    policy = shared_example_policy().policy
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


def filter_cost(n: int) -> dict[str, float]:
    """us per filter decision + reply at `n` nodes, in-process (medians of FILTER_CALLS calls over
    four pod shapes): reused (a run of same-shape pods, what the HTTP rounds above measure), not
    reused (as after a bind re-classed a candidate), and spelled as lists and dicts and encoded
    by orjson (`render_filter`, the path before the fragment renderer)."""
    view = cluster(n).view()
    names = [f"gpu-{i:05d}" for i in range(n)]
    key = orjson.dumps(names)  # one bytes object, as the app's ArgsReader hands out
    args = ExtenderArgs.model_construct(pod={}, nodes=None, node_names=names)
    out: dict[str, float] = {}
    for label, kept in (("reused", FILTER_MEMO_LIMIT), ("not_reused", 0), ("generic", 0)):
        core = ExtenderCore(filter_memo_limit=kept)
        renderer = FilterRenderer(replies_kept=kept)
        index = core.index(view.generation, view.parsed.policy, view.inventory)
        reqs = [
            core.request(parse_pod(named_gpu_pod(f"f{g}", g, profile="large-any")), index, 0.0)
            for g in (1, 2, 4, 8)
        ]
        times = []
        for i in range(FILTER_CALLS + 8):
            started = time.perf_counter()
            cols = core.filter_columns(index, reqs[i % 4], names, key)
            if label == "generic":
                render_filter(args, core.outcome(index, cols))
            else:
                renderer.render(cols)
            if i >= 8:  # verdict memo and fragments warm
                times.append(time.perf_counter() - started)
        out[label] = statistics.median(times) * 1e6
    return out


async def run() -> dict[int, list[dict[str, float]]]:
    """ROUNDS rounds over every size (sizes interleaved), servers started once per size; the heap is
    frozen after the states load and the indexes are built, as `accel serve` does."""
    servers: dict[int, tuple[str, str, list[str]]] = {}
    runners: list[web.AppRunner] = []
    try:
        for n in SIZES:
            app = make_app(cluster(n), metrics=Metrics())
            warm_up(app)
            (bare_runner, bare), (ext_runner, ext) = await start(bare_app()), await start(app)
            runners += (bare_runner, ext_runner)
            servers[n] = (ext, bare, [f"gpu-{i:05d}" for i in range(n)])
        freeze_heap()
        out: dict[int, list[dict[str, float]]] = {n: [] for n in SIZES}
        for round_ in range(ROUNDS):
            for n, (ext, bare, names) in servers.items():
                samples: Samples = {"filter": [], "prioritize": [], "bare_filter": [], "bare_prioritize": []}
                await measure(ext, bare, names, samples, tag=f"r{round_}")
                out[n].append(summary(samples))
        return out
    finally:
        for runner in runners:
            await runner.cleanup()


def median_of(rounds: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def main() -> int:
    results = asyncio.run(run())
    print(
        f"extender filter+prioritize (2 HTTP calls, NodeNames) vs bare echo, {REQUESTS} pairs after {WARMUP} "
        f"per round, medians of {ROUNDS} rounds, ms:"
    )
    med: dict[int, dict[str, float]] = {}
    missed: list[str] = []
    for n, rounds in results.items():
        m = med[n] = {key: median_of(rounds, key) for key in rounds[0]}
        ratios = sorted(r["p99"] / r["bare_p99"] for r in rounds)
        verb = {
            v: statistics.median(r[f"{v}_p99"] / r[f"bare_{v}_p99"] for r in rounds)
            for v in ("filter", "prioritize")
        }
        print(
            f"  {n:5d} nodes: pair p50 {m['p50']:.2f}  p99 {m['p99']:.2f}  | bare p50 {m['bare_p50']:.2f}  "
            f"p99 {m['bare_p99']:.2f}  | p99 ratio {statistics.median(ratios):.2f}x "
            f"(rounds {', '.join(f'{x:.2f}' for x in ratios)}; target <= {P99_TARGET})  | "
            f"per request p99 ratio: filter {verb['filter']:.2f}x, prioritize {verb['prioritize']:.2f}x"
        )
        if statistics.median(ratios) > P99_TARGET:
            missed.append(f"p99 {statistics.median(ratios):.2f}x at {n} nodes")
    lo, hi = (med[n] for n in SIZES)
    nodes = SIZES[1] - SIZES[0]
    slope_us = (hi["p50"] - lo["p50"]) * 1000 / nodes
    extra_us = ((hi["p50"] - hi["bare_p50"]) - (lo["p50"] - lo["bare_p50"])) * 1000 / nodes
    growth = (hi["p50"] / lo["p50"]) / (SIZES[1] / SIZES[0])
    print(
        f"  growth {SIZES[0]}->{SIZES[1]}: slope {slope_us:.2f} us/node (over bare: {extra_us:.2f} us/node), "
        f"p50 x{hi['p50'] / lo['p50']:.2f} for {SIZES[1] // SIZES[0]}x nodes "
        f"(linear-normalised {growth:.2f}, <= 1.0 is no worse than linear)"
    )
    n = SIZES[-1]
    filters = filter_cost(n)
    print(
        f"  filter at {n} nodes in-process (decision + reply, median us): reused {filters['reused']:.0f}, "
        f"not reused (e.g. after a bind) {filters['not_reused']:.0f}, as lists+dicts+orjson "
        f"{filters['generic']:.0f}"
    )
    cost = rebuild_cost(n)
    print(
        f"  index per generation at {n} nodes: {cost['full']:.1f} ms from nothing, "
        f"{cost['incremental']:.1f} ms after one pod event (incremental, "
        f"x{cost['full'] / cost['incremental']:.0f})"
    )
    if growth > 1.0:
        missed.append(f"growth {growth:.2f} of linear")
    print(f"  targets: p99 <= {P99_TARGET}x at every size, growth no worse than linear -> "
          + (f"MISSED ({'; '.join(missed)})" if missed else "met"))
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
