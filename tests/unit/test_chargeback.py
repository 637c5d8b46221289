"""Chargeback: charges from pod start/end times; counters that one replica advances, exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from accel.quota.chargeback import PodCharge, parse_window, pod_times, usage_between
from api.app import make_app as make_api
from cli.serve import ClusterDeps, build_state
from kube.fake import FakeCluster
from kube.testing import ManualClock, make_configmap, make_namespace, make_node, make_pod, until
from serving.chargeback import ChargebackCounter
from serving.cluster_state import ClusterState
from serving.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
POLICY = {p.name: p.read_text() for p in (ROOT / "examples" / "policy").glob("*.yaml")}
NS = "accel-system"
T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
H100_PRICE = 3.78  # catalog nvidia-h100-80gb USD per GPU-hour


def stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def running_pod(
    name: str, *, gpus: int, start: float, end: float | None = None, namespace: str = "team-nlp"
) -> dict[str, Any]:
    pod = make_pod(name, namespace, node="gpu-1", requests={"nvidia.com/gpu": str(gpus)}, uid=f"uid-{name}",
                   annotations={"accel.dev/profile": "large-any"})
    # The node affinity the webhook writes for large-any (chargeback rule 5 believes the profile
    # only on a pod that carries it): the pod can only run on the profile's types.
    products = ["NVIDIA-H200", "NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB"]
    term = {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In", "values": products}]}
    pod["spec"]["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [term]}}}
    status: dict[str, Any] = {
        "phase": "Running",
        "startTime": stamp(start + 2),
        "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp(start)}],
    }
    if end is not None:
        status["phase"] = "Succeeded"
        status["containerStatuses"] = [{"name": "main", "state": {"terminated": {"finishedAt": stamp(end)}}}]
    pod["status"] = status
    return pod


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"phase": "Pending"}, (None, None)),
        ({"phase": "Running", "startTime": stamp(T0)}, (T0, None)),
        (
            {
                "phase": "Running",
                "startTime": stamp(T0 + 5),
                "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp(T0)}],
            },
            (T0, None),
        ),
        (
            {
                "phase": "Failed",
                "startTime": stamp(T0),
                "containerStatuses": [
                    {"state": {"terminated": {"finishedAt": stamp(T0 + 60)}}},
                    {"state": {"terminated": {"finishedAt": stamp(T0 + 90)}}},
                ],
            },
            (T0, T0 + 90),
        ),
        ({"phase": "Running", "startTime": "yesterday"}, (None, None)),
    ],
    ids=[
        "pending-owes-nothing",
        "start-time",
        "scheduled-condition-first",
        "last-container-ends-it",
        "malformed-time",
    ],
)
def test_pod_times(status: dict[str, Any], expected: tuple[float | None, float | None]) -> None:
    assert pod_times({"status": status}) == expected


def test_a_deleted_running_pod_ends_when_its_deletion_was_seen() -> None:
    assert pod_times({"status": {"phase": "Running", "startTime": stamp(T0)}}, deleted_at=T0 + 30) == (
        T0,
        T0 + 30,
    )


def test_usage_is_the_overlap_with_the_window_times_gpus_and_price() -> None:
    from decimal import Decimal
    from fractions import Fraction

    labels = ("nlp", "team-nlp", "nvidia-h100-80gb", "large-any")
    charges = [PodCharge(labels, Fraction(2), Decimal("3.6"), T0, T0 + 3600),
               PodCharge(labels, Fraction(1, 4), None, T0 + 1800, None)]
    usage = usage_between(charges, T0 + 1800, T0 + 7200)
    assert usage[labels].gpu_seconds == pytest.approx(2 * 1800 + 0.25 * 5400)
    assert usage[labels].cost == pytest.approx(2 * 0.5 * 3.6)


@pytest.mark.parametrize(
    ("text", "seconds"), [("7d", 604800.0), ("12h", 43200.0), ("30m", 1800.0), ("2w", 1209600.0)]
)
def test_parse_window(text: str, seconds: float) -> None:
    assert parse_window(text) == seconds


@pytest.mark.parametrize("text", ["7", "d", "-1d", "1.5h", "7x", ""])
def test_parse_window_refuses_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match="units: s, m, h, d, w"):
        parse_window(text)


def deps(cluster: FakeCluster) -> ClusterDeps:
    return ClusterDeps(source=cluster, cas=cluster, binder=cluster, events=cluster, tokens=cluster)


@pytest.fixture
async def cluster_state() -> AsyncIterator[tuple[FakeCluster, ClusterState]]:
    fake = FakeCluster(controller_namespace=NS)
    fake.apply(make_namespace(NS))
    fake.apply(make_namespace("team-nlp", labels={"team": "nlp"}))
    fake.apply(
        make_node(
            "gpu-1",
            labels={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
            allocatable={"nvidia.com/gpu": "8"},
        )
    )
    fake.apply(make_configmap("accel-policy", NS, POLICY))
    state = build_state(
        deps(fake),
        namespace=NS,
        policy_files=None,
        metrics=Metrics(),
        app_name="t",
        min_rebuild_interval_s=0.0,
    )
    task = asyncio.create_task(state.run())
    await until(lambda: state.ready()[0])
    yield fake, state
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def sample(counter: ChargebackCounter, name: str = "gpu_seconds") -> float:
    return float(
        getattr(counter, name).labels("nlp", "team-nlp", "nvidia-h100-80gb", "large-any")._value.get()
    )


async def test_one_replica_counts_each_interval_once_and_a_restart_resumes_at_the_watermark(
        cluster_state: tuple[FakeCluster, ClusterState]) -> None:
    fake, state = cluster_state
    clock = ManualClock(T0 + 600)
    fake.apply(running_pod("a", gpus=2, start=T0))
    await until(lambda: len(state.watcher.pods.items()) == 1)  # type: ignore[union-attr]
    first = ChargebackCounter(state, fake, CollectorRegistry(), identity="replica-1", clock=clock)
    second = ChargebackCounter(state, fake, CollectorRegistry(), identity="replica-2", clock=clock)
    assert await first.round() and not await second.round()  # replica-1 holds it
    assert sample(first) == pytest.approx(2 * 600)  # rule 3: whole lifetime of pods already running
    assert sample(first, "cost") == pytest.approx(2 * 600 / 3600 * H100_PRICE)
    clock.advance(60)
    assert await first.round() and not await second.round()
    assert sample(first) == pytest.approx(2 * 660) and sample(second) == 0

    restarted = ChargebackCounter(
        state, fake, CollectorRegistry(), identity="replica-1", clock=clock
    )  # same holder, new process
    clock.advance(30)
    assert await restarted.round()
    assert sample(restarted) == pytest.approx(2 * 30)  # from the watermark, not from the pod's start

    clock.advance(120)  # replica-1 is gone for good: after the lease, replica-2 takes over at the watermark
    assert await second.round()
    assert sample(second) == pytest.approx(2 * 120)


async def test_a_pod_deleted_between_rounds_is_charged_until_it_ended(
    cluster_state: tuple[FakeCluster, ClusterState],
) -> None:
    fake, state = cluster_state
    clock = ManualClock(T0 + 100)
    counter = ChargebackCounter(state, fake, CollectorRegistry(), identity="r", clock=clock)
    fake.apply(running_pod("b", gpus=1, start=T0))
    await until(lambda: len(state.watcher.pods.items()) == 1)  # type: ignore[union-attr]
    assert await counter.round()
    fake.apply(running_pod("b", gpus=1, start=T0, end=T0 + 130))
    fake.delete("pods", "b", "team-nlp")
    await until(lambda: state.watcher.pods.items() == [])  # type: ignore[union-attr]
    clock.advance(500)
    assert await counter.round()
    assert sample(counter) == pytest.approx(130)  # 100 s, then 30 s more up to finishedAt; nothing after


async def test_usage_route_from_current_pods_says_so_and_from_prometheus_when_configured(
        cluster_state: tuple[FakeCluster, ClusterState]) -> None:
    fake, state = cluster_state
    now = datetime.now(UTC).timestamp()
    fake.apply(running_pod("c", gpus=4, start=now - 7200, end=now - 3600))
    await until(lambda: len(state.watcher.pods.items()) == 1)  # type: ignore[union-attr]
    # Every team's rows are for usage admins (api.identity.usage_scope); the local stand-in identity
    # makes this test's anonymous client one.
    client = TestClient(TestServer(make_api(state, metrics=Metrics(), dev_identity=("system:masters",))))
    await client.start_server()
    try:
        body = await (await client.get("/api/usage?since=1d")).json()
        assert body["source"] == "pods" and "api.prometheusUrl" in body["note"]
        assert body["rows"] == [
            {"team": "nlp", "type": "nvidia-h100-80gb", "gpuHours": 4.0, "cost": round(4 * H100_PRICE, 2)}
        ]
        bad = await client.get("/api/usage?since=forever")
        assert bad.status == 400 and "units" in await bad.text()

        prometheus = await fake_prometheus()
        try:
            url = str(prometheus.make_url("")).rstrip("/")
            policy = {
                **POLICY,
                "settings.yaml": POLICY["settings.yaml"] + f"\napi:\n  prometheusUrl: {url}\n",
            }
            fake.apply(make_configmap("accel-policy", NS, policy))
            await until(lambda: state.view().parsed.policy.settings.api.prometheus_url == url)
            body = await (await client.get("/api/usage?since=7d")).json()
            assert body["source"] == "prometheus"
            assert body["rows"] == [
                {"team": "vision", "type": "nvidia-a100-80gb", "gpuHours": 2.0, "cost": 3.5}
            ]
            assert prometheus.queries == ['sum by (team, type) (increase(accel_gpu_seconds_total[604800s]))',
                                          'sum by (team, type) (increase(accel_gpu_cost_total[604800s]))']
        finally:
            await prometheus.close()
    finally:
        await client.close()


class FakePrometheus(TestServer):
    queries: list[str]


async def fake_prometheus() -> FakePrometheus:
    """A loopback HTTP server answering the Prometheus instant-query API with fixed samples."""
    async def query(request: web.Request) -> web.Response:
        promql = request.query["query"]
        server.queries.append(promql)
        value = "7200" if "seconds" in promql else "3.5"
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"team": "vision", "type": "nvidia-a100-80gb"}, "value": [T0, value]}]}})

    app = web.Application()
    app.router.add_get("/api/v1/query", query)
    server = FakePrometheus(app, host="127.0.0.1")
    server.queries = []
    await server.start_server()
    return server


@pytest.mark.parametrize(("setting", "expected"), [(None, None), ("cost.example.com/team", "nlp")],
                         ids=["no-setting-no-label", "team-label-for-cost-tools"])
def test_team_pod_label_is_added_only_when_settings_ask(setting: str | None, expected: str | None) -> None:
    import jsonpatch

    from accel.admission.plan import mutate
    from tests.builders import example_policy, gpu_pod, make_context

    policy = example_policy(**({"teamPodLabel": setting} if setting else {}))
    pod = gpu_pod(namespace="nlp")
    decision = mutate(pod, namespace="nlp", ctx=make_context(policy=policy))
    labels = jsonpatch.apply_patch(pod, list(decision.ops))["metadata"]["labels"]
    assert labels.get("cost.example.com/team") == expected


def test_what_a_pod_author_can_edit_after_admission_never_sets_type_or_price() -> None:
    """Annotations are mutable after CREATE (the webhooks see CREATE only): chargeback ignores
    accel's price annotation and believes the type from the node, the profile only when it fits."""
    from accel.quota.chargeback import pod_charge
    from tests.builders import example_policy, make_inventory

    parsed = example_policy()
    pod = running_pod("forged", gpus=1, start=T0, namespace="nlp")
    pod["spec"]["nodeName"] = "a100-1"
    pod["metadata"]["annotations"] = {
        "accel.dev/profile": "legacy-v100",  # V100 profile with costPerGpuHour 0.90
        "accel.dev/gpu-hour-price": "0",
        "accelerator.opendatahub.io/type": "nvidia-l4-24gb",
    }
    charge = pod_charge(pod, policy=parsed.policy, catalog=parsed.catalog, inventory=make_inventory([pod]))
    assert charge is not None
    assert charge.labels == (
        "nlp",
        "nlp",
        "nvidia-a100-80gb",
        "",
    )  # node's type; legacy-v100 does not cover it
    assert charge.price == parsed.catalog["nvidia-a100-80gb"].price.usd_per_gpu_hour  # catalog, not "0"
