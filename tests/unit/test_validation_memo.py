"""ValidationMemo (accel.admission.validate) never changes a validation.

Reference: `plan_validation` on the same pod, context, identity and time. Pods reach the
validating webhook as the API server stored them: mutated, named, with a uid, timestamps,
managed fields and the service-account token volume (`kube-api-access-<random>`); pods of one
template differ only there, and the memo plans them once per context. Every field a check reads
must change the answer (no stale hit), a new context (state generation, policy) must start over,
and the quota decision must follow the ledger on every request.
"""

from __future__ import annotations

import asyncio
import copy
import weakref
from collections.abc import Callable
from typing import Any

import jsonpatch
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accel.admission.context import AdmissionContext
from accel.admission.plan import mutate
from accel.admission.validate import ValidationMemo, plan_validation, planned_part
from kube.fake import FakeCluster
from serving.cluster_state import ClusterState
from serving.ledger import LedgerClient
from serving.metrics import Metrics
from tests.builders import DEFAULT_NODES, example_policy, gpu_pod, make_context, review
from tests.unit.test_admission_properties import pods
from webhook.admitter import Admitter
from webhook.review import parse_review

PARSED = example_policy()
CTX = make_context(policy=PARSED)


def stored(pod: dict[str, Any], ctx: AdmissionContext = CTX, *, n: int = 1) -> dict[str, Any]:
    """`pod` as the validating webhook receives it: mutated, then given the API server's per-pod
    fields (name, uid, creation time, managed fields, the token volume and its mount)."""
    decision = mutate(copy.deepcopy(pod), namespace=pod["metadata"]["namespace"], ctx=ctx)
    patched = decision.allowed and decision.ops
    out = jsonpatch.apply_patch(pod, list(decision.ops)) if patched else copy.deepcopy(pod)
    meta = out["metadata"]
    created = f"2026-12-05T08:00:{n % 60:02d}Z"
    meta.update(name=f"train-7d9f8c6b5-{n:05d}", uid=f"uid-{n}", creationTimestamp=created)
    meta["managedFields"] = [{"manager": "kube-controller-manager", "time": meta["creationTimestamp"]}]
    volume = f"kube-api-access-{n:05d}"
    out["spec"].setdefault("volumes", []).append({"name": volume, "projected": {"sources": []}})
    for container in out["spec"]["containers"]:
        container.setdefault("volumeMounts", []).append({"name": volume, "mountPath": "/var/run/secrets"})
    return out


def plans(pod: dict[str, Any], memo: ValidationMemo, ctx: AdmissionContext = CTX, *, now: float = 1.0,
          dry_run: bool = False) -> tuple[Any, Any]:
    """(the memo's plan, `plan_validation`'s plan) of one request."""
    kwargs = {"namespace": pod["metadata"]["namespace"], "ctx": ctx, "request_uid": "req", "now": now,
              "dry_run": dry_run}
    return memo.plan(copy.deepcopy(pod), **kwargs), plan_validation(copy.deepcopy(pod), **kwargs)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shapes=st.lists(pods(), min_size=1, max_size=3),
    steps=st.lists(st.tuples(st.integers(0, 2), st.booleans(), st.sampled_from([1.0, 5.0])), min_size=1,
                   max_size=8),
)
def test_memoised_validation_equals_validation(
    shapes: list[dict[str, Any]], steps: list[tuple[int, bool, float]]
) -> None:
    """A stream of pods of a few templates (repeats hit the memo), each with its own identity,
    dryRun and time, is planned exactly as `plan_validation` plans each."""
    memo = ValidationMemo()
    for n, (index, dry_run, now) in enumerate(steps):
        pod = stored(shapes[index % len(shapes)], n=n)
        got, expected = plans(pod, memo, now=now, dry_run=dry_run)
        assert got == expected


def test_pods_of_one_template_share_a_plan_and_keep_their_identity() -> None:
    memo = ValidationMemo()
    template = gpu_pod(profile="large-any", gpus="2")
    first, expected = plans(stored(template, n=1), memo, now=1.0)
    assert first == expected and first.quota is not None and memo.hits == 0
    second, expected = plans(stored(template, n=2), memo, now=7.0, dry_run=True)
    assert second == expected and (memo.hits, memo.last_hit) == (1, True)
    assert second.quota is not None and second.quota.reservation.id == "uid-2"
    assert second.quota.reservation.name == "train-7d9f8c6b5-00002"
    assert (second.quota.reservation.created, second.quota.commit) == (7.0, False)
    assert first.quota.reservation.id == "uid-1" and first.quota.commit


def _set_gpus(count: str) -> Callable[[dict[str, Any]], None]:
    def change(pod: dict[str, Any]) -> None:
        resources = pod["spec"]["containers"][0]["resources"]
        for part in ("requests", "limits"):
            resources[part] = {k: (count if "gpu" in k else v) for k, v in resources[part].items()}
    return change


def _gpu_init_container(restart_policy: str | None, gpus: str) -> Callable[[dict[str, Any]], None]:
    def change(pod: dict[str, Any]) -> None:
        resource = next(k for k in pod["spec"]["containers"][0]["resources"]["requests"] if "gpu" in k)
        amounts = {resource: gpus}
        init: dict[str, Any] = {"name": "side", "resources": {"requests": amounts, "limits": dict(amounts)}}
        if restart_policy:
            init["restartPolicy"] = restart_policy
        pod["spec"]["initContainers"] = [init]
    return change


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(pod: dict[str, Any]) -> None:
        target = pod
        for key in path[:-1]:
            target = target.setdefault(key, {})
        if value is None:
            target.pop(path[-1], None)
        else:
            target[path[-1]] = value
    return change


CHANGES: dict[str, Callable[[dict[str, Any]], None]] = {
    "label": _set(("metadata", "labels", "user"), None),  # a required label missing
    "annotation": _set(("metadata", "annotations", "accel.dev/team"), "vision"),  # forged
    "generate-name": _set(("metadata", "generateName"), "other-"),  # (no check reads it: must still equal)
    "gpus": _set_gpus("2"),
    "gpus-over-max": _set_gpus("99"),
    "sidecar": _gpu_init_container("Always", "1"),  # summed with the app container's 1: 2
    "init-container": _gpu_init_container(None, "2"),  # the max of it and the app container's 1: 2
    "affinity": _set(("spec", "affinity"), None),  # no longer restricted to the profile's types
    "node-name": _set(("spec", "nodeName"), "h100-1"),
    "node-selector": _set(("spec", "nodeSelector"), {"nvidia.com/gpu.product": "NVIDIA-H200"}),
    "tolerations": _set(("spec", "tolerations"), "all"),  # malformed
}


@pytest.mark.parametrize("change", list(CHANGES), ids=list(CHANGES))
@pytest.mark.parametrize("profile", ["large-any", "a100-80gb"])
def test_a_change_to_anything_a_check_reads_is_planned_afresh(change: str, profile: str) -> None:
    """The template's plan is remembered; a pod that differs in one read field gets its own plan
    (no stale hit), and in every field but generateName that plan differs from the template's."""
    memo = ValidationMemo()
    template = gpu_pod(profile=profile, gpus="1")
    for n in (1, 2):
        plans(stored(template, n=n), memo)
    assert memo.hits == 1
    pod = stored(template, n=3)
    CHANGES[change](pod)
    got, expected = plans(pod, memo)
    _, template_plan = plans(stored(template, n=3), ValidationMemo())
    assert got == expected and memo.hits == 1 and not memo.last_hit
    assert (expected == template_plan) == (change == "generate-name")


def test_an_init_containers_restart_policy_is_read() -> None:
    """A sidecar's GPU adds to the app container's, a regular init container's does not."""
    memo = ValidationMemo()
    amounts = []
    for restart_policy in ("Always", None):
        template = gpu_pod(profile="a100-80gb", gpus="1")
        _gpu_init_container(restart_policy, "1")(template)
        got, expected = plans(stored(template), memo)
        assert got == expected and got.quota is not None
        amounts.append(got.quota.reservation.amount)
    assert amounts == [2, 1] and memo.hits == 0


def test_the_namespace_is_part_of_the_key() -> None:
    """The review's namespace decides the team (never the pod's own fields): the same pod JSON
    under another namespace is planned afresh."""
    memo = ValidationMemo()
    pod = stored(gpu_pod(profile="a100-80gb", gpus="1"))
    in_nlp, _ = plans(pod, memo)
    kwargs: dict[str, Any] = {"ctx": CTX, "request_uid": "req", "now": 1.0, "dry_run": False}
    got = memo.plan(copy.deepcopy(pod), namespace="vision", **kwargs)
    assert got == plan_validation(copy.deepcopy(pod), namespace="vision", **kwargs) != in_nlp
    assert got.decision.team == "vision" and memo.hits == 0


def test_a_new_policy_or_state_generation_starts_the_memo_over() -> None:
    memo = ValidationMemo()
    pod = stored(gpu_pod(profile="large-any", gpus="1", node="h100-1"))
    allowed, _ = plans(pod, memo)
    assert plans(pod, memo)[0] == allowed and memo.hits == 1 and allowed.decision.allowed
    # The policy no longer lets nlp use large-any: the same pod is denied at once.
    teams = [{"name": "nlp", "quota": {"*": 40}, "allowedProfiles": ["a100-80gb"]}]
    stricter = make_context(policy=example_policy(teams=teams))
    got, expected = plans(pod, memo, stricter)
    assert got == expected and not got.decision.allowed and memo.hits == 1
    # Same policy, a new state generation without node h100-1: the pod's node is no GPU node now.
    without_node = make_context(policy=PARSED, nodes=[n for n in DEFAULT_NODES if n.name != "h100-1"])
    got, expected = plans(pod, memo, without_node)
    assert got == expected and not got.decision.allowed and memo.hits == 1


def test_planned_part_drops_only_the_api_servers_per_pod_fields() -> None:
    pod = stored(gpu_pod(profile="large-any", gpus="1"), n=1)
    part = planned_part(pod)
    assert set(part) == {"metadata", "spec"}
    assert set(part["metadata"]) == {"namespace", "generateName", "labels", "annotations"}
    assert part["metadata"]["labels"] is pod["metadata"]["labels"]  # the pod's own values, not copies
    assert "volumes" not in part["spec"] and part["spec"]["containers"] == [
        {"resources": pod["spec"]["containers"][0]["resources"]}
    ]
    assert planned_part(stored(gpu_pod(profile="large-any", gpus="1"), n=2)) == part
    malformed = {"metadata": "x", "spec": ["y"]}
    assert planned_part(malformed) == malformed  # kept as they are for the shape checks


async def test_quota_stays_exact_for_pods_of_one_template() -> None:
    """Through the admitter with a real ledger: the plan is remembered, the quota is not. A team
    with room for 2 GPUs admits two 1-GPU pods of one template (a dry-run one reserves nothing)
    and denies the third, each answer from the memo."""
    teams = [{"name": "nlp", "quota": {"nvidia-a100-80gb": 2, "*": 2}}]
    state = ClusterState.static(example_policy(teams=teams), make_context().inventory)
    admitter = Admitter(state, metrics=Metrics(), ledger=LedgerClient(FakeCluster()), clock=lambda: 1.0,
                        replica_id="t")
    template = gpu_pod(profile="a100-80gb", gpus="1")
    ctx = admitter.context()
    answers = []
    for n, dry_run in ((1, False), (2, True), (3, False), (4, False)):
        body = review(stored(template, ctx, n=n), uid=f"req-{n}", dry_run=dry_run)
        answers.append(await admitter.validate(parse_review(body).request))
    assert [(a.allowed, a.reason) for a in answers] == [
        (True, "allowed"), (True, "allowed"), (True, "allowed"), (False, "quota-exceeded")
    ]
    assert [a.audit.get("reserved") for a in answers[:3]] == ["uid-1", None, "uid-3"]
    assert admitter._validations.hits == 3


class _Traced(dict):  # type: ignore[type-arg]
    """A dict that can be weakly referenced: tells when a part of the pod is freed."""


async def test_the_pod_is_freed_before_the_quota_ledger_answers() -> None:
    """/validate holds no reference to the pod while it waits for the ledger: the pod's JSON tree
    is freed by its reference count at once (not kept alive into the garbage collector's older
    generations by every request in flight)."""
    state = ClusterState.static(PARSED, CTX.inventory)
    admitter = Admitter(state, metrics=Metrics(), ledger=LedgerClient(FakeCluster()), clock=lambda: 1.0,
                        replica_id="t")
    pod = stored(gpu_pod(profile="a100-80gb", gpus="1"), admitter.context())
    env = _Traced(name="A", value="1")
    pod["spec"]["containers"][0]["env"] = [env]  # read by no check
    traced = weakref.ref(env)
    body = review(pod, uid="req-1")
    del pod, env
    request = parse_review(body).request
    del body
    pending = asyncio.ensure_future(admitter.validate(request))
    del request
    for _ in range(100):  # the planning runs until validate awaits the ledger's write
        if traced() is None or pending.done():
            break
        await asyncio.sleep(0)
    assert traced() is None and not pending.done()
    assert (await pending).audit.get("reserved") == "uid-1"
