"""Extender filter: may this pod run on this node, and if not, why (in words for `kubectl describe`).

Rules:
1. The allowed types are the pod's profile types (`accel.dev/profile`, or the ODH annotation),
   narrowed to `accel.dev/quota-type` (the type the webhook charged quota to) and to
   `accelerator.opendatahub.io/type` when admission fixed it. Defence in depth: this holds even
   if the pod's node affinity was removed. A generic profile or no profile allows every type.
2. Unresolvable (preemption cannot help; FailedAndUnresolvableNodes): node NotReady, cordoned,
   wrong type, no such resource on the node, unknown profile. Resolvable (FailedNodes): not
   enough free units, node not in the cache yet (the watch may be behind).
3. Pods that ask for no accelerator pass every Ready, uncordoned node: the extender only adds
   accelerator constraints.
4. Sharing mode (issue 14 section 4): with the NVIDIA device plugin's default
   `renameByDefault=false`, a time-sliced node advertises its replicas as plain `nvidia.com/gpu`,
   so the resource name cannot tell a replica from a whole GPU. A typed exclusive profile's pod is
   therefore unresolvable on a node whose pool is shared (time-slicing or MPS replicas > 1, read
   from GFD's `nvidia.com/gpu.sharing-strategy` / `nvidia.com/gpu.replicas`, accel.cluster.nvidia), and a
   time-sliced profile's pod on a node whose GPUs are not shared. Quota then counts a replica as
   1/replicas only on a shared node (accel.capacity.inventory), never a whole GPU as a quarter. MIG slices,
   generic profiles and pods without a profile are not constrained here.
"""

from __future__ import annotations

from dataclasses import dataclass

from accel.capacity.devices import NodeDevices, Pool
from accel.capacity.inventory import QUOTA_TYPE_ANNOTATION, NodeInventory
from accel.cluster.gpu_equivalents import MIG_RESOURCE
from accel.cluster.job_intent import JobKey, job_key
from accel.cluster.pods import TYPE_ANNOTATION, PodView
from accel.policy.models import Policy, Sharing


@dataclass(frozen=True, slots=True)
class PodRequest:
    """A pod's accelerator request resolved against the policy."""

    pod: PodView
    resources: tuple[tuple[str, int], ...]  # accelerator resource -> units, sorted
    allowed_types: tuple[str, ...] | None  # None = any type; else in preference order
    profile_types: tuple[str, ...] = ()
    problem: str | None = None  # makes every node unresolvable (e.g. unknown profile)
    job: JobKey | None = None
    sharing: str = ""  # rule 4: "exclusive" or "time-sliced" for a typed profile; "" = no constraint
    blocked_types: tuple[
        tuple[str, str], ...
    ] = ()  # (type, why): the team's quota on it is full (accel.quota.bind)

    @property
    def signature(self) -> tuple[object, ...]:
        """Everything a node verdict depends on besides the node (a cache key)."""
        return (self.resources, self.allowed_types, self.problem, self.sharing, self.blocked_types)

    @property
    def wants_accelerators(self) -> bool:
        return bool(self.resources)


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reason: str = ""
    unresolvable: bool = False


PASS = Verdict(True)


def _narrow(types: tuple[str, ...] | None, fixed: str | None) -> tuple[str, ...] | None:
    if not fixed:
        return types
    return (fixed,) if types is None or fixed in types else ()


def resolve_request(pod: PodView, policy: Policy) -> PodRequest:
    """Rule 1: the pod's resources, allowed types and job."""
    resources = tuple(sorted((r, n) for r, n in pod.accelerators.items() if n > 0))
    name = pod.requested_profile
    profile = policy.profile(name) if name else None
    problem = None
    if name and profile is None:
        known = ", ".join(policy.profile_names) or "none"
        problem = f"accel: profile {name!r} does not exist (known: {known})"
    profile_types = profile.types if profile else ()
    sharing = (
        profile.sharing.value if profile and profile_types and profile.sharing is not Sharing.MIG else ""
    )
    types: tuple[str, ...] | None = profile_types or None
    types = _narrow(types, pod.annotations.get(QUOTA_TYPE_ANNOTATION))
    if not pod.node_name:
        types = _narrow(types, pod.annotations.get(TYPE_ANNOTATION))
    return PodRequest(
        pod=pod,
        resources=resources,
        allowed_types=types,
        profile_types=profile_types,
        problem=problem,
        job=job_key(pod.namespace, pod.labels),
        sharing=sharing,
    )


def describe_units(pool: Pool, gpu_type: str) -> str:
    """`nvidia-a100-80gb GPUs`, `... time-sliced shares (nvidia.com/gpu.shared)`, `... MIG 1g.10gb slices`."""
    mig = MIG_RESOURCE.match(pool.resource)
    if mig:
        return f"{gpu_type} MIG {mig.group(1)}g.{mig.group(2)}gb slices"
    if pool.slots > 1:
        return f"{gpu_type} time-sliced shares ({pool.resource})"
    return f"{gpu_type} GPUs"


def check_node(
    request: PodRequest, name: str, node: NodeInventory | None, devices: NodeDevices | None
) -> Verdict:
    """Rules 2 and 3 for one node."""
    if node is None or devices is None:
        return Verdict(False, f"accel: node {name} is not in the extender's cache yet (watch catching up)")
    if not node.ready:
        return Verdict(False, "accel: node is NotReady", unresolvable=True)
    if node.cordoned:
        return Verdict(False, "accel: node is cordoned (SchedulingDisabled)", unresolvable=True)
    if not request.wants_accelerators:
        return PASS
    if request.problem:
        return Verdict(False, request.problem, unresolvable=True)
    return check_devices(request, devices)


def check_devices(request: PodRequest, devices: NodeDevices) -> Verdict:
    """Type and capacity part of rule 2 (node already known Ready and uncordoned)."""
    gpu_type = devices.gpu_type
    if not devices.pools:
        return Verdict(False, "accel: node has no accelerators", unresolvable=True)
    allowed = request.allowed_types
    if allowed is not None and gpu_type not in allowed:
        wanted = ", ".join(allowed) or "no type (profile and quota-type disagree)"
        return Verdict(False, f"accel: node has {gpu_type}, pod may use {wanted}", unresolvable=True)
    for blocked, why in request.blocked_types:
        if blocked == gpu_type:  # preemption cannot help: evicting pods on this node frees no quota
            return Verdict(False, why, unresolvable=True)
    for resource, units in request.resources:
        pool = devices.pools.get(resource)
        if pool is None:
            return Verdict(False, f"accel: node has no {resource} ({gpu_type})", unresolvable=True)
        if (mismatch := _sharing_mismatch(request.sharing, pool, gpu_type)) is not None:
            return mismatch
        free = pool.free_units
        if free < units:
            what = describe_units(pool, gpu_type)
            return Verdict(False, f"accel: only {free} of {pool.total_units} {what} free, pod needs {units}")
    return PASS


def _sharing_mismatch(sharing: str, pool: Pool, gpu_type: str) -> Verdict | None:
    """Rule 4 for one pool (MIG slices excepted)."""
    if not sharing or MIG_RESOURCE.match(pool.resource):
        return None
    if sharing == Sharing.EXCLUSIVE.value and pool.slots > 1:
        return Verdict(
            False,
            f"accel: node shares each {gpu_type} between {pool.slots} pods ({pool.resource}); "
            "the pod's profile needs whole GPUs",
            unresolvable=True,
        )
    if sharing == Sharing.TIME_SLICED.value and pool.slots <= 1:
        return Verdict(
            False,
            f"accel: node does not time-slice its {gpu_type} GPUs ({pool.resource}); the pod's "
            "profile is time-sliced",
            unresolvable=True,
        )
    return None
