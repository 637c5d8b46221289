"""Profile availability: per hardware profile, what exists, what is free now and what it costs.

One `ProfileSummary` per profile feeds `accel profiles`, `GET /api/hardware-profiles` and the web
page's profile cards, so the three never disagree. Pure: built from a `ParsedPolicy` and an
`Inventory`.

Rules:
1. A node serves a profile when it is schedulable (Ready, not cordoned), carries one of the
   profile's types (any accelerator type for a generic profile), matches the profile's
   nodeSelector, and is set up for the profile's sharing mode: exclusive profiles use nodes that
   hand out whole devices, time-sliced profiles use time-sliced (or MPS) nodes, MIG profiles use
   nodes that advertise the profile's MIG slice.
2. A "unit" is what one pod asks for per GPU request: a whole device, a time-sliced replica or a
   MIG slice. `availableUnits` counts free units; `availableGpus`/`totalGpus` are GPU-equivalents
   (a replica is 1/replicas, a slice g/max_g), the same measure quota uses.
3. `available` is true when one node alone has room for a pod of the profile's default size
   (so "available" means "a default pod could start now", not "some scattered units are free").
4. Prices: the profile's `costPerGpuHour` overrides the catalog price of its first-preference
   type; a unit costs the price times its GPU-equivalent fraction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from fractions import Fraction

from pydantic import BaseModel, ConfigDict, Field

from accel.catalog import UNKNOWN_TYPE, Catalog
from accel.inventory import Inventory, NodeInventory
from accel.labels import Sharing as NodeSharing
from accel.nodeview import render_table
from accel.policy import ParsedPolicy, Policy, Profile, Sharing
from accel.usage import format_gpus, mig_slices

GENERIC_DISPLAY = "Any GPU"


class GpuLimits(BaseModel):
    model_config = ConfigDict(frozen=True)

    default: int
    max: int | None


class TypeAvailability(BaseModel):
    """Availability of one accelerator type within a profile."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, serialize_by_alias=True)

    type: str
    display_name: str = Field(alias="displayName")
    total_gpus: float = Field(alias="totalGpus")
    available_gpus: float = Field(alias="availableGpus")
    available_units: int = Field(alias="availableUnits")
    nodes: int


class ProfileSummary(BaseModel):
    """The public description of one hardware profile (the `GET /api/hardware-profiles` item)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, serialize_by_alias=True)

    name: str
    display_name: str = Field(alias="displayName")
    description: str
    accelerator_type: str | None = Field(alias="acceleratorType")  # first preference; None = generic
    accelerator_types: tuple[str, ...] = Field(alias="acceleratorTypes")
    display_type: str = Field(alias="displayType")  # "NVIDIA H200 141GB"
    memory: str | None  # "141GB" per device (MIG: the slice's memory)
    architecture: str | None
    sharing: str
    mig_profile: str | None = Field(alias="migProfile")
    replicas: int | None
    unit: str  # "GPU", "replica", "1g.10gb slice"
    gpus: GpuLimits
    enabled: bool
    available: bool
    available_gpus: float = Field(alias="availableGpus")
    available_units: int = Field(alias="availableUnits")
    largest_free_block: int = Field(alias="largestFreeBlock")  # most free units on one node
    total_gpus: float = Field(alias="totalGpus")
    pending_pods: int = Field(alias="pendingPods")
    price_per_gpu_hour: float | None = Field(alias="pricePerGpuHour")
    price_per_unit_hour: float | None = Field(alias="pricePerUnitHour")
    cost_per_hour_default: float | None = Field(alias="costPerHourDefault")
    price_source: str | None = Field(alias="priceSource")
    by_type: tuple[TypeAvailability, ...] = Field(alias="byType")


def profile_resource(profile: Profile, node: NodeInventory, catalog: Catalog) -> str | None:
    """The extended resource a pod of `profile` consumes on `node`, or None when it cannot run there."""
    accel = node.accelerators
    if not accel.types or (profile.accelerators and not any(ref.type in accel.types for ref in profile.accelerators)):
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


def _unit_name(profile: Profile) -> str:
    if profile.sharing is Sharing.MIG:
        return f"{profile.mig_profile} slice" if profile.mig_profile else "MIG slice"
    return "replica" if profile.sharing is Sharing.TIME_SLICED else "GPU"


def _memory(profile: Profile, catalog: Catalog) -> str | None:
    if profile.sharing is Sharing.MIG and profile.mig_profile:
        return profile.mig_profile.split(".", 1)[1].split("+", 1)[0].split("-", 1)[0].upper()
    first = catalog.get(profile.types[0]) if profile.types else None
    return f"{first.memory_gb:g}GB" if first and first.memory_gb else None


def unit_price_fraction(profile: Profile, catalog: Catalog) -> Fraction:
    """GPU-equivalents of one unit of this profile (1, 1/replicas or g/max_g)."""
    if profile.sharing is Sharing.TIME_SLICED:
        return Fraction(1, profile.replicas or 1)
    if profile.sharing is Sharing.MIG and profile.mig_profile:
        first = catalog.get(profile.types[0]) if profile.types else None
        return Fraction(int(profile.mig_profile.split("g.", 1)[0]), mig_slices(first))
    return Fraction(1)


def profile_price(profile: Profile, catalog: Catalog) -> tuple[float | None, str | None]:
    """(USD per physical GPU-hour, where the number comes from) for a profile."""
    if profile.cost_per_gpu_hour is not None:
        return float(profile.cost_per_gpu_hour), "policy costPerGpuHour"
    first = catalog.get(profile.types[0]) if profile.types else None
    if first is None or first.price is None:
        return None, None
    return first.price.usd_per_gpu_hour, first.price.source or None


class _Tally:
    """Running totals for one accelerator type within one profile (units as ints; GPU-equivalents exact)."""

    def __init__(self) -> None:
        self.total = Fraction(0)
        self.free = Fraction(0)
        self.units = 0
        self.nodes = 0
        self.largest = 0


class _NodeGroup:
    """Schedulable nodes alike in everything `profile_resource` reads, with their units summed."""

    def __init__(self, sample: NodeInventory) -> None:
        self.sample = sample
        self.nodes = 0
        self.total: dict[str, int] = {}
        self.free: dict[str, int] = {}
        self.largest: dict[str, int] = {}

    def add(self, node: NodeInventory) -> None:
        self.nodes += 1
        free = node.free
        for resource, total in node.accelerators.resources.items():
            units = free.get(resource, 0)
            self.total[resource] = self.total.get(resource, 0) + total
            self.free[resource] = self.free.get(resource, 0) + units
            self.largest[resource] = max(self.largest.get(resource, 0), units)


def group_nodes(inventory: Inventory, selector_keys: Iterable[str]) -> list[_NodeGroup]:
    """One pass over the nodes for all profiles: a render costs O(nodes + profiles x groups)."""
    keys = tuple(sorted(set(selector_keys)))
    groups: dict[tuple[object, ...], _NodeGroup] = {}
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
            group = groups[signature] = _NodeGroup(node)
        group.add(node)
    return list(groups.values())


def _tally_nodes(profile: Profile, groups: Iterable[_NodeGroup], catalog: Catalog) -> dict[str, _Tally]:
    tallies: dict[str, _Tally] = {}
    for group in groups:
        resource = profile_resource(profile, group.sample, catalog)
        if resource is None:
            continue
        unit = group.sample.gpu_equivalents(resource, 1, catalog)
        accel_type = group.sample.accelerator_type or UNKNOWN_TYPE
        tally = tallies.get(accel_type)
        if tally is None:
            tally = tallies[accel_type] = _Tally()
        tally.total += unit * group.total.get(resource, 0)
        tally.free += unit * group.free.get(resource, 0)
        tally.units += group.free.get(resource, 0)
        tally.nodes += group.nodes
        tally.largest = max(tally.largest, group.largest.get(resource, 0))
    return tallies


def summarise_profile(
    profile: Profile, inventory: Inventory, catalog: Catalog, *, groups: list[_NodeGroup] | None = None
) -> ProfileSummary:
    """The summary of one profile against the current inventory (rules 1-4 above)."""
    if groups is None:
        groups = group_nodes(inventory, profile.node_selector)
    tallies = _tally_nodes(profile, groups, catalog)
    order = list(profile.types) or sorted(tallies, key=lambda t: (-tallies[t].free, t))
    by_type = tuple(
        TypeAvailability(
            type=t, display_name=catalog.display_name(t), total_gpus=float(tallies[t].total),
            available_gpus=float(tallies[t].free), available_units=tallies[t].units, nodes=tallies[t].nodes,
        )
        for t in order
        if t in tallies
    )
    largest = max((t.largest for t in tallies.values()), default=0)
    price, source = profile_price(profile, catalog)
    fraction = unit_price_fraction(profile, catalog)
    unit_price = price * float(fraction) if price is not None else None
    first = catalog.get(profile.types[0]) if profile.types else None
    return ProfileSummary(
        name=profile.name,
        display_name=profile.title,
        description=profile.description,
        accelerator_type=profile.types[0] if profile.types else None,
        accelerator_types=profile.types,
        display_type=first.display_name if first else GENERIC_DISPLAY,
        memory=_memory(profile, catalog),
        architecture=(first.architecture or None) if first else None,
        sharing=profile.sharing.value,
        mig_profile=profile.mig_profile,
        replicas=profile.replicas,
        unit=_unit_name(profile),
        gpus=GpuLimits(default=profile.gpus.default, max=profile.gpus.max),
        enabled=profile.enabled,
        available=profile.enabled and largest >= max(1, profile.gpus.default),
        available_gpus=float(sum((t.free for t in tallies.values()), Fraction(0))),
        available_units=sum(t.units for t in tallies.values()),
        largest_free_block=largest,
        total_gpus=float(sum((t.total for t in tallies.values()), Fraction(0))),
        pending_pods=sum(1 for p in inventory.pods if not p.node_name and p.requested_profile == profile.name),
        price_per_gpu_hour=price,
        price_per_unit_hour=_round_money(unit_price),
        cost_per_hour_default=_round_money(unit_price * profile.gpus.default if unit_price is not None else None),
        price_source=source,
        by_type=by_type,
    )


def _round_money(value: float | None) -> float | None:
    return None if value is None else float(round(Decimal(str(value)), 4))


def visible_profiles(policy: Policy, teams: Iterable[str] | None) -> frozenset[str]:
    """Names of the profiles a caller may see.

    `teams` is the set of teams the caller belongs to; None means an anonymous caller, who sees the
    profiles every team may use (all of them when the policy defines no teams). A known caller sees
    the union of its teams' allowed profiles (a team without `allowedProfiles` allows all).
    """
    everything = frozenset(policy.profile_names)
    if teams is None:
        if not policy.teams:
            return everything
        return frozenset.intersection(*(_allowed(policy, t.name) for t in policy.teams))
    found: set[str] = set()
    for team in teams:
        found |= _allowed(policy, team)
    return frozenset(found)


def _allowed(policy: Policy, team_name: str) -> frozenset[str]:
    team = policy.team(team_name)
    if team is None:
        return frozenset()
    if team.allowed_profiles is None:
        return frozenset(policy.profile_names)
    return frozenset(team.allowed_profiles) & frozenset(policy.profile_names)


def profile_summaries(
    parsed: ParsedPolicy, inventory: Inventory, *, visible: frozenset[str] | None = None
) -> list[ProfileSummary]:
    """Summaries of the policy's profiles in policy order (only `visible` ones when given)."""
    groups = group_nodes(inventory, (k for p in parsed.policy.profiles for k in p.node_selector))
    return [
        summarise_profile(p, inventory, parsed.catalog, groups=groups)
        for p in parsed.policy.profiles
        if visible is None or p.name in visible
    ]


PROFILE_TABLE_HEADERS = ("PROFILE", "TYPE", "SHARING", "FREE", "TOTAL GPUS", "PENDING", "$/GPU-H", "STATUS")


def profile_table_cells(summary: ProfileSummary) -> list[str]:
    free = str(summary.available_units) + ("" if summary.unit == "GPU" else f" x {summary.unit}")
    status = "disabled" if not summary.enabled else ("available" if summary.available else "full")
    return [
        summary.name,
        summary.display_type,
        summary.sharing if not summary.replicas else f"{summary.sharing} x{summary.replicas}",
        free,
        format_gpus(Fraction(summary.total_gpus).limit_denominator(100)),
        str(summary.pending_pods),
        f"{summary.price_per_gpu_hour:.2f}" if summary.price_per_gpu_hour is not None else "-",
        status,
    ]


def render_profiles_table(summaries: Sequence[ProfileSummary]) -> str:
    """The `accel profiles` table: one line per profile, kubectl-style columns."""
    return render_table(PROFILE_TABLE_HEADERS, [profile_table_cells(s) for s in summaries])
