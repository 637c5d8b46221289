"""`accel kueue export`: the Kueue objects that mirror accel's policy (accel.policy.kueue has the rule).

One ResourceFlavor per accelerator type (nodeLabels: the product label the GPU operator publishes,
as the label normalisation reads it), one ClusterQueue per team with a per-flavor nominalQuota
from teams.yaml (flavors in the team's profile preference order), one LocalQueue per namespace of
the team. Validated against Kueue's published CRD schemas in tests (tests/data/crds/).
Whatever cannot be expressed exactly in Kueue is returned as a note, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from accel.capacity.inventory import Inventory
from accel.cluster.catalog import UNKNOWN_TYPE, Catalog
from accel.policy.models import ALL_TYPES, Policy, Profile, Team

KUEUE_API = "kueue.x-k8s.io/v1beta1"
DEFAULT_LOCAL_QUEUE = "default"
_GKE_KEY = "cloud.google.com/gke-accelerator"
_PRODUCT_KEY_BY_PREFIX = (("nvidia.com/", "nvidia.com/gpu.product"), ("amd.com/", "amd.com/gpu.product-name"),
                          ("gpu.intel.com/", "gpu.intel.com/product"))


@dataclass(frozen=True)
class KueueExport:
    """The objects, in apply order, and the caveats an admin must read before applying them."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def export_objects(
    policy: Policy, catalog: Catalog, inventory: Inventory, *, local_queue: str = DEFAULT_LOCAL_QUEUE
) -> KueueExport:
    """ResourceFlavors, ClusterQueues and LocalQueues for `policy` (module docstring)."""
    notes: list[str] = []
    order = _type_order(policy, catalog, inventory)
    flavors = [_flavor(t, catalog, inventory, notes) for t in order]
    queues = [_cluster_queue(team, policy, catalog, order, notes) for team in policy.teams]
    local = [_local_queue(team.name, namespace, local_queue) for team in policy.teams
             for namespace in _team_namespaces(team.name, policy, inventory)]
    shared = sorted(
        {r for p in policy.profiles if p.sharing.value != "exclusive" for r in _shared_resources(p)}
    )
    if shared:
        notes.append(
            f"quota covers whole GPUs only; profiles also request {', '.join(shared)}: add those resources "
            "to "
            "the ClusterQueues or to Kueue's excludeResourcePrefixes, or Kueue will not admit such workloads"
        )
    for team in policy.teams:
        if not _team_namespaces(team.name, policy, inventory):
            notes.append(
                f"team {team.name}: no namespace carries label {policy.settings.team_label}={team.name}; no "
                "LocalQueue made"
            )
    return KueueExport(
        [f for f in flavors if f is not None] + [q for q in queues if q is not None] + local, notes
    )


def _shared_resources(profile: Profile) -> list[str]:
    if profile.mig_profile:
        return [f"nvidia.com/mig-{profile.mig_profile}"]
    return [profile.shared_resource_name]


def _type_order(policy: Policy, catalog: Catalog, inventory: Inventory) -> list[str]:
    """Every type a profile names, in profile preference order (first mention wins), then the
    types present on nodes or named by a quota."""
    named = [t for p in policy.profiles for t in p.types]
    named += sorted({t for node in inventory.nodes for t in node.accelerators.types})
    named += [t for team in policy.teams for t in team.quota if t != ALL_TYPES]
    return [t for t in dict.fromkeys(named) if t != UNKNOWN_TYPE and t in catalog]


def _flavor(name: str, catalog: Catalog, inventory: Inventory, notes: list[str]) -> dict[str, Any] | None:
    """ResourceFlavor whose nodeLabels pick the type's nodes (one label value, see notes)."""
    accel_type = catalog[name]
    key = next(
        (k for prefix, k in _PRODUCT_KEY_BY_PREFIX if accel_type.resource_name.startswith(prefix)), None
    )
    observed = sorted(
        {n.labels[key] for n in inventory.nodes if key and name in n.accelerators.types and key in n.labels}
    )
    if key and observed:
        value = observed[0]
        if len(observed) > 1:
            notes.append(
                f"flavor {name}: nodes label it {', '.join(observed)}; a flavor holds one value, {value} "
                "was used "
                "(Kueue adds it as a nodeSelector: relabel or split the flavor)"
            )
    elif key and accel_type.product_labels:
        value = accel_type.product_labels[0]
    elif accel_type.gke_accelerators:
        key, value = _GKE_KEY, accel_type.gke_accelerators[0]
    else:
        notes.append(f"flavor {name}: no node label names this type; flavor left out")
        return None
    return {
        "apiVersion": KUEUE_API,
        "kind": "ResourceFlavor",
        "metadata": {"name": name, "labels": _labels()},
        "spec": {"nodeLabels": {key: value}},
    }


def _cluster_queue(
    team: Team, policy: Policy, catalog: Catalog, order: Sequence[str], notes: list[str]
) -> dict[str, Any] | None:
    """ClusterQueue `team`: per-flavor nominal quota from teams.yaml, flavors in preference order,
    one resource group per device resource (Kueue: a flavor lists exactly its group's resources)."""
    allowed = [t for t in _team_types(team, policy, order) if t in team.quota or ALL_TYPES in team.quota]
    if ALL_TYPES in team.quota and any(t not in team.quota for t in allowed):
        notes.append(
            f'team {team.name}: the "*" quota ({team.quota[ALL_TYPES]}) is used as each such flavor\'s '
            "nominalQuota; Kueue has no cap across flavors of one ClusterQueue (use a Cohort for that)"
        )
    groups: dict[str, list[dict[str, Any]]] = {}
    for name in allowed:
        amount = team.quota.get(name, team.quota.get(ALL_TYPES, Decimal(0)))
        if ALL_TYPES in team.quota:
            amount = min(amount, team.quota[ALL_TYPES])
        resource = catalog[name].resource_name
        groups.setdefault(resource, []).append(
            {"name": name, "resources": [{"name": resource, "nominalQuota": _quantity(amount)}]}
        )
    if not groups:
        notes.append(f"team {team.name}: no accelerator quota in teams.yaml; no ClusterQueue made")
        return None
    return {
        "apiVersion": KUEUE_API,
        "kind": "ClusterQueue",
        "metadata": {"name": team.name, "labels": _labels()},
        "spec": {
            "namespaceSelector": {"matchLabels": {policy.settings.team_label: team.name}},
            "resourceGroups": [{"coveredResources": [r], "flavors": f} for r, f in groups.items()],
        },
    }


def _team_types(team: Team, policy: Policy, order: Sequence[str]) -> list[str]:
    """The team's types, in the preference order of its first allowed profiles (then the rest)."""
    profiles = [
        p for p in policy.profiles if team.allowed_profiles is None or p.name in team.allowed_profiles
    ]
    preferred = [t for p in profiles for t in p.types] + list(order)
    return [
        t
        for t in dict.fromkeys(preferred)
        if t in order and (team.allowed_types is None or t in team.allowed_types)
    ]


def _team_namespaces(team: str, policy: Policy, inventory: Inventory) -> list[str]:
    label = policy.settings.team_label
    return sorted(ns for ns, labels in inventory.namespace_labels.items() if labels.get(label) == team)


def _local_queue(team: str, namespace: str, name: str) -> dict[str, Any]:
    return {"apiVersion": KUEUE_API, "kind": "LocalQueue",
            "metadata": {"name": name, "namespace": namespace, "labels": _labels()},
            "spec": {"clusterQueue": team}}


def _quantity(amount: Decimal) -> int | str:
    """A Kubernetes quantity: whole GPUs as integers, fractions (time-slices, MIG) in milli-units."""
    if amount == amount.to_integral_value():
        return int(amount)
    return f"{int((amount * 1000).to_integral_value())}m"


def _labels() -> dict[str, str]:
    return {"app.kubernetes.io/managed-by": "accel"}
