"""Profile availability: per hardware profile, what exists, what is free now and what it costs.

One `ProfileSummary` per profile feeds `accel profiles`, `GET /api/hardware-profiles` and the web
page's profile cards, so the three never disagree. Pure: built from a `ParsedPolicy` and an
`Inventory`. Which nodes serve a profile and what a unit is (rules there) live in
accel.profiles.units; the models in accel.profiles.summary; the table in cli.tables.

Rules:
1. `available` is true when one node alone has room for a pod of the profile's default size
   (so "available" means "a default pod could start now", not "some scattered units are free").
   `availableUnits` counts free units; `availableGpus`/`totalGpus` are GPU-equivalents
   (accel.profiles.units rule 2).
2. Prices: the profile's `costPerGpuHour` overrides the catalog price of its first-preference
   type; a unit costs the price times its GPU-equivalent fraction.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from fractions import Fraction

from accel.capacity.inventory import Inventory
from accel.cluster.catalog import Catalog
from accel.cluster.gpu_equivalents import mig_slices
from accel.policy.models import ParsedPolicy, Policy, Profile, Sharing
from accel.profiles.summary import GpuLimits, ProfileSummary, TypeAvailability
from accel.profiles.units import NodeGroup, group_nodes, tally_nodes

GENERIC_DISPLAY = "Any GPU"


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


def summarise_profile(
    profile: Profile, inventory: Inventory, catalog: Catalog, *, groups: list[NodeGroup] | None = None
) -> ProfileSummary:
    """The summary of one profile against the current inventory (rules 1-2 above and accel.profiles.units
    rules 1-2)."""
    if groups is None:
        groups = group_nodes(inventory, profile.node_selector)
    tallies = tally_nodes(profile, groups, catalog)
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
        pending_pods=sum(
            1 for p in inventory.pods if not p.node_name and p.requested_profile == profile.name
        ),
        price_per_gpu_hour=price,
        price_per_unit_hour=_round_money(unit_price),
        cost_per_hour_default=_round_money(
            unit_price * profile.gpus.default if unit_price is not None else None
        ),
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
