"""A typed, read-only view of a Pod: what it asks for, where it runs, whose it is.

Kubernetes computes a pod's effective request per resource as
`max(max(regular init containers), sum(app containers) + sum(sidecar init containers))`
(sidecars are init containers with `restartPolicy: Always`). We use the same rule so a GPU asked
for only by an init container is still counted, exactly once.
https://kubernetes.io/docs/concepts/workloads/pods/init-containers/#resource-sharing-within-containers
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from accel.labels import is_accelerator_resource
from accel.quantity import QuantityError, parse_bytes, parse_count, parse_milli

PROFILE_ANNOTATION = "accel.dev/profile"
ODH_PROFILE_ANNOTATION = "opendatahub.io/hardware-profile-name"
TYPE_ANNOTATION = "accelerator.opendatahub.io/type"
DEVICES_ANNOTATION = "accel.dev/devices"
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


class PodView(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str = ""
    namespace: str = ""
    uid: str = ""
    labels: Mapping[str, str] = Field(default_factory=dict)
    annotations: Mapping[str, str] = Field(default_factory=dict)
    node_name: str | None = None
    phase: str = "Pending"
    scheduler_name: str | None = None
    deleting: bool = False
    # Effective requests of accelerator resources (whole units), and CPU/memory for fit checks.
    accelerators: Mapping[str, int] = Field(default_factory=dict)
    cpu_milli: int = 0
    memory_bytes: int = 0

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES

    @property
    def requested_profile(self) -> str | None:
        return self.annotations.get(PROFILE_ANNOTATION) or self.annotations.get(ODH_PROFILE_ANNOTATION)

    @property
    def wants_accelerators(self) -> bool:
        return any(count > 0 for count in self.accelerators.values())


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def container_requests(container: Mapping[str, Any]) -> dict[str, str]:
    """Requests with limits filling in missing requests (a limit alone implies the request)."""
    resources = _mapping(container.get("resources"))
    merged = {str(k): v for k, v in _mapping(resources.get("limits")).items()}
    merged.update({str(k): v for k, v in _mapping(resources.get("requests")).items()})
    return merged


def _containers(spec: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(app containers + sidecars, regular init containers), each as its merged requests."""
    init = [_mapping(c) for c in _list(spec.get("initContainers"))]
    running = [_mapping(c) for c in _list(spec.get("containers"))]
    running += [c for c in init if c.get("restartPolicy") == "Always"]
    regular_init = [c for c in init if c.get("restartPolicy") != "Always"]
    return [container_requests(c) for c in running], [container_requests(c) for c in regular_init]


def effective_request(spec: Mapping[str, Any], resource: str, parse: Callable[[Any], int]) -> int:
    """The pod's effective request of one resource (see module docstring); bad values count 0."""
    running, regular_init = _containers(spec)

    def amount(requests: Mapping[str, Any]) -> int:
        if resource not in requests:
            return 0
        try:
            return max(0, parse(requests[resource]))
        except QuantityError:
            return 0

    return max([sum(amount(r) for r in running), *(amount(r) for r in regular_init)])


def requested_resource_names(spec: Mapping[str, Any]) -> set[str]:
    running, regular_init = _containers(spec)
    return {name for requests in (*running, *regular_init) for name in requests}


def parse_pod(obj: Mapping[str, Any]) -> PodView:
    """Build a PodView from a Pod object dict; never raises on odd input."""
    metadata = _mapping(obj.get("metadata"))
    spec = _mapping(obj.get("spec"))
    status = _mapping(obj.get("status"))
    accelerators = {
        name: count
        for name in sorted(requested_resource_names(spec))
        if is_accelerator_resource(name) and (count := effective_request(spec, name, parse_count)) > 0
    }
    return PodView(
        name=str(metadata.get("name") or metadata.get("generateName") or ""),
        namespace=str(metadata.get("namespace") or ""),
        uid=str(metadata.get("uid") or ""),
        labels={str(k): str(v) for k, v in _mapping(metadata.get("labels")).items()},
        annotations={str(k): str(v) for k, v in _mapping(metadata.get("annotations")).items()},
        node_name=str(spec["nodeName"]) if spec.get("nodeName") else None,
        phase=str(status.get("phase") or "Pending"),
        scheduler_name=str(spec["schedulerName"]) if spec.get("schedulerName") else None,
        deleting=bool(metadata.get("deletionTimestamp")),
        accelerators=accelerators,
        cpu_milli=effective_request(spec, "cpu", parse_milli),
        memory_bytes=effective_request(spec, "memory", parse_bytes),
    )
