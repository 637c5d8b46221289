"""Generic profiles for restricted teams (accel.admission.plan rule 6, accel.admission.generic).

Issue 4 found by the demo: a generic-profile (`gpu-any`) pod of team vision ran on H100/H200
although vision may only use a100/v100/l4, and vision reached 3.25 of its 2 L4 GPUs because
generic pods were charged to type `unknown`. These tests pin the narrowing that fixes both.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import jsonpatch
import pytest

from accel.admission.context import AdmissionContext
from accel.admission.generic import generic_candidates
from accel.admission.plan import Decision, mutate
from accel.admission.validate import decide_quota, finish_validation, plan_validation
from accel.capacity.inventory import NodeInventory
from accel.cluster.labels import NodeAccelerators
from accel.policy.models import Team
from accel.quota.ledger import Ledger
from accel.quota.rules import is_restricted
from tests.builders import DEFAULT_NODES, example_policy, gpu_pod, make_context, node_model

TYPE = "accelerator.opendatahub.io/type"
QUOTA_TYPE = "accel.dev/quota-type"
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"


def unknown_node(name: str) -> NodeInventory:
    accelerators = NodeAccelerators(
        types=("unknown",), vendor="nvidia", gpu_count=8, resources={"nvidia.com/gpu": 8}
    )
    return NodeInventory(name=name, labels={}, accelerators=accelerators)


def busy(node: str, count: int, i: int = 0) -> dict[str, Any]:
    pod = gpu_pod(
        namespace="research", profile="large-any", gpus=str(count), node=node, name=f"busy-{node}-{i}"
    )
    pod["status"]["phase"] = "Running"
    return pod


@pytest.mark.parametrize(
    ("team", "restricted"),
    [
        pytest.param(None, False, id="unknown-team-stays-plain"),
        pytest.param(Team(name="t"), False, id="no-quota-no-allowed-types-stays-plain"),
        pytest.param(Team(name="t", quota={"*": Decimal(4)}), False, id="star-quota-only-stays-plain"),
        pytest.param(Team(name="t", quota={"nvidia-l4-24gb": Decimal(1)}), True, id="per-type-quota-narrows"),
        pytest.param(Team(name="t", allowed_types=("nvidia-l4-24gb",)), True, id="allowed-types-narrows"),
    ],
)
def test_which_teams_are_restricted(team: Team | None, restricted: bool) -> None:
    assert is_restricted(team) is restricted


VISION = Team(
    name="vision", allowed_types=("nvidia-a100-80gb", "nvidia-v100-32gb", "nvidia-l4-24gb", "unknown")
)
ANY_TYPE = Team(name="nlp", quota={"nvidia-h100-80gb": Decimal(8)})


@pytest.mark.parametrize(
    ("team", "resources", "pods", "extra_nodes", "expected"),
    [
        pytest.param(
            VISION,
            ["nvidia.com/gpu"],
            [],
            [],
            ("nvidia-a100-80gb", "nvidia-v100-32gb", "nvidia-l4-24gb"),
            id="vision-gets-only-allowed-types-most-free-first",
        ),
        pytest.param(
            ANY_TYPE,
            ["nvidia.com/gpu"],
            [],
            [],
            (
                "nvidia-a100-80gb",
                "nvidia-h100-80gb",
                "nvidia-h200-141gb",
                "nvidia-v100-32gb",
                "nvidia-l4-24gb",
            ),
            id="nvidia-pod-gets-every-present-nvidia-type-ties-by-name",
        ),
        pytest.param(
            ANY_TYPE,
            ["nvidia.com/gpu"],
            [busy("a100-1", 8), busy("h200-1", 6)],
            [],
            (
                "nvidia-h100-80gb",
                "nvidia-v100-32gb",
                "nvidia-h200-141gb",
                "nvidia-a100-80gb",
                "nvidia-l4-24gb",
            ),
            id="ordered-by-free-units-in-the-cluster",
        ),
        pytest.param(
            ANY_TYPE, ["amd.com/gpu"], [], [], ("amd-mi300x-192gb",), id="amd-pod-gets-only-amd-types"
        ),
        pytest.param(VISION, ["amd.com/gpu"], [], [], (), id="amd-pod-of-nvidia-only-team-has-no-candidate"),
        pytest.param(
            VISION,
            ["nvidia.com/mig-1g.10gb"],
            [],
            [],
            ("nvidia-a100-80gb", "nvidia-v100-32gb", "nvidia-l4-24gb"),
            id="mig-resource-counts-as-its-nvidia-device",
        ),
        pytest.param(
            VISION,
            ["nvidia.com/gpu"],
            [],
            [unknown_node("mystery-1")],
            ("nvidia-a100-80gb", "nvidia-v100-32gb", "nvidia-l4-24gb"),
            id="unknown-type-never-a-candidate-even-when-allowed",
        ),
    ],
)
def test_generic_candidates(team: Team, resources: list[str], pods: list[dict[str, Any]],
                            extra_nodes: list[NodeInventory], expected: tuple[str, ...]) -> None:
    ctx = make_context(pods, nodes=(*DEFAULT_NODES, *extra_nodes))
    assert generic_candidates(resources, team, ctx) == expected


def admit(
    pod: dict[str, Any], ctx: AdmissionContext, *, uid: str = "uid-1", ledger: Ledger | None = None
) -> tuple[Decision, Decision, dict[str, Any]]:
    """Mutate, apply the patch, validate (with the quota step against `ledger`)."""
    namespace = pod["metadata"]["namespace"]
    mutated = mutate(pod, namespace=namespace, ctx=ctx)
    patched = jsonpatch.apply_patch(pod, list(mutated.ops)) if mutated.ops else pod
    return mutated, validate(patched, ctx, uid=uid, ledger=ledger), patched


def validate(
    pod: dict[str, Any], ctx: AdmissionContext, *, uid: str = "uid-1", ledger: Ledger | None = None
) -> Decision:
    plan = plan_validation(
        pod, namespace=pod["metadata"]["namespace"], ctx=ctx, request_uid=uid, now=0.0, dry_run=False
    )
    if plan.quota is None:
        return plan.decision
    return finish_validation(plan, decide_quota(plan.quota, ledger or Ledger(), ctx=ctx, now=0.0), ctx)


def required_values(pod: dict[str, Any]) -> set[str]:
    terms = pod["spec"]["affinity"]["nodeAffinity"][REQUIRED]["nodeSelectorTerms"]
    return {v for t in terms for e in t["matchExpressions"] for v in e["values"]}


def test_vision_generic_pod_is_narrowed_to_an_allowed_type_never_h100_or_h200() -> None:
    ctx = make_context([busy("a100-1", 8)])  # no free A100: most free allowed type is V100
    mutated, validated, patched = admit(gpu_pod(namespace="vision", profile="gpu-any", gpus="1"), ctx)
    assert mutated.allowed and validated.allowed, validated.finding
    # every allowed candidate with quota room stays (the bind fixes the type), never H100/H200
    assert (
        TYPE not in patched["metadata"]["annotations"]
        and QUOTA_TYPE not in patched["metadata"]["annotations"]
    )
    values = required_values(patched)
    assert {"Tesla-V100-SXM2-32GB", "NVIDIA-A100-SXM4-80GB"} <= values
    assert not any("H100" in v or "H200" in v for v in values)
    assert (
        patched["metadata"]["annotations"]["accel.dev/gpu-hour-price"] == "3.90"
    )  # the first candidate's, until bind


def test_generic_pods_cannot_bypass_a_per_type_quota() -> None:
    """The demo's bug 2: only L4 nodes fit vision; its 2-GPU L4 quota must hold for generic pods."""
    l4_nodes = (
        node_model("l4-a", "nvidia-l4-24gb", "NVIDIA-L4", count=8),
        node_model("h100-a", "nvidia-h100-80gb", "NVIDIA-H100-80GB-HBM3"),
    )
    ctx = make_context(nodes=l4_nodes)
    ledger = Ledger()
    outcomes = []
    for i in range(3):
        pod = gpu_pod(namespace="vision", profile="gpu-any", gpus="1")
        mutated = mutate(pod, namespace="vision", ctx=ctx, ledger=ledger)
        patched = jsonpatch.apply_patch(pod, list(mutated.ops))
        plan = plan_validation(
            patched, namespace="vision", ctx=ctx, request_uid=f"r{i}", now=0.0, dry_run=False
        )
        assert plan.quota is not None and plan.quota.reservation.type == "nvidia-l4-24gb"
        outcome = decide_quota(plan.quota, ledger, ctx=ctx, now=0.0)
        ledger = outcome.ledger or ledger
        outcomes.append(finish_validation(plan, outcome, ctx))
    assert [d.allowed for d in outcomes] == [True, True, False]
    assert outcomes[2].reason == "quota-exceeded" and "nvidia-l4-24gb" in outcomes[2].finding.message  # type: ignore[union-attr]


def test_unrestricted_team_generic_pod_stays_a_plain_gpu_request() -> None:
    policy = example_policy(teams=[{"name": "nlp", "quota": {"*": 64}}])
    mutated, validated, patched = admit(gpu_pod(profile="gpu-any", gpus="2"), make_context(policy=policy))
    assert mutated.allowed and validated.allowed
    assert "affinity" not in patched["spec"]
    assert (
        TYPE not in patched["metadata"]["annotations"]
        and QUOTA_TYPE not in patched["metadata"]["annotations"]
    )


def test_no_candidate_is_a_denial_that_names_unknown_gpus() -> None:
    ctx = make_context(nodes=(unknown_node("mystery-1"),))
    mutated, _, _ = admit(gpu_pod(namespace="vision", profile="gpu-any", gpus="1"), ctx)
    assert not mutated.allowed and mutated.reason == "no-allowed-type"
    assert (
        mutated.finding is not None
        and '"unknown"' in mutated.finding.message
        and "allowedTypes" in mutated.finding.message
    )


def _drop_affinity(pod: dict[str, Any]) -> None:
    del pod["spec"]["affinity"]


def _annotate_h100(pod: dict[str, Any]) -> None:
    pod["metadata"]["annotations"][TYPE] = "nvidia-h100-80gb"


def _widen_affinity(pod: dict[str, Any]) -> None:
    pod["spec"]["affinity"]["nodeAffinity"][REQUIRED]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"].append(
        "NVIDIA-H100-80GB-HBM3")


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda pod: None, id="mutated-pod-allowed"),
        pytest.param(_drop_affinity, id="affinity-removed-denied"),
        pytest.param(_widen_affinity, id="affinity-widened-to-h100-denied"),
        pytest.param(_annotate_h100, id="type-annotation-outside-allowed-denied"),
    ],
)
def test_validation_requires_the_narrowing(tamper: Any) -> None:
    ctx = make_context()
    _, _, patched = admit(gpu_pod(namespace="vision", profile="gpu-any", gpus="1"), ctx)
    tamper(patched)
    decision = validate(patched, ctx)
    untouched = tamper.__name__ == "<lambda>"
    assert decision.allowed is untouched, decision.finding
    if not untouched:
        assert (
            decision.reason == "not-narrowed"
            and decision.finding is not None
            and decision.finding.code == 400
        )


def test_unmutated_generic_pod_of_restricted_team_is_denied_at_validation() -> None:
    decision = validate(gpu_pod(namespace="vision", profile="gpu-any", gpus="1"), make_context())
    assert not decision.allowed and decision.reason == "not-narrowed"
