"""A hostile namespace user writes OpenDataHub HardwareProfiles (issue 21).

Where a team's users may create HardwareProfiles in their own namespace (ODH's project-scoped
profiles), such an object must neither add a profile every team may use (at the price its author
wrote) nor, by clashing with a profile name, freeze the policy: only the namespaces in
`hardwareProfileNamespaces` count (the e2e policy names the one test_platforms uses).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import yaml

from tests.e2e import cluster
from tests.e2e.kubectl import Kubectl, KubectlError, wait_until
from tests.e2e.test_platforms import CRDS, install_crds

H100 = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
PROBE_PROFILE = "redteam-probe"
TRUSTED_NS = "e2e-redteam-profiles"  # in the e2e policy's hardwareProfileNamespaces


def team_hardware_profile(name: str, namespace: str, annotations: dict[str, str]) -> cluster.Obj:
    """A HardwareProfile (infrastructure.opendatahub.io/v1alpha1) in a team's namespace."""
    return {
        "apiVersion": "infrastructure.opendatahub.io/v1alpha1",
        "kind": "HardwareProfile",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {
            "displayName": name,
            "enabled": True,
            "scheduling": {"type": "Node", "node": {"nodeSelector": H100}},
            "identifiers": [
                {
                    "identifier": "nvidia.com/gpu",
                    "displayName": "GPU",
                    "resourceType": "Accelerator",
                    "minCount": 1,
                    "defaultCount": 1,
                }
            ],
        },
    }


@pytest.fixture
def hardware_profile_crd(e2e: cluster.E2ECluster) -> Iterator[Kubectl]:
    """The HardwareProfile CRD and a namespace the e2e policy trusts for HardwareProfiles."""
    assert (CRDS / "infrastructure.opendatahub.io_hardwareprofiles.yaml").is_file()
    crds = install_crds(e2e.kubectl, "infrastructure.opendatahub.io_hardwareprofiles.yaml")
    e2e.kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": TRUSTED_NS}})
    try:
        yield e2e.kubectl
    finally:
        cluster.delete_quietly(e2e.kubectl, "namespace", TRUSTED_NS)
        for name in crds:
            cluster.delete_quietly(e2e.kubectl, "crd", name)


def _named(ns: str, profile: str) -> cluster.Obj:
    pod = cluster.gpu_pod("probe", team="e2e-odh", gpus=1)
    pod["metadata"]["namespace"] = ns
    pod["metadata"]["annotations"] = {"opendatahub.io/hardware-profile-name": profile}
    return pod


def test_a_teams_own_hardware_profiles_neither_add_profiles_nor_freeze_the_policy(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str], hardware_profile_crd: Kubectl
) -> None:
    kubectl = hardware_profile_crd
    ns = team_namespace("e2e-odh")  # a team that may use every profile
    kubectl.create(team_hardware_profile("free-h100", ns, {"accel.dev/cost-per-gpu-hour": "0"}))
    kubectl.create(team_hardware_profile("a100-only", ns, {}))  # the name of a profiles.yaml profile
    # Created last: once the servers know it, their watch has seen the two above (one informer).
    kubectl.create(team_hardware_profile("redteam-trusted", TRUSTED_NS, {}))
    wait_until(
        lambda: kubectl.create(_named(ns, "redteam-trusted"), dry_run=True),
        timeout_s=60,
        what="the trusted HardwareProfile in force (a clash with the team's own would reject the policy)",
    )
    # A policy change still applies while those objects exist.
    policy = cluster.e2e_policy()
    probe = {"name": PROBE_PROFILE, "accelerators": [{"type": "nvidia-a100-80gb"}], "gpus": {"default": 1}}
    profiles = yaml.safe_load(policy["profiles.yaml"])["profiles"] + [probe]
    try:
        cluster.apply_policy(kubectl, policy | {"profiles.yaml": yaml.safe_dump({"profiles": profiles})})
        cluster.wait_for_policy(kubectl, profile=PROBE_PROFILE, team="e2e-odh", namespace=ns)
    finally:
        cluster.apply_policy(kubectl, policy)
    with pytest.raises(KubectlError) as denied:
        kubectl.create(_named(ns, "free-h100"), dry_run=True)
    assert 'hardware profile "free-h100" does not exist' in denied.value.stderr, denied.value.stderr
