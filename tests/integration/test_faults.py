"""Faults through ClusterState + the real apps: an unreachable, slow or compacting API server, a broken
policy ConfigMap, and a webhook replica killed while holding quota reservations.

Time is injected (ManualClock for the watches, the webhook's `clock` for reservation expiry); the
only real waiting is on the event loop, synchronised with `kube.testing.until`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import jsonpatch
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from accel.cluster.catalog import load_builtin_catalog
from kube.fake import FakeCluster
from kube.informer import Backoff, ClusterWatcher
from kube.names import POLICY_CONFIGMAP
from kube.policy_source import PolicySource
from kube.testing import ManualClock, RecordingSleep, make_node, until
from serving.cluster_state import ClusterState
from serving.metrics import Metrics
from tests.corpus.make_corpus import review
from tests.fuzz import apps

NS = "accel-system"
Client = TestClient[web.Request, web.Application]


@dataclass
class Live:
    cluster: FakeCluster
    state: ClusterState
    clock: ManualClock
    metrics: Metrics
    clients: dict[str, Client]


def policy_configmap(files: dict[str, str], manager: str, when: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": POLICY_CONFIGMAP, "namespace": NS,
                         "managedFields": [{"manager": manager, "operation": "Update", "time": when}]},
            "data": files}  # fmt: skip


@pytest.fixture
async def live() -> AsyncIterator[Live]:
    """All three apps on one watched ClusterState over a FakeCluster holding the policy ConfigMap."""
    for name in apps.APP_NAMES:
        if not apps.available(name):
            pytest.skip(f"{name}/app.py has not landed yet")
    clock = ManualClock()
    cluster = apps.example_cluster()
    cluster.apply(policy_configmap(apps.example_files(), "helm", "2026-01-01T00:00:00Z"))
    watcher = ClusterWatcher(cluster, controller_namespace=NS, backoff=Backoff(initial_s=1, max_s=8),
                             clock=clock, sleep=RecordingSleep(clock), rand=lambda: 0.0)  # fmt: skip
    metrics = Metrics()
    state = ClusterState(catalog=load_builtin_catalog(), namespace=NS, watcher=watcher, metrics=metrics,
                         monotonic=clock, min_rebuild_interval_s=0)  # fmt: skip
    state.policy_source = PolicySource(watcher.policy, state.on_policy, events=cluster)
    task = asyncio.create_task(state.run())
    clients: dict[str, Client] = {}
    try:
        await until(lambda: state.ready()[0])
        for name in apps.APP_NAMES:
            app = apps.make_app(name, state, apps.AppDeps(cluster=cluster, metrics=Metrics()))
            clients[name] = TestClient(TestServer(app, host="127.0.0.1"))
            await clients[name].start_server()
        yield Live(cluster, state, clock, metrics, clients)
    finally:
        for client in clients.values():
            await client.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def readyz(live: Live) -> dict[str, int]:
    return {name: (await client.get("/readyz")).status for name, client in live.clients.items()}


async def test_unreachable_api_server_turns_readyz_false_then_recovers_without_restart(live: Live) -> None:
    assert await readyz(live) == {"webhook": 200, "extender": 200, "api": 200}
    live.cluster.set_unreachable(True)
    live.cluster.apply(make_node("gpu-new-01"))  # changed while we cannot see it
    limit = live.state.view().parsed.policy.settings.api.max_staleness_seconds
    await until(lambda: not live.state.ready()[0])  # backoff sleeps advance the manual clock
    assert live.clock.now > 1000 + limit
    assert await readyz(live) == {"webhook": 503, "extender": 503, "api": 503}
    reason = (await (await live.clients["api"].get("/readyz")).json())["reason"]
    assert "Unreachable" in reason and "no successful list/watch" in reason
    # Answers stay prompt and explicit meanwhile: the API refuses stale data with a reason, no hang.
    async with asyncio.timeout(5):
        resp = await live.clients["api"].get("/api/hardware-profiles", headers=apps.auth_headers("api"))
        assert resp.status in (200, 503) and (await resp.json()).get("error", "ok")
    live.cluster.set_unreachable(False)
    await until(lambda: live.state.ready()[0])
    assert await readyz(live) == {"webhook": 200, "extender": 200, "api": 200}
    assert "gpu-new-01" in {n.name for n in live.state.view().inventory.nodes}
    assert live.metrics.registry.get_sample_value("accel_cluster_state_fresh", {"app": "accel"}) == 1


async def test_410_gone_relists_and_keeps_serving(live: Live) -> None:
    before = live.state.watcher.pods.relists if live.state.watcher else 0
    live.cluster.compact()
    live.cluster.apply(make_node("gpu-after-compaction"))
    assert live.state.watcher is not None
    await until(lambda: live.state.watcher is not None and live.state.watcher.pods.relists > before)
    await until(lambda: "gpu-after-compaction" in {n.name for n in live.state.view().inventory.nodes})
    assert await readyz(live) == {"webhook": 200, "extender": 200, "api": 200}


async def test_hung_api_server_does_not_stall_answers(live: Live) -> None:
    """Requests are answered from the watched cache: an API server that never answers is not on the path."""
    warm = await live.clients["api"].get("/api/hardware-profiles", headers=apps.auth_headers("api"))
    assert warm.status == 200  # the caller's TokenReview is cached, as after any first request
    gate = asyncio.Event()

    async def hang(_seconds: float) -> None:
        await gate.wait()

    live.cluster._sleep = hang  # every new API call now hangs until the gate opens
    live.cluster.set_latency(1.0)
    live.cluster.end_watches()  # informers reconnect into the hung server
    names = sorted(n.name for n in live.state.view().inventory.nodes)
    args = orjson.dumps({"Pod": review()["request"]["object"], "Nodes": None, "NodeNames": names})
    async with asyncio.timeout(5):
        filtered = await live.clients["extender"].post("/filter", data=args)
        profiles = await live.clients["api"].get("/api/hardware-profiles", headers=apps.auth_headers("api"))
    assert filtered.status == 200 and profiles.status == 200
    gate.set()


async def test_broken_policy_keeps_last_good_with_event_metric_and_audit(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="accel.audit.policy")
    good = live.state.view().parsed
    broken = dict(
        apps.example_files(), **{"profiles.yaml": "profiles:\n- name: broken\n  sharing: sideways\n"}
    )
    live.cluster.apply(policy_configmap(broken, "mallory-edit", "2026-02-02T10:00:00Z"))
    invalid = {"result": "invalid"}
    await until(lambda: live.metrics.registry.get_sample_value("accel_policy_reload_total", invalid) == 1)
    assert live.state.view().parsed.policy == good.policy  # last good policy stays in force
    assert await readyz(live) == {"webhook": 200, "extender": 200, "api": 200}
    assert live.state.policy_source is not None
    await live.state.policy_source.drain()
    (event,) = [e for e in live.cluster.events if e["reason"] == "PolicyRejected"]
    assert event["type"] == "Warning" and event["involvedObject"]["name"] == POLICY_CONFIGMAP
    assert "profiles.yaml: profiles[0].sharing" in event["message"]
    rejected = [
        r
        for r in caplog.records
        if r.name == "accel.audit.policy" and r.__dict__.get("who") == "mallory-edit"
    ]
    assert len(rejected) == 1
    record = rejected[0].__dict__
    assert record["accepted"] is False and record["when"] == "2026-02-02T10:00:00Z"
    assert "+  sharing: sideways" in record["diff"] and record["errors"]
    # A good change afterwards is accepted and audited with its author and diff.
    fixed = dict(apps.example_files(), **{"settings.yaml": apps.example_files()["settings.yaml"].replace(
        "mode: enforce", "mode: warn")})  # fmt: skip
    live.cluster.apply(policy_configmap(fixed, "alice-kubectl", "2026-02-02T11:00:00Z"))
    await until(
        lambda: live.metrics.registry.get_sample_value("accel_policy_reload_total", {"result": "ok"}) == 2
    )
    assert live.state.view().parsed.policy.settings.mode.value == "warn"
    accepted = [r.__dict__ for r in caplog.records if r.__dict__.get("who") == "alice-kubectl"]
    assert accepted and accepted[0]["accepted"] is True and "+mode: warn" in accepted[0]["diff"]


# --- a webhook replica killed while holding reservations -------------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _validate(client: Client, uid: str) -> bool | None:
    """True/False = the replica's decision; None = the replica died before answering. As the API
    server does, /validate sees the pod after /mutate's patch (validation refuses a typed pod
    without the mutating webhook's node affinity)."""
    try:
        mutated = await (await client.post("/mutate", data=orjson.dumps(review(uid=uid)))).json()
        pod = review(uid=uid)["request"]["object"]
        if "patch" in mutated["response"]:
            pod = jsonpatch.apply_patch(pod, orjson.loads(base64.b64decode(mutated["response"]["patch"])))
        resp = await client.post("/validate", data=orjson.dumps(review(pod, uid=uid)))
        data = await resp.json()
    except Exception:
        return None
    allowed: bool = data["response"]["allowed"]
    return allowed


def _ledger(cluster: FakeCluster) -> dict[str, Any]:
    cm = cluster.get("configmaps", "accel-quota-ledger", NS)
    reservations: dict[str, Any] = orjson.loads(cm["data"]["ledger.json"])["reservations"] if cm else {}
    return reservations


async def _capacity(make: Callable[[str], web.Application]) -> int:
    """How many 1-GPU admissions the team has room for, measured on a scratch cluster."""
    probe = TestClient(TestServer(make("probe")))
    await probe.start_server()
    try:
        count = 0
        while await _validate(probe, f"probe-{count}") and count < 100:
            count += 1
        return count
    finally:
        await probe.close()


async def test_killed_replica_leaks_nothing_past_ttl_and_quota_never_exceeded() -> None:
    if not apps.available("webhook"):
        pytest.skip("webhook/app.py has not landed yet")
    clock = Clock(1_000_000.0)
    cluster = apps.example_cluster()
    state = apps.static_state()
    ttl = state.view().parsed.policy.settings.quota.reservation_ttl_seconds

    def make(replica: str, store: FakeCluster = cluster) -> web.Application:
        return apps.make_app("webhook", state, apps.AppDeps(cluster=store, metrics=Metrics(), clock=clock,
                                                            replica_id=replica))  # fmt: skip

    capacity = await _capacity(lambda r: make(r, apps.example_cluster()))
    assert 0 < capacity < 100
    cluster.set_latency(0.002)  # real ledger round trips, so the replicas interleave
    a, b = TestClient(TestServer(make("replica-a"))), TestClient(TestServer(make("replica-b")))
    await a.start_server()
    await b.start_server()
    burst = [asyncio.create_task(_validate(a if i % 2 else b, f"burst-{i}")) for i in range(3 * capacity)]
    await until(lambda: len(_ledger(cluster)) >= 2)
    await a.close()  # replica-a dies mid-burst, with reservations in the ledger
    results = await asyncio.gather(*burst)
    allowed = sum(r is True for r in results)
    held = _ledger(cluster)
    assert allowed <= capacity, f"{allowed} admitted with room for {capacity}"
    assert len(held) <= capacity, "the ledger never holds more than the quota"
    assert any(r is None for r in results[1::2]), "some of replica-a's admissions were cut off"
    # Nothing can be admitted while the dead replica's reservations are still live...
    if len(held) == capacity:
        assert await _validate(b, "during-ttl") is False
    # ...and past their lifetime they are gone: the survivor gets the whole quota back, no more.
    clock.now += ttl + 1
    regained = 0
    while await _validate(b, f"after-{regained}") and regained < 100:
        regained += 1
    assert regained == capacity
    assert all(not rid.startswith("burst-") for rid in _ledger(cluster)), "expired reservations were pruned"
    await b.close()
