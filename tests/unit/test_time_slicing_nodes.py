"""Time-slicing without the device plugin's rename (renameByDefault=false; accel.placement.filter_rules rule
4).

Such a node advertises its replicas as plain `nvidia.com/gpu`: only GFD's labels
(`nvidia.com/gpu.sharing-strategy=time-slicing`, `nvidia.com/gpu.replicas=4`) say they are replicas.
A time-sliced profile's pod must land only there, an exclusive one never there, and quota counts a
replica as a fraction only there (issue 14 section 4).
"""

from __future__ import annotations

from fractions import Fraction

import pytest

from accel.capacity.devices import build_node_devices
from accel.capacity.inventory import NodeInventory
from accel.cluster.catalog import load_builtin_catalog
from accel.cluster.labels import normalise_node
from accel.cluster.pods import PodView
from accel.placement.filter_rules import check_node, resolve_request
from accel.policy.loading import parse_policy

PROFILES = """profiles:
- name: l4-shared
  accelerators: [{type: nvidia-l4-24gb}]
  sharing: time-sliced
  replicas: 4
  sharedResourceName: nvidia.com/gpu
- name: l4-whole
  accelerators: [{type: nvidia-l4-24gb}]
- name: any
  accelerators: []
"""


def l4_node(name: str, labels: dict[str, str], gpus: int) -> NodeInventory:
    """A node as the inventory builds it from GFD labels and its advertised capacity."""
    all_labels = {"nvidia.com/gpu.product": "NVIDIA-L4", "nvidia.com/gpu.count": "4", **labels}
    resources = {"nvidia.com/gpu": gpus}
    accelerators = normalise_node(all_labels, resources, resources, load_builtin_catalog())
    return NodeInventory(name=name, labels=all_labels, accelerators=accelerators)


SLICED = l4_node(
    "l4-sliced", {"nvidia.com/gpu.sharing-strategy": "time-slicing", "nvidia.com/gpu.replicas": "4"}, 16
)
WHOLE = l4_node("l4-whole", {"nvidia.com/gpu.sharing-strategy": "none", "nvidia.com/gpu.replicas": "1"}, 4)
OLD_GFD = l4_node(
    "l4-old", {"nvidia.com/gpu.replicas": "4"}, 16
)  # no sharing-strategy label: replicas decide


def pod(profile: str) -> PodView:
    return PodView(
        name="p",
        namespace="nlp",
        annotations={"accel.dev/profile": profile},
        accelerators={"nvidia.com/gpu": 1},
    )


@pytest.mark.parametrize(
    ("profile", "node", "ok", "words"),
    [
        pytest.param("l4-shared", SLICED, True, "", id="time-sliced-on-sliced-node"),
        pytest.param("l4-shared", OLD_GFD, True, "", id="time-sliced-on-replicas-only-node"),
        pytest.param(
            "l4-shared", WHOLE, False, "does not time-slice", id="time-sliced-never-on-exclusive-node"
        ),
        pytest.param("l4-whole", WHOLE, True, "", id="exclusive-on-exclusive-node"),
        pytest.param("l4-whole", SLICED, False, "between 4 pods", id="exclusive-never-on-sliced-node"),
        pytest.param(
            "l4-whole", OLD_GFD, False, "needs whole GPUs", id="exclusive-never-on-replicas-only-node"
        ),
        pytest.param("any", SLICED, True, "", id="generic-anywhere"),
    ],
)
def test_sharing_mode_decides_the_node(profile: str, node: NodeInventory, ok: bool, words: str) -> None:
    policy = parse_policy({"profiles.yaml": PROFILES}, load_builtin_catalog()).policy
    request = resolve_request(pod(profile), policy)
    verdict = check_node(request, node.name, node, build_node_devices(node, ()))
    assert verdict.ok is ok, verdict
    if not ok:
        assert verdict.unresolvable and words in verdict.reason, verdict


def test_the_sharing_mode_is_part_of_the_verdict_cache_key() -> None:
    policy = parse_policy({"profiles.yaml": PROFILES}, load_builtin_catalog()).policy
    assert (
        resolve_request(pod("l4-shared"), policy).signature
        != resolve_request(pod("l4-whole"), policy).signature
    )


def test_quota_counts_a_replica_as_a_fraction_only_on_a_time_sliced_node() -> None:
    catalog = load_builtin_catalog()
    assert SLICED.gpu_equivalents("nvidia.com/gpu", 1, catalog) == Fraction(1, 4)
    assert WHOLE.gpu_equivalents("nvidia.com/gpu", 1, catalog) == 1
