"""Which node labels identify a type in the injected affinity (accel.admission.affinity rule 0, issue 4 item
4).

Gaudi nodes carry no label naming the generation; only the instance type does. The catalog has
shell patterns (`dl1.*`), node affinity needs concrete values, so the values observed on the
inventory's nodes of that type are used; GKE nodes without the GPU operator are matched by
`cloud.google.com/gke-accelerator`; a type nothing identifies is still a clear denial.
"""

from __future__ import annotations

from typing import Any

import jsonpatch
import pytest
import yaml

from accel.admission.affinity import AffinityError, build_selector
from accel.admission.context import build_context
from accel.admission.plan import mutate
from accel.capacity.inventory import NodeInventory
from accel.cluster.catalog import load_builtin_catalog
from accel.cluster.labels import NodeAccelerators
from accel.policy.loading import parse_policy
from accel.policy.models import AcceleratorRef, Profile
from tests.builders import DEFAULT_NODES, POLICY_DIR, gpu_pod, make_inventory

PRODUCT = "nvidia.com/gpu.product"
GKE = "cloud.google.com/gke-accelerator"
INSTANCE = "node.kubernetes.io/instance-type"
A100_LABELS = ["NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-80GB-PCIe", "A100-SXM4-80GB", "A100-80GB-PCIe"]


def node(
    name: str, accel_type: str, labels: dict[str, str], resource: str = "nvidia.com/gpu"
) -> NodeInventory:
    accelerators = NodeAccelerators(types=(accel_type,), vendor=accel_type.split("-", 1)[0], gpu_count=8,
                                    resources={resource: 8})
    return NodeInventory(name=name, labels=labels, accelerators=accelerators)


DL1 = node("dl1-a", "intel-gaudi-32gb", {INSTANCE: "dl1.24xlarge"}, "habana.ai/gaudi")
DL1_B = node("dl1-b", "intel-gaudi-32gb", {INSTANCE: "dl1.24xlarge-custom"}, "habana.ai/gaudi")
GKE_A100 = node("gke-a100", "nvidia-a100-80gb", {GKE: "nvidia-a100-80gb", INSTANCE: "a2-ultragpu-8g"})
GKE_V100 = node("gke-v100", "nvidia-v100-32gb", {GKE: "nvidia-tesla-v100"})


def profile(*types: str) -> Profile:
    return Profile(name="p", accelerators=tuple(AcceleratorRef(type=t) for t in types))


@pytest.mark.parametrize(
    ("types", "nodes", "expected"),
    [
        pytest.param(
            ("nvidia-a100-80gb",),
            DEFAULT_NODES,
            {PRODUCT: A100_LABELS},
            id="gfd-labelled-type-uses-product-key-only",
        ),
        pytest.param(
            ("intel-gaudi-32gb",),
            (DL1,),
            {INSTANCE: ["dl1.24xlarge"]},
            id="gaudi-from-observed-instance-type",
        ),
        pytest.param(
            ("intel-gaudi-32gb",),
            (DL1, DL1_B),
            {INSTANCE: ["dl1.24xlarge", "dl1.24xlarge-custom"]},
            id="every-observed-instance-type-of-the-type",
        ),
        pytest.param(
            ("nvidia-a100-80gb",),
            (*DEFAULT_NODES, GKE_A100),
            {PRODUCT: A100_LABELS, GKE: ["nvidia-a100-80gb"]},
            id="gke-node-without-product-label-adds-gke-key",
        ),
        pytest.param(
            ("nvidia-v100-32gb",),
            (GKE_V100,),
            {
                PRODUCT: ["Tesla-V100-SXM2-32GB", "Tesla-V100-PCIE-32GB", "Tesla-V100S-PCIE-32GB"],
                GKE: ["nvidia-tesla-v100"],
            },
            id="gke-alias-from-catalog-and-node",
        ),
    ],
)
def test_keys_that_identify_a_type(types: tuple[str, ...], nodes: tuple[NodeInventory, ...],
                                   expected: dict[str, list[str]]) -> None:
    selector = build_selector(
        profile(*types), types, catalog=load_builtin_catalog(), inventory=make_inventory(nodes=nodes)
    )
    assert {e["key"]: e["values"] for e in selector.expressions} == expected


def test_a_type_nothing_identifies_is_a_clear_error() -> None:
    with pytest.raises(
        AffinityError,
        match=r"intel-gaudi-32gb.*instanceTypes \['dl1\.\*'\].*productLabels or gkeAccelerators",
    ):
        build_selector(profile("intel-gaudi-32gb"), ("intel-gaudi-32gb",), catalog=load_builtin_catalog(),
                       inventory=make_inventory(nodes=DEFAULT_NODES))


def gaudi_policy() -> Any:
    files = {p.name: p.read_text() for p in POLICY_DIR.glob("*.yaml")}
    profiles = yaml.safe_load(files["profiles.yaml"])
    profiles["profiles"].append({"name": "gaudi", "accelerators": [{"type": "intel-gaudi-32gb"}]})
    files["profiles.yaml"] = yaml.safe_dump(profiles)
    files["teams.yaml"] = yaml.safe_dump({"teams": [{"name": "research", "quota": {"intel-gaudi-32gb": 16}}]})
    return parse_policy(files, load_builtin_catalog())


@pytest.mark.parametrize(
    ("nodes", "allowed"),
    [pytest.param((*DEFAULT_NODES, DL1), True, id="gaudi-pod-admitted-with-instance-type-affinity"),
     pytest.param(DEFAULT_NODES, False, id="gaudi-pod-denied-when-no-node-identifies-it")],
)
def test_gaudi_profile_end_to_end(nodes: tuple[NodeInventory, ...], allowed: bool) -> None:
    ctx = build_context(gaudi_policy(), make_inventory(nodes=nodes))
    pod = gpu_pod(namespace="research", profile="gaudi", gpus="8", resource="habana.ai/gaudi")
    decision = mutate(pod, namespace="research", ctx=ctx)
    assert decision.allowed is allowed, decision.finding
    if not allowed:
        assert decision.reason == "profile-unusable"
        return
    patched = jsonpatch.apply_patch(pod, list(decision.ops))
    terms = patched["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert terms == [{"matchExpressions": [{"key": INSTANCE, "operator": "In", "values": ["dl1.24xlarge"]}]}]
    assert patched["metadata"]["annotations"]["accelerator.opendatahub.io/type"] == "intel-gaudi-32gb"
    assert mutate(patched, namespace="research", ctx=ctx).ops == ()

