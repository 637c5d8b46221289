"""Extender score components: raw score per node, normalised once over the candidates.

Components (each a small pure function; weights in settings.scoring.weights):
- preference: the profile's ordered types; the first gets 10, type i of n gets 10*(n-i)/n; a
  generic profile (no types) gives every node 10; a type outside the profile gets 0.
- topology: accel.placement.topology_rules.topology_raw.
- fragmentation: accel.placement.fragmentation.fragmentation_score (the SAME function the simulator's
  `accel` policy uses) on the pool the pod asks for, against the workload mix the extender has
  observed (quantised steps, so many nodes tie); within a step `binpack` prefers the node left
  with the least idle GPU milli of the pool, `spread` the most (TIE_SHARE < one step).

Rules:
1. `normalise` maps raw values min-max onto 0..MAX_EXTENDER_PRIORITY over the candidate set; a
   zero range (all equal) gives MAX when the common value is > 0, else 0 (a constant offset
   never changes the ranking).
2. Combining the normalised components into one 0..10 score is accel.placement.score.combine.
3. The device choice at bind is the one `fragmentation_raw` made for the same node state.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt

from accel.capacity.devices import DeviceError, NodeDevices, Pool
from accel.placement.fragmentation import fragmentation_score
from accel.placement.shapes import MILLI, ClusterContext, NodeShape, PodShape, pod_fits
from accel.placement.workload_mix import TypicalMix

MAX_EXTENDER_PRIORITY = 10
MIN_EXTENDER_PRIORITY = 0
CPU_QUANTUM_MILLI = 1000
TIE_SHARE = 0.99  # < 1 step of the FGD score: the strategy term only breaks ties

Strategy = Literal["binpack", "spread"]
K = TypeVar("K", bound=Hashable)


def preference_raw(node_type: str, profile_types: tuple[str, ...]) -> float:
    """Preference component for one node type (see module docstring)."""
    if not profile_types:
        return float(MAX_EXTENDER_PRIORITY)
    if node_type not in profile_types:
        return 0.0
    n = len(profile_types)
    return MAX_EXTENDER_PRIORITY * (n - profile_types.index(node_type)) / n


def normalise(raw: Mapping[K, float]) -> dict[K, float]:
    """Rule 1."""
    if not raw:
        return {}
    low, high = min(raw.values()), max(raw.values())
    if high - low <= 1e-12:
        flat = float(MAX_EXTENDER_PRIORITY) if high > 0 else 0.0
        return {k: flat for k in raw}
    span = high - low
    return {k: MAX_EXTENDER_PRIORITY * (v - low) / span for k, v in raw.items()}


def normalise_array(raw: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Rule 1 on an array, with the same float operations as `normalise` (equal bit for bit)."""
    if not len(raw):
        return raw.copy()
    low, high = float(raw.min()), float(raw.max())
    if high - low <= 1e-12:
        return np.full(len(raw), float(MAX_EXTENDER_PRIORITY) if high > 0 else 0.0)
    out: npt.NDArray[np.float64] = MAX_EXTENDER_PRIORITY * (raw - low) / (high - low)
    return out


# ---- fragmentation adapter: NodeDevices/pool -> NodeShape, pod request -> PodShape ----------------


@dataclass(frozen=True, slots=True)
class ShapedRequest:
    """What the fragmentation score needs from a pod: its main pool, units, CPU and allowed types."""

    resource: str
    units: int
    cpu_milli: int
    types: tuple[str, ...]  # allowed node types (all known types for a generic pod)


def device_class(gpu_type: str, resource: str) -> str:
    """FGD's GPU model key, per pool: a whole-GPU pod cannot use MIG slices of the same type."""
    return f"{gpu_type}|{resource}"


def quantise_cpu_left(milli: int) -> int:
    """Whole cores, rounded down, so node shapes repeat and the score memo stays small."""
    return max(0, milli) // CPU_QUANTUM_MILLI * CPU_QUANTUM_MILLI


def pod_shape(request: ShapedRequest, *, slots: int) -> PodShape:
    """The pod as FGD sees it on a pool with `slots` units per device."""
    milli = MILLI // max(slots, 1)
    cpu = -(-request.cpu_milli // CPU_QUANTUM_MILLI) * CPU_QUANTUM_MILLI
    types = frozenset(device_class(t, request.resource) for t in request.types)
    return PodShape(cpu_milli=cpu, gpu_milli=milli, gpu_count=request.units, gpu_types=types)


def node_shape(node: NodeDevices, pool: Pool) -> NodeShape:
    return NodeShape(
        gpu_type=device_class(node.gpu_type, pool.resource),
        free_milli=pool.free_milli(),
        cpu_left_milli=quantise_cpu_left(node.cpu_left_milli),
    )


def fragmentation_raw(
    node: NodeDevices,
    request: ShapedRequest,
    mix: TypicalMix,
    *,
    strategy: Strategy = "binpack",
    context: ClusterContext | None = None,
) -> tuple[float, tuple[int, ...]]:
    """Raw fragmentation score (higher = better, about 0..100) and the devices of the main pool.

    `context` (each device class's share of all devices) enables the scorer's model-scarcity term,
    exactly as the simulator's `accel` policy runs it."""
    pool = node.pools.get(request.resource)
    if pool is None:
        return 0.0, ()
    shape, pod = node_shape(node, pool), pod_shape(request, slots=pool.slots)
    if not pod_fits(shape, pod):
        return 0.0, ()
    score, devices = fragmentation_score(shape, pod, mix, context=context)
    capacity = pool.total_units * MILLI // max(pool.slots, 1)
    idle_after = (sum(shape.free_milli) - pod.total_gpu_milli) / (capacity + 1)
    tie = 1.0 - idle_after if strategy == "binpack" else idle_after
    return score + TIE_SHARE * tie, devices


def choose_assignment(
    node: NodeDevices,
    request: Mapping[str, int],
    shaped: ShapedRequest,
    mix: TypicalMix,
    *,
    strategy: Strategy = "binpack",
    context: ClusterContext | None = None,
) -> dict[str, tuple[int, ...]]:
    """Rule 3: the devices to bind; main pool from the fragmentation choice, others lowest-fill.

    A multi-unit time-sliced request is packed (lowest fill) since replicas may share a device.
    Raises DeviceError when the request does not fit the node.
    """
    assignment = node.fill(request)
    _, devices = fragmentation_raw(node, shaped, mix, strategy=strategy, context=context)
    if len(devices) == shaped.units and shaped.resource in assignment:
        node.pools[shaped.resource].take(devices)  # validates
        assignment[shaped.resource] = tuple(devices)
    elif shaped.resource in request and not devices and node.free_units(shaped.resource) < shaped.units:
        raise DeviceError(f"{shaped.resource}: does not fit node {node.node}")
    return assignment


def cluster_context(devices_by_class: Sequence[tuple[int, NodeDevices]]) -> ClusterContext:
    """Each device class's share of all devices, from (node count, representative) pairs."""
    counts: dict[str, int] = {}
    for nodes, devices in devices_by_class:
        for resource, pool in devices.pools.items():
            key = device_class(devices.gpu_type, resource)
            counts[key] = counts.get(key, 0) + nodes * len(pool.free_milli())
    total = sum(counts.values())
    return ClusterContext(tuple(sorted((k, c / total) for k, c in counts.items())) if total else ())
