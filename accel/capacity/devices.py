"""Per-device model of a node's accelerators, the device-assignment annotation, and assumed binds.

Every accelerator resource a node advertises is one *pool* of devices. A device has a number of
*slots* (units of the resource): 1 for a whole GPU or a MIG slice, `replicas` for a time-sliced
(or MPS) GPU. A pod's assignment names, per resource, one device index per unit it requested.

Annotation `accel.dev/devices` (written by the extender at bind, read back from the watch):
    entries separated by `;`, each `[<pool>:]<i>,<j>,...`
    - no pool: the pod's one non-MIG accelerator resource (whole or time-sliced GPUs);
      `"0,1"` = GPUs 0 and 1; `"2,2"` = two time-sliced replicas of GPU 2;
    - `mig-<profile>`: the MIG pool `nvidia.com/mig-<profile>`, e.g. `"mig-1g.10gb:3"`;
    - a full resource name (`amd.com/gpu:0`) is accepted too.

Rules:
1. Pods with a valid annotation are placed first (in pod key order), then every other pod gets
   the deterministic lowest-index fill, so two replicas rebuilding the model agree.
2. An annotation that does not fit the node (index out of range, slot over capacity) is ignored
   and the pod is filled like an unannotated one; units that do not fit at all are dropped (the
   pool is full anyway).
3. An assumed bind counts exactly like a bound pod until it expires or the watch shows the pod
   bound (kube-scheduler's assume cache); `AssumedBinds` is plain data: the caller passes `now`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace

from accel.capacity.inventory import NodeInventory
from accel.cluster.gpu_equivalents import MIG_RESOURCE
from accel.cluster.labels import Sharing
from accel.cluster.pods import DEVICES_ANNOTATION, PodView

Assignment = Mapping[str, tuple[int, ...]]  # resource -> one device index per unit
MIG_POOL_PREFIX = "nvidia.com/"


class DeviceError(ValueError):
    """An assignment or annotation that does not fit a node's devices."""


@dataclass(frozen=True, slots=True)
class Pool:
    """One resource's devices: `capacity[i]` slots on device i, `used[i]` of them taken."""

    resource: str
    capacity: tuple[int, ...]
    used: tuple[int, ...]
    slots: int = 1  # nominal slots per device (time-slicing replicas), for GPU-milli conversion

    @property
    def total_units(self) -> int:
        return sum(self.capacity)

    @property
    def free_units(self) -> int:
        return sum(self.capacity) - sum(self.used)

    def free_slots(self) -> tuple[int, ...]:
        return tuple(c - u for c, u in zip(self.capacity, self.used, strict=True))

    def free_milli(self) -> tuple[int, ...]:
        """Idle GPU milli per device (1000 = fully free), as FGD measures a device."""
        return tuple(f * 1000 // self.slots for f in self.free_slots())

    def take(self, devices: Iterable[int]) -> Pool:
        """The pool with one unit taken on each listed device (repeats allowed); DeviceError if over."""
        used = list(self.used)
        for i in devices:
            if not 0 <= i < len(used):
                raise DeviceError(f"{self.resource}: device {i} does not exist (node has {len(used)})")
            if used[i] >= self.capacity[i]:
                raise DeviceError(f"{self.resource}: device {i} has no free unit")
            used[i] += 1
        return replace(self, used=tuple(used))

    def lowest_fill(self, units: int) -> tuple[int, ...]:
        """Rule 1's deterministic fill: lowest-index devices with a free slot, packing each device."""
        out: list[int] = []
        for i, free in enumerate(self.free_slots()):
            take = min(free, units - len(out))
            out.extend([i] * take)
            if len(out) == units:
                return tuple(out)
        raise DeviceError(f"{self.resource}: only {self.free_units} units free, need {units}")


@dataclass(frozen=True, slots=True)
class NodeDevices:
    """A node's pools and CPU headroom; immutable, `with_assignment` returns a new one."""

    node: str
    gpu_type: str
    pools: Mapping[str, Pool]
    cpu_left_milli: int = 0

    def free_units(self, resource: str) -> int:
        pool = self.pools.get(resource)
        return pool.free_units if pool else 0

    def with_assignment(self, assignment: Assignment, cpu_milli: int = 0) -> NodeDevices:
        pools = dict(self.pools)
        for resource, devices in assignment.items():
            pool = pools.get(resource)
            if pool is None:
                raise DeviceError(f"node {self.node} has no {resource}")
            pools[resource] = pool.take(devices)
        return replace(self, pools=pools, cpu_left_milli=self.cpu_left_milli - cpu_milli)

    def fill(self, request: Mapping[str, int]) -> dict[str, tuple[int, ...]]:
        """Lowest-index assignment for `request` (resource -> units); DeviceError if it does not fit."""
        out: dict[str, tuple[int, ...]] = {}
        for resource, units in sorted(request.items()):
            pool = self.pools.get(resource)
            if pool is None:
                raise DeviceError(f"node {self.node} has no {resource}")
            out[resource] = pool.lowest_fill(units)
        return out


def _slots_per_device(resource: str, node: NodeInventory) -> int:
    shared = node.accelerators.sharing in (Sharing.TIME_SLICED, Sharing.MPS)
    if MIG_RESOURCE.match(resource) and not resource.endswith(".shared"):
        return 1
    return max(node.accelerators.replicas, 1) if shared or resource.endswith(".shared") else 1


def empty_pools(node: NodeInventory) -> dict[str, Pool]:
    """One pool per accelerator resource the node advertises, all free."""
    pools = {}
    for resource, units in sorted(node.accelerators.resources.items()):
        slots = _slots_per_device(resource, node)
        whole, rest = divmod(max(units, 0), slots)
        capacity = (slots,) * whole + ((rest,) if rest else ())
        pools[resource] = Pool(resource, capacity, (0,) * len(capacity), slots)
    return pools


def format_assignment(assignment: Assignment) -> str:
    """The annotation value for an assignment (see module docstring); "" for no devices."""
    entries = []
    for resource, devices in sorted(assignment.items()):
        if not devices:
            continue
        indices = ",".join(str(i) for i in devices)
        if MIG_RESOURCE.match(resource):
            entries.append(f"{resource.removeprefix(MIG_POOL_PREFIX)}:{indices}")
        else:
            entries.append(indices)
    return ";".join(entries)


def parse_assignment(value: str, requested: Mapping[str, int]) -> dict[str, tuple[int, ...]]:
    """Inverse of `format_assignment` for a pod requesting `requested`; DeviceError if malformed."""
    plain = [r for r in requested if not MIG_RESOURCE.match(r)]
    out: dict[str, tuple[int, ...]] = {}
    for entry in filter(None, (e.strip() for e in value.split(";"))):
        pool, sep, indices = entry.rpartition(":")
        if not sep:
            if len(plain) != 1:
                raise DeviceError(f"{entry!r}: name the pool, the pod requests {sorted(requested)}")
            resource = plain[0]
        else:
            resource = pool if "/" in pool else MIG_POOL_PREFIX + pool
        try:
            out[resource] = tuple(int(i) for i in indices.split(","))
        except ValueError:
            raise DeviceError(f"{entry!r}: device indices must be integers like 0,1") from None
        if len(out[resource]) != requested.get(resource, -1):
            raise DeviceError(f"{entry!r}: pod requests {requested.get(resource, 0)} units of {resource}")
    return out


def build_node_devices(node: NodeInventory, pods: Iterable[PodView]) -> NodeDevices:
    """The node's device model with its bound pods placed (rules 1 and 2)."""
    devices = NodeDevices(
        node=node.name,
        gpu_type=node.accelerator_type or "unknown",
        pools=empty_pools(node),
        cpu_left_milli=node.cpu_allocatable_milli - node.cpu_requested_milli,
    )
    annotated: list[PodView] = []
    rest: list[PodView] = []
    for pod in sorted(pods, key=lambda p: p.key):
        value = pod.annotations.get(DEVICES_ANNOTATION)
        (annotated if value else rest).append(pod)
    for pod in annotated:
        try:
            assignment = parse_assignment(pod.annotations[DEVICES_ANNOTATION], pod.accelerators)
            devices = devices.with_assignment(assignment)
        except DeviceError:
            rest.append(pod)
    for pod in rest:
        devices = _fill_best_effort(devices, pod.accelerators)
    return devices


def _fill_best_effort(devices: NodeDevices, request: Mapping[str, int]) -> NodeDevices:
    """Rule 2: place what fits, drop what does not (over-committed nodes stay full, not negative)."""
    for resource, units in request.items():
        pool = devices.pools.get(resource)
        if pool is None:
            continue
        fit = pool.lowest_fill(min(units, pool.free_units))
        devices = devices.with_assignment({resource: fit})
    return devices


@dataclass(frozen=True, slots=True)
class Assumption:
    """A bind in flight: the pod counts on `node` with `assignment` until `expires_at`."""

    uid: str
    pod_key: str
    node: str
    assignment: Assignment
    expires_at: float
    job: tuple[str, str] | None = None  # (namespace, job id) for topology co-location
    assumed_at: float = -math.inf  # when the bind was assumed (the caller's clock)


@dataclass
class AssumedBinds:
    """Assumed binds by pod uid (rule 3). Not thread-safe; one event loop owns it."""

    by_uid: dict[str, Assumption] = field(default_factory=dict)

    def assume(self, assumption: Assumption) -> None:
        self.by_uid[assumption.uid] = assumption

    def forget(self, uid: str) -> None:
        self.by_uid.pop(uid, None)

    def prune(self, now: float, bound_uids: frozenset[str] | set[str]) -> None:
        """Drop expired assumptions and those the watch already shows bound."""
        for uid, item in list(self.by_uid.items()):
            if item.expires_at <= now or uid in bound_uids:
                del self.by_uid[uid]

    def drop(self, uids: Collection[str]) -> None:
        """Forget the assumptions of pods that are gone (terminal or deleted in the watch). Walks the
        smaller side: `uids` may be the watch's whole memory of deletions (`Inventory.deleted_pods`),
        and the assumptions are few."""
        if len(uids) > len(self.by_uid):
            uids = [uid for uid in self.by_uid if uid in uids]
        for uid in uids:
            self.by_uid.pop(uid, None)

    def drop_unseen(self, now: float, visible: Collection[str], grace_s: float) -> None:
        """Forget assumptions whose pod the watch still does not show `grace_s` after the bind.

        A pod deleted right after its bind, before the watch ever showed it, has no "gone" event
        that `drop` could see; without this its devices stayed taken until the TTL (30 s), and
        kube-scheduler left pods that needed them pending. A pod that really is bound shows up
        within the watch's lag, which `grace_s` covers.
        """
        for uid, item in list(self.by_uid.items()):
            if uid not in visible and item.assumed_at + grace_s <= now:
                del self.by_uid[uid]

    def on_node(self, node: str) -> list[Assumption]:
        return [a for a in self.by_uid.values() if a.node == node]

    def nodes(self) -> set[str]:
        return {a.node for a in self.by_uid.values()}
