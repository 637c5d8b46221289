"""The extender over aiohttp's test client: filter reasons, assumed-bind race, ranking, bind, errors."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from accel.capacity.inventory import Inventory
from extender.app import ROUTES, make_app
from extender.wire import ExtenderFilterResult, HostPriority
from kube.fake import FakeCluster
from kube.testing import ManualClock
from serving.cluster_state import ClusterState
from serving.metrics import Metrics
from tests.builders import (
    inventory,
    mig_node_object,
    named_gpu_pod,
    node_object,
    shared_example_policy,
    shared_node_object,
)

Json = dict[str, Any]


def args(pod: Json, names: list[str]) -> Json:
    return {"Pod": pod, "Nodes": None, "NodeNames": names}


async def client_for(
    aiohttp_client: Any, inv: Inventory, *, binder: Any = None, clock: Any = None
) -> TestClient[Any, Any]:
    state = ClusterState.static(shared_example_policy(), inv)
    app = make_app(state, metrics=Metrics(), binder=binder, clock=clock or ManualClock())
    return await aiohttp_client(app)  # type: ignore[no-any-return]


async def post(client: TestClient[Any, Any], path: str, body: Json) -> Any:
    resp = await client.post(path, json=body)
    assert resp.status == 200, await resp.text()
    return await resp.json()


def test_routes_constant_lists_the_verbs() -> None:
    assert {"/filter", "/prioritize", "/bind"} <= set(ROUTES)


async def test_filter_reasons_read_well_and_split_resolvable(aiohttp_client: Any) -> None:
    nodes = [
        node_object("a100-free"),
        node_object("a100-busy"),
        node_object("h100", "nvidia-h100-80gb"),
        node_object("a100-down", ready=False),
        node_object("a100-cordoned", cordoned=True),
        mig_node_object("a100-mig"),
    ]
    busy = named_gpu_pod("busy", 7, node="a100-busy")
    client = await client_for(aiohttp_client, inventory(nodes, [busy]))
    names = [n["metadata"]["name"] for n in nodes] + ["ghost"]
    body = await post(client, "/filter", args(named_gpu_pod("p", 2), names))
    ExtenderFilterResult.model_validate(body)
    assert body["NodeNames"] == ["a100-free"]
    assert body["Nodes"] is None and body["Error"] == ""
    assert body["FailedNodes"] == {
        "a100-busy": "accel: only 1 of 8 nvidia-a100-80gb GPUs free, pod needs 2",
        "ghost": "accel: node ghost is not in the extender's cache yet (watch catching up)",
    }
    assert body["FailedAndUnresolvableNodes"] == {
        "h100": "accel: node has nvidia-h100-80gb, pod may use nvidia-a100-80gb",
        "a100-down": "accel: node is NotReady",
        "a100-cordoned": "accel: node is cordoned (SchedulingDisabled)",
        "a100-mig": "accel: node has no nvidia.com/gpu (nvidia-a100-80gb)",
    }


@pytest.mark.parametrize(
    ("pod", "node", "reason"),
    [
        pytest.param(
            named_gpu_pod("s", 5, profile="notebook-shared", resource="nvidia.com/gpu.shared"),
            shared_node_object("n", gpus=1, replicas=4),
            "accel: only 4 of 4 nvidia-l4-24gb time-sliced shares (nvidia.com/gpu.shared) free, pod needs 5",
            id="time-sliced-count",
        ),
        pytest.param(
            named_gpu_pod("m", 2, profile="inference-mig", resource="nvidia.com/mig-1g.10gb"),
            mig_node_object("n", slices=1),
            "accel: only 1 of 1 nvidia-a100-80gb MIG 1g.10gb slices free, pod needs 2",
            id="mig-slices",
        ),
    ],
)
async def test_shares_and_slices_are_counted(aiohttp_client: Any, pod: Json, node: Json, reason: str) -> None:
    client = await client_for(aiohttp_client, inventory([node]))
    body = await post(client, "/filter", args(pod, ["n"]))
    assert body["FailedNodes"] == {"n": reason}


async def test_quota_type_narrows_a_multi_type_profile(aiohttp_client: Any) -> None:
    nodes = [node_object("h200", "nvidia-h200-141gb"), node_object("h100", "nvidia-h100-80gb")]
    pod = named_gpu_pod("p", 1, profile="large-any", annotations={"accel.dev/quota-type": "nvidia-h100-80gb"})
    client = await client_for(aiohttp_client, inventory(nodes))
    body = await post(client, "/filter", args(pod, ["h200", "h100"]))
    assert body["NodeNames"] == ["h100"]
    assert "h200" in body["FailedAndUnresolvableNodes"]


async def test_unknown_profile_fails_every_node_unresolvably(aiohttp_client: Any) -> None:
    client = await client_for(aiohttp_client, inventory([node_object("n")]))
    body = await post(client, "/filter", args(named_gpu_pod("p", 1, profile="nope"), ["n"]))
    assert body["NodeNames"] == []
    assert body["FailedAndUnresolvableNodes"]["n"].startswith("accel: profile 'nope' does not exist")


async def test_full_node_objects_answer_with_nodes(aiohttp_client: Any) -> None:
    nodes = [node_object("a"), node_object("b", "nvidia-h100-80gb")]
    client = await client_for(aiohttp_client, inventory(nodes))
    body = await post(
        client,
        "/filter",
        {"Pod": named_gpu_pod("p", 1), "Nodes": {"metadata": {}, "items": nodes}, "NodeNames": None},
    )
    assert body["NodeNames"] is None
    assert [i["metadata"]["name"] for i in body["Nodes"]["items"]] == ["a"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        pytest.param({"Pod": {}, "Nodes": None, "NodeNames": None}, "both are null", id="no-node-form"),
        pytest.param({"NodeNames": ["a"]}, "Pod", id="no-pod"),
        pytest.param({"Pod": {}, "NodeNames": "a"}, "NodeNames", id="names-not-a-list"),
    ],
)
async def test_malformed_args_are_400_with_reason(aiohttp_client: Any, body: Json, fragment: str) -> None:
    client = await client_for(aiohttp_client, inventory([node_object("a")]))
    resp = await client.post("/filter", json=body)
    assert resp.status == 400
    assert fragment in (await resp.json())["error"]


async def test_preference_order_ranks_h200_over_h100_over_a100(aiohttp_client: Any) -> None:
    nodes = [
        node_object("a100"),
        node_object("h100", "nvidia-h100-80gb"),
        node_object("h200", "nvidia-h200-141gb"),
    ]
    client = await client_for(aiohttp_client, inventory(nodes))
    body = await post(
        client, "/prioritize", args(named_gpu_pod("p", 8, profile="large-any"), ["a100", "h100", "h200"])
    )
    scores = {HostPriority.model_validate(h).host: h["Score"] for h in body}
    assert scores["h200"] > scores["h100"] > scores["a100"]
    assert all(0 <= s <= 10 for s in scores.values())


async def test_job_pods_prefer_the_leaf_then_spine_of_their_peers(aiohttp_client: Any) -> None:
    nodes = [
        node_object("peer", leaf="l1", spine="s1"),
        node_object("same-leaf", leaf="l1", spine="s1"),
        node_object("same-spine", leaf="l2", spine="s1"),
        node_object("leaf-name-clash", leaf="l1", spine="s2"),
        node_object("other-zone", zone="z2", leaf="l1", spine="s1"),
    ]
    job = {"training.kubeflow.org/job-name": "llm"}
    placed = named_gpu_pod("w0", 8, node="peer", labels=job)
    client = await client_for(aiohttp_client, inventory(nodes, [placed]))
    names = [n["metadata"]["name"] for n in nodes[1:]]
    body = await post(client, "/prioritize", args(named_gpu_pod("w1", 8, labels=job), names))
    scores = {h["Host"]: h["Score"] for h in body}
    assert scores["same-leaf"] > scores["same-spine"] > scores["leaf-name-clash"] > scores["other-zone"]


async def test_assumed_bind_hides_the_gpu_before_the_watch_catches_up(aiohttp_client: Any) -> None:
    cluster = FakeCluster()
    first, second = named_gpu_pod("first", 1), named_gpu_pod("second", 1)
    for obj in (first, second):
        cluster.apply(obj)
    node = node_object("n", gpus=1)
    clock = ManualClock()
    client = await client_for(aiohttp_client, inventory([node]), binder=cluster, clock=clock)
    assert (await post(client, "/filter", args(first, ["n"])))["NodeNames"] == ["n"]
    bind = {"PodName": "first", "PodNamespace": "team-a", "PodUID": "uid-first", "Node": "n"}
    assert await post(client, "/bind", bind) == {"Error": ""}
    bound = cluster.get("pods", "first", "team-a")
    assert bound is not None and bound["spec"]["nodeName"] == "n"
    assert bound["metadata"]["annotations"]["accelerator.opendatahub.io/type"] == "nvidia-a100-80gb"
    assert bound["metadata"]["annotations"]["accel.dev/devices"] == "0"
    # the state still shows the node empty (no watch update): the assumption must hide GPU 0
    body = await post(client, "/filter", args(second, ["n"]))
    assert body["FailedNodes"] == {"n": "accel: only 0 of 1 nvidia-a100-80gb GPUs free, pod needs 1"}
    clock.advance(31)  # assumeTTLSeconds defaults to 30
    assert (await post(client, "/filter", args(second, ["n"])))["NodeNames"] == ["n"]


async def test_bind_conflict_returns_error_and_drops_the_assumption(aiohttp_client: Any) -> None:
    cluster = FakeCluster()
    pod = named_gpu_pod("p", 1)
    pod["spec"]["nodeName"] = "elsewhere"
    cluster.apply(pod)
    client = await client_for(aiohttp_client, inventory([node_object("n", gpus=1)]), binder=cluster)
    await post(client, "/filter", args(named_gpu_pod("p", 1), ["n"]))
    body = await post(
        client, "/bind", {"PodName": "p", "PodNamespace": "team-a", "PodUID": "uid-p", "Node": "n"}
    )
    assert "conflict" in body["Error"]
    assert (await post(client, "/filter", args(named_gpu_pod("q", 1), ["n"])))["NodeNames"] == ["n"]
    metrics = await (await client.get("/metrics")).text()
    assert 'accel_extender_bind_total{result="conflict"} 1.0' in metrics
    assert 'accel_extender_requests_total{result="ok",verb="filter"} 2.0' in metrics


async def test_bind_of_unknown_pod_is_refused_with_error(aiohttp_client: Any) -> None:
    client = await client_for(aiohttp_client, inventory([node_object("n")]), binder=FakeCluster())
    body = await post(client, "/bind", {"PodName": "x", "PodNamespace": "ns", "PodUID": "u", "Node": "n"})
    assert "not known to the extender" in body["Error"]
