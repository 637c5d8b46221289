"""Every GPU pod is governed, its request matches its profile, and its author cannot forge accel's
annotations (issue 14 sections 1 and 4, issue 21 "Pod authors are untrusted").

Table tests per rule: each case names the rule, the pod, the expected reason code and, for
mutations, the patch ops that matter (paths and op kinds), so a regression names the rule it broke.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from accel.admission.author_keys import AUTHOR_KEYS, is_webhook_owned
from accel.admission.context import AdmissionContext
from accel.admission.plan import Decision, apply_mode, mutate
from accel.admission.validate import decide_quota, finish_validation, plan_validation
from accel.capacity.inventory import team_usage
from accel.policy.models import Mode
from accel.quota.ledger import Ledger
from tests.builders import example_policy, gpu_pod, make_context, make_inventory
from webhook.review import build_response

REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
A100_ONLY = [{"name": "vision", "quota": {"nvidia-a100-80gb": 2}, "allowedTypes": ["nvidia-a100-80gb"],
              "allowedProfiles": ["a100-80gb", "gpu-any"]}]


def admit(
    pod: dict[str, Any], ctx: AdmissionContext, *, uid: str = "uid-1"
) -> tuple[Decision, Decision, dict[str, Any]]:
    namespace = pod["metadata"]["namespace"]
    mutated = mutate(pod, namespace=namespace, ctx=ctx)
    patched = jsonpatch.apply_patch(pod, list(mutated.ops)) if mutated.ops and mutated.allowed else pod
    return mutated, validate(patched, ctx, uid=uid), patched


def validate(pod: dict[str, Any], ctx: AdmissionContext, *, uid: str = "uid-1") -> Decision:
    plan = plan_validation(
        pod, namespace=pod["metadata"]["namespace"], ctx=ctx, request_uid=uid, now=0.0, dry_run=False
    )
    if plan.quota is None:
        return plan.decision
    return finish_validation(plan, decide_quota(plan.quota, Ledger(), ctx=ctx, now=0.0), ctx)


def no_profile_pod(namespace: str, **kw: Any) -> dict[str, Any]:
    return gpu_pod(namespace=namespace, profile=None, **kw)


def required_types(pod: dict[str, Any]) -> set[str]:
    terms = pod["spec"]["affinity"]["nodeAffinity"][REQUIRED]["nodeSelectorTerms"]
    return {v for t in terms for e in t["matchExpressions"] for v in e["values"]}


# ---- issue 14 section 1: a GPU pod without a profile is governed -------------------------------------------


def test_no_profile_gpu_pod_gets_the_policy_default_and_is_routed_narrowed_and_charged() -> None:
    ctx = make_context(policy=example_policy(teams=A100_ONLY))
    mutated, validated, patched = admit(no_profile_pod("vision", gpus="2"), ctx)
    assert (mutated.reason, mutated.profile, validated.reason) == ("mutated", "gpu-any", "allowed")
    notes = patched["metadata"]["annotations"]
    assert (
        notes["accel.dev/profile"] == "gpu-any"
        and notes["accelerator.opendatahub.io/type"] == "nvidia-a100-80gb"
    )
    assert "accel.dev/quota-type" not in notes  # the type is fixed at bind; here only one type is possible
    assert patched["spec"]["schedulerName"] == "accel-scheduler"
    assert "NVIDIA-A100-SXM4-80GB" in required_types(patched) and not any(
        "H100" in v or "H200" in v for v in required_types(patched)
    )
    plan = plan_validation(patched, namespace="vision", ctx=ctx, request_uid="u", now=0.0, dry_run=False)
    assert plan.quota is not None and plan.quota.reservation.type == "nvidia-a100-80gb"
    assert plan.quota.reservation.amount == 2


def test_the_issue_case_three_8_gpu_pods_on_an_a100_quota_of_2_are_denied() -> None:
    ctx = make_context(policy=example_policy(teams=A100_ONLY))
    mutated = mutate(no_profile_pod("vision", gpus="8"), namespace="vision", ctx=ctx)
    patched = jsonpatch.apply_patch(no_profile_pod("vision", gpus="8"), list(mutated.ops))
    decision = validate(patched, ctx)
    assert decision.allowed is False and decision.reason == "quota-exceeded", decision


@pytest.mark.parametrize(
    ("settings", "teams", "namespace_annotations", "reason", "profile", "words"),
    [
        pytest.param(
            {"defaultProfile": None},
            A100_ONLY,
            None,
            "no-profile",
            "",
            ['team "vision" may use: "a100-80gb", "gpu-any"', "accel.dev/profile"],
            id="no-default-denied",
        ),
        pytest.param(
            {},
            [{**A100_ONLY[0], "allowedProfiles": ["a100-80gb"]}],
            None,
            "no-profile",
            "",
            ['the defaults ("gpu-any") are not allowed for team "vision"', '"a100-80gb"'],
            id="default-not-allowed-for-team-denied",
        ),
        pytest.param(
            {},
            [{**A100_ONLY[0], "allowedProfiles": ["a100-80gb"], "defaultProfile": "a100-80gb"}],
            None,
            "mutated",
            "a100-80gb",
            [],
            id="team-default-used-when-policy-default-not-allowed",
        ),
        pytest.param(
            {},
            A100_ONLY,
            {"vision": {"accel.dev/default-profile": "a100-80gb"}},
            "mutated",
            "a100-80gb",
            [],
            id="namespace-default-first",
        ),
        pytest.param(
            {},
            A100_ONLY,
            {"vision": {"accel.dev/default-profile": "premium-h200"}},
            "mutated",
            "gpu-any",
            [],
            id="namespace-default-not-allowed-skipped",
        ),
    ],
)
def test_default_profile_rules(
    settings: dict[str, Any],
    teams: list[dict[str, Any]],
    namespace_annotations: Any,
    reason: str,
    profile: str,
    words: list[str],
) -> None:
    ctx = make_context(
        policy=example_policy(teams=teams, **settings), namespace_annotations=namespace_annotations
    )
    pod = no_profile_pod("vision")
    mutated = mutate(pod, namespace="vision", ctx=ctx)
    assert (mutated.reason, mutated.profile) == (reason, profile), mutated.finding
    if mutated.finding:
        for word in words:
            assert word in mutated.finding.message
        again = validate(pod, ctx)  # validation on its own (mutation skipped) denies the same way
        assert again.allowed is False and again.reason == reason


def test_pod_without_accelerator_passes_but_loses_accel_owned_annotations() -> None:
    """Rule 8 holds for pods asking for no accelerator too: FinOps tools read accel's cost, team and
    type annotations off every pod, so an author's own values must not survive. Author keys stay."""
    ctx = make_context()
    forged = {"accel.dev/team": "vision", "accel.dev/cost-per-hour": "0.01", "accel.dev/job": "etl"}
    pod = gpu_pod(profile=None, gpus=None, annotations=forged)
    decision = mutate(pod, namespace="nlp", ctx=ctx)
    assert (decision.allowed, decision.reason) == (True, "no-accelerator")
    assert {(op["op"], op["path"]) for op in decision.ops} == {
        ("remove", "/metadata/annotations/accel.dev~1team"),
        ("remove", "/metadata/annotations/accel.dev~1cost-per-hour"),
    }
    plain = gpu_pod(profile=None, gpus=None, annotations={"accel.dev/job": "etl", "other.io/x": "1"})
    assert mutate(plain, namespace="nlp", ctx=ctx).ops == ()


# ---- issue 14 section 4: the request must match the profile ------------------------------------------------


def two_containers(
    profile: str, first: dict[str, str], second: dict[str, str], namespace: str = "nlp"
) -> dict[str, Any]:
    pod = gpu_pod(namespace=namespace, profile=profile, gpus=None)
    base = pod["spec"]["containers"][0]
    pod["spec"]["containers"] = [
        {**copy.deepcopy(base), "name": "a", "resources": {"requests": dict(first), "limits": dict(first)}},
        {**copy.deepcopy(base), "name": "b", "resources": {"requests": dict(second), "limits": dict(second)}},
    ]
    return pod


@pytest.mark.parametrize(
    ("namespace", "profile", "resources", "reason", "words"),
    [
        pytest.param(
            "nlp",
            "a100-80gb",
            {"amd.com/gpu": "1"},
            "resource-mismatch",
            ["amd.com/gpu", "uses nvidia.com/gpu", "not amd devices"],
            id="amd-under-nvidia-profile",
        ),
        pytest.param(
            "nlp",
            "inference-mig",
            {"nvidia.com/mig-3g.40gb": "1"},
            "resource-mismatch",
            ["uses nvidia.com/mig-1g.10gb", "1g.10gb MIG slices, not 3g.40gb"],
            id="other-mig-size",
        ),
        pytest.param(
            "nlp",
            "notebook-shared",
            {"nvidia.com/mig-1g.10gb": "1"},
            "resource-mismatch",
            ["uses nvidia.com/gpu.shared", "nvidia-l4-24gb has no MIG"],
            id="mig-under-l4",
        ),
        pytest.param(
            "nlp",
            "a100-80gb",
            {"nvidia.com/gpu.shared": "1"},
            "resource-mismatch",
            ["uses nvidia.com/gpu", "not a time-sliced one"],
            id="shared-under-exclusive",
        ),
        pytest.param(
            "nlp",
            "inference-mig",
            {"nvidia.com/gpu": "1", "nvidia.com/mig-1g.10gb": "1"},
            "resource-mismatch",
            ["both nvidia.com/gpu and nvidia.com/mig-1g.10gb"],
            id="plain-and-mig-in-one-container",
        ),
        pytest.param(
            "nlp",
            "notebook-shared",
            {"nvidia.com/gpu": "1", "nvidia.com/gpu.shared": "1"},
            "resource-mismatch",
            ["both nvidia.com/gpu and nvidia.com/gpu.shared"],
            id="plain-and-shared-in-one-container",
        ),
        pytest.param(
            "platform",
            "gpu-any",
            {"nvidia.com/gpu": "1", "nvidia.com/gpu.shared": "1"},
            "resource-mismatch",
            ["whole GPUs and time-sliced replicas"],
            id="generic-plain-and-shared",
        ),
        pytest.param(
            "research", "amd-mi300x", {"nvidia.com/gpu": "2"}, "mutated", [], id="plain-renamed-to-amd"
        ),
        pytest.param(
            "platform", "gpu-any", {"amd.com/gpu": "1"}, "mutated", [], id="generic-takes-any-vendor"
        ),
    ],
)
def test_resource_must_match_profile(namespace: str, profile: str, resources: dict[str, str], reason: str,
                                     words: list[str]) -> None:
    ctx = make_context()
    pod = gpu_pod(namespace=namespace, profile=profile, gpus=None)
    pod["spec"]["containers"][0]["resources"] = {"requests": dict(resources), "limits": dict(resources)}
    mutated = mutate(pod, namespace=namespace, ctx=ctx)
    assert mutated.reason == reason, mutated.finding
    for word in words:
        assert mutated.finding is not None and word in mutated.finding.message, mutated.finding
    if reason != "mutated":
        assert validate(pod, ctx).reason == reason  # validation alone (mutation bypassed) refuses it too


def test_plain_and_shared_in_two_containers_of_a_time_sliced_pod_both_become_replicas() -> None:
    ctx = make_context()
    pod = two_containers("notebook-shared", {"nvidia.com/gpu": "1"}, {"nvidia.com/gpu.shared": "1"})
    pod["spec"]["initContainers"] = [
        pod["spec"]["containers"].pop(0)
    ]  # effective request: 1 (max of init, app)
    mutated, validated, patched = admit(pod, ctx)
    assert mutated.reason == "mutated" and validated.allowed, validated.finding
    asked = [
        c["resources"]["limits"] for c in (*patched["spec"]["initContainers"], *patched["spec"]["containers"])
    ]
    assert asked == [{"nvidia.com/gpu.shared": "1"}, {"nvidia.com/gpu.shared": "1"}]
    plan = plan_validation(patched, namespace="nlp", ctx=ctx, request_uid="u", now=0.0, dry_run=False)
    assert (
        plan.quota is not None and plan.quota.reservation.amount * 4 == 1
    )  # one quarter GPU, not a whole one


def test_validation_refuses_a_plain_gpu_under_a_mig_profile_that_mutation_did_not_rename() -> None:
    decision = validate(gpu_pod(profile="inference-mig"), make_context())
    assert decision.reason == "resource-mismatch" and "nvidia.com/mig-1g.10gb" in (
        decision.finding.message if decision.finding else ""
    )


# ---- issue 21: pod authors are untrusted -------------------------------------------------------------------

FORGED = {
    "accel.dev/team": "platform",
    "accelerator.opendatahub.io/type": "nvidia-h200-141gb",
    "accel.dev/quota-type": "nvidia-h200-141gb",
    "accel.dev/gpu-hour-price": "0.01",
    "accel.dev/cost-per-hour": "0.01",
    "accel.dev/devices": "0,1,2,3",
    "accel.dev/placement": "leaf-1",
    "accel.dev/default-profile": "premium-h200",
}


def test_the_allowlist_is_small_and_everything_else_in_our_namespaces_is_owned() -> None:
    assert {
        "accel.dev/profile",
        "opendatahub.io/hardware-profile-name",
        "accel.dev/job",
        "accel.dev/job-size",
    } == AUTHOR_KEYS
    for key in FORGED:
        assert is_webhook_owned(key), key
    assert not is_webhook_owned("example.com/anything") and not is_webhook_owned("accel.dev/profile")


@pytest.mark.parametrize("key", sorted(FORGED))
def test_each_forged_annotation_is_overwritten_or_removed_on_create(key: str) -> None:
    ctx = make_context()
    pod = gpu_pod(
        namespace="vision", profile="a100-80gb", annotations={key: FORGED[key], "accel.dev/job": "j1"}
    )
    mutated, validated, patched = admit(pod, ctx)
    assert mutated.allowed and validated.allowed, (mutated.finding, validated.finding)
    notes = patched["metadata"]["annotations"]
    clean = gpu_pod(namespace="vision", profile="a100-80gb")
    expected = jsonpatch.apply_patch(clean, list(mutate(clean, namespace="vision", ctx=ctx).ops))
    assert notes.get(key) == expected["metadata"]["annotations"].get(key), notes
    assert notes == {**expected["metadata"]["annotations"], "accel.dev/job": "j1"}
    ops = {(op["op"], op["path"]) for op in mutated.ops}
    escaped = "/metadata/annotations/" + key.replace("/", "~1")
    assert ("remove", escaped) in ops or ("replace", escaped) in ops
    assert notes["accel.dev/job"] == "j1"  # an author key stays


@pytest.mark.parametrize("key", sorted(FORGED))
def test_validation_alone_denies_each_forged_annotation(key: str) -> None:
    pod = gpu_pod(namespace="vision", profile="a100-80gb", annotations={key: FORGED[key]})
    decision = validate(pod, make_context())
    assert decision.allowed is False and decision.reason == "forged-annotation", decision
    assert key in (decision.finding.message if decision.finding else "")


def test_reinvocation_over_our_own_patch_is_a_no_op() -> None:
    ctx = make_context()
    pod = gpu_pod(namespace="vision", profile="a100-80gb", annotations=FORGED)
    first = mutate(pod, namespace="vision", ctx=ctx)
    patched = jsonpatch.apply_patch(pod, list(first.ops))
    assert mutate(patched, namespace="vision", ctx=ctx).ops == ()


def test_warn_mode_admits_a_denied_pod_without_the_forged_annotations_and_enforce_sends_no_patch() -> None:
    ctx = make_context()
    pod = gpu_pod(
        namespace="vision", profile="premium-h200", annotations=FORGED
    )  # vision may not use premium-h200
    raw = mutate(pod, namespace="vision", ctx=ctx)
    assert raw.reason == "profile-not-allowed"
    warned = apply_mode(raw, Mode.WARN)
    patched = jsonpatch.apply_patch(pod, list(warned.ops))
    assert warned.allowed and set(patched["metadata"]["annotations"]) == {"accel.dev/profile"}
    enforced = build_response("u", apply_mode(raw, Mode.ENFORCE), mutating=True)["response"]
    assert enforced["allowed"] is False and "patch" not in enforced


def test_pod_label_team_in_an_unlabelled_namespace_is_team_less() -> None:
    ctx = make_context()
    pod = gpu_pod(namespace="unlabelled", profile="premium-h200", labels={"team": "nlp"})
    mutated, validated, patched = admit(pod, ctx)
    assert mutated.team == "" and "accel.dev/team" not in patched["metadata"].get("annotations", {})
    assert validated.allowed is False and validated.reason == "no-team"
    assert validated.finding is not None and 'label team="nlp" does not count' in validated.finding.message
    running = copy.deepcopy(patched)
    running["spec"]["nodeName"], running["status"]["phase"] = "h200-1", "Running"
    policy = example_policy()
    usage = team_usage(make_inventory([running]), catalog=policy.catalog, policy=policy.policy)
    assert "nlp" not in usage  # nothing is charged to nlp


def test_pod_label_that_agrees_with_the_namespace_is_fine_and_one_that_disagrees_is_denied() -> None:
    ctx = make_context()
    assert admit(gpu_pod(namespace="nlp", labels={"team": "nlp"}), ctx)[1].allowed
    denied = admit(gpu_pod(namespace="vision", labels={"team": "nlp"}), ctx)[1]
    assert denied.reason == "team-mismatch"


# ---- property: nothing an author writes under accel's keys survives mutation or passes validation ----------

OWNED_KEYS = st.sampled_from([*FORGED, "accel.dev/reservation", "accel.dev/anything", "accel.dev/x.y"])
VALUES = st.sampled_from(
    ["0.01", "nlp", "vision", "nvidia-h200-141gb", "nvidia-a100-80gb", "0", "", "2.50", "x" * 70]
)
CASES = st.sampled_from(
    [
        ("vision", "a100-80gb"),
        ("nlp", "large-any"),
        ("vision", "gpu-any"),
        ("platform", "gpu-any"),
        ("nlp", "inference-mig"),
        ("research", "amd-mi300x"),
        ("unlabelled", "a100-80gb"),
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=CASES, forged=st.dictionaries(OWNED_KEYS, VALUES, max_size=5), job=st.booleans())
def test_forged_owned_annotations_never_survive_mutation(
    case: tuple[str, str], forged: dict[str, str], job: bool
) -> None:
    namespace, profile = case
    ctx = PROPERTY_CTX
    found = ctx.policy.profile(profile)
    assert found is not None
    # The one kept author value (accel.admission.plan rule 3): a quota type that is one of the
    # profile's types only narrows the pod, like a nodeSelector on that type would; quota still
    # checks that type. Everything else must be overwritten or removed.
    assume(forged.get("accel.dev/quota-type") not in found.types)
    authored = {**forged, **({"accel.dev/job": "j"} if job else {})}
    pod = gpu_pod(namespace=namespace, profile=profile, annotations=authored)
    clean = gpu_pod(namespace=namespace, profile=profile, annotations={"accel.dev/job": "j"} if job else None)
    mutated = mutate(pod, namespace=namespace, ctx=ctx)
    reference = mutate(clean, namespace=namespace, ctx=ctx)
    assert (mutated.allowed, mutated.reason) == (reference.allowed, reference.reason)
    if not mutated.allowed:
        return
    after = jsonpatch.apply_patch(pod, list(mutated.ops))["metadata"].get("annotations") or {}
    expected = jsonpatch.apply_patch(clean, list(reference.ops))["metadata"].get("annotations") or {}
    if (
        "accel.dev/reservation" in forged and namespace != "unlabelled"
    ):  # the reservation id is quota's (issue 21)
        after = {k: v for k, v in after.items() if k != "accel.dev/reservation"}
        expected = {k: v for k, v in expected.items() if k != "accel.dev/reservation"}
    assert after == expected
    assert mutate(jsonpatch.apply_patch(pod, list(mutated.ops)), namespace=namespace, ctx=ctx).ops == ()
    # Validation alone refuses what mutation would have changed. A price that is the price of one of
    # the pod's allowed types is accepted while the type is undecided (the bind writes the real one).
    requests = {"nvidia.com/gpu": 1}
    prices = {v for t in (found.types or ("",)) for v in ctx.request_prices(found, t, requests).values()}
    changed = [k for k, v in forged.items() if k != "accel.dev/reservation" and expected.get(k) != v
               and not (k in ("accel.dev/gpu-hour-price", "accel.dev/cost-per-hour") and v in prices)
               # one allowed type of a multi-type pod only narrows it: charged and filtered as that type
               and not (k == "accelerator.opendatahub.io/type" and v in found.types)]
    if changed:
        assert not validate(pod, ctx).allowed, changed


PROPERTY_CTX = make_context()


def test_validation_alone_refuses_a_typed_pod_without_the_type_affinity() -> None:
    ctx = make_context()
    pod = gpu_pod(
        namespace="nlp",
        profile="large-any",
        annotations={"accelerator.opendatahub.io/type": "nvidia-a100-80gb"},
    )
    denied = validate(
        pod, ctx
    )  # a valid type annotation, but nothing keeps the default scheduler off other GPUs
    assert denied.allowed is False and denied.reason == "not-narrowed", denied
    _, validated, patched = admit(gpu_pod(namespace="nlp", profile="a100-80gb"), ctx)
    assert validated.allowed, validated.finding
    patched["spec"]["affinity"]["nodeAffinity"][REQUIRED]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"].append(
        "NVIDIA-H100-80GB-HBM3")  # widened by another webhook
    assert validate(patched, ctx).reason == "not-narrowed"


@pytest.mark.parametrize("where", ["annotations", "labels"])
@pytest.mark.parametrize("value", [3, None, ["a"], {"x": "y"}])
def test_non_string_metadata_values_are_a_malformed_pod_not_a_crash(where: str, value: Any) -> None:
    """ObjectMeta maps are map[string]string; a forged review with a number for the profile name
    used to raise inside the denial message (a 500 from the webhook). Now it is a clear denial."""
    pod = gpu_pod(profile="a100-80gb")
    pod["metadata"][where] = {**(pod["metadata"].get(where) or {}), "accel.dev/profile": value}
    decision = mutate(pod, namespace="nlp", ctx=make_context())
    assert (decision.allowed, decision.reason) == (False, "malformed-pod")
    assert f"metadata.{where} must map names to strings" in str(decision.finding)
