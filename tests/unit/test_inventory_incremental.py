"""The incremental inventory (accel.capacity.inventory.IncrementalInventory, fed by the informers'
change callbacks through serving.cluster_state) always equals `build_inventory` of the informer
stores from scratch, over any sequence of watch events, missed events and relists, and keeps
the same PodView / NodeInventory objects for what did not change (the contract the admission
context's memos rely on)."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accel.capacity.inventory import IncrementalInventory, Inventory, NodeInventory, build_inventory
from accel.cluster.catalog import load_builtin_catalog
from accel.cluster.pods import PodView
from kube.fake import FakeCluster
from kube.informer import ClusterWatcher, Informer
from kube.names import Kind, object_key
from kube.protocol import EventType, JsonObject, WatchEvent
from kube.testing import make_namespace, make_node, make_pod
from serving.cluster_state import ClusterState

ROOT = Path(__file__).resolve().parents[2]
POLICY = {p.name: p.read_text() for p in (ROOT / "examples" / "policy").glob("*.yaml")}
CATALOG = load_builtin_catalog()
NAMESPACES = ("team-nlp", "other")  # few names: the same objects change again and again
NODES = ("gpu-a", "gpu-b", "gpu-c")
PRODUCTS = ("NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB", "Tesla-T4")


class ListingSource:
    """The fake cluster as the informers' source, listing in key order (as etcd does) or in
    reverse, so a relist may hand the store a different order than the watch built."""

    def __init__(self, fake: FakeCluster) -> None:
        self.fake = fake
        self.reverse = False

    async def list(
        self, kind: Kind, namespace: str | None = None, *, name: str | None = None
    ) -> tuple[list[JsonObject], str]:
        items, version = await self.fake.list(kind, namespace, name=name)
        return sorted(items, key=object_key, reverse=self.reverse), version

    def watch(
        self, kind: Kind, resource_version: str, namespace: str | None = None, *,
        name: str | None = None, timeout_s: float | None = None,
    ) -> AsyncIterator[WatchEvent]:
        return self.fake.watch(kind, resource_version, namespace, name=name, timeout_s=timeout_s)


# --- the operations -------------------------------------------------------------------------
deliver = st.booleans()  # False: the watch misses the event (only a relist shows the change)
# weighted towards what the bookkeeping must get right: live pods bound to existing nodes in
# varying order, a few pods changing again and again
pod_op = st.tuples(
    st.just("pod"), st.integers(0, 2), st.sampled_from(("team-nlp", "team-nlp", "other")),
    st.sampled_from((None, "gpu-a", "gpu-a", "gpu-b", "gpu-c")),
    st.sampled_from(("Pending", "Running", "Running", "Succeeded", "Failed")), st.integers(0, 2),
    st.integers(0, 2), deliver,
)
delete_pod_op = st.tuples(
    st.just("delete-pod"), st.integers(0, 2), st.sampled_from(("team-nlp", "team-nlp", "other")), deliver
)
# deleted and created again under the same name before the next build (a StatefulSet's pod)
recreate_pod_op = st.tuples(
    st.just("recreate-pod"), st.integers(0, 2), st.sampled_from(("team-nlp", "team-nlp", "other")),
    st.sampled_from((None, "gpu-a", "gpu-b")),
)
node_op = st.tuples(
    st.just("node"), st.sampled_from(NODES), st.sampled_from(PRODUCTS), st.integers(0, 8), st.booleans(),
    deliver,
)
delete_node_op = st.tuples(st.just("delete-node"), st.sampled_from(NODES), deliver)
namespace_op = st.tuples(
    st.just("namespace"), st.sampled_from(NAMESPACES), st.sampled_from(("nlp", "vision", "")), deliver
)
delete_namespace_op = st.tuples(st.just("delete-namespace"), st.sampled_from(NAMESPACES), deliver)
relist_op = st.tuples(st.just("relist"), st.sampled_from(("pods", "nodes", "namespaces")), st.booleans())
operation = st.one_of(pod_op, pod_op, pod_op, delete_pod_op, recreate_pod_op, node_op, delete_node_op,
                      namespace_op, delete_namespace_op, relist_op)
# each operation, then a build and check or not (several changes between two builds: batching)
operations = st.lists(st.tuples(operation, st.booleans()), min_size=4, max_size=40)


class World:
    """A fake cluster, a watcher over it whose events the test delivers by hand, and the state."""

    def __init__(self) -> None:
        self.fake = FakeCluster()
        self.source = ListingSource(self.fake)
        self.watcher = ClusterWatcher(self.source)
        self.state = ClusterState(catalog=CATALOG, namespace="accel-system", watcher=self.watcher,
                                  fixed_policy=POLICY, min_rebuild_interval_s=0.0)
        self.previous: tuple[Inventory, dict[str, JsonObject], dict[str, JsonObject]] | None = None
        self.generation = 0  # of the view last checked

    def informer(self, kind: str) -> Informer:
        return {"pods": self.watcher.pods, "nodes": self.watcher.nodes,
                "namespaces": self.watcher.namespaces}[kind]

    def put(self, obj: JsonObject, kind: str, send: bool) -> None:
        stored = self.fake.apply(obj)
        informer = self.informer(kind)
        if send:
            event_type: EventType = "MODIFIED" if informer.get(object_key(stored)) is not None else "ADDED"
            informer._apply(WatchEvent(event_type, copy.deepcopy(stored)))

    def remove(self, kind: Kind, name: str, namespace: str | None, send: bool) -> None:
        gone = self.fake.get(kind, name, namespace)
        if gone is None:
            return
        self.fake.delete(kind, name, namespace)
        if send:
            gone = copy.deepcopy(gone)
            gone["metadata"]["resourceVersion"] = self.fake.resource_version
            self.informer(kind)._apply(WatchEvent("DELETED", gone))

    def run(self, op: tuple[Any, ...]) -> None:
        match op:
            case ("pod", index, namespace, node, phase, gpus, cpus, send):
                pod = make_pod(f"p{index}", namespace, node=node,
                               requests={"nvidia.com/gpu": str(gpus), "cpu": str(cpus)})
                pod["status"]["phase"] = phase
                self.put(pod, "pods", send)
            case ("delete-pod", index, namespace, send):
                self.remove("pods", f"p{index}", namespace, send)
            case ("recreate-pod", index, namespace, node):
                self.remove("pods", f"p{index}", namespace, True)
                self.run(("pod", index, namespace, node, "Running", 1, 1, True))
            case ("node", name, product, gpus, cordoned, send):
                node = make_node(name, labels={"nvidia.com/gpu.product": product},
                                 allocatable={"nvidia.com/gpu": str(gpus), "cpu": "64", "memory": "512Gi"})
                node["spec"] = {"unschedulable": cordoned}
                self.put(node, "nodes", send)
            case ("delete-node", name, send):
                self.remove("nodes", name, None, send)
            case ("namespace", name, team, send):
                self.put(make_namespace(name, labels={"team": team} if team else {}), "namespaces", send)
            case ("delete-namespace", name, send):
                self.remove("namespaces", name, None, send)
            case ("relist", kind, reverse):
                self.source.reverse = reverse
                asyncio.run(self.informer(kind)._relist())

    def check(self) -> None:
        """The state's inventory equals a from-scratch build of the stores, and keeps the objects
        of what did not change since the previous check."""
        view = self.state.view()
        inventory, w = view.inventory, self.watcher
        fresh = build_inventory(
            w.nodes.items(), w.pods.items(), w.namespaces.items(), catalog=view.parsed.catalog,
            policy=view.parsed.policy, deleted_pods=self.state.deleted_pods.uids(),
        )
        if view.generation == self.generation:
            # Served from cache: no store changed its version since (a relist that found nothing
            # new changes nothing but the store's order), so only the order of pods may differ.
            assert self.previous is not None and inventory is self.previous[0]
            assert sorted(inventory.pods, key=key_of) == sorted(fresh.pods, key=key_of)
            assert [unordered(n) for n in inventory.nodes] == [unordered(n) for n in fresh.nodes]
            return
        self.generation = view.generation
        assert list(inventory.pods) == list(fresh.pods)  # same pods, same (store) order
        assert list(inventory.nodes) == list(fresh.nodes)
        assert inventory == fresh
        assert dict(inventory.namespace_labels) == dict(fresh.namespace_labels)
        assert dict(inventory.namespace_annotations) == dict(fresh.namespace_annotations)
        assert inventory.deleted_pods == fresh.deleted_pods
        for name in (*NODES, "nowhere"):
            assert inventory.node(name) == fresh.node(name)
        assert inventory.type_index(CATALOG).token == fresh.type_index(CATALOG).token
        pods = {object_key(p): p for p in w.pods.items()}
        nodes = {object_key(n): n for n in w.nodes.items()}
        if self.previous is not None:
            self.check_kept(self.previous, inventory, pods, nodes)
        self.previous = (inventory, pods, nodes)

    @staticmethod
    def check_kept(
        previous: tuple[Inventory, dict[str, JsonObject], dict[str, JsonObject]],
        inventory: Inventory,
        pods: dict[str, JsonObject],
        nodes: dict[str, JsonObject],
    ) -> None:
        before, old_pods, old_nodes = previous
        old_views: dict[str, PodView] = {p.key: p for p in before.pods}
        for view in inventory.pods:
            if view.key in old_views and version(old_pods[view.key]) == version(pods[view.key]):
                assert view is old_views[view.key], f"unchanged pod {view.key} got a new PodView"
        for node in inventory.nodes:
            old: NodeInventory | None = before.node(node.name)
            if (
                old is not None
                and version(old_nodes[node.name]) == version(nodes[node.name])
                and bound(old_pods, node.name) == bound(pods, node.name)
            ):
                assert node is old, f"unchanged node {node.name} got a new NodeInventory"


def key_of(pod: PodView) -> str:
    return pod.key


def unordered(node: NodeInventory) -> NodeInventory:
    return node.model_copy(update={"pod_keys": tuple(sorted(node.pod_keys))})


def version(obj: JsonObject) -> tuple[str, str]:
    meta = obj["metadata"]
    return meta.get("uid", ""), meta.get("resourceVersion", "")


def bound(pods: dict[str, JsonObject], node: str) -> list[tuple[str, tuple[str, str]]]:
    """The versions of the non-terminal pods bound to `node`, in store order."""
    return [(key, version(p)) for key, p in pods.items()
            if p["spec"].get("nodeName") == node and p["status"]["phase"] not in ("Succeeded", "Failed")]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_incremental_inventory_equals_a_build_from_scratch(ops: list[tuple[tuple[Any, ...], bool]]) -> None:
    world = World()
    for name in NODES[:2]:  # most pods then land on a node that exists
        world.run(("node", name, PRODUCTS[0], 8, False, True))
    for op, build in ops:
        world.run(op)
        if build:
            world.check()
    world.check()
    asyncio.run(world.watcher.pods._relist())  # whatever the watch missed, a relist puts right
    asyncio.run(world.watcher.nodes._relist())
    world.check()


def test_store_changes_without_callbacks_are_read_whole() -> None:
    """Rule 3: an inventory fed by no callback at all still shows the stores (its first build and
    any count mismatch read them whole)."""
    catalog = CATALOG
    inventory = IncrementalInventory()
    node = make_node("gpu-a", labels={"nvidia.com/gpu.product": PRODUCTS[0]},
                     allocatable={"nvidia.com/gpu": "8"})
    pods = {f"ns/p{i}": make_pod(f"p{i}", "ns", node="gpu-a", requests={"nvidia.com/gpu": "1"})
            for i in range(3)}
    nodes = {"gpu-a": node}
    first = inventory.build(nodes, pods, {}, catalog=catalog)
    assert first.node("gpu-a") is not None and first.node("gpu-a").allocated == {"nvidia.com/gpu": 3}  # type: ignore[union-attr]
    pods["ns/p3"] = make_pod("p3", "ns", node="gpu-a", requests={"nvidia.com/gpu": "2"})
    second = inventory.build(nodes, pods, {}, catalog=catalog)
    assert second == build_inventory(nodes.values(), pods.values(), catalog=catalog)
    assert second.node("gpu-a").allocated == {"nvidia.com/gpu": 5}  # type: ignore[union-attr]


def test_a_relisted_pod_keeps_its_view_and_the_store_order() -> None:
    """A relist hands the store new dict objects (and the list's order); unchanged pods keep their
    PodView, and Inventory.pods follows the store's new order."""
    world = World()
    for i in range(4):
        world.run(("pod", i, "team-nlp", None, "Pending", 1, 1, True))
    world.check()
    before = {p.key: p for p in world.state.view().inventory.pods}
    world.run(("pod", 4, "team-nlp", None, "Pending", 1, 1, False))  # missed by the watch
    world.run(("relist", "pods", True))  # reverse key order
    world.check()
    after = world.state.view().inventory.pods
    assert [p.key for p in after] == [f"team-nlp/p{i}" for i in (4, 3, 2, 1, 0)]
    assert all(p is before[p.key] for p in after[1:])


def test_pods_bound_out_of_store_order_are_listed_in_store_order() -> None:
    """A node's pods follow the store's order (as build_inventory lists them), not the order the
    binds arrived in."""
    world = World()
    world.run(("node", "gpu-a", PRODUCTS[0], 8, False, True))
    for index in (0, 1):
        world.run(("pod", index, "team-nlp", None, "Pending", 1, 0, True))
    world.check()
    for index in (1, 0):  # the newer pod is bound first
        world.run(("pod", index, "team-nlp", "gpu-a", "Running", 1, 0, True))
        world.check()
    node = world.state.view().inventory.node("gpu-a")
    assert node is not None and node.pod_keys == ("team-nlp/p0", "team-nlp/p1")


def test_a_pod_deleted_and_created_again_between_builds_moves_to_the_end() -> None:
    """The store forgets a deleted key and appends it when created again; so does the inventory,
    even when both happen between two builds."""
    world = World()
    world.run(("node", "gpu-a", PRODUCTS[0], 8, False, True))
    for index in (0, 1):
        world.run(("pod", index, "team-nlp", "gpu-a", "Running", 1, 0, True))
    world.check()
    world.run(("delete-pod", 0, "team-nlp", True))
    world.run(("pod", 0, "team-nlp", "gpu-a", "Running", 2, 0, True))
    world.check()
    inventory = world.state.view().inventory
    assert [p.key for p in inventory.pods] == ["team-nlp/p1", "team-nlp/p0"]
    node = inventory.node("gpu-a")
    assert node is not None and node.pod_keys == ("team-nlp/p1", "team-nlp/p0")
    assert node.allocated == {"nvidia.com/gpu": 3}


def test_an_unreadable_node_value_is_logged_once_each_time_it_appears(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Only the nodes a rebuild read again are checked for warnings, yet each warning is logged
    when it appears, not again while it stays, and again after it was fixed and came back."""
    caplog.set_level(logging.WARNING, logger="serving.cluster_state")
    world = World()

    def node(gpus: str, cordoned: bool = False) -> JsonObject:
        found = make_node("gpu-a", labels={"nvidia.com/gpu.product": PRODUCTS[0]},
                          allocatable={"nvidia.com/gpu": gpus})
        found["spec"] = {"unschedulable": cordoned}
        return found

    def logged() -> list[str]:
        found = [r.__dict__["problem"] for r in caplog.records
                 if r.getMessage() == "node status value unreadable"]
        caplog.clear()
        return found

    world.put(node("abc"), "nodes", True)
    world.check()
    expected = ["status.allocatable[nvidia.com/gpu]", "status.capacity[nvidia.com/gpu]"]
    assert [p.split(" is ")[0] for p in logged()] == expected
    world.put(node("abc", cordoned=True), "nodes", True)  # read again, same warning
    world.run(("pod", 0, "team-nlp", "gpu-a", "Running", 1, 0, True))
    world.check()
    assert logged() == []
    world.put(node("8"), "nodes", True)
    world.check()
    assert logged() == []
    world.put(node("abc"), "nodes", True)
    world.check()
    assert [p.split(" is ")[0] for p in logged()] == expected
