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

Merging into the pod (protocols.md 2.5 item 4; nodeSelectorTerms are ORed, expressions ANDed):
1. One selector expression per label key (`key In values`); with several keys the selector is an OR
   of terms, so it is distributed: every existing term t becomes one term `t AND e` per key.
2. A term already holding an `In` expression on one of our keys whose values are a subset of
   ours already restricts to allowed types and is kept as is (this makes a second pass a no-op).
3. A combined term that cannot match (user `In` disjoint from ours, `NotIn` covering ours,
   `DoesNotExist`, or a nodeSelector value outside ours) is a contradiction; when every
   combination contradicts, the pod is denied with the user's own constraint quoted.
4. Preferred terms: one per type in preference order, weights 100*(n-i)//n (100, 66, 33), only for
   profiles with two or more types, appended when not already present.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from accel.catalog import AcceleratorType, Catalog
from accel.inventory import Inventory
from accel.policy import Profile, Sharing

NVIDIA_PRODUCT_KEY = "nvidia.com/gpu.product"
AMD_PRODUCT_KEY = "amd.com/gpu.product-name"
INTEL_PRODUCT_KEY = "gpu.intel.com/product"
_KEY_BY_RESOURCE_PREFIX: tuple[tuple[str, str], ...] = (
    ("nvidia.com/", NVIDIA_PRODUCT_KEY),
    ("amd.com/", AMD_PRODUCT_KEY),
    ("gpu.intel.com/", INTEL_PRODUCT_KEY),
)
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
PREFERRED = "preferredDuringSchedulingIgnoredDuringExecution"
MAX_WEIGHT = 100


class AffinityError(ValueError):
    """A profile whose types cannot be expressed as node affinity (no known label values)."""


def product_key(accel_type: AcceleratorType) -> str | None:
    """The node label key that names this type's product, from its device plugin's domain."""
    return next((key for prefix, key in _KEY_BY_RESOURCE_PREFIX if accel_type.resource_name.startswith(prefix)), None)


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


def _observed(accel_type: str, key: str, inventory: Inventory) -> Iterable[str]:
    for node in inventory.nodes:
        if accel_type in node.accelerators.types and (value := node.labels.get(key)):
            yield value


@dataclass(frozen=True)
class TypeSelector:
    """The allowed types of a profile as `key In values` expressions (one per label key)."""

    expressions: tuple[dict[str, Any], ...]
    preferred: tuple[dict[str, Any], ...]
    values_by_key: Mapping[str, frozenset[str]]


def build_selector(profile: Profile, types: Sequence[str], *, catalog: Catalog, inventory: Inventory) -> TypeSelector:
    """Selector over `types` (a non-empty subset of the profile's, in preference order)."""
    values: dict[str, list[str]] = {}
    per_type: list[tuple[str, list[str]]] = []
    for name in types:
        accel_type = catalog.get(name)
        key = product_key(accel_type) if accel_type else None
        if accel_type is None or key is None:
            raise AffinityError(f"type {name!r} has no product label key known to accel; add it to the catalog")
        mine = [v for label in accel_type.product_labels for v in _variants(label, profile)]
        mine += [v for v in _observed(name, key, inventory) if _fits_sharing(v, profile)]
        if not mine:
            raise AffinityError(
                f"type {name!r} has no known {key} values; add productLabels for it in accelerators.yaml"
            )
        mine = list(dict.fromkeys(mine))
        values.setdefault(key, [])
        values[key] = list(dict.fromkeys(values[key] + mine))
        per_type.append((key, mine))
    expressions = tuple({"key": k, "operator": "In", "values": v} for k, v in values.items())
    preferred: tuple[dict[str, Any], ...] = ()
    if len(types) > 1:
        count = len(types)
        preferred = tuple(
            {
                "weight": max(1, MAX_WEIGHT * (count - index) // count),
                "preference": {"matchExpressions": [{"key": key, "operator": "In", "values": vals}]},
            }
            for index, (key, vals) in enumerate(per_type)
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


def _contradicts(term: Mapping[str, Any], key: str, allowed: frozenset[str], node_selector: Mapping[str, str]) -> str | None:
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
            reason = next(
                (r for k, v in selector.values_by_key.items() if (r := _contradicts({}, k, v, node_selector))), None
            )
            satisfiable += reason is None
            conflicts += [reason] if reason else []
            continue
        changed = True
        for expression in selector.expressions:
            reason = _contradicts(term, expression["key"], selector.values_by_key[expression["key"]], node_selector)
            conflicts += [reason] if reason else []
            satisfiable += reason is None
            out.append({**term, "matchExpressions": [*(term.get("matchExpressions") or ()), dict(expression)]})
    existing = node_affinity.get(PREFERRED) or []
    preferred = [p for p in selector.preferred if p not in existing]
    if not satisfiable:
        return AffinityPlan(None, [], conflict="; ".join(dict.fromkeys(conflicts)))
    return AffinityPlan(out if changed else None, preferred)
