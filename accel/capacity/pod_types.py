"""Which accelerator types a pod can land on, read from its immutable node selection (issue 21).

A pending pod's quota charge must come from what its author cannot change after admission. The
API server keeps `spec.affinity` and `spec.nodeSelector` immutable once a pod exists (a pod with
scheduling gates may only narrow them), and kube-scheduler never binds a pod outside them, so the
node-affinity the mutating webhook wrote (accel.admission.affinity) says which types the pod can
use. Annotations (`accelerator.opendatahub.io/type`, the profile) are editable and never read here.
Rules:
1. Type keys are the node labels accel's affinity uses: the vendors' product labels, GKE's
   accelerator label and the instance type. A label value names the types whose catalog
   `productLabels` it is (plain, `-SHARED`, or `-MIG-<profile>[-SHARED]`), whose catalog
   `gkeAccelerators` it is, or of the inventory nodes that carry it (every key, including instance
   types, which the catalog only has as patterns).
2. A required term's types = the intersection over its `In` expressions on type keys; a term with
   none can match any type (None). The pod's types = the union over its terms (None when any term
   is open or there are no terms), intersected with what `spec.nodeSelector` says on type keys.
3. `TypeIndex.shared_replicas`: the time-slicing replicas of the nodes of some types (the fewest
   when they differ), what a pending time-sliced pod's units are divided by.
4. `TypeIndex.token` changes only when the observed (key, value, type) triples or the replicas
   do, so charges memoised on it stay valid across generations that did not touch nodes' labels.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from accel.cluster.catalog import AcceleratorType, Catalog
from accel.cluster.labels import NodeAccelerators, Sharing
from accel.cluster.pods import Terms

NVIDIA_PRODUCT_KEY = "nvidia.com/gpu.product"
AMD_PRODUCT_KEY = "amd.com/gpu.product-name"
INTEL_PRODUCT_KEY = "gpu.intel.com/product"
GKE_ACCELERATOR_KEY = "cloud.google.com/gke-accelerator"
INSTANCE_TYPE_KEY = "node.kubernetes.io/instance-type"
PRODUCT_KEY_BY_RESOURCE_PREFIX: tuple[tuple[str, str], ...] = (
    ("nvidia.com/", NVIDIA_PRODUCT_KEY),
    ("amd.com/", AMD_PRODUCT_KEY),
    ("gpu.intel.com/", INTEL_PRODUCT_KEY),
)
TYPE_KEYS: frozenset[str] = frozenset(
    {NVIDIA_PRODUCT_KEY, AMD_PRODUCT_KEY, INTEL_PRODUCT_KEY, GKE_ACCELERATOR_KEY, INSTANCE_TYPE_KEY}
)
SHARED_SUFFIX = "-SHARED"
MIG_INFIX = "-MIG-"


def product_key(accel_type: AcceleratorType) -> str | None:
    """The node label key that names this type's product, from its device plugin's domain."""
    resource = accel_type.resource_name
    return next((key for prefix, key in PRODUCT_KEY_BY_RESOURCE_PREFIX if resource.startswith(prefix)), None)


class LabelledNode(Protocol):
    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def accelerator_type(self) -> str | None: ...
    @property
    def accelerators(self) -> NodeAccelerators: ...


def _catalog_values(catalog: Catalog) -> dict[tuple[str, str], frozenset[str]]:
    """Rule 1's catalog half: (key, value) -> types, MIG variants under their plain product value."""
    found: dict[tuple[str, str], set[str]] = {}
    for accel_type in catalog:
        key = product_key(accel_type)
        for label in accel_type.product_labels if key else ():
            for value in (label, label + SHARED_SUFFIX):
                found.setdefault((str(key), value), set()).add(accel_type.name)
        for value in accel_type.gke_accelerators:
            found.setdefault((GKE_ACCELERATOR_KEY, value), set()).add(accel_type.name)
    return {k: frozenset(v) for k, v in found.items()}


_CATALOGS: dict[int, tuple[Catalog, dict[tuple[str, str], frozenset[str]]]] = {}


def catalog_values(catalog: Catalog) -> dict[tuple[str, str], frozenset[str]]:
    """`_catalog_values`, once per catalog object (a catalog is immutable; the entry holds it, so
    its id is not reused while cached; a policy reload brings a new one, the oldest is dropped)."""
    entry = _CATALOGS.get(id(catalog))
    if entry is None or entry[0] is not catalog:
        if len(_CATALOGS) >= 8:
            _CATALOGS.pop(next(iter(_CATALOGS)))
        entry = _CATALOGS[id(catalog)] = (catalog, _catalog_values(catalog))
    return entry[1]


class TypeIndex:
    """Rule 1: label value -> accelerator types, from the catalog and the nodes of one inventory."""

    __slots__ = ("_catalog", "_observed", "_replicas", "token")

    def __init__(self, catalog: Catalog, nodes: Iterable[LabelledNode]) -> None:
        self._catalog = catalog_values(catalog)
        observed: dict[tuple[str, str], set[str]] = {}
        replicas: dict[str, int] = {}  # type -> fewest replicas of its time-sliced nodes
        for node in nodes:
            accel_type = node.accelerator_type
            if not accel_type:
                continue
            sharing = node.accelerators
            if sharing.sharing is not Sharing.EXCLUSIVE and sharing.replicas > 1:
                replicas[accel_type] = min(replicas.get(accel_type, sharing.replicas), sharing.replicas)
            for key in TYPE_KEYS:
                value = node.labels.get(key)
                if value:
                    observed.setdefault((key, value), set()).add(accel_type)
        self._observed = {k: frozenset(v) for k, v in observed.items()}
        self._replicas = replicas
        self.token: frozenset[tuple[str, str, str]] | None = frozenset(
            [(k, v, t) for (k, v), types in self._observed.items() for t in types]
            + [("replicas", str(n), t) for t, n in replicas.items()]
        )

    def types_of(self, key: str, value: str) -> frozenset[str]:
        """The types a node with label `key=value` has (rule 1)."""
        found = self._catalog.get((key, value), frozenset()) | self._observed.get((key, value), frozenset())
        if MIG_INFIX in value:
            found |= self._catalog.get((key, value.split(MIG_INFIX, 1)[0]), frozenset())
        return found

    def shared_replicas(self, types: Iterable[str] | None) -> int:
        """The fewest replicas of the time-sliced nodes of `types` (None: any type); 1 when none
        is time-sliced (a whole GPU per unit: never less than a bind can charge)."""
        found = [n for t, n in self._replicas.items() if types is None or t in types]
        return min(found, default=1)


def selectable_types(
    terms: Terms | None, node_selector: Mapping[str, str], index: TypeIndex
) -> frozenset[str] | None:
    """Rule 2: the types a pod with this node selection can land on; None = not restricted."""
    types: frozenset[str] | None = None
    if terms:
        union: set[str] = set()
        for term in terms:
            narrowed: frozenset[str] | None = None
            for key, operator, values in term:
                if key in TYPE_KEYS and operator == "In":
                    these = frozenset(t for v in values for t in index.types_of(key, v))
                    narrowed = these if narrowed is None else narrowed & these
            if narrowed is None:
                union = set()
                break  # an open term: the pod may land on any type
            union |= narrowed
        else:
            types = frozenset(union)
    for key, value in node_selector.items():
        if key in TYPE_KEYS:
            these = index.types_of(key, value)
            types = these if types is None else types & these
    return types
