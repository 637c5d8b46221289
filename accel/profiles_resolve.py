"""Which team a pod belongs to and which hardware profile it gets.

Profile resolution order (design.md "Decisions the webhook makes", step 2):
1. the pod's `accel.dev/profile` annotation (or ODH's `opendatahub.io/hardware-profile-name`);
2. the namespace's `accel.dev/default-profile` annotation;
3. the team's `defaultProfile`;
4. settings `defaultProfile`.
A name that does not exist (or is disabled) is an error listing the valid ones; no name at all
means "no profile": the pod is a plain GPU request and is left as it is.

Team: the namespace label `settings.team_label`; a pod label with the same key must agree. A
namespace without the label falls back to the pod label (as `accel.inventory.team_usage` does,
so admission and usage agree on who pays).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from accel import admission_messages as msg
from accel.admission_messages import Finding
from accel.inventory import Inventory
from accel.pods import ODH_PROFILE_ANNOTATION, PROFILE_ANNOTATION
from accel.policy import Policy, Profile, Team

NAMESPACE_PROFILE_ANNOTATION = "accel.dev/default-profile"


@dataclass(frozen=True, slots=True)
class TeamResolution:
    name: str | None
    team: Team | None
    finding: Finding | None = None


def resolve_team(namespace: str, labels: Mapping[str, str], *, policy: Policy, inventory: Inventory) -> TeamResolution:
    """The pod's team; a finding when the labels disagree or the team is unknown to the policy."""
    key = policy.settings.team_label
    ns_team = inventory.team_of(namespace, key)
    pod_team = labels.get(key)
    if ns_team and pod_team and ns_team != pod_team:
        return TeamResolution(ns_team, policy.team(ns_team), msg.team_mismatch(key, namespace, ns_team, pod_team))
    name = ns_team or pod_team
    if not name:
        return TeamResolution(None, None, msg.no_team(namespace, key) if policy.teams else None)
    team = policy.team(name)
    if team is None and policy.teams:
        return TeamResolution(name, None, msg.unknown_team(name, [t.name for t in policy.teams]))
    return TeamResolution(name, team)


@dataclass(frozen=True, slots=True)
class ProfileResolution:
    profile: Profile | None
    finding: Finding | None = None


def requested_profile_name(
    annotations: Mapping[str, str], namespace: str, team: Team | None, *, policy: Policy, inventory: Inventory
) -> str | None:
    return (
        annotations.get(PROFILE_ANNOTATION)
        or annotations.get(ODH_PROFILE_ANNOTATION)
        or inventory.namespace_annotations.get(namespace, {}).get(NAMESPACE_PROFILE_ANNOTATION)
        or (team.default_profile if team else None)
        or policy.settings.default_profile
    )


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
