"""A typed, read-only view of a Pod: what it asks for, where it runs, whose it is.

Kubernetes computes a pod's effective request per resource as
`max(max(regular init containers), sum(app containers) + sum(sidecar init containers))`
(sidecars are init containers with `restartPolicy: Always`). We use the same rule so a GPU asked
for only by an init container is still counted, exactly once.
https://kubernetes.io/docs/concepts/workloads/pods/init-containers/#resource-sharing-within-containers
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from accel.cluster.labels import is_accelerator_resource
from accel.cluster.quantity import QuantityError, parse_bytes, parse_count, parse_milli

PROFILE_ANNOTATION = "accel.dev/profile"
ODH_PROFILE_ANNOTATION = "opendatahub.io/hardware-profile-name"
TYPE_ANNOTATION = "accelerator.opendatahub.io/type"
DEVICES_ANNOTATION = "accel.dev/devices"
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})
Terms = tuple[tuple[tuple[str, str, tuple[str, ...]], ...], ...]  # ((key, operator, values), ...) per term


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
    # `spec.schedulingGates` is not empty: kube-scheduler does not consider the pod yet (Kueue keeps
    # the pods it has not admitted so); only such a pod may still narrow its node affinity.
    gated: bool = False
    # Effective requests of accelerator resources (whole units), and CPU/memory for fit checks.
    accelerators: Mapping[str, int] = Field(default_factory=dict)
    cpu_milli: int = 0
    memory_bytes: int = 0
    # The pod's node selection, which the API server keeps immutable once the pod exists (only a
    # pod with scheduling gates may narrow it): the required node-affinity terms as
    # ((key, operator, values), ...) per term (None: no required affinity) and `spec.nodeSelector`.
    # The charge of a pending pod is read from these, never from annotations (issue 21).
    required_terms: Terms | None = None
    node_selector: Mapping[str, str] = Field(default_factory=dict)

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
    return (
        value if type(value) is dict or isinstance(value, Mapping) else {}
    )  # dict first: ABC checks are slow


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def container_requests(container: Mapping[str, Any]) -> dict[str, str]:
    """Requests with limits filling in missing requests (a limit alone implies the request)."""
    resources = _mapping(container.get("resources"))
    merged = {str(k): v for k, v in _mapping(resources.get("limits")).items()}
    merged.update({str(k): v for k, v in _mapping(resources.get("requests")).items()})
    return merged


Parser = Callable[[Any], int]


def _amount(parse: Parser, value: Any) -> int:
    try:
        return max(0, _parse_text(parse, value) if type(value) is str else parse(value))
    except QuantityError:
        return 0


@functools.lru_cache(
    maxsize=1024
)  # pods repeat the same few quantities ("1", "8", "16Gi"); errors are not cached
def _parse_text(parse: Parser, text: str) -> int:
    return parse(text)


def effective_requests(spec: Mapping[str, Any], parser_for: Callable[[str], Parser | None]) -> dict[str, int]:
    """{resource: effective request} (module docstring rule) of every resource some container asks
    for and `parser_for` returns a parser for; one walk over the containers. Bad values count 0.

    `parser_for` picks the resources (None = skip) so a caller that needs only accelerators or
    only CPU/memory does not parse the rest.
    """
    running: dict[str, int] = {}
    regular_init: dict[str, int] = {}
    for container in _list(spec.get("containers")):
        _add_requests(running, _mapping(container), parser_for, summed=True)
    for container in _list(spec.get("initContainers")):
        sidecar = _mapping(container).get("restartPolicy") == "Always"
        _add_requests(running if sidecar else regular_init, _mapping(container), parser_for, summed=sidecar)
    return {
        name: max(running.get(name, 0), regular_init.get(name, 0)) for name in {**running, **regular_init}
    }


def _add_requests(
    totals: dict[str, int],
    container: Mapping[str, Any],
    parser_for: Callable[[str], Parser | None],
    *,
    summed: bool,
) -> None:
    """Add one container's requests to `totals`: summed (app containers, sidecars) or max (init)."""
    for name, value in container_requests(container).items():
        parse = parser_for(name)
        if parse is not None:
            amount = _amount(parse, value)
            totals[name] = totals.get(name, 0) + amount if summed else max(totals.get(name, 0), amount)


def _accelerator_parser(name: str) -> Parser | None:
    return parse_count if is_accelerator_resource(name) else None


def accelerator_requests(spec: Mapping[str, Any]) -> dict[str, int]:
    """{accelerator resource: effective request}, the requests > 0 only, sorted by name."""
    found = effective_requests(spec, _accelerator_parser)
    return {name: found[name] for name in sorted(found) if found[name] > 0}


_POD_PARSERS: dict[str, Parser] = {"cpu": parse_milli, "memory": parse_bytes}


def _pod_parser(name: str) -> Parser | None:
    return _POD_PARSERS.get(name) or _accelerator_parser(name)


def required_terms(spec: Mapping[str, Any]) -> Terms | None:
    """`spec.affinity.nodeAffinity.requiredDuringScheduling...nodeSelectorTerms` as plain tuples
    (matchExpressions only: fields are not labels); None when the pod has no such terms."""
    node_affinity = _mapping(_mapping(spec.get("affinity")).get("nodeAffinity"))
    required = _mapping(node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution"))
    terms = _list(required.get("nodeSelectorTerms"))
    if not terms:
        return None
    return tuple(
        tuple(
            (
                str(e.get("key") or ""),
                str(e.get("operator") or ""),
                tuple(str(v) for v in _list(e.get("values"))),
            )
            for e in map(_mapping, _list(_mapping(term).get("matchExpressions")))
        )
        for term in terms
    )


def parse_pod(obj: Mapping[str, Any]) -> PodView:
    """Build a PodView from a Pod object dict; never raises on odd input."""
    metadata = _mapping(obj.get("metadata"))
    spec = _mapping(obj.get("spec"))
    status = _mapping(obj.get("status"))
    requests = effective_requests(spec, _pod_parser)
    accelerators = {
        name: requests[name]
        for name in sorted(requests)
        if is_accelerator_resource(name) and requests[name] > 0
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
        gated=bool(spec.get("schedulingGates")),
        accelerators=accelerators,
        cpu_milli=requests.get("cpu", 0),
        memory_bytes=requests.get("memory", 0),
        required_terms=required_terms(spec) if accelerators else None,
        node_selector={str(k): str(v) for k, v in _mapping(spec.get("nodeSelector")).items()}
        if accelerators
        else {},
    )
