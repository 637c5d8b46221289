"""MutationMemo (accel.admission.plan) keyed on the mutation part, and both memos over the corpora.

In a real cluster no two pods reach /mutate as the same JSON: the ServiceAccount admission plugin
gives each its own token volume `kube-api-access-<random>` and mounts it in every container, and a
bare Pod has its own name. The memo plans the pod's mutation part (`mutation_part`), so the pods of
one template share a plan; each must still get a patch that applies to it and gives exactly what
`mutate` gives for it. Over the golden cases and the fuzz corpus, planning with either memo
(MutationMemo, ValidationMemo) equals planning without it, for each pod as sent and with the API
server's per-pod fields: both memos plan only their part, so a step that read a field left out of
its part fails these tests instead of answering a later pod from a stale plan.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accel.admission import validate as validate_module
from accel.admission.context import AdmissionContext, build_context, wants_accelerators
from accel.admission.plan import Decision, MutationMemo, mutate, mutation_part
from accel.admission.validate import ValidationMemo, ValidationPlan, plan_validation
from tests.builders import (
    DEFAULT_NODES,
    api_server_suffix,
    example_policy,
    gpu_pod,
    make_context,
    make_inventory,
    service_account_pod,
)
from tests.unit.test_admission_properties import pods
from tests.unit.webhook_harness import GOLDEN_DIR, case_policy, load_case

PARSED = example_policy()
CTX = make_context(policy=PARSED)
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
TYPE_LABEL = "accelerator.opendatahub.io/type"
CORPUS_DIR = Path(__file__).resolve().parents[1] / "corpus" / "webhook"


def at_mutation(pod: Any, seed: int) -> Any:
    """`pod` as /mutate receives it in a cluster: its own token volume and mounts."""
    return service_account_pod(pod, seed) if isinstance(pod, dict) else pod


def at_validation(pod: Any, seed: int) -> Any:
    """`pod` as /validate receives it: also named from generateName, with a uid, creation time and
    managed fields (each pod its own)."""
    if not isinstance(pod, dict) or not isinstance(pod.get("metadata", {}), dict):
        return pod
    out = copy.deepcopy(pod)
    meta = out.setdefault("metadata", {})
    meta["name"] = str(meta.get("generateName") or "pod-") + api_server_suffix(1000 + seed)
    meta["uid"] = f"uid-{seed}"
    meta["creationTimestamp"] = f"2026-12-05T09:00:{seed % 60:02d}Z"
    meta["managedFields"] = [{"manager": "kube-controller-manager", "operation": "Update"}]
    return out


def check_mutation(memo: MutationMemo, pod: Any, namespace: str, ctx: AdmissionContext) -> Decision:
    """The memo's decision equals `mutate`'s (without the document) and its patch, applied to the
    pod as sent, gives the pod `mutate` planned."""
    expected = mutate(copy.deepcopy(pod), namespace=namespace, ctx=ctx, ledger=None, now=1.0)
    got = memo.mutate(copy.deepcopy(pod), namespace=namespace, ctx=ctx, ledger=None, now=1.0)
    assert got == replace(expected, document=None)
    if got.ops:
        assert jsonpatch.apply_patch(pod, [dict(op) for op in got.ops]) == expected.document
    return got


def whole_pod_validation(pod: Any, **kwargs: Any) -> ValidationPlan:
    """`plan_validation` with its checks run on the whole pod instead of its planned part (the
    reference: `plan_validation` itself plans only the part, as the memo does)."""
    namespace, ctx = kwargs["namespace"], kwargs["ctx"]
    if namespace in ctx.excluded or not wants_accelerators(pod):
        return plan_validation(pod, **kwargs)
    return validate_module._plan(validate_module._plan_part(pod, namespace, ctx), pod, **kwargs)


def check_validation(memo: ValidationMemo, pod: Any, namespace: str, ctx: AdmissionContext) -> None:
    kwargs: dict[str, Any] = {"namespace": namespace, "ctx": ctx, "request_uid": "req", "now": 1.0,
                              "dry_run": False}
    expected = whole_pod_validation(copy.deepcopy(pod), **kwargs)
    assert plan_validation(copy.deepcopy(pod), **kwargs) == expected
    assert memo.plan(copy.deepcopy(pod), **kwargs) == expected


def patched(pod: Any, decision: Decision) -> Any:
    if decision.allowed and decision.ops and isinstance(pod, dict):
        return jsonpatch.apply_patch(pod, [dict(op) for op in decision.ops])
    return pod


def run_both_memos(pod: Any, namespace: str, ctx: AdmissionContext) -> tuple[int, int]:
    """Four pods of `pod`'s template through fresh memos (the first as sent, then with per-pod
    fields; the 3rd and 4th can hit), each checked against planning without the memo; the
    mutated pods (and, as a bypassed mutation, the pods as sent) then through validation.
    Returns the two memos' hits."""
    mutations, validations = MutationMemo(), ValidationMemo()
    for seed in range(4):
        sent = pod if seed == 0 else at_mutation(pod, seed)
        decision = check_mutation(mutations, sent, namespace, ctx)
        check_validation(validations, at_validation(patched(sent, decision), seed), namespace, ctx)
    bypassed = ValidationMemo()
    for seed in range(3):
        check_validation(bypassed, at_validation(at_mutation(pod, seed), seed), namespace, ctx)
    return mutations.hits, validations.hits + bypassed.hits


def golden_cases() -> Iterator[Any]:
    for directory in sorted(p for p in GOLDEN_DIR.iterdir() if (p / "request.json").exists()):
        request, setup, _ = load_case(directory)
        if request["request"]["operation"] == "CREATE":
            yield pytest.param(request, setup, id=directory.name)


@pytest.mark.parametrize(("request_body", "setup"), list(golden_cases()))
def test_both_memos_plan_each_golden_case_as_without_them(
    request_body: dict[str, Any], setup: dict[str, Any]
) -> None:
    pod = request_body["request"]["object"]
    namespace = request_body["request"].get("namespace") or pod["metadata"]["namespace"]
    inventory = make_inventory(setup.get("pods", ()), namespace_annotations=setup.get("namespaceAnnotations"))
    run_both_memos(pod, namespace, build_context(case_policy(setup), inventory))


def test_the_golden_cases_hit_both_memos() -> None:
    """The comparison above is not vacuous: most golden pods are answered from the memos."""
    hits = [0, 0]
    for param in golden_cases():
        request_body, setup = param.values
        pod = request_body["request"]["object"]
        namespace = request_body["request"].get("namespace") or pod["metadata"]["namespace"]
        inventory = make_inventory(setup.get("pods", ()),
                                   namespace_annotations=setup.get("namespaceAnnotations"))
        got = run_both_memos(pod, namespace, build_context(case_policy(setup), inventory))
        hits = [hits[0] + got[0], hits[1] + got[1]]
    assert hits[0] >= 60 and hits[1] >= 100, hits


def corpus_pods() -> Iterator[Any]:
    for path in sorted(CORPUS_DIR.glob("*.json")):
        try:
            body = json.loads(path.read_text())
        except ValueError:
            continue  # bodies that are not JSON never reach the planner
        request = body.get("request") if isinstance(body, dict) else None
        pod = request.get("object") if isinstance(request, dict) else None
        if isinstance(pod, dict):
            namespace = request.get("namespace") if isinstance(request, dict) else None
            yield pytest.param(pod, namespace if isinstance(namespace, str) else "nlp", id=path.stem)


@pytest.mark.parametrize(("pod", "namespace"), list(corpus_pods()))
def test_both_memos_plan_each_fuzz_corpus_pod_as_without_them(pod: dict[str, Any], namespace: str) -> None:
    run_both_memos(pod, namespace, CTX)


def template() -> dict[str, Any]:
    """A multi-type pod whose patch has an op at a container index (a sidecar init container and
    two containers, the GPU requested without a limit on the second), with a volume of its own
    before the token volume, and forged annotations the patch overwrites and removes."""
    forged = {"accel.dev/team": "forged", "accel.dev/devices": "0"}
    pod = gpu_pod(profile="large-any", gpus="2", annotations=forged, labels={"app": "serve"})
    spec = pod["spec"]
    spec["containers"].insert(0, {"name": "proxy", "image": "envoy", "resources": {"requests": {"cpu": "1"}}})
    spec["initContainers"] = [{"name": "log", "image": "fluent", "restartPolicy": "Always"}]
    spec["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "train-data"}}]
    del spec["containers"][1]["resources"]["limits"]["nvidia.com/gpu"]  # the patch adds the equal limit
    return pod


def test_pods_differing_only_in_per_pod_fields_share_a_plan_that_patches_each() -> None:
    memo = MutationMemo()
    sent = [at_mutation(template(), seed) for seed in range(3)]
    sent[2]["metadata"]["name"] = "bare-pod"  # a pod created without generateName has its own name
    sent[2]["spec"]["containers"][1]["image"] = "pytorch:3"  # nor is the image read
    assert len({json.dumps(p, sort_keys=True) for p in sent}) == 3
    decisions = [check_mutation(memo, pod, "nlp", CTX) for pod in sent]
    assert decisions[2] is decisions[1] and memo.hits == 1 and memo.last_hit  # remembered from the 2nd
    ops = decisions[2].ops
    assert any("/spec/containers/1/resources" in op["path"] for op in ops), ops  # an indexed op
    assert {"op": "remove", "path": "/metadata/annotations/accel.dev~1devices"} in ops, ops
    assert {"op": "replace", "path": "/metadata/annotations/accel.dev~1team", "value": "nlp"} in ops, ops
    for pod in sent:  # each pod keeps its own token volume and mounts after the patch
        after = jsonpatch.apply_patch(pod, [dict(op) for op in ops])
        assert after["spec"]["volumes"] == pod["spec"]["volumes"]
        assert [c.get("volumeMounts") for c in after["spec"]["containers"]] == [
            c.get("volumeMounts") for c in pod["spec"]["containers"]
        ]


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(pod: dict[str, Any]) -> None:
        node = pod
        for key in path[:-1]:
            node = node.setdefault(key, {}) if isinstance(key, str) else node[key]
        node[path[-1]] = value

    return change


READ_FIELDS: dict[str, Callable[[dict[str, Any]], None]] = {
    "label": _set(("metadata", "labels", "team"), "vision"),
    "annotation": _set(("metadata", "annotations", "accel.dev/profile"), "a100-80gb"),
    "node-selector": _set(("spec", "nodeSelector"), {"accel.dev/pool": "batch"}),
    "toleration": _set(("spec", "tolerations"), [{"key": "x", "operator": "Exists"}]),
    "affinity": _set(("spec", "affinity"), {"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": TYPE_LABEL, "operator": "In", "values": ["nvidia-h100-80gb"]}]}
    ]}}}),
    "scheduler-name": _set(("spec", "schedulerName"), "accel-scheduler"),
    "node-name": _set(("spec", "nodeName"), "h100-1"),
    "container-name": _set(("spec", "containers", 1, "name"), "trainer"),
    "resources": _set(("spec", "containers", 1, "resources"), {"requests": {"amd.com/gpu": "1"}}),
    "init-restart-policy": _set(("spec", "initContainers", 0, "restartPolicy"), "OnFailure"),
}


@pytest.mark.parametrize("change", sorted(READ_FIELDS))
def test_a_change_to_a_read_field_is_planned_afresh(change: str) -> None:
    memo = MutationMemo()
    for seed in range(3):  # remembered
        check_mutation(memo, at_mutation(template(), seed), "nlp", CTX)
    assert memo.hits == 1
    changed = template()
    READ_FIELDS[change](changed)
    if change == "init-restart-policy":  # read through the GPU an init container asks for
        changed["spec"]["initContainers"][0]["resources"] = {"limits": {"nvidia.com/gpu": "4"}}
    check_mutation(memo, at_mutation(changed, 9), "nlp", CTX)
    assert memo.hits == 1 and not memo.last_hit


def test_mutation_part_keeps_positions_and_drops_the_per_pod_fields() -> None:
    pod = at_validation(at_mutation(template(), 1), 1)
    part = mutation_part(pod)
    assert set(part["metadata"]) == {"labels", "annotations"}
    assert set(part["spec"]) == {"containers", "initContainers", "schedulerName"}
    assert [c.get("name") for c in part["spec"]["containers"]] == ["proxy", "main"]
    assert all("volumeMounts" not in c and "image" not in c for c in part["spec"]["containers"])
    assert part["spec"]["containers"][1]["resources"] is pod["spec"]["containers"][1]["resources"]
    assert mutation_part(at_validation(at_mutation(template(), 2), 2)) == part
    malformed = {"metadata": "x", "spec": {"containers": ["y", {"name": "a", "env": []}]}}
    assert mutation_part(malformed) == {"metadata": "x", "spec": {"containers": ["y", {"name": "a"}]}}


def test_a_new_policy_or_state_generation_starts_the_memo_over() -> None:
    memo = MutationMemo()
    pod = gpu_pod(profile="large-any", gpus="1")
    for seed in range(3):
        check_mutation(memo, at_mutation(pod, seed), "nlp", CTX)
    assert memo.hits == 1
    teams = [{"name": "nlp", "quota": {"*": 40}, "allowedProfiles": ["a100-80gb"]}]
    stricter = make_context(policy=example_policy(teams=teams))
    assert not check_mutation(memo, at_mutation(pod, 4), "nlp", stricter).allowed
    assert memo.hits == 1 and not memo.last_hit
    # Same policy, a new state generation (no H200 nodes): planned again, not answered from before.
    fewer = make_context(policy=PARSED, nodes=[n for n in DEFAULT_NODES if "h200" not in n.name])
    check_mutation(memo, at_mutation(pod, 5), "nlp", fewer)
    assert memo.hits == 1 and not memo.last_hit


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shapes=st.lists(pods(), min_size=1, max_size=3),
       steps=st.lists(st.integers(0, 2), min_size=1, max_size=8))
def test_memo_over_a_stream_of_pods_with_per_pod_fields(
    shapes: list[dict[str, Any]], steps: list[int]
) -> None:
    memo = MutationMemo()
    for seed, index in enumerate(steps):
        pod = shapes[index % len(shapes)]
        check_mutation(memo, at_mutation(pod, seed), pod["metadata"]["namespace"], CTX)
