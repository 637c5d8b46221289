"""What admission needs from the cluster state, computed once per state generation.

The webhook's hot path must not walk every pod or node per request. `build_context` does that
once per (policy, inventory) generation: team usage from the watch, the reservation ids the
watch already shows, the jobs' types, free devices per type, and a per-profile cache of affinity
selectors. The context is immutable from the outside; the selector cache only memoises pure results.

A generation comes every 0.2 s while pods change, so its cost must follow the change, not the
cluster: usage (accel.quota.charges `ChargeMemo`, one per replica), the reservation ids
(accel.quota.watch `WatchIds`) and the jobs' types (accel.admission.jobs `JobTypes`) are kept from
the previous generation's context and updated from the pods and nodes that changed
(accel.quota.pod_changes), in steps (`context_steps`).
"""

from __future__ import annotations

import operator
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from accel.admission.affinity import AffinityError, TypeSelector, build_selector
from accel.admission.jobs import JobTypes
from accel.capacity.free import type_free_units
from accel.capacity.inventory import Inventory, NodeInventory, requested_gpu_equivalents
from accel.cluster.catalog import Catalog
from accel.cluster.job_intent import JobKey
from accel.cluster.labels import is_accelerator_resource
from accel.cluster.pods import ODH_PROFILE_ANNOTATION, PROFILE_ANNOTATION, PodView, required_terms
from accel.cluster.pods import accelerator_requests as pod_accelerator_requests
from accel.policy.models import ParsedPolicy, Policy, Profile
from accel.policy.pricing import gpu_hour_price, price_annotations
from accel.quota.charges import ChargeMemo
from accel.quota.pod_changes import diff_by_id
from accel.quota.steps import finish_steps
from accel.quota.watch import WatchIds

CONTAINER_LISTS = ("containers", "initContainers")


class NodeTotals:
    """Free units per type (accel.capacity.free `free_units_by_type`, rule 2) and the types present on
    some node, kept across generations: each node object's share is remembered and only node objects
    that came or went are counted (the inventory keeps a node's object while the node and its bound
    pods are unchanged; accel.quota.pod_changes `diff_by_id`). Another catalog object counts afresh.
    One follows one chain of generations (the contexts), like accel.quota.watch.WatchIds."""

    def __init__(self) -> None:
        self._catalog: Catalog | None = None
        self._nodes: Sequence[NodeInventory] = ()
        self._by_id: dict[int, NodeInventory] = {}
        self._free: dict[str, list[int]] = {}  # type -> [free units, schedulable nodes of that type]
        self._present: dict[str, int] = {}  # type -> nodes having it
        self._result: tuple[dict[str, int], tuple[str, ...]] = ({}, ())

    def update(self, inventory: Inventory, catalog: Catalog) -> tuple[dict[str, int], tuple[str, ...]]:
        """(free units per type, present types in catalog order) of `inventory`: read them, never change
        them (the same objects are handed out while no node changed)."""
        nodes = inventory.nodes
        if catalog is not self._catalog:
            self._catalog, self._nodes, self._by_id = catalog, (), {}
            self._free, self._present, self._result = {}, {}, ({}, ())
        elif nodes is self._nodes:
            return self._result
        by_id, came, went = diff_by_id(self._nodes, self._by_id, nodes)
        if len(by_id) != len(nodes):  # one object twice (never from the inventory): count it as shown
            self._catalog = None  # and count afresh next time
            return self._count(catalog, nodes, (), {}, {})
        self._nodes, self._by_id = nodes, by_id
        if came or went:
            self._result = self._count(catalog, came, went, self._free, self._present)
        return self._result

    @staticmethod
    def _count(
        catalog: Catalog,
        came: Sequence[NodeInventory],
        went: Sequence[NodeInventory],
        free: dict[str, list[int]],
        present: dict[str, int],
    ) -> tuple[dict[str, int], tuple[str, ...]]:
        """Take `went` out of and put `came` into the totals; the result from them."""
        for node, sign in [(node, -1) for node in went] + [(node, 1) for node in came]:
            for name in node.accelerators.types:
                present[name] = present.get(name, 0) + sign
                if not present[name]:
                    del present[name]
            share = type_free_units(node, catalog)  # `free_units_by_type`'s rule, per node
            if share is not None:
                type_name, units = share
                counted = free.setdefault(type_name, [0, 0])
                counted[0] += sign * units
                counted[1] += sign
                if not counted[1]:
                    del free[type_name]
        return (
            {name: units for name, (units, _) in free.items()},
            tuple(name for name in catalog.names() if name in present),
        )


@dataclass
class AdmissionContext:
    """Per-generation facts for admission (see module docstring)."""

    parsed: ParsedPolicy
    inventory: Inventory
    generation: int = 0
    usage: Mapping[str, Mapping[str, Fraction]] = field(default_factory=dict)
    visible: frozenset[str] = frozenset()  # ledger ids the watch accounts for (accel.quota invariant 2)
    watch: WatchIds = field(default_factory=WatchIds)  # keeps `visible` per generation (accel.quota.watch)
    watermark: int | None = None  # the pod watch's resourceVersion behind `visible` (accel.quota invariant 6)
    free_units: Mapping[str, int] = field(default_factory=dict)
    present_types: tuple[str, ...] = ()  # every type on some inventory node, catalog order
    job_types: Mapping[JobKey, str] = field(default_factory=dict)  # accel.admission.jobs rule 2 (watch)
    node_totals: NodeTotals = field(default_factory=NodeTotals)  # keeps the two above per generation
    jobs: JobTypes = field(default_factory=JobTypes)  # keeps `job_types` per generation (admission.jobs)
    excluded: frozenset[str] = frozenset()
    charges: ChargeMemo = field(default_factory=ChargeMemo)
    _selectors: dict[tuple[str, tuple[str, ...]], TypeSelector | AffinityError] = field(default_factory=dict)
    _tolerations: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    _prices: dict[tuple[str, str, Fraction], dict[str, str]] = field(default_factory=dict)
    _amounts: dict[tuple[str, tuple[str, ...], tuple[tuple[str, int], ...]], dict[str, Fraction]] = field(
        default_factory=dict
    )
    _request_prices: dict[tuple[str, str, tuple[tuple[str, int], ...]], dict[str, str]] = field(
        default_factory=dict
    )

    @property
    def policy(self) -> Policy:
        return self.parsed.policy

    @property
    def catalog(self) -> Catalog:
        return self.parsed.catalog

    def selector(self, profile: Profile, types: tuple[str, ...]) -> TypeSelector:
        """The profile's selector over `types`, memoised; raises AffinityError when inexpressible."""
        key = (profile.name, types)
        cached = self._selectors.get(key)
        if cached is None:
            try:
                cached = build_selector(profile, types, catalog=self.catalog, inventory=self.inventory)
            except AffinityError as exc:
                cached = exc
            self._selectors[key] = cached
        if isinstance(cached, AffinityError):
            raise cached
        return cached

    def charge(self, pod: PodView) -> tuple[str, Fraction]:
        """(type, GPU-equivalents) the pod uses or will use, as the inventory counts it (memoised)."""
        return self.charges.charge(pod, self.inventory, self.parsed)

    def price_annotations(self, profile: Profile, accel_type: str, equivalents: Fraction) -> dict[str, str]:
        """{gpu-hour-price, cost-per-hour} for `equivalents` GPUs of `accel_type` under `profile`
        (the profile's costPerGpuHour, else the catalog price; {} when neither), memoised."""
        key = (profile.name, accel_type, equivalents)
        found = self._prices.get(key)
        if found is None:
            found = price_annotations(gpu_hour_price(profile, accel_type, self.catalog), equivalents)
            self._prices[key] = found
        return found

    def request_prices(
        self, profile: Profile, accel_type: str, requests: Mapping[str, int]
    ) -> dict[str, str]:
        """`price_annotations` for a pod asking `requests`, charged as `accel_type` (its GPU-equivalents)
        or, with "" (no type chosen), as whole units; memoised per request shape."""
        key = (profile.name, accel_type, tuple(requests.items()))
        found = self._request_prices.get(key)
        if found is None:
            if accel_type:
                equivalents = gpu_equivalents(requests, accel_type, profile, self.catalog)
            else:
                equivalents = Fraction(sum(requests.values()))
            found = self._request_prices[key] = self.price_annotations(profile, accel_type, equivalents)
        return found

    def type_amounts(
        self, profile: Profile, types: tuple[str, ...], requests: Mapping[str, int]
    ) -> Mapping[str, Fraction]:
        """{type: `gpu_equivalents`} of a pending pod asking `requests` on each of `types`: a pure
        function of the policy (profile, catalog), memoised per request shape. Read-only."""
        key = (profile.name, types, tuple(requests.items()))
        found = self._amounts.get(key)
        if found is None:
            found = {t: gpu_equivalents(requests, t, profile, self.catalog) for t in types}
            self._amounts[key] = found
        return found

    def tolerations(self, profile: Profile) -> list[dict[str, Any]]:
        """The profile's tolerations as API dicts (camelCase, no nulls), memoised."""
        found = self._tolerations.get(profile.name)
        if found is None:
            found = [t.model_dump(by_alias=True, exclude_none=True) for t in profile.tolerations]
            self._tolerations[profile.name] = found
        return found


def build_context(
    parsed: ParsedPolicy, inventory: Inventory, *, generation: int = 0, charges: ChargeMemo | None = None,
    previous: AdmissionContext | None = None, now: float = 0.0, watermark: int | None = None,
) -> AdmissionContext:
    """Walk the inventory once: usage per team, the ledger ids the watch accounts for, free units and
    presence per type. `now` dates the pods seen (deleted pods consume their entries for a while).

    `charges` (one per replica, kept across generations) makes each pod's charge a lookup once
    a pod of the same shape was charged (accel.quota.charges); without it a fresh memo is used.
    `previous` (the last generation's context) hands over the memos that are still valid.
    """
    steps = context_steps(parsed, inventory, generation=generation, charges=charges, previous=previous,
                          now=now, watermark=watermark)
    return finish_steps(steps)


ContextSteps = Generator[None, None, AdmissionContext]


def context_steps(
    parsed: ParsedPolicy, inventory: Inventory, *, generation: int = 0, charges: ChargeMemo | None = None,
    previous: AdmissionContext | None = None, now: float = 0.0, watermark: int | None = None,
) -> ContextSteps:
    """`build_context` in steps of a fraction of a millisecond each (a generation that replaces 300
    pods costs a few milliseconds): the generator pauses between them, so a caller on an event loop
    lets other work run in between (webhook.admitter). Between steps `charges` and `previous.watch`
    are consistent, so others may use them; a second build from the same `previous` must wait until
    this one has finished (`finish_steps`). The context is the generator's return value."""
    charges = charges or ChargeMemo()
    watch = previous.watch if previous is not None else WatchIds()  # updated from what changed only
    yield from watch.update_steps(
        inventory.pods,
        now=now,
        keep_s=float(parsed.policy.settings.quota.reservation_ttl_seconds),
        deleted=inventory.deleted_pods,
    )
    yield
    usage = yield from charges.usage_steps(parsed, inventory)
    yield
    policy, catalog = parsed.policy, parsed.catalog
    jobs = previous.jobs if previous is not None else JobTypes()  # updated from what changed only
    known_jobs = yield from jobs.update_steps(inventory, catalog)
    yield
    totals = previous.node_totals if previous is not None else NodeTotals()  # from the nodes that changed
    free_units, present_types = totals.update(inventory, catalog)
    context = AdmissionContext(
        parsed=parsed,
        inventory=inventory,
        generation=generation,
        usage=usage,
        charges=charges,
        visible=watch.visible,
        watch=watch,
        watermark=watermark,
        free_units=free_units,
        present_types=present_types,
        node_totals=totals,
        job_types=known_jobs,
        jobs=jobs,
        excluded=frozenset(policy.settings.excluded_namespaces),
    )
    if previous is not None:
        _inherit_memos(context, previous)
    return context


MAX_MEMO = 4096


def _inherit_memos(context: AdmissionContext, previous: AdmissionContext) -> None:
    """Keep the previous generation's memos that the change cannot have touched: tolerations and
    prices (and amounts per type) depend only on the policy (and its catalog), selectors also on the
    nodes (the same node objects: the inventory keeps unchanged ones). A new generation then starts
    warm instead of rebuilding them on its first requests, while those wait (the p99). Oversized
    memos start over."""
    if previous.parsed is not context.parsed:
        return
    if len(previous._prices) + len(previous._request_prices) + len(previous._amounts) < MAX_MEMO:
        context._tolerations, context._prices = previous._tolerations, previous._prices
        context._request_prices, context._amounts = previous._request_prices, previous._amounts
    old, new = previous.inventory.nodes, context.inventory.nodes
    if (
        len(previous._selectors) < MAX_MEMO
        and len(old) == len(new)
        and all(map(operator.is_, old, new))  # C speed: thousands of nodes per generation
    ):
        context._selectors = previous._selectors


def wants_accelerators(pod: Mapping[str, Any]) -> bool:
    """Fast check: a profile annotation or any accelerator resource in any container."""
    metadata = pod.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    if isinstance(annotations, Mapping) and (
        PROFILE_ANNOTATION in annotations or ODH_PROFILE_ANNOTATION in annotations
    ):
        return True
    spec = pod.get("spec")
    for list_name in CONTAINER_LISTS:
        containers = spec.get(list_name) if isinstance(spec, Mapping) else None
        for container in containers if isinstance(containers, list) else ():
            resources = container.get("resources") if isinstance(container, dict) else None
            if not isinstance(resources, dict):
                continue
            for part in ("requests", "limits"):
                amounts = resources.get(part)
                if isinstance(amounts, dict) and any(is_accelerator_resource(str(k)) for k in amounts):
                    return True
    return False


def accelerator_requests(pod: Mapping[str, Any]) -> dict[str, int]:
    """{accelerator resource: effective request} of a pod, the requests > 0 only (accel.cluster.pods rule)."""
    return pod_accelerator_requests(pod.get("spec") or {})


def light_view(pod: Mapping[str, Any]) -> PodView:
    """A PodView with what admission reads (labels, annotations, accelerator requests), skipping
    the CPU/memory sums `accel.cluster.pods.parse_pod` also does; same effective-request rule."""
    metadata = pod.get("metadata") or {}
    accelerators = accelerator_requests(pod)
    spec = pod.get("spec") or {}
    # Every value is built here with its declared type, so validation would only re-check it:
    # `model_construct` (defaults filled in, no validation) is several times faster per request.
    return PodView.model_construct(
        name=str(metadata.get("name") or metadata.get("generateName") or ""),
        namespace=str(metadata.get("namespace") or ""),
        labels={str(k): str(v) for k, v in (metadata.get("labels") or {}).items()},
        annotations={str(k): str(v) for k, v in (metadata.get("annotations") or {}).items()},
        accelerators=accelerators,
        # The charge reads the immutable node selection (accel.capacity.pod_types), never annotations.
        required_terms=required_terms(spec) if accelerators else None,
        node_selector={str(k): str(v) for k, v in (spec.get("nodeSelector") or {}).items()}
        if accelerators
        else {},
    )


def gpu_equivalents(
    view: PodView | Mapping[str, int], accel_type: str, profile: Profile | None, catalog: Catalog
) -> Fraction:
    """What a pending pod (its view, or just its accelerator requests) would count on `accel_type`."""
    return requested_gpu_equivalents(
        view.accelerators if isinstance(view, PodView) else view, accel_type, profile, catalog
    )


_STRING_MAPS: tuple[tuple[str, ...], ...] = (("metadata", "labels"), ("metadata", "annotations"))
_MAPS: tuple[tuple[str, ...], ...] = (
    ("metadata",),
    ("metadata", "labels"),
    ("metadata", "annotations"),
    ("spec",),
    ("spec", "nodeSelector"),
    ("spec", "affinity"),
    ("spec", "affinity", "nodeAffinity"),
    ("spec", "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution"),
)
_LISTS: tuple[tuple[str, ...], ...] = (
    ("spec", "tolerations"),
    ("spec", "containers"),
    ("spec", "initContainers"),
    (
        "spec",
        "affinity",
        "nodeAffinity",
        "requiredDuringSchedulingIgnoredDuringExecution",
        "nodeSelectorTerms",
    ),
    ("spec", "affinity", "nodeAffinity", "preferredDuringSchedulingIgnoredDuringExecution"),
)


# Every path above and each of its prefixes, parents first, as (path, parent path, key).
_STEPS: tuple[tuple[tuple[str, ...], tuple[str, ...], str], ...] = tuple(
    (path, path[:-1], path[-1])
    for path in sorted({p[:i] for p in (*_MAPS, *_LISTS) for i in range(1, len(p) + 1)}, key=len)
)


def _resolve(pod: Mapping[str, Any]) -> dict[tuple[str, ...], Any]:
    """The value at every checked path (None below a missing or non-object step), one step each."""
    found: dict[tuple[str, ...], Any] = {(): pod}
    for path, parent_path, key in _STEPS:
        parent = found[parent_path]
        found[path] = parent.get(key) if type(parent) is dict else None
    return found


def _objects(items: Any) -> bool:
    return all(type(item) is dict for item in items)


def shape_errors(pod: Mapping[str, Any]) -> list[str]:
    """Where a pod object does not have the shape of a v1 Pod in the fields admission reads.

    The API server only sends decoded, typed pods; anything else is a malformed request, reported
    with its field path instead of failing deep inside the planner. (Exact `dict`/`list` checks:
    the input is parsed JSON, and abstract-class checks would cost more than the whole planner.)
    """
    errors: list[str] = []
    at = _resolve(pod)
    for path in _MAPS:
        value = at[path]
        if value is not None and type(value) is not dict:
            errors.append(".".join(path) + " must be an object")
    for path in _STRING_MAPS:  # ObjectMeta: map[string]string (the API server sends nothing else)
        value = at[path]
        if type(value) is dict and any(type(v) is not str for v in value.values()):
            errors.append(".".join(path) + " must map names to strings")
    for list_path in _LISTS:
        items = at[list_path]
        if items is not None and (type(items) is not list or not _objects(items)):
            errors.append(".".join(list_path) + " must be a list of objects")
    terms = at[_LISTS[3]]
    for term in terms if type(terms) is list else ():
        exprs = term.get("matchExpressions") if type(term) is dict else None
        if exprs is not None and not (type(exprs) is list and _objects(exprs)):
            errors.append(".".join(_LISTS[3]) + "[].matchExpressions must be a list of objects")
    for list_name in CONTAINER_LISTS:
        containers = at[("spec", list_name)]
        for container in containers if type(containers) is list else ():
            resources = container.get("resources") if type(container) is dict else None
            if resources is None:
                continue
            if type(resources) is not dict or any(
                resources.get(part) is not None and type(resources.get(part)) is not dict
                for part in ("requests", "limits")
            ):
                errors.append(f"spec.{list_name}[].resources must map requests/limits to objects")
    return errors
