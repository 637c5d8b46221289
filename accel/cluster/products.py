"""Product strings and MIG profiles: the grammar behind accelerator node labels.

A product string is what an operator publishes about a device: GFD's `nvidia.com/gpu.product`
(`NVIDIA-A100-SXM4-80GB`, `A100-SXM4-40GB-MIG-1g.5gb-SHARED`), AMD's `amd.com/gpu.product-name`
(`AMD_Instinct_MI300X_OAM`), Intel's `gpu.intel.com/product` (`Max_1550`). See accelerators.md
sections 1.2, 1.4, 1.5 and 3.

Matching rules (invariants):
1. Suffixes are stripped first: a trailing `-SHARED`, then `-MIG-<g>g.<n>gb[+me]`, case-insensitive.
2. Comparison is case-insensitive on whole tokens (split on `-`, `_`, space) after dropping leading
   vendor/brand words (`NVIDIA`, `Tesla`, `Quadro`, `GeForce`, `AMD`, `Instinct`, `Intel`). So
   `L40S` never matches `L4`, `A10G` never `A10`, `H20` never `H200`, `GH200` never `H200`.
3. A value listed in a type's `productLabels` wins outright. Otherwise the longest catalog model
   whose tokens prefix the value's tokens names the candidates, narrowed by the memory token
   (`80GB`), the form factor (`SXM4`, `PCIe`, `NVL`, `HBM3` = SXM), the MIG profile, and finally a
   memory hint from another label (within MEMORY_TOLERANCE). The first candidate in catalog
   order is the model's default.
4. A memory token that fits no candidate means a variant we do not know -> no match, except on
   Grace superchips, whose name carries the CPU memory (`NVIDIA-GH200-480GB`): there it is ignored.
5. Nothing here raises on any input string; unknown input gives None.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from accel.cluster.catalog import AcceleratorType, Catalog

MEMORY_TOLERANCE = 0.08  # NVML reports a little less than the marketing size (A10G: 23028 MiB)
MAX_LABEL_CHARS = 1024  # longer values are not product names; do not spend time on them

_SHARED = re.compile(r"-SHARED$", re.IGNORECASE)
_MIG_SUFFIX = re.compile(r"-MIG-(\d{1,2}g\.\d{1,4}gb(?:[+-](?:me|gfx)){0,3})$", re.IGNORECASE)
MIG_PROFILE = re.compile(r"^(\d{1,2})g\.(\d{1,4})gb((?:[+-](?:me|gfx)){0,3})$")
_SPLIT = re.compile(r"[-_\s]+")
_MEMORY_TOKEN = re.compile(r"^(\d{1,4})GB?$")
_BRAND_WORDS = frozenset({"NVIDIA", "TESLA", "QUADRO", "GEFORCE", "AMD", "INSTINCT", "INTEL"})
_FORM_FACTORS: Mapping[str, str] = {
    "SXM": "sxm",
    "SXM2": "sxm",
    "SXM3": "sxm",
    "SXM4": "sxm",
    "SXM5": "sxm",
    "HBM3": "sxm",  # NVIDIA-H100-80GB-HBM3 is the SXM5 board (fact sheet row 25)
    "PCIE": "pcie",
    "NVL": "nvl",
    "OAM": "oam",
}
_HOST_MEMORY_FORM = "superchip"  # GH200/GB200: the name's memory token may be the Grace memory


@dataclass(frozen=True)
class ParsedProduct:
    """One product string taken apart (no catalog involved)."""

    raw: str
    tokens: tuple[str, ...]  # upper-case, brand words and suffixes removed
    mig_profile: str | None = None
    shared: bool = False
    memory_gb: int | None = None
    form_factor: str | None = None

    @property
    def key(self) -> str:
        return "-".join(self.tokens)


def tokens_of(text: str) -> tuple[str, ...]:
    """Upper-case whole tokens with leading brand words dropped (`NVIDIA-GeForce-RTX-4090` -> RTX, 4090)."""
    tokens = [t for t in _SPLIT.split(text.strip().upper()) if t]
    while tokens and tokens[0] in _BRAND_WORDS:
        tokens.pop(0)
    return tuple(tokens)


@lru_cache(maxsize=4096)
def parse_product(value: str) -> ParsedProduct:
    """Split a product label value into model tokens, memory, form factor, MIG profile, shared flag.

    Cached: a cluster has a handful of distinct product strings repeated on every node.
    """
    text = value.strip()[:MAX_LABEL_CHARS]
    shared = bool(_SHARED.search(text))
    text = _SHARED.sub("", text)
    mig = _MIG_SUFFIX.search(text)
    profile = mig.group(1).lower() if mig else None
    text = _MIG_SUFFIX.sub("", text)
    tokens = tokens_of(text)
    memory = next((int(m.group(1)) for t in tokens[1:] if (m := _MEMORY_TOKEN.match(t))), None)
    form = next((_FORM_FACTORS[t] for t in tokens[1:] if t in _FORM_FACTORS), None)
    return ParsedProduct(value, tokens, profile, shared, memory, form)


@dataclass(frozen=True)
class ProductIndex:
    """Lookup tables built once per catalog (see product_index)."""

    exact: Mapping[str, AcceleratorType]  # ParsedProduct.key of a productLabels value -> type
    models: Mapping[tuple[str, ...], tuple[AcceleratorType, ...]]  # model tokens -> types, catalog order
    gke: Mapping[str, AcceleratorType]  # lower-case gke-accelerator value (and canonical name) -> type
    instance_patterns: tuple[tuple[str, AcceleratorType], ...]
    longest_model: int


@lru_cache(maxsize=16)
def product_index(catalog: Catalog) -> ProductIndex:
    """Index a catalog for matching. Catalogs are immutable, so caching per object is safe.

    When two types claim the same product label, the first in catalog order keeps it.
    """
    exact: dict[str, AcceleratorType] = {}
    models: dict[tuple[str, ...], list[AcceleratorType]] = {}
    gke: dict[str, AcceleratorType] = {}
    patterns: list[tuple[str, AcceleratorType]] = []
    for accel_type in catalog:
        if accel_type.vendor == "unknown":
            continue
        for label in accel_type.product_labels:
            exact.setdefault(parse_product(label).key, accel_type)
        models.setdefault(tokens_of(accel_type.model), []).append(accel_type)
        for alias in (*accel_type.gke_accelerators, accel_type.name):
            gke.setdefault(alias.lower(), accel_type)
        patterns.extend((pattern.lower(), accel_type) for pattern in accel_type.instance_types)
    frozen_models = {tokens: tuple(types) for tokens, types in models.items() if tokens}
    longest = max((len(tokens) for tokens in frozen_models), default=0)
    return ProductIndex(exact, frozen_models, gke, tuple(patterns), longest)


def match_product(
    parsed: ParsedProduct,
    catalog: Catalog,
    *,
    vendor: str | None = None,
    memory_hint_gb: float | None = None,
) -> AcceleratorType | None:
    """The catalog type a parsed product string names, or None (rules 3 and 4 of the module doc)."""
    index = product_index(catalog)
    found = index.exact.get(parsed.key)
    if found is not None and vendor in (None, found.vendor):
        return found
    candidates = _model_candidates(parsed.tokens, index, vendor)
    if not candidates:
        return None
    if parsed.memory_gb is not None:
        by_memory = [c for c in candidates if round(c.memory_gb) == parsed.memory_gb]
        if by_memory:
            candidates = by_memory
        elif not all(_HOST_MEMORY_FORM in c.form_factors for c in candidates):
            return None
    if parsed.form_factor:
        candidates = _narrow(candidates, lambda c: parsed.form_factor in c.form_factors)
    if parsed.mig_profile:
        base = mig_base(parsed.mig_profile)
        candidates = _narrow(candidates, lambda c: base in {mig_base(p) for p in c.mig_profiles})
    if memory_hint_gb and len(candidates) > 1:
        candidates = _narrow(candidates, lambda c: _close(c.memory_gb, memory_hint_gb))
    return candidates[0]


def _model_candidates(
    tokens: tuple[str, ...], index: ProductIndex, vendor: str | None
) -> list[AcceleratorType]:
    for length in range(min(len(tokens), index.longest_model), 0, -1):
        found = [t for t in index.models.get(tokens[:length], ()) if vendor in (None, t.vendor)]
        if found:
            return found
    return []


def _narrow(
    candidates: list[AcceleratorType], keep: Callable[[AcceleratorType], bool]
) -> list[AcceleratorType]:
    """Candidates passing `keep`, or all of them when none pass (a hint never empties the list)."""
    kept = [c for c in candidates if keep(c)]
    return kept or candidates


def _close(memory_gb: float, hint_gb: float) -> bool:
    return memory_gb > 0 and abs(memory_gb - hint_gb) <= MEMORY_TOLERANCE * memory_gb


def product_form_factor(parsed: ParsedProduct, found: AcceleratorType | None) -> str | None:
    """The board named by the value, else the matched type's only form factor, else None."""
    if parsed.form_factor is None and found is not None and len(found.form_factors) == 1:
        return found.form_factors[0]
    return parsed.form_factor


def match_gke_accelerator(value: str, catalog: Catalog) -> AcceleratorType | None:
    """Type for a `cloud.google.com/gke-accelerator` value (GKE alias or a canonical name)."""
    return product_index(catalog).gke.get(value.strip().lower())


def match_instance_type(
    instance_type: str, catalog: Catalog, *, vendor: str | None = None
) -> AcceleratorType | None:
    """Type whose `instanceTypes` pattern matches the node's instance type (first in catalog order)."""
    name = instance_type.strip().lower()[:MAX_LABEL_CHARS]
    for pattern, accel_type in product_index(catalog).instance_patterns:
        if vendor in (None, accel_type.vendor) and fnmatch.fnmatchcase(name, pattern):
            return accel_type
    return None


# ---------------------------------------------------------------------------------------- MIG


def parse_mig_profile(profile: str) -> tuple[int, int] | None:
    """(compute slices, memory GB) of `<g>g.<n>gb[+me|+gfx|-me]`, or None when malformed."""
    match = MIG_PROFILE.match(profile.strip().lower())
    if not match or int(match.group(1)) == 0:
        return None
    return int(match.group(1)), int(match.group(2))


def mig_base(profile: str) -> str:
    """The profile without media/graphics modifiers (`1g.10gb+me` -> `1g.10gb`)."""
    return re.split(r"[+-]", profile.strip().lower(), maxsplit=1)[0]


def _geometry(accel_type: AcceleratorType | None) -> tuple[int, int, float | None]:
    """(compute slices, memory slices, GB per memory slice) of one GPU of this type.

    7-compute-slice GPUs (A100, H100, H200, B200) have 8 memory slices; 4-slice ones (A30, RTX PRO
    6000) have 4 (mig-parted profile tables). Unknown types are assumed to be the 7/8 kind.
    """
    parsed = [p for p in map(parse_mig_profile, accel_type.mig_profiles if accel_type else ()) if p]
    compute = max((g for g, _ in parsed), default=7)
    memory_slices = 8 if compute == 7 else compute
    memory_gb = accel_type.memory_gb if accel_type and accel_type.memory_gb > 0 else None
    return compute, memory_slices, (memory_gb / memory_slices if memory_gb else None)


def _slice_cost(profile: str, accel_type: AcceleratorType | None) -> tuple[int, int] | None:
    """(compute slices, memory slices) one instance of `profile` occupies."""
    parsed = parse_mig_profile(profile)
    if parsed is None:
        return None
    _, _, unit = _geometry(accel_type)
    memory_slices = max(1, round(parsed[1] / unit)) if unit else 1
    return parsed[0], memory_slices


def mig_instances_per_gpu(profile: str, accel_type: AcceleratorType | None) -> int:
    """How many `profile` instances fit on one GPU when used alone (`1g.10gb` on A100-80GB -> 7).

    Bounded by both compute and memory slices, which reproduces mig-parted's tables
    (`1g.20gb` x4, `2g.20gb` x3, `3g.40gb` x2 on an 80GB A100/H100). Malformed -> 1.
    """
    cost = _slice_cost(profile, accel_type)
    if cost is None:
        return 1
    compute, memory_slices, _ = _geometry(accel_type)
    return max(1, min(compute // cost[0], memory_slices // cost[1]))


def mig_gpu_count(slices: Mapping[str, int], accel_type: AcceleratorType | None) -> int:
    """Fewest physical GPUs that can host these MIG instances (profile -> count).

    Exact for one profile (single strategy: 56 x 1g.5gb on A100-40GB -> 8); for a mix it is the
    largest of the per-profile, total-compute and total-memory lower bounds.
    """
    compute, memory_slices, _ = _geometry(accel_type)
    used_compute = used_memory = bound = 0
    for profile, count in slices.items():
        cost = _slice_cost(profile, accel_type)
        if cost is None or count <= 0:
            continue
        bound = max(bound, math.ceil(count / mig_instances_per_gpu(profile, accel_type)))
        used_compute += cost[0] * count
        used_memory += cost[1] * count
    return max(bound, math.ceil(used_compute / compute), math.ceil(used_memory / memory_slices))
