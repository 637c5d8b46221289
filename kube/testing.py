"""Test helpers for code built on `kube/`: object builders, a manual clock and a recording sleep.

Shipped with the package (like httpx's MockTransport) so every engineer's tests build the same
Kubernetes-shaped dicts and drive time without real sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

JsonObject = dict[str, Any]


def make_node(name: str, *, labels: dict[str, str] | None = None,
              allocatable: dict[str, str] | None = None) -> JsonObject:
    """A `v1 Node` with the given labels and allocatable resources (capacity = allocatable)."""
    resources = dict(allocatable or {})
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": dict(labels or {})},
        "status": {"allocatable": resources, "capacity": dict(resources)},
    }


def make_pod(name: str, namespace: str = "default", *, node: str | None = None,
             requests: dict[str, str] | None = None, labels: dict[str, str] | None = None,
             annotations: dict[str, str] | None = None, uid: str | None = None) -> JsonObject:
    """A `v1 Pod` with one container requesting (and limited to) `requests`."""
    meta: JsonObject = {"name": name, "namespace": namespace, "labels": dict(labels or {}),
                        "annotations": dict(annotations or {})}
    if uid is not None:
        meta["uid"] = uid
    resources = {"requests": dict(requests or {}), "limits": dict(requests or {})}
    spec: JsonObject = {"containers": [{"name": "main", "image": "busybox", "resources": resources}]}
    if node is not None:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": {"phase": "Pending"}}


def make_namespace(name: str, *, labels: dict[str, str] | None = None) -> JsonObject:
    """A `v1 Namespace` carrying `kubernetes.io/metadata.name` like the API server sets it."""
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name, **(labels or {})}}}


def make_configmap(name: str, namespace: str, data: dict[str, str]) -> JsonObject:
    """A `v1 ConfigMap`."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
            "data": dict(data)}


def make_hardware_profile(name: str, namespace: str = "opendatahub", *, gpu: str | None = "nvidia.com/gpu",
                          default: int | str = 1, maximum: int | str | None = None,
                          node_selector: dict[str, str] | None = None, queue: str | None = None,
                          annotations: dict[str, str] | None = None, enabled: bool = True) -> JsonObject:
    """An OpenDataHub `infrastructure.opendatahub.io/v1alpha1` HardwareProfile (schema in
    tests/data/crds/): a CPU identifier plus, unless `gpu` is None, one Accelerator identifier;
    Node scheduling with `node_selector`, or Queue scheduling in LocalQueue `queue`."""
    identifiers: list[JsonObject] = [
        {"identifier": "cpu", "displayName": "CPU", "resourceType": "CPU", "minCount": 1, "defaultCount": 2}]
    if gpu is not None:
        accelerator: JsonObject = {"identifier": gpu, "displayName": "GPU", "resourceType": "Accelerator",
                                   "minCount": 1, "defaultCount": default}
        if maximum is not None:
            accelerator["maxCount"] = maximum
        identifiers.append(accelerator)
    scheduling: JsonObject = ({"type": "Queue", "kueue": {"localQueueName": queue}} if queue is not None
                              else {"type": "Node", "node": {"nodeSelector": dict(node_selector or {})}})
    return {"apiVersion": "infrastructure.opendatahub.io/v1alpha1", "kind": "HardwareProfile",
            "metadata": {"name": name, "namespace": namespace, "annotations": dict(annotations or {})},
            "spec": {"displayName": name.upper(), "enabled": enabled, "identifiers": identifiers,
                     "scheduling": scheduling}}


class ManualClock:
    """A monotonic clock that only moves when a test calls `advance`."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingSleep:
    """An `asyncio.sleep` stand-in: records each delay, optionally advances a clock, then yields once."""

    def __init__(self, clock: ManualClock | None = None) -> None:
        self.delays: list[float] = []
        self._clock = clock

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self._clock is not None:
            self._clock.advance(seconds)
        await asyncio.sleep(0)


async def until(predicate: Callable[[], bool], *, max_yields: int = 10_000) -> None:
    """Yield to the event loop until `predicate()` holds; fail loudly instead of hanging."""
    for _ in range(max_yields):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"condition not reached after {max_yields} event-loop turns")
