"""Webhook throughput and p99 of /mutate + /validate versus a bare aiohttp echo, same TLS, same client.

Baseline, measured in the same run: an app from the same `make_base_app` (same middlewares) whose
/mutate and /validate read the body with the same strict JSON reader, parse it and echo an
allowed AdmissionReview with the uid. Both are served with `serving.run.serve` over HTTPS
(TLS >= 1.2, one test CA) on 127.0.0.1 and driven by one aiohttp client with CONCURRENCY
workers on keep-alive connections.

Workloads: a realistic GPU pod (ReplicaSet-created, profile a100-80gb, team nlp with quota, the
quota ledger in a FakeCluster with real CAS writes; each pod has its own reservation id, and
a simulated watch shows admitted pods every WATCH_PERIOD_S, which releases their reservations, as
in a live cluster) and a
non-GPU pod (fast path). Targets: GPU throughput >= 0.6x bare and p99 <= 2x bare; non-GPU
throughput >= 0.9x bare.
"""

from __future__ import annotations

import asyncio
import copy
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import jsonpatch
import orjson
from aiohttp import web

from accel.admission import mutate
from accel.admission_context import build_context
from accel.pods import parse_pod
from kube.fake import FakeCluster
from serving.app import make_base_app
from serving.body import read_json
from serving.cluster_state import ClusterState
from serving.metrics import Metrics
from serving.run import serve
from serving.tls import ReloadingTLS
from tests.integration.tls_fixtures import client_context, make_cert_dir
from tests.unit.admission_fixtures import example_policy, gpu_pod, make_inventory, review
from webhook.app import make_app

CONCURRENCY = 8
PAIRS = 800
ROUNDS = 3
WARMUP = 100
RESERVATION_TTL_S = 120.0  # the default: pods are released by the watch, not by expiry
WATCH_PERIOD_S = 0.2  # ClusterState rebuilds the inventory at most every 0.2 s
RUNNING = 300  # GPU pods alive at any time in the simulated cluster
BENCH_TEAMS = [{"name": "nlp", "quota": {"nvidia-a100-80gb": 1_000_000, "*": 1_000_000}}]
TARGETS = {"gpu_throughput": 0.6, "gpu_p99": 2.0, "plain_throughput": 0.9}


def bare_app() -> web.Application:
    app = make_base_app(name="bare", metrics=Metrics(), max_body_bytes=3 << 20, max_concurrency=256,
                        ready=lambda: (True, ""))

    async def echo(request: web.Request) -> web.Response:
        body = await read_json(request)
        uid = (body.get("request") or {}).get("uid", "")
        answer = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"uid": uid, "allowed": True}}
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    app.router.add_post("/mutate", echo)
    app.router.add_post("/validate", echo)
    return app


def bodies(gpu: bool) -> list[tuple[bytes, bytes]]:
    """(mutate body, validate body) per pod; the validate body carries the mutated pod."""
    parsed = example_policy(teams=BENCH_TEAMS, quota={"reservationTTLSeconds": RESERVATION_TTL_S})
    ctx = build_context(parsed, make_inventory())
    template = gpu_pod(profile="a100-80gb", gpus="1", labels={"app": "serve", "pod-template-hash": "5d8f"})
    if not gpu:
        template["metadata"].pop("annotations")
        template["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "1"}, "limits": {"cpu": "1"}}
    template["spec"]["containers"][0]["env"] = [{"name": f"V{i}", "value": "x" * 20} for i in range(10)]
    decision = mutate(template, namespace="nlp", ctx=ctx, reservation_id="template")
    mutated = jsonpatch.apply_patch(template, list(decision.ops)) if decision.ops else template
    out = []
    for i in range(WARMUP + PAIRS):
        validated = copy.deepcopy(mutated)
        if gpu:
            validated["metadata"]["annotations"]["accel.dev/reservation"] = f"pod-{i}"
        out.append((orjson.dumps(review(template, uid=f"pod-{i}")), orjson.dumps(review(validated, uid=f"pod-{i}-v"))))
    return out


async def drive(port: int, ctx: Any, work: list[tuple[bytes, bytes]], done: list[int]) -> tuple[float, list[float]]:
    """Throughput (pairs/s) and per-request latencies over the measured part of `work`; the index
    of every admitted pod is appended to `done` (what the API server would then store)."""
    latencies: list[float] = []
    queue = list(enumerate(work))
    headers = {"Content-Type": "application/json"}

    async def worker(session: aiohttp.ClientSession) -> None:
        while queue:
            index, (mutate_body, validate_body) = queue.pop(0)
            for path, body in (("/mutate", mutate_body), ("/validate", validate_body)):
                started = time.perf_counter()
                async with session.post(f"https://127.0.0.1:{port}{path}", data=body, ssl=ctx, headers=headers) as r:
                    assert r.status == 200, await r.text()
                    answer = await r.json(loads=orjson.loads)
                    assert answer["response"]["allowed"], answer
                if index >= WARMUP:
                    latencies.append(time.perf_counter() - started)
            done.append(index)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as session:
        warm, queue[:] = queue[:WARMUP], queue[WARMUP:]
        queue[:0] = warm
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
    return len(work) / elapsed, latencies


async def watch(state: ClusterState, work: list[tuple[bytes, bytes]], done: list[int]) -> None:
    """Play the informer: every WATCH_PERIOD_S the state shows the last RUNNING admitted pods
    (older ones have finished), so reservations are released as in a live cluster."""
    views = [parse_pod(orjson.loads(validate)["request"]["object"]) for _, validate in work]
    base = make_inventory()
    seen = 0
    while True:
        await asyncio.sleep(WATCH_PERIOD_S)
        if len(done) != seen:
            seen = len(done)
            pods = tuple(views[i] for i in done[-RUNNING:])
            state.update_static(inventory=base.model_copy(update={"pods": pods}))


async def measure(app: web.Application, cert_dir: Path, ctx: Any, work: list[tuple[bytes, bytes]],
                  state: ClusterState | None = None) -> tuple[float, float]:
    stop, started = asyncio.Event(), asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(app, host="127.0.0.1", port=0, tls=ReloadingTLS(cert_dir), stop=stop,
                                     shutdown_timeout=5, on_started=started.set_result))
    port = await started
    done: list[int] = []
    watcher = asyncio.create_task(watch(state, work, done)) if state is not None else None
    try:
        throughput, latencies = await drive(port, ctx, work, done)
    finally:
        if watcher is not None:
            watcher.cancel()
        stop.set()
        await task
    ordered = sorted(latencies)
    return throughput, ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000


def webhook_app() -> tuple[web.Application, ClusterState]:
    parsed = example_policy(teams=BENCH_TEAMS, quota={"reservationTTLSeconds": RESERVATION_TTL_S})
    state = ClusterState.static(parsed, make_inventory())
    return make_app(state, metrics=Metrics(), ledger_store=FakeCluster(), replica_id="bench"), state


async def run() -> dict[str, tuple[float, float, float, float]]:
    """Best of ROUNDS alternating runs per variant (2 shared cores make single runs noisy)."""
    with tempfile.TemporaryDirectory() as tmp:
        cert_dir = Path(tmp)
        ctx = client_context(make_cert_dir(cert_dir).bundle)
        results = {}
        for name, gpu in (("gpu", True), ("plain", False)):
            work = bodies(gpu)
            bare_runs, hook_runs = [], []
            for _ in range(ROUNDS):
                bare_runs.append(await measure(bare_app(), cert_dir, ctx, work))
                app, state = webhook_app()
                hook_runs.append(await measure(app, cert_dir, ctx, work, state))
            results[name] = (
                max(t for t, _ in hook_runs),
                min(p for _, p in hook_runs),
                max(t for t, _ in bare_runs),
                min(p for _, p in bare_runs),
            )
    return results


def main() -> int:
    results = asyncio.run(run())
    ok = True
    print(f"webhook /mutate+/validate over HTTPS, {PAIRS} pairs x best of {ROUNDS}, {CONCURRENCY} concurrent clients:")
    for name, (tput, p99, bare_tput, bare_p99) in results.items():
        ratio, p99_ratio = tput / bare_tput, p99 / bare_p99
        print(f"  {name:5s} pod: {tput:7.0f} pairs/s (bare {bare_tput:7.0f}) -> {ratio:.2f}x throughput | "
              f"p99 {p99:.2f} ms (bare {bare_p99:.2f}) -> {p99_ratio:.2f}x")
        if name == "gpu":
            ok &= ratio >= TARGETS["gpu_throughput"] and p99_ratio <= TARGETS["gpu_p99"]
        else:
            ok &= ratio >= TARGETS["plain_throughput"]
    print(f"  targets: GPU >= {TARGETS['gpu_throughput']}x throughput and p99 <= {TARGETS['gpu_p99']}x; "
          f"non-GPU >= {TARGETS['plain_throughput']}x -> {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
