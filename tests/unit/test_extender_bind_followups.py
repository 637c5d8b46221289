"""Bind prices every pod as the type it was bound to; finished pods free their assumptions at once."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from accel.placement.state import UNSEEN_BIND_GRACE_S
from extender.app import make_app
from kube.fake import FakeCluster
from kube.testing import ManualClock
from serving.cluster_state import ClusterState
from serving.metrics import Metrics
from tests.builders import inventory, named_gpu_pod, node_object, shared_example_policy

Json = dict[str, Any]


def args(pod: Json, names: list[str]) -> Json:
    return {"Pod": pod, "Nodes": None, "NodeNames": names}


async def post(client: TestClient[Any, Any], path: str, body: Json) -> Any:
    response = await client.post(path, json=body)
    assert response.status == 200, await response.text()
    return await response.json()


def bind_args(name: str, node: str) -> Json:
    return {"PodName": name, "PodNamespace": "team-a", "PodUID": f"uid-{name}", "Node": node}


async def first_bound(
    aiohttp_client: Any, *, watch_shows_first: bool, clock: ManualClock | None = None
) -> tuple[TestClient[Any, Any], ClusterState, Json, Json]:
    """Pods `first` and `second` (one GPU each) in the API server and node `n` with one GPU; `first`
    filtered and bound to `n` through the extender, the state's watch showing it pending or not yet.
    (client, state, second, node)."""
    cluster = FakeCluster()
    first, second = named_gpu_pod("first", 1), named_gpu_pod("second", 1)
    for obj in (first, second):
        cluster.apply(obj)
    node = node_object("n", gpus=1)
    shown = [first] if watch_shows_first else []
    state = ClusterState.static(shared_example_policy(), inventory([node], shown))
    app = make_app(state, metrics=Metrics(), binder=cluster, clock=clock or ManualClock())
    client = await aiohttp_client(app)
    await post(client, "/filter", args(first, ["n"]))
    assert await post(client, "/bind", bind_args("first", "n")) == {"Error": ""}
    return client, state, second, node


async def test_generic_pod_gets_the_price_of_the_type_it_was_bound_to(aiohttp_client: Any) -> None:
    cluster = FakeCluster()
    pod = named_gpu_pod("any", 2, profile="gpu-any")
    cluster.apply(pod)
    state = ClusterState.static(shared_example_policy(), inventory([node_object("h", "nvidia-h100-80gb")]))
    client = await aiohttp_client(make_app(state, metrics=Metrics(), binder=cluster, clock=ManualClock()))
    await post(client, "/filter", args(pod, ["h"]))
    assert await post(client, "/bind", bind_args("any", "h")) == {"Error": ""}
    notes = cluster.get("pods", "any", "team-a")["metadata"]["annotations"]  # type: ignore[index]
    price = shared_example_policy().catalog["nvidia-h100-80gb"].price_per_gpu_hour
    assert notes["accelerator.opendatahub.io/type"] == "nvidia-h100-80gb"
    assert float(notes["accel.dev/gpu-hour-price"]) == round(price, 4)
    assert float(notes["accel.dev/cost-per-hour"]) == round(2 * price, 4)


async def test_a_price_and_type_the_pod_carried_are_overwritten_at_bind(aiohttp_client: Any) -> None:
    """Issue 21 "forged price": what the author (or the webhook's estimate) wrote never survives binding."""
    cluster = FakeCluster()
    forged = {"accel.dev/gpu-hour-price": "0.01", "accel.dev/cost-per-hour": "0.01",
              "accelerator.opendatahub.io/type": "nvidia-l4-24gb"}
    pod = named_gpu_pod("priced", 1, profile="gpu-any", annotations=forged)
    cluster.apply(pod)
    state = ClusterState.static(shared_example_policy(), inventory([node_object("n", "nvidia-h100-80gb")]))
    client = await aiohttp_client(make_app(state, metrics=Metrics(), binder=cluster, clock=ManualClock()))
    await post(client, "/filter", args({**pod, "metadata": {**pod["metadata"], "annotations": {}}}, ["n"]))
    assert await post(client, "/bind", bind_args("priced", "n")) == {"Error": ""}
    notes = cluster.get("pods", "priced", "team-a")["metadata"]["annotations"]  # type: ignore[index]
    price = shared_example_policy().catalog["nvidia-h100-80gb"].price_per_gpu_hour
    assert notes["accelerator.opendatahub.io/type"] == "nvidia-h100-80gb"
    assert (
        float(notes["accel.dev/gpu-hour-price"]) == float(notes["accel.dev/cost-per-hour"]) == round(price, 4)
    )


async def test_a_finished_pod_frees_its_assumed_gpu_before_the_ttl(aiohttp_client: Any) -> None:
    client, state, second, node = await first_bound(aiohttp_client, watch_shows_first=True)
    assert "n" in (await post(client, "/filter", args(second, ["n"])))["FailedNodes"]
    state.update_static(inventory=inventory([node]))  # `first` finished and was deleted
    assert (await post(client, "/filter", args(second, ["n"])))["NodeNames"] == ["n"]


async def test_a_pod_deleted_before_the_watch_showed_it_frees_its_gpu_after_the_grace(
    aiohttp_client: Any,
) -> None:
    """Found on kube-local: a pod deleted right after its bind, never seen by the extender's watch,
    kept its GPU assumed for the whole TTL (30 s) and kube-scheduler left the next pod pending."""
    clock = ManualClock()
    client, _, second, _ = await first_bound(aiohttp_client, watch_shows_first=False, clock=clock)
    clock.advance(UNSEEN_BIND_GRACE_S - 1)
    assert (
        "n" in (await post(client, "/filter", args(second, ["n"])))["FailedNodes"]
    )  # within the watch's lag
    clock.advance(1)
    assert (await post(client, "/filter", args(second, ["n"])))["NodeNames"] == ["n"]


async def test_a_pod_bound_and_deleted_between_two_requests_frees_its_gpu_at_once(
    aiohttp_client: Any,
) -> None:
    """Found on kube-local: a Job's pods bound, then deleted before the extender was asked anything
    again, were in no index it built (it builds one per request), so only the unseen-bind grace
    freed their GPUs; kube-scheduler, told "only 5 of 8 free" meanwhile, left the next pod pending."""
    client, state, second, node = await first_bound(aiohttp_client, watch_shows_first=False)
    # The watch then showed `first` (bound) and its deletion, all before the next request: the one
    # index built since holds no `first`, only the watch's memory of deleted pods does.
    gone = inventory([node]).model_copy(update={"deleted_pods": frozenset({"uid-first"})})
    state.update_static(inventory=gone)
    assert (await post(client, "/filter", args(second, ["n"])))["NodeNames"] == ["n"]
