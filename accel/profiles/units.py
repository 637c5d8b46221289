"""Profile units on nodes: which nodes serve a hardware profile, and how many units they have free.

The counting half of `accel.profiles.availability`: nodes are grouped once (nodes alike in everything
`profile_resource` reads), then each profile tallies, per accelerator type, its units and
GPU-equivalents over the groups that serve it.

Rules:
1. A node serves a profile when it is schedulable (Ready, not cordoned), carries one of the
   profile's types (any accelerator type for a generic profile), matches the profile's
   nodeSelector, and is set up for the profile's sharing mode: exclusive profiles use nodes that
   hand out whole devices, time-sliced profiles use time-sliced (or MPS) nodes, MIG profiles use
   nodes that advertise the profile's MIG slice.
2. A "unit" is what one pod asks for per GPU request: a whole device, a time-sliced replica or a
   MIG slice. Tallies count free units; GPU-equivalents weigh a replica 1/replicas and a slice
   g/max_g, the same measure quota uses.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction

from accel.capacity.free import node_free_units
from accel.capacity.inventory import Inventory, NodeInventory
from accel.cluster.catalog import UNKNOWN_TYPE, Catalog
from accel.cluster.labels import Sharing as NodeSharing
from accel.policy.models import Profile, Sharing


def profile_resource(profile: Profile, node: NodeInventory, catalog: Catalog) -> str | None:
    """The extended resource a pod of `profile` consumes on `node`, or None when it cannot run there."""
    accel = node.accelerators
    if not accel.types or (
        profile.accelerators and not any(ref.type in accel.types for ref in profile.accelerators)
    ):
        return None
    if profile.node_selector and any(node.labels.get(k) != v for k, v in profile.node_selector.items()):
        return None
    if profile.sharing is Sharing.MIG:
        return _mig_resource(profile, node)
    if profile.sharing is Sharing.TIME_SLICED:
        if accel.sharing not in (NodeSharing.TIME_SLICED, NodeSharing.MPS):
            return None
        if profile.shared_resource_name in accel.resources:
            return profile.shared_resource_name
        return _device_resource(node, catalog)
    if accel.sharing is not NodeSharing.EXCLUSIVE:
        return None
    return _device_resource(node, catalog)


def _mig_resource(profile: Profile, node: NodeInventory) -> str | None:
    mig = node.accelerators.mig
    if mig is None or not profile.mig_profile or profile.mig_profile not in mig.slices:
        return None
    if mig.strategy == "single":
        return next((r for r in node.accelerators.resources if r.startswith("nvidia.com/gpu")), None)
    return f"nvidia.com/mig-{profile.mig_profile}"


def _device_resource(node: NodeInventory, catalog: Catalog) -> str | None:
    accel_type = catalog.get(node.accelerator_type or UNKNOWN_TYPE)
    resources = node.accelerators.resources
    if accel_type is not None and accel_type.resource_name in resources:
        return accel_type.resource_name
    whole = [r for r in resources if "/mig-" not in r and not r.endswith(".shared")]
    return whole[0] if whole else None


class Tally:
    """Running totals for one accelerator type within one profile (units as ints; GPU-equivalents exact)."""

    def __init__(self) -> None:
        self.total = Fraction(0)
        self.free = Fraction(0)
        self.units = 0
        self.nodes = 0
        self.largest = 0


class NodeGroup:
    """Schedulable nodes alike in everything `profile_resource` reads, with their units summed."""

    def __init__(self, sample: NodeInventory) -> None:
        self.sample = sample
        self.nodes = 0
        self.total: dict[str, int] = {}
        self.free: dict[str, int] = {}
        self.largest: dict[str, int] = {}

    def add(self, node: NodeInventory) -> None:
        self.nodes += 1
        free = node_free_units(node)
        for resource, total in node.accelerators.resources.items():
            units = free.get(resource, 0)
            self.total[resource] = self.total.get(resource, 0) + total
            self.free[resource] = self.free.get(resource, 0) + units
            self.largest[resource] = max(self.largest.get(resource, 0), units)


def group_nodes(inventory: Inventory, selector_keys: Iterable[str]) -> list[NodeGroup]:
    """One pass over the nodes for all profiles: a render costs O(nodes + profiles x groups)."""
    keys = tuple(sorted(set(selector_keys)))
    groups: dict[tuple[object, ...], NodeGroup] = {}
    for node in inventory.nodes:
        accel = node.accelerators
        if not node.schedulable or not accel.types:
            continue
        mig = accel.mig
        signature = (
            accel.types, accel.sharing, accel.replicas, mig.strategy if mig else None,
            tuple(sorted(mig.slices)) if mig else (), tuple(sorted(accel.resources)),
            tuple(node.labels.get(k) for k in keys),
        )
        group = groups.get(signature)
        if group is None:
            group = groups[signature] = NodeGroup(node)
        group.add(node)
    return list(groups.values())


def tally_nodes(profile: Profile, groups: Iterable[NodeGroup], catalog: Catalog) -> dict[str, Tally]:
    """Per accelerator type, the units and GPU-equivalents of the groups that serve `profile` (rules 1-2)."""
    tallies: dict[str, Tally] = {}
    for group in groups:
        resource = profile_resource(profile, group.sample, catalog)
        if resource is None:
            continue
        unit = group.sample.gpu_equivalents(resource, 1, catalog)
        accel_type = group.sample.accelerator_type or UNKNOWN_TYPE
        tally = tallies.get(accel_type)
        if tally is None:
            tally = tallies[accel_type] = Tally()
        tally.total += unit * group.total.get(resource, 0)
        tally.free += unit * group.free.get(resource, 0)
        tally.units += group.free.get(resource, 0)
        tally.nodes += group.nodes
        tally.largest = max(tally.largest, group.largest.get(resource, 0))
    return tallies
