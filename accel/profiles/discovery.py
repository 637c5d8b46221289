"""Profile discovery (seed AC-002): draft a hardware profile from a selection of nodes.

Rules:
1. The draft is made on the accelerator *type*: the canonical types found (most GPUs first) are
   its `accelerators`, which the webhook turns into node affinity over every label form of that
   type (GPU-operator labels, product strings). So the draft matches every node of those types,
   not only the selected ones.
2. Its `nodeSelector` holds only what the user asked for and every selected node really has: the
   `key=value` terms of the label selector, minus labels that only restate the type (product
   strings: they differ between SKUs of one type, e.g. `-SXM` / `-NVL`) and per-node or volatile
   labels. Other labels all selected nodes share (zone, leaf, spine, ...) are reported as
   `shared_labels`, to add by hand if the profile should be pinned to them.
3. A draft over several types is named after all of them (`nvidia-h100-80gb-a100-80gb`).
4. GPU limits come from node capacity, the sharing mode from how the nodes are set up,
   tolerations from their GPU taints.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from accel.capacity.inventory import Inventory, NodeInventory
from accel.cluster.catalog import UNKNOWN_TYPE, Catalog
from accel.cluster.labels import Sharing as NodeSharing
from accel.policy.models import AcceleratorRef, GpuCounts, Profile, Sharing, Toleration

# Labels that identify a single node or change on their own; never useful in a shared selector.
# Labels that identify a single node, change on their own, or count things (GPU count, replicas,
# slices: a pool of one type often mixes 4- and 8-GPU nodes); never useful in a shared selector.
_VOLATILE = re.compile(
    r"^(kubernetes\.io/hostname|nvidia\.com/gfd\.timestamp|nvidia\.com/cuda\..*|nvidia\.com/gpu\.memory"
    r"|nvidia\.com/gpu\.(count|replicas|family|compute\..*|machine|mode|multiprocessors|slices\..*|engines\..*)"
    r"|nvidia\.com/mig-.*\.(count|memory|multiprocessors|slices\..*|engines\..*)"
    r"|nvidia\.com/mig\.config\.state|feature\.node\.kubernetes\.io/.*|beta\.kubernetes\.io/.*"
    r"|amd\.com/gpu\.(cu-count|simd-count|driver-version|firmware)|gpu\.intel\.com/(millicores|memory\.max|gpu-numbers.*|tiles|numa-gpu-map)"
    r"|node\.kubernetes\.io/exclude.*|node-role\.kubernetes\.io/.*)$"
)
# Labels that only say which accelerator a node has: the draft's `accelerators` cover them (rule 2).
_TYPE_LABEL = re.compile(
    r"^(nvidia\.com/gpu\.(product|family|memory)|amd\.com/gpu\.(product-name|device-id|family|vram)"
    r"|beta\.amd\.com/gpu\..*|gpu\.intel\.com/product|habana\.ai/.*product.*|accelerator\.opendatahub\.io/type"
    r"|cloud\.google\.com/gke-accelerator|k8s\.amazonaws\.com/accelerator|nvidia\.com/mig-.*\.product)$"
)
_SELECTOR_TERM = re.compile(r"^\s*([A-Za-z0-9./_-]+)\s*(==|=|!=)?\s*([A-Za-z0-9._-]*)\s*$")


class SelectorError(ValueError):
    pass


class Draft(BaseModel):
    model_config = ConfigDict(frozen=True)

    profile: Profile
    nodes: tuple[str, ...]
    also_matches: tuple[str, ...]  # other nodes of the drafted types the node selector matches too
    warnings: tuple[str, ...]
    shared_labels: Mapping[str, str] = {}  # rule 2: shared by every selected node, not pinned

    def policy_yaml(self) -> str:
        """The profile as a `profiles.yaml` list item, ready to paste."""
        data = self.profile.model_dump(by_alias=True, exclude_defaults=True, mode="json")
        data = {"name": self.profile.name, **data}
        return yaml.safe_dump({"profiles": [data]}, sort_keys=False)


def parse_selector(text: str) -> list[tuple[str, str, str | None]]:
    """`k=v,k2!=v2,k3` (equality-based label selector) -> [(key, op, value)]."""
    terms = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = _SELECTOR_TERM.match(part)
        if not match:
            raise SelectorError(f"cannot parse selector term {part!r}; use key=value, key!=value or key")
        key, op, value = match.groups()
        terms.append((key, "!=" if op == "!=" else ("=" if op else "exists"), value if op else None))
    return terms


def matches(labels: Mapping[str, str], terms: Sequence[tuple[str, str, str | None]]) -> bool:
    for key, op, value in terms:
        if op == "exists" and key not in labels:
            return False
        if op == "=" and labels.get(key) != value:
            return False
        if op == "!=" and labels.get(key) == value:
            return False
    return True


def select_nodes(
    inventory: Inventory, *, names: Sequence[str] = (), selector: str = ""
) -> list[NodeInventory]:
    """Nodes by name and/or label selector; unknown names raise with the list of known ones."""
    known = {n.name: n for n in inventory.nodes}
    missing = [n for n in names if n not in known]
    if missing:
        raise SelectorError(f"unknown node(s): {', '.join(missing)}; known: {', '.join(sorted(known))}")
    chosen = [known[n] for n in names]
    if selector:
        terms = parse_selector(selector)
        chosen += [n for n in inventory.nodes if matches(n.labels, terms) and n not in chosen]
    return chosen


def draft_profile(
    selected: Sequence[NodeInventory],
    inventory: Inventory,
    catalog: Catalog,
    *,
    name: str | None = None,
    selector: str = "",
) -> Draft:
    """Draft a profile for these nodes' types (module rules); raise SelectorError if none has accelerators.

    `selector` is the label selector the user chose nodes with, if any (rule 2)."""
    gpu_nodes = [n for n in selected if n.accelerators.types]
    if not gpu_nodes:
        raise SelectorError("none of the selected nodes has accelerators; select GPU nodes")
    warnings: list[str] = []
    gpus_by_type: Counter[str] = Counter()
    for node in gpu_nodes:
        for accel_type in node.accelerators.types:
            gpus_by_type[accel_type] += node.accelerators.gpu_count
    types = [t for t, _ in gpus_by_type.most_common() if t != UNKNOWN_TYPE]
    if UNKNOWN_TYPE in gpus_by_type:
        warnings.append(
            "some selected nodes have GPUs without GPU-operator labels (type unknown); they are left out of "
            "the type list"
        )
    sharing, mig_profile, replicas = _sharing(gpu_nodes, warnings)
    common = _common_labels(gpu_nodes)
    asked = {key: value for key, op, value in parse_selector(selector) if op == "=" and value is not None}
    node_selector = {
        k: v for k, v in sorted(asked.items()) if common.get(k) == v and not _TYPE_LABEL.match(k)
    }
    shared = {k: v for k, v in common.items() if k not in node_selector and not _TYPE_LABEL.match(k)}
    chosen = {n.name for n in gpu_nodes}
    also = tuple(
        n.name for n in inventory.nodes
        if n.name not in chosen and set(n.accelerators.types) & set(types)
        and all(n.labels.get(k) == v for k, v in node_selector.items())
    )
    profile = Profile(
        name=_profile_name(name, types),
        display_name=" / ".join(catalog.display_name(t) for t in types) or "GPU nodes",
        accelerators=tuple(AcceleratorRef(type=t) for t in types),
        sharing=sharing,
        mig_profile=mig_profile,
        replicas=replicas,
        gpus=GpuCounts(default=1, max=max(1, min(_per_pod_capacity(n, sharing) for n in gpu_nodes))),
        tolerations=_tolerations(gpu_nodes),
        node_selector=node_selector,
    )
    return Draft(
        profile=profile,
        nodes=tuple(n.name for n in gpu_nodes),
        also_matches=also,
        warnings=tuple(warnings),
        shared_labels=shared,
    )


def _profile_name(name: str | None, types: Sequence[str]) -> str:
    """The given name, else every type (rule 3), the vendor prefix said once: nvidia-h100-80gb-a100-80gb."""
    if name:
        base = name
    elif not types:
        base = "gpu-nodes"
    else:
        vendors = {t.split("-", 1)[0] for t in types}
        base = types[0] + "".join(
            "-" + (t.split("-", 1)[1] if len(vendors) == 1 and "-" in t else t) for t in types[1:]
        )
    return re.sub(r"[^a-z0-9.-]+", "-", base.lower()).strip("-.")[:63].strip("-.") or "drafted"


def _sharing(nodes: Sequence[NodeInventory], warnings: list[str]) -> tuple[Sharing, str | None, int | None]:
    modes = Counter(n.accelerators.sharing for n in nodes)
    mode = modes.most_common(1)[0][0]
    if len(modes) > 1:
        warnings.append(
            f"selected nodes differ in sharing mode ({', '.join(sorted(m.value for m in modes))}); drafted "
            f"{mode.value}"
        )
    if mode is NodeSharing.MIG:
        slices: Counter[str] = Counter()
        for node in nodes:
            slices.update(node.accelerators.mig.slices if node.accelerators.mig else {})
        return Sharing.MIG, (slices.most_common(1)[0][0] if slices else None), None
    if mode in (NodeSharing.TIME_SLICED, NodeSharing.MPS):
        return Sharing.TIME_SLICED, None, min(n.accelerators.replicas for n in nodes)
    return Sharing.EXCLUSIVE, None, None


def _per_pod_capacity(node: NodeInventory, sharing: Sharing) -> int:
    if sharing is Sharing.EXCLUSIVE:
        return node.accelerators.gpu_count
    return 1


def _common_labels(nodes: Sequence[NodeInventory]) -> dict[str, str]:
    common = dict(nodes[0].labels)
    for node in nodes[1:]:
        common = {k: v for k, v in common.items() if node.labels.get(k) == v}
    return {k: v for k, v in sorted(common.items()) if not _VOLATILE.match(k)}


def _tolerations(nodes: Iterable[NodeInventory]) -> tuple[Toleration, ...]:
    found: dict[tuple[str, str], Toleration] = {}
    for node in nodes:
        for taint in node.taints:
            key, effect = str(taint.get("key", "")), str(taint.get("effect", ""))
            if key and effect in ("NoSchedule", "NoExecute", "PreferNoSchedule"):
                found[(key, effect)] = Toleration.model_validate(
                    {"key": key, "operator": "Exists", "effect": effect}
                )
    return tuple(found.values())


def as_json(draft: Draft) -> dict[str, Any]:
    return {
        "profile": draft.profile.model_dump(by_alias=True, exclude_defaults=True, mode="json")
        | {"name": draft.profile.name},
        "nodes": list(draft.nodes),
        "alsoMatches": list(draft.also_matches),
        "warnings": list(draft.warnings),
        "sharedLabels": dict(draft.shared_labels),
        "yaml": draft.policy_yaml(),
    }
