"""Which team a pod belongs to and which hardware profile it gets.

Profile resolution order (design.md "Decisions the webhook makes", step 2):
1. the pod's `accel.dev/profile` annotation (or ODH's `opendatahub.io/hardware-profile-name`);
2. the namespace's `accel.dev/default-profile` annotation;
3. the team's `defaultProfile`;
4. settings `defaultProfile`.
A name that does not exist (or is disabled) is an error listing the valid ones. A default (2-4)
that the team may not use (`allowedProfiles`) is skipped for the next one, so a team-wide or
cluster-wide default never denies a team that has its own usable one. No usable name at all is
"no profile" (`ProfileResolution.profile is None`, no finding): admission denies such a GPU pod
when the policy defines profiles (`no_profile_finding`), so every GPU pod is governed (issue 14
section 1); with no profiles at all there is nothing to govern it by and it stays a plain request.

Team: ONLY the namespace label `settings.team_label` (issue 21: a pod's author must not choose
who pays). A pod label with the same key may only agree; in a namespace without the label the
pod is team-less whatever its own labels say (`accel.capacity.inventory.team_usage` counts the same way).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from accel.admission import messages as msg
from accel.admission.messages import Finding
from accel.capacity.inventory import Inventory
from accel.cluster.pods import ODH_PROFILE_ANNOTATION, PROFILE_ANNOTATION
from accel.policy.models import Policy, Profile, Team

NAMESPACE_PROFILE_ANNOTATION = "accel.dev/default-profile"


@dataclass(frozen=True, slots=True)
class TeamResolution:
    """The pod's team: its `name` (namespace label), its `rules` (the teams.yaml entry; None when
    the policy does not know the team) and a `finding` when the team cannot be used."""

    name: str | None
    rules: Team | None
    finding: Finding | None = None


def resolve_team(
    namespace: str, labels: Mapping[str, str], *, policy: Policy, inventory: Inventory
) -> TeamResolution:
    """The pod's team; a finding when the labels disagree or the team is unknown to the policy."""
    key = policy.settings.team_label
    ns_team = inventory.team_of(namespace, key)
    pod_team = labels.get(key)
    if ns_team and pod_team and ns_team != pod_team:
        return TeamResolution(
            ns_team, policy.team(ns_team), msg.team_mismatch(key, namespace, ns_team, pod_team)
        )
    name = ns_team
    if not name:
        return TeamResolution(None, None, msg.no_team(namespace, key, pod_team) if policy.teams else None)
    team = policy.team(name)
    if team is None and policy.teams:
        return TeamResolution(name, None, msg.unknown_team(name, [t.name for t in policy.teams]))
    return TeamResolution(name, team)


@dataclass(frozen=True, slots=True)
class ProfileResolution:
    profile: Profile | None
    finding: Finding | None = None


def default_profile_names(
    namespace: str, team: Team | None, *, policy: Policy, inventory: Inventory
) -> list[str]:
    """Steps 2-4 of the module order: the defaults that name something, first first."""
    found = (
        inventory.namespace_annotations.get(namespace, {}).get(NAMESPACE_PROFILE_ANNOTATION),
        team.default_profile if team else None,
        policy.settings.default_profile,
    )
    return [name for name in found if name]


def requested_profile_name(
    annotations: Mapping[str, str], namespace: str, team: Team | None, *, policy: Policy, inventory: Inventory
) -> str | None:
    """The pod's own profile (step 1), else the first default the team may use (steps 2-4)."""
    own = annotations.get(PROFILE_ANNOTATION) or annotations.get(ODH_PROFILE_ANNOTATION)
    if own:
        return own
    defaults = default_profile_names(namespace, team, policy=policy, inventory=inventory)
    allowed = team.allowed_profiles if team is not None else None
    usable = [name for name in defaults if allowed is None or name in allowed]
    return usable[0] if usable else None


def no_profile_finding(namespace: str, team: Team | None, resources: Mapping[str, int], *, policy: Policy,
                       inventory: Inventory) -> Finding | None:
    """The denial of a GPU pod that resolved to no profile (module docstring), None when the
    policy has no profile to govern it by."""
    enabled = [p.name for p in policy.profiles if p.enabled]
    if not enabled:
        return None
    allowed = [
        name
        for name in enabled
        if team is None or team.allowed_profiles is None or name in team.allowed_profiles
    ]
    skipped = default_profile_names(namespace, team, policy=policy, inventory=inventory)
    return msg.no_profile(team.name if team else None, sorted(resources), allowed, skipped)


def resolve_profile(
    annotations: Mapping[str, str], namespace: str, team: Team | None, *, policy: Policy, inventory: Inventory
) -> ProfileResolution:
    """The profile for a pod (module order); a finding for an unknown or disabled name."""
    name = requested_profile_name(annotations, namespace, team, policy=policy, inventory=inventory)
    if name is None:
        return ProfileResolution(None)
    profile = policy.profile(name)
    if profile is not None and profile.enabled:
        return ProfileResolution(profile)
    enabled = [p.name for p in policy.profiles if p.enabled]  # only for the message
    if profile is None:
        return ProfileResolution(None, msg.unknown_profile(name, enabled))
    return ProfileResolution(None, msg.disabled_profile(name, enabled))


def allowed_types(profile: Profile, team: Team | None) -> tuple[str, ...]:
    """The profile's types the team may use, in preference order (all when the team has no list)."""
    if team is None or team.allowed_types is None:
        return profile.types
    return tuple(t for t in profile.types if t in team.allowed_types)
