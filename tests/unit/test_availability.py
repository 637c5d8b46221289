"""Profile availability (accel/profiles/availability.py): units, GPU-equivalents, availability, price,
visibility."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from accel.capacity.inventory import build_inventory
from accel.cluster.catalog import load_builtin_catalog
from accel.policy.loading import parse_policy
from accel.policy.models import ParsedPolicy
from accel.profiles.availability import profile_summaries, visible_profiles
from cli.tables import render_profiles_table
from kube.testing import make_namespace, make_node, make_pod

H100 = {
    "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
    "nvidia.com/gpu.count": "8",
    "nvidia.com/gpu.present": "true",
}
L4_SHARED = {
    "nvidia.com/gpu.product": "NVIDIA-L4-SHARED", "nvidia.com/gpu.count": "2", "nvidia.com/gpu.replicas": "4",
    "nvidia.com/gpu.sharing-strategy": "time-slicing",
}
A100_MIG = {
    "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
    "nvidia.com/gpu.count": "1",
    "nvidia.com/mig.strategy": "mixed",
}

PROFILES = """
profiles:
- name: h100
  displayName: Fast GPU
  accelerators: [{type: nvidia-h100-80gb}]
  gpus: {default: 4, max: 8}
- name: h100-priced
  accelerators: [{type: nvidia-h100-80gb}]
  costPerGpuHour: 3.5
- name: l4-notebook
  accelerators: [{type: nvidia-l4-24gb}]
  sharing: time-sliced
  replicas: 4
- name: mig-small
  accelerators: [{type: nvidia-a100-80gb}]
  sharing: mig
  migProfile: 1g.10gb
- name: zone-b-only
  accelerators: [{type: nvidia-h100-80gb}]
  nodeSelector: {topology.kubernetes.io/zone: b}
- name: retired
  accelerators: [{type: nvidia-h100-80gb}]
  enabled: false
- name: anything
"""
TEAMS = """
teams:
- name: nlp
  allowedProfiles: [h100, l4-notebook, anything]
- name: vision
  allowedProfiles: [l4-notebook, mig-small, anything]
- name: platform
"""


def _parsed(teams: str = TEAMS) -> ParsedPolicy:
    return parse_policy({"profiles.yaml": PROFILES, "teams.yaml": teams}, load_builtin_catalog())


def _cluster(parsed: ParsedPolicy, *, h100_busy: int = 0, cordon: bool = False) -> Any:
    nodes = [
        make_node(
            "h1", labels={**H100, "topology.kubernetes.io/zone": "a"}, allocatable={"nvidia.com/gpu": "8"}
        ),
        make_node(
            "h2", labels={**H100, "topology.kubernetes.io/zone": "a"}, allocatable={"nvidia.com/gpu": "8"}
        ),
        make_node("l4", labels=L4_SHARED, allocatable={"nvidia.com/gpu.shared": "8"}),
        make_node("mig", labels=A100_MIG, allocatable={"nvidia.com/mig-1g.10gb": "7"}),
        make_node("cpu", allocatable={"cpu": "8"}),
    ]
    if cordon:
        nodes[1]["spec"] = {"unschedulable": True}
    pods = [
        make_pod("train", "ml", node="h1", requests={"nvidia.com/gpu": str(h100_busy)}),
        make_pod("nb", "ml", node="l4", requests={"nvidia.com/gpu.shared": "3"}),
        make_pod("wait", "ml", requests={"nvidia.com/gpu": "1"}, annotations={"accel.dev/profile": "h100"}),
    ]
    return build_inventory(
        nodes,
        pods,
        [make_namespace("ml", labels={"team": "nlp"})],
        catalog=parsed.catalog,
        policy=parsed.policy,
    )


def _by_name(parsed: ParsedPolicy, inventory: Any) -> dict[str, Any]:
    return {s.name: s for s in profile_summaries(parsed, inventory)}


@pytest.mark.parametrize(
    ("profile", "units", "gpus_free", "gpus_total", "unit"),
    [
        pytest.param("h100", 14, 14.0, 16.0, "GPU", id="exclusive-counts-free-whole-gpus-over-both-nodes"),
        pytest.param(
            "l4-notebook", 5, 1.25, 2.0, "replica", id="time-sliced-counts-replicas-as-quarter-gpus"
        ),
        pytest.param("mig-small", 7, 1.0, 1.0, "1g.10gb slice", id="mig-counts-slices-as-sevenths"),
        pytest.param("zone-b-only", 0, 0.0, 0.0, "GPU", id="node-selector-excludes-nodes-in-other-zones"),
        pytest.param(
            "anything", 14, 14.0, 16.0, "GPU", id="generic-exclusive-profile-skips-shared-and-mig-nodes"
        ),
    ],
)
def test_units_and_gpu_equivalents(
    profile: str, units: int, gpus_free: float, gpus_total: float, unit: str
) -> None:
    parsed = _parsed()
    summary = _by_name(parsed, _cluster(parsed, h100_busy=2))[profile]
    assert summary.available_units == units
    assert summary.available_gpus == pytest.approx(gpus_free)
    assert summary.total_gpus == pytest.approx(gpus_total)
    assert summary.unit == unit


@pytest.mark.parametrize(
    ("busy", "cordon", "available", "largest"),
    [
        pytest.param(0, False, True, 8, id="idle-cluster-has-room-for-default-4"),
        pytest.param(6, True, False, 2, id="2-free-on-only-schedulable-node-is-under-default-4"),
        pytest.param(6, False, True, 8, id="scattered-free-counts-per-node-not-in-sum"),
    ],
)
def test_available_means_a_default_pod_fits_on_one_node(
    busy: int, cordon: bool, available: bool, largest: int
) -> None:
    parsed = _parsed()
    summary = _by_name(parsed, _cluster(parsed, h100_busy=busy, cordon=cordon))["h100"]
    assert (summary.available, summary.largest_free_block) == (available, largest)


def test_disabled_profile_is_never_available() -> None:
    parsed = _parsed()
    assert _by_name(parsed, _cluster(parsed))["retired"].available is False


def test_prices_and_pending_pods() -> None:
    parsed = _parsed()
    summaries = _by_name(parsed, _cluster(parsed))
    catalog_price = parsed.catalog["nvidia-h100-80gb"].price_per_gpu_hour
    assert summaries["h100"].price_per_gpu_hour == catalog_price
    assert summaries["h100"].cost_per_hour_default == pytest.approx(4 * (catalog_price or 0), rel=1e-3)
    assert summaries["h100-priced"].price_per_gpu_hour == 3.5
    assert summaries["h100-priced"].price_source == "policy costPerGpuHour"
    l4 = parsed.catalog["nvidia-l4-24gb"].price_per_gpu_hour or 0
    assert summaries["l4-notebook"].price_per_unit_hour == pytest.approx(l4 / 4, rel=1e-3)
    assert summaries["anything"].price_per_gpu_hour is None
    assert summaries["h100"].pending_pods == 1
    assert summaries["h100"].display_type == "NVIDIA H100 80GB" and summaries["h100"].memory == "80GB"
    assert summaries["mig-small"].memory == "10GB"


@pytest.mark.parametrize(
    ("teams", "caller", "expected"),
    [
        pytest.param(
            TEAMS, ["nlp"], {"h100", "l4-notebook", "anything"}, id="team-sees-its-allowed-profiles"
        ),
        pytest.param(
            TEAMS,
            ["nlp", "vision"],
            {"h100", "l4-notebook", "mig-small", "anything"},
            id="two-teams-see-the-union",
        ),
        pytest.param(
            TEAMS,
            ["platform"],
            {"h100", "h100-priced", "l4-notebook", "mig-small", "zone-b-only", "retired", "anything"},
            id="team-without-list-sees-all",
        ),
        pytest.param(TEAMS, ["ghost"], set(), id="unknown-team-sees-nothing"),
        pytest.param(
            TEAMS, None, {"l4-notebook", "anything"}, id="anonymous-sees-profiles-every-team-allows"
        ),
        pytest.param(
            "teams: []",
            None,
            {"h100", "h100-priced", "l4-notebook", "mig-small", "zone-b-only", "retired", "anything"},
            id="anonymous-sees-all-without-teams",
        ),
    ],
)
def test_visibility(teams: str, caller: list[str] | None, expected: set[str]) -> None:
    assert visible_profiles(_parsed(teams).policy, caller) == expected


def test_summaries_keep_policy_order_and_filter_by_visibility() -> None:
    parsed = _parsed()
    names = [
        s.name for s in profile_summaries(parsed, _cluster(parsed), visible=frozenset({"anything", "h100"}))
    ]
    assert names == ["h100", "anything"]


def test_table_and_json_shape() -> None:
    parsed = _parsed()
    summaries = profile_summaries(parsed, _cluster(parsed))
    table = render_profiles_table(summaries).splitlines()
    assert table[0].split()[:3] == ["PROFILE", "TYPE", "SHARING"]
    assert any(line.startswith("retired") and line.rstrip().endswith("disabled") for line in table)
    item = summaries[0].model_dump(mode="json", by_alias=True)
    for key in (
        "name",
        "displayName",
        "acceleratorType",
        "acceleratorTypes",
        "memory",
        "architecture",
        "available",
        "availableGpus",
        "totalGpus",
        "pendingPods",
        "pricePerGpuHour",
        "sharing",
        "enabled",
        "gpus",
        "displayType",
    ):
        assert key in item
    yaml.safe_dump(item)  # plain data all the way down (CLI -o yaml)
