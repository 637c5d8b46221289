"""Node affinity for a hardware profile: match exactly the nodes of the allowed accelerator types.

Nodes are never labelled by hand; the selector matches what the operators already publish
(accelerators.md sections 1-3): `nvidia.com/gpu.product` (GFD), `amd.com/gpu.product-name` (AMD
labeller), `gpu.intel.com/product` (Intel). Values per type = the catalog's `productLabels`, the
GFD suffix variants that fit the profile's sharing mode, plus every value actually observed on
nodes of that type in the inventory:

- exclusive: the plain values only. A `-SHARED` node hands out time-slices and a `-MIG-` (single
  strategy) node hands out slices under the same `nvidia.com/gpu` name, so a whole-GPU pod must
  not land there.
- time-sliced: plain (renameByDefault=true keeps the plain product) and `-SHARED`.
- mig: plain (mixed strategy keeps the parent product), `-MIG-<profile>` and `-MIG-<profile>-SHARED`.

Rule 0, which keys identify a type (alternatives, ORed): the product label above when it has
values; `cloud.google.com/gke-accelerator` In the catalog's `gkeAccelerators` (+ observed values)
when there is no product value, or when a node of the type carries no matching product label but
a GKE one; `node.kubernetes.io/instance-type` In the values OBSERVED on inventory nodes of the type
(the catalog's `instanceTypes` are shell patterns, affinity needs concrete values), under the
same condition. This is how Gaudi (no label names its generation) is targeted. A type nothing
identifies raises AffinityError (the pod is denied with that message).

Merging into the pod (protocols.md 2.5 item 4; nodeSelectorTerms are ORed, expressions ANDed):
1. One selector expression per label key (`key In values`); with several keys the selector is an OR
   of terms, so it is distributed: every existing term t becomes one term `t AND e` per key.
2. A term already holding an `In` expression on one of our keys whose values are a subset of
   ours already restricts to allowed types and is kept as is (this makes a second pass a no-op).
3. A combined term that cannot match (user `In` disjoint from ours, `NotIn` covering ours,
   `DoesNotExist`, or a nodeSelector value outside ours) is a contradiction; when every
   combination contradicts, the pod is denied with the user's own constraint quoted.
4. Preferred terms: one per type (per key of the type) in preference order, weights 100*(n-i)//n
   (100, 66, 33), only for two or more types, appended when not already present.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from accel.capacity.inventory import Inventory, NodeInventory
from accel.capacity.pod_types import GKE_ACCELERATOR_KEY, INSTANCE_TYPE_KEY, product_key
from accel.cluster.catalog import AcceleratorType, Catalog
from accel.policy.models import Profile, Sharing

REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
PREFERRED = "preferredDuringSchedulingIgnoredDuringExecution"
MAX_WEIGHT = 100


class AffinityError(ValueError):
    """A profile whose types cannot be expressed as node affinity (no known label values)."""


def _variants(label: str, profile: Profile) -> list[str]:
    if profile.sharing is Sharing.TIME_SLICED:
        return [label, f"{label}-SHARED"]
    if profile.sharing is Sharing.MIG and profile.mig_profile:
        mig = f"{label}-MIG-{profile.mig_profile}"
        return [label, mig, f"{mig}-SHARED"]
    return [label]


def _fits_sharing(value: str, profile: Profile) -> bool:
    upper = value.upper()
    if profile.sharing is Sharing.EXCLUSIVE:
        return not upper.endswith("-SHARED") and "-MIG-" not in upper
    if profile.sharing is Sharing.TIME_SLICED:
        return "-MIG-" not in upper
    return "-MIG-" not in upper or (profile.mig_profile or "").upper() in upper


def _observed(nodes: Sequence[NodeInventory], key: str) -> Iterable[str]:
    for node in nodes:
        if value := node.labels.get(key):
            yield value


def _product_values(
    accel_type: AcceleratorType, key: str, profile: Profile, nodes: Sequence[NodeInventory]
) -> list[str]:
    mine = [v for label in accel_type.product_labels for v in _variants(label, profile)]
    mine += [v for v in _observed(nodes, key) if _fits_sharing(v, profile)]
    return list(dict.fromkeys(mine))


def _uncovered(nodes: Sequence[NodeInventory], found: Sequence[tuple[str, list[str]]]) -> list[NodeInventory]:
    return [n for n in nodes if not any(n.labels.get(key) in values for key, values in found)]


def type_expressions(
    name: str, profile: Profile, *, catalog: Catalog, inventory: Inventory
) -> list[tuple[str, list[str]]]:
    """Rule 0: the `(key, values)` alternatives that identify nodes of type `name` (ORed)."""
    accel_type = catalog.get(name)
    if accel_type is None:
        raise AffinityError(f"type {name!r} is not in the accelerator catalog; add it to accelerators.yaml")
    nodes = [n for n in inventory.nodes if name in n.accelerators.types]
    found: list[tuple[str, list[str]]] = []
    key = product_key(accel_type)
    if key and (values := _product_values(accel_type, key, profile, nodes)):
        found.append((key, values))
    gke = list(dict.fromkeys([*accel_type.gke_accelerators, *_observed(nodes, GKE_ACCELERATOR_KEY)]))
    if gke and (not found or any(n.labels.get(GKE_ACCELERATOR_KEY) for n in _uncovered(nodes, found))):
        found.append((GKE_ACCELERATOR_KEY, gke))
    instances = list(dict.fromkeys(_observed(nodes, INSTANCE_TYPE_KEY)))
    if instances and (not found or any(n.labels.get(INSTANCE_TYPE_KEY) for n in _uncovered(nodes, found))):
        found.append((INSTANCE_TYPE_KEY, instances))
    if not found:
        patterns = (
            f"instanceTypes {list(accel_type.instance_types)}"
            if accel_type.instance_types
            else "no instanceTypes"
        )
        raise AffinityError(
            f"type {name!r} cannot be matched by node affinity: the catalog has no productLabels or "
            "gkeAccelerators "
            f"for it and no node of this type with a {INSTANCE_TYPE_KEY} label is in the cluster "
            f"({patterns}); add "
            "productLabels or gkeAccelerators for it in accelerators.yaml, or retry once its nodes have "
            "joined"
        )
    return found


@dataclass(frozen=True)
class TypeSelector:
    """The allowed types of a profile as `key In values` expressions (one per label key)."""

    expressions: tuple[dict[str, Any], ...]
    preferred: tuple[dict[str, Any], ...]
    values_by_key: Mapping[str, frozenset[str]]


def build_selector(
    profile: Profile, types: Sequence[str], *, catalog: Catalog, inventory: Inventory
) -> TypeSelector:
    """Selector over `types` (a non-empty subset of the profile's, in preference order)."""
    values: dict[str, list[str]] = {}
    per_type: list[list[tuple[str, list[str]]]] = []
    for name in types:
        alternatives = type_expressions(name, profile, catalog=catalog, inventory=inventory)
        for key, mine in alternatives:
            values[key] = list(dict.fromkeys(values.get(key, []) + mine))
        per_type.append(alternatives)
    expressions = tuple({"key": k, "operator": "In", "values": v} for k, v in values.items())
    preferred: tuple[dict[str, Any], ...] = ()
    if len(types) > 1:
        count = len(types)
        preferred = tuple(
            {
                "weight": max(1, MAX_WEIGHT * (count - index) // count),
                "preference": {"matchExpressions": [{"key": key, "operator": "In", "values": vals}]},
            }
            for index, alternatives in enumerate(per_type)
            for key, vals in alternatives
        )
    return TypeSelector(expressions, preferred, {k: frozenset(v) for k, v in values.items()})


def restricts(term: Mapping[str, Any], selector: TypeSelector) -> bool:
    """Rule 2: the term holds an `In` on one of the selector's keys with values inside the selector's."""
    for expr in term.get("matchExpressions") or ():
        allowed = selector.values_by_key.get(expr.get("key"))
        values = expr.get("values") or ()
        if allowed is not None and expr.get("operator") == "In" and values and set(values) <= allowed:
            return True
    return False


def _contradicts(
    term: Mapping[str, Any], key: str, allowed: frozenset[str], node_selector: Mapping[str, str]
) -> str | None:
    """Why `term AND key In allowed` can never match, quoting the user's constraint; None if it can."""
    if key in node_selector and node_selector[key] not in allowed:
        return f"nodeSelector {key}={node_selector[key]}"
    for expr in term.get("matchExpressions") or ():
        if expr.get("key") != key:
            continue
        operator, vals = expr.get("operator"), set(expr.get("values") or ())
        if (operator == "In" and not vals & allowed) or (operator == "NotIn" and allowed <= vals):
            return f"{key} {operator} [{', '.join(sorted(vals))}]"
        if operator == "DoesNotExist":
            return f"{key} DoesNotExist"
    return None


@dataclass(frozen=True)
class AffinityPlan:
    """The pod's new required terms (None = unchanged), preferred terms to append, or a conflict."""

    required_terms: list[dict[str, Any]] | None
    preferred_to_add: list[dict[str, Any]]
    conflict: str | None = None


def plan_affinity(spec: Mapping[str, Any], selector: TypeSelector) -> AffinityPlan:
    """Combine the pod's own node affinity with the profile selector (see module rules 1-4)."""
    node_affinity = ((spec.get("affinity") or {}).get("nodeAffinity")) or {}
    required = (node_affinity.get(REQUIRED) or {}).get("nodeSelectorTerms") or []
    node_selector = spec.get("nodeSelector") or {}
    terms = [t for t in required if isinstance(t, Mapping)] or [{}]
    changed = not required
    out: list[dict[str, Any]] = []
    conflicts: list[str] = []
    satisfiable = 0
    for term in terms:
        if restricts(term, selector):
            out.append(dict(term))
            # only the selector keys this term uses: a term of a mixed-key selector (two vendors'
            # labels) is one alternative, checked as the first pass checked it when it built it
            keys = [e.get("key") for e in term.get("matchExpressions") or () if isinstance(e, Mapping)
                    and restricts({"matchExpressions": [e]}, selector)]
            reason = next(
                (
                    r
                    for k, v in selector.values_by_key.items()
                    if k in keys and (r := _contradicts({}, k, v, node_selector))
                ),
                None,
            )
            satisfiable += reason is None
            conflicts += [reason] if reason else []
            continue
        changed = True
        for expression in selector.expressions:
            reason = _contradicts(
                term, expression["key"], selector.values_by_key[expression["key"]], node_selector
            )
            conflicts += [reason] if reason else []
            satisfiable += reason is None
            out.append(
                {**term, "matchExpressions": [*(term.get("matchExpressions") or ()), dict(expression)]}
            )
    existing = node_affinity.get(PREFERRED) or []
    preferred = [p for p in selector.preferred if p not in existing]
    if not satisfiable:
        return AffinityPlan(None, [], conflict="; ".join(dict.fromkeys(conflicts)))
    return AffinityPlan(out if changed else None, preferred)
