"""Free accelerator capacity: the one definition admission, availability, the node view and the extender read.

Two models count a node's accelerators: the inventory's per-resource totals (`NodeInventory`:
what the node advertises and what its bound pods request) and the extender's per-device model
(`accel.capacity.devices.NodeDevices`: which device each pod holds, plus the binds the extender
has assumed but the watch does not show yet). Every reader of "how much is free" goes through
the functions here, so the two can never be read differently.

Rules:
1. A node's free units per accelerator resource are its device model's free units when one is
   given (it places every bound pod, so without assumed binds it agrees with the totals: tested),
   else advertised minus requested by bound pods, never below 0 (an over-committed node is full).
2. Free units of an accelerator type are the free units of that type's resource
   (`AcceleratorType.resource_name`) summed over schedulable (Ready, not cordoned) nodes whose
   primary type it is. Shared and MIG resources of a node do not count towards its type.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from accel.capacity.devices import NodeDevices
from accel.capacity.inventory import Inventory, NodeInventory
from accel.cluster.catalog import Catalog


def node_free_units(node: NodeInventory, devices: NodeDevices | None = None) -> dict[str, int]:
    """Free units per accelerator resource the node advertises (rule 1)."""
    if devices is not None:
        return {name: devices.free_units(name) for name in node.accelerators.resources}
    return {
        name: max(0, total - node.allocated.get(name, 0))
        for name, total in node.accelerators.resources.items()
    }


def free_units_by_type(
    inventory: Inventory, catalog: Catalog, devices: Mapping[str, NodeDevices] | None = None,
) -> dict[str, int]:
    """Free units per accelerator type over the schedulable nodes (rule 2).

    `devices` (node name -> device model, e.g. the extender's, with assumed binds) overrides the
    inventory's totals for the nodes it names.
    """
    free: dict[str, int] = defaultdict(int)
    for node in inventory.nodes:
        share = type_free_units(node, catalog, devices.get(node.name) if devices is not None else None)
        if share is not None:
            free[share[0]] += share[1]
    return dict(free)


def type_free_units(
    node: NodeInventory, catalog: Catalog, devices: NodeDevices | None = None
) -> tuple[str, int] | None:
    """(type, free units) one node adds to its primary type's free units (rule 2); None when it adds
    nothing (not schedulable, or no catalog type). The per-node half of `free_units_by_type`, for
    totals kept node by node (accel.admission.context `NodeTotals`)."""
    accel_type = catalog.get(node.accelerator_type or "")
    if not node.schedulable or accel_type is None:
        return None
    return accel_type.name, node_free_units(node, devices).get(accel_type.resource_name, 0)
