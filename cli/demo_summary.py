"""Summary math of the demo: decisions, placements, preference hits, chargeback, fragmentation.

Pure: the driver records one `PodOutcome` per submitted pod and one `ClusterSample` per point of
simulated time; everything the report prints is computed here, so the numbers are unit-tested
without servers.

Rules:
1. Chargeback of a pod = `cost_per_hour` (the `accel.dev/cost-per-hour` annotation the webhook
   wrote) x hours it ran (finish - start, simulated). Amounts are Decimal, rounded only for
   display, so per-team totals sum exactly to the grand total.
2. Preference: for a profile with 2+ types, a placement on the profile's first type is a *hit*,
   on any later type a *fallback*; generic and single-type profiles are not rated.
3. Fragmentation of a node pool is FGD's F(n) (accel.placement.fragmentation.node_fragmentation) against
   the mix of pod shapes observed so far *that can use that pool* (its type and resource; the
   shares renormalised), converted from device milli to GPU-equivalents (a MIG slice device is
   g/max_g of a GPU). Against the whole mix, every free H100 would count as fragmented for the
   notebook pods that may only use L4s; restricted, it counts what the pods that want this
   hardware cannot use. A pool no observed pod can use counts 0. Only schedulable nodes count.
4. Jobs on one leaf: when a job's first pod is placed, the driver records whether one leaf's nodes
   that passed the filters had room for every pod of the job (`leaf_room`). The target is that
   every such job ran on one leaf.
5. Premium GPU-hours: when a pod whose profile allows several types is placed, the driver records
   whether a node of a less premium type (accel.placement.score.premium_index) that it could use
   had passed the filters (`cheaper_free`). The GPU-hours of pods placed on the more premium type
   while that was so are "premium hours while cheaper was free"; the target is none. Pods of an
   ordered profile whose placement followed the profile's order are counted apart (the order is
   the admin's choice, accel.placement.score rule 1).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from itertools import pairwise

from accel.capacity.devices import NodeDevices, Pool, build_node_devices
from accel.capacity.inventory import Inventory, NodeInventory
from accel.cluster.catalog import Catalog
from accel.cluster.gpu_equivalents import unit_fraction
from accel.cluster.pods import PodView
from accel.placement.fragmentation import node_fragmentation
from accel.placement.score import premium_index
from accel.placement.score_rules import ShapedRequest, node_shape, pod_shape
from accel.placement.shapes import MILLI
from accel.placement.workload_mix import TypicalMix, WorkloadHistogram

ADMITTED, DENIED = "admitted", "denied"


@dataclass(frozen=True, slots=True)
class PodOutcome:
    """What happened to one submitted pod (times in simulated hours)."""

    name: str
    team: str
    kind: str
    profile: str | None  # the profile the webhook resolved (annotation after mutation)
    admitted: bool
    reason: str = ""  # denial reason code; "" when admitted
    message: str = ""
    node: str | None = None
    accel_type: str | None = None  # `accelerator.opendatahub.io/type` on the bound pod
    node_type: str | None = None  # the type the node's labels say it has
    profile_types: tuple[str, ...] = ()  # the profile's types in preference order
    gpus: Fraction = Fraction(0)  # GPU-equivalents held while running
    cost_per_hour: Decimal | None = None
    started_h: float | None = None
    finished_h: float | None = None
    waiting: str = ""  # admitted but never started: why its last scheduling attempt failed
    job: str | None = None  # multi-node job id (`accel.dev/job`)
    leaf: str | None = None  # network leaf (full path, `/`-joined) of the node it ran on
    leaf_room: bool | None = None  # rule 4, on a job's first placed pod
    cheaper_free: bool | None = None  # rule 5, on a pod allowing several types
    order_chose: bool = False  # rule 5: the profile's own order ranks the type it got above those

    @property
    def placed_type(self) -> str:
        """The type the pod ran on: its type annotation, else its node's type."""
        return self.accel_type or self.node_type or "unknown"

    @property
    def hours(self) -> float:
        if self.started_h is None or self.finished_h is None:
            return 0.0
        return max(0.0, self.finished_h - self.started_h)

    @property
    def charge(self) -> Decimal:
        """Rule 1 (0 when the pod never ran or carries no price)."""
        if self.cost_per_hour is None or not self.hours:
            return Decimal(0)
        return self.cost_per_hour * Decimal(str(round(self.hours, 6)))


@dataclass(frozen=True, slots=True)
class ClusterSample:
    """Cluster allocation at one point of simulated time (GPU-equivalents)."""

    t_h: float
    allocated: Mapping[str, float]  # type -> GPUs in use
    capacity: Mapping[str, float]  # type -> GPUs on schedulable nodes
    free: float
    fragmented: float  # free GPUs no typical pod can use (FGD F summed)

    @property
    def allocated_total(self) -> float:
        return sum(self.allocated.values())

    @property
    def capacity_total(self) -> float:
        return sum(self.capacity.values())

    @property
    def fragmented_share(self) -> float:
        """Fragmented share of the free GPUs (0 when nothing is free)."""
        return self.fragmented / self.free if self.free > 0 else 0.0


def decision_counts(outcomes: Iterable[PodOutcome]) -> Counter[tuple[str, str]]:
    """(admitted|denied, reason) -> pods; admitted pods have reason ""."""
    return Counter((ADMITTED if o.admitted else DENIED, o.reason) for o in outcomes)


def placements_per_type(outcomes: Iterable[PodOutcome]) -> dict[str, int]:
    counts = Counter(o.placed_type for o in outcomes if o.node and o.gpus)
    return dict(sorted(counts.items()))


def never_started(outcomes: Iterable[PodOutcome]) -> dict[tuple[str, str], int]:
    """(profile, why) -> admitted GPU pods that never got a node."""
    counts = Counter(
        (o.profile or "-", o.waiting or "never scheduled") for o in outcomes if o.admitted and not o.node
    )
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


@dataclass(frozen=True, slots=True)
class JobPlacement:
    job: str
    pods: int  # pods of the job that ran
    leaves: tuple[str, ...]  # distinct leaves they ran on

    @property
    def one_leaf(self) -> bool:
        return len(self.leaves) == 1


def job_placements(outcomes: Iterable[PodOutcome]) -> list[JobPlacement]:
    """Multi-node jobs with 2+ pods that ran: how many leaves they were spread over."""
    leaves: dict[str, list[str]] = defaultdict(list)
    for o in outcomes:
        if o.job and o.node:
            leaves[o.job].append(o.leaf or "?")
    return [
        JobPlacement(job, len(found), tuple(sorted(set(found))))
        for job, found in sorted(leaves.items())
        if len(found) > 1
    ]


@dataclass(frozen=True, slots=True)
class JobLeafTarget:
    """Rule 4: multi-node jobs that ran on one leaf, of those one leaf had room for, and of all."""

    one_leaf: int
    had_room: int
    one_leaf_of_those: int
    jobs: int


def job_leaf_target(outcomes: Sequence[PodOutcome]) -> JobLeafTarget:
    placements = {j.job: j for j in job_placements(outcomes)}
    room = {o.job for o in outcomes if o.job in placements and o.leaf_room}
    return JobLeafTarget(
        one_leaf=sum(1 for j in placements.values() if j.one_leaf),
        had_room=len(room),
        one_leaf_of_those=sum(1 for j in room if placements[j].one_leaf),
        jobs=len(placements),
    )


@dataclass(frozen=True, slots=True)
class PremiumUse:
    """Rule 5 in GPU-hours: pods that allowed several types, and those of them on a more premium
    type while a less premium one they could use was free (split by whether the profile's own
    order asked for that type)."""

    multi_type_hours: float
    while_cheaper_free: float
    by_profile_order: float

    @property
    def against_policy(self) -> float:
        return self.while_cheaper_free - self.by_profile_order


def premium_use(outcomes: Iterable[PodOutcome]) -> PremiumUse:
    total = cheaper = ordered = 0.0
    for o in outcomes:
        if o.cheaper_free is None or not o.node:
            continue
        hours = float(o.gpus) * o.hours
        total += hours
        if o.cheaper_free:
            cheaper += hours
            if o.order_chose:
                ordered += hours
    return PremiumUse(total, cheaper, ordered)


def leaf_has_room(inventory: Inventory, names: Iterable[str], resource: str, units: int, pods: int) -> bool:
    """Rule 4: whether the nodes `names` of one leaf have `pods` x `units` of `resource` free."""
    if units <= 0 or pods <= 0:
        return False
    wanted = set(names)
    bound: dict[str, list[PodView]] = defaultdict(list)
    for pod in inventory.pods:
        if pod.node_name in wanted:
            bound[pod.node_name].append(pod)
    room: Counter[tuple[str | None, ...]] = Counter()
    for node in inventory.nodes:
        leaf = node.accelerators.topology.path("leaf")
        if node.name in wanted and leaf[-1] is not None:
            room[leaf] += build_node_devices(node, bound[node.name]).free_units(resource) // units
    return any(n >= pods for n in room.values())


def cheaper_type_free(
    chosen: str, free_types: Iterable[str], profile_types: Sequence[str], catalog: Catalog
) -> tuple[bool, bool]:
    """Rule 5: (a less premium type than `chosen` was among `free_types`, the profile's order
    ranks `chosen` above every such type)."""
    types = sorted({chosen, *free_types})
    prices = {
        t: p for t in types if (a := catalog.get(t)) is not None and (p := a.price_per_gpu_hour) is not None
    }
    tflops = {t: f for t in types if (a := catalog.get(t)) is not None and (f := a.dense_tflops) is not None}
    premium = premium_index(types, prices, tflops)
    cheaper = [t for t in types if premium[t] < premium[chosen]]
    if not cheaper:
        return False, False
    rank = {t: i for i, t in enumerate(profile_types)}
    by_order = chosen in rank and all(rank.get(t, len(rank)) > rank[chosen] for t in cheaper)
    return True, by_order


@dataclass(frozen=True, slots=True)
class PreferenceRate:
    hits: int = 0
    fallbacks: int = 0
    by_type: Mapping[str, int] = field(default_factory=dict)

    @property
    def placed(self) -> int:
        return self.hits + self.fallbacks

    @property
    def hit_rate(self) -> float:
        return self.hits / self.placed if self.placed else 0.0


def preference_rates(outcomes: Iterable[PodOutcome]) -> dict[str, PreferenceRate]:
    """Rule 2, per multi-type profile."""
    hits: Counter[str] = Counter()
    falls: Counter[str] = Counter()
    types: dict[str, Counter[str]] = defaultdict(Counter)
    for o in outcomes:
        if not o.node or not o.profile or len(o.profile_types) < 2:
            continue
        (hits if o.placed_type == o.profile_types[0] else falls)[o.profile] += 1
        types[o.profile][o.placed_type] += 1
    return {p: PreferenceRate(hits[p], falls[p], dict(types[p])) for p in sorted(set(hits) | set(falls))}


@dataclass(frozen=True, slots=True)
class Chargeback:
    by_team_type: Mapping[str, Mapping[str, Decimal]]
    gpu_hours: Mapping[str, Mapping[str, float]]

    def team_total(self, team: str) -> Decimal:
        return sum(self.by_team_type.get(team, {}).values(), Decimal(0))

    @property
    def total(self) -> Decimal:
        return sum((self.team_total(t) for t in self.by_team_type), Decimal(0))


def chargeback(outcomes: Iterable[PodOutcome]) -> Chargeback:
    """Rule 1 per team and type; GPU-hours alongside."""
    money: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    hours: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for o in outcomes:
        if not o.node or not o.gpus or not o.hours:
            continue
        kind = o.placed_type
        money[o.team][kind] += o.charge
        hours[o.team][kind] += float(o.gpus) * o.hours
    return Chargeback(
        {t: dict(v) for t, v in sorted(money.items())}, {t: dict(v) for t, v in sorted(hours.items())}
    )


def observe_shape(histogram: WorkloadHistogram, node: NodeInventory, pod: PodView) -> None:
    """Count a placed pod's shape (per pool, as the extender's FGD sees it) into `histogram`."""
    gpu_type = node.accelerator_type or "unknown"
    devices = build_node_devices(node, ())
    for resource, units in pod.accelerators.items():
        pool = devices.pools.get(resource)
        if pool is not None:
            request = ShapedRequest(
                resource=resource, units=units, cpu_milli=pod.cpu_milli, types=(gpu_type,)
            )
            histogram.observe(pod_shape(request, slots=pool.slots))


def _device_gpus(node: NodeInventory, pool: Pool, catalog: Catalog) -> Fraction:
    """GPU-equivalents of one device of `pool` (rule 3)."""
    accel_type = catalog.get(node.accelerator_type or "")
    return unit_fraction(pool.resource, accel_type=accel_type, replicas=pool.slots) * pool.slots


def _mixes(histogram: WorkloadHistogram | None) -> Callable[[str], TypicalMix | None]:
    """Rule 3: the observed mix restricted to one device class, memoised per class."""
    typical = histogram.typical() if histogram is not None and histogram.observations else ()
    memo: dict[str, TypicalMix | None] = {}

    def mix_for(device: str) -> TypicalMix | None:
        if device not in memo:
            usable = [(m, p) for m, p in typical if not m.gpu_types or device in m.gpu_types]
            total = sum(p for _, p in usable)
            memo[device] = TypicalMix(tuple((m, p / total) for m, p in usable)) if total > 0 else None
        return memo[device]

    return mix_for


def sample_cluster(
    t_h: float, inventory: Inventory, catalog: Catalog, histogram: WorkloadHistogram | None
) -> ClusterSample:
    """Allocation per type, free and fragmented GPUs now (rule 3)."""
    mix_for = _mixes(histogram)
    allocated: dict[str, float] = defaultdict(float)
    capacity: dict[str, float] = defaultdict(float)
    free = fragmented = 0.0
    pods_by_node: dict[str, list[PodView]] = defaultdict(list)
    for pod in inventory.pods:
        if pod.node_name:
            pods_by_node[pod.node_name].append(pod)
    for node in inventory.nodes:
        if not node.schedulable or not node.accelerators.resources:
            continue
        kind = node.accelerator_type or "unknown"
        devices: NodeDevices = build_node_devices(node, pods_by_node.get(node.name, ()))
        for pool in devices.pools.values():
            scale = float(_device_gpus(node, pool, catalog))
            capacity[kind] += len(pool.capacity) * scale
            idle = sum(pool.free_milli()) / MILLI * scale
            allocated[kind] += len(pool.capacity) * scale - idle
            free += idle
            shape = node_shape(devices, pool)
            mix = mix_for(shape.gpu_type)
            if mix is not None:
                fragmented += node_fragmentation(shape, mix) / MILLI * scale
    return ClusterSample(
        t_h, dict(sorted(allocated.items())), dict(sorted(capacity.items())), free, fragmented
    )


def time_weighted_mean(samples: Sequence[ClusterSample], value: str) -> float:
    """Mean of a sample attribute over simulated time (step function between samples)."""
    if len(samples) < 2:
        return float(getattr(samples[0], value)) if samples else 0.0
    total = span = 0.0
    for a, b in pairwise(samples):
        dt = b.t_h - a.t_h
        total += float(getattr(a, value)) * dt
        span += dt
    return total / span if span else float(getattr(samples[-1], value))
