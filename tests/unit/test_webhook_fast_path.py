"""The raw-JSON fast path for pods that ask for no accelerator answers exactly like the full path.

`Admitter.answer_plain` decides without building the AdmissionReview model; it must give the same
response (decision, audit annotations per mode) for every body it answers, and must leave every
body the full parser would refuse (400) or any GPU/profile pod to the full path.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from serving.body import BadRequest
from serving.cluster_state import ClusterState
from serving.metrics import Metrics
from tests.builders import example_policy, gpu_pod, make_inventory, review
from tests.unit.webhook_harness import GOLDEN_DIR, load_case, step_decision
from webhook.admitter import Admitter
from webhook.review import build_response, parse_review


def admitter(**settings: Any) -> Admitter:
    state = ClusterState.static(example_policy(**settings), make_inventory())
    return Admitter(state, metrics=Metrics(), ledger=None, clock=lambda: 0.0, replica_id="t")


def plain_pod(namespace: str = "nlp") -> dict[str, Any]:
    pod = gpu_pod(namespace=namespace, profile=None, gpus=None)
    return pod


def edited(change: Any, pod: dict[str, Any] | None = None) -> dict[str, Any]:
    body = review(pod or plain_pod())
    change(body)
    return body


FULL_PATH = {
    "gpu-pod": review(gpu_pod(profile=None)),
    "profile-without-gpu": review(gpu_pod(profile="a100-80gb", gpus=None)),
    "delete": review(plain_pod(), operation="DELETE"),
    "wrong-api-version": edited(lambda b: b.__setitem__("apiVersion", "admission.k8s.io/v1beta1")),
    "uid-missing": edited(lambda b: b["request"].pop("uid")),
    "uid-not-a-string": edited(lambda b: b["request"].__setitem__("uid", 7)),
    "name-not-a-string": edited(lambda b: b["request"].__setitem__("name", 5)),
    "dry-run-not-bool": edited(lambda b: b["request"].__setitem__("dryRun", "yes")),
    "old-object-a-list": edited(lambda b: b["request"].__setitem__("oldObject", [])),
    "subresource": edited(lambda b: b["request"].__setitem__("subResource", "status")),
    "not-core-group": edited(lambda b: b["request"]["kind"].__setitem__("group", "apps")),
    "object-null": edited(lambda b: b["request"].__setitem__("object", None)),
    "request-a-list": edited(lambda b: b.__setitem__("request", [])),
}


@pytest.mark.parametrize("body", FULL_PATH.values(), ids=FULL_PATH.keys())
def test_bodies_left_to_the_full_path(body: dict[str, Any]) -> None:
    assert admitter().answer_plain(body, mutating=True) is None


@pytest.mark.parametrize(
    ("settings", "namespace"),
    [
        pytest.param({}, "nlp", id="enforce-non-gpu-pod"),
        pytest.param({"mode": "dry-run"}, "nlp", id="dry-run-audit-says-would-allow"),
        pytest.param({"mode": "warn"}, "nlp", id="warn-mode"),
        pytest.param({}, "kube-system", id="excluded-namespace-reason-kept"),
    ],
)
@pytest.mark.parametrize("mutating", [True, False], ids=["mutate", "validate"])
async def test_fast_answer_equals_the_full_path(
    settings: dict[str, Any], namespace: str, mutating: bool
) -> None:
    body = review(plain_pod(namespace))
    fast = admitter(**settings).answer_plain(copy.deepcopy(body), mutating=mutating)
    full_admitter = admitter(**settings)
    request = parse_review(body).request
    decision = await (full_admitter.mutate(request) if mutating else full_admitter.validate(request))
    assert fast == build_response(request.uid, decision, mutating=mutating)


GOLDEN = sorted(p for p in GOLDEN_DIR.iterdir() if (p / "request.json").exists())


@pytest.mark.parametrize("case", GOLDEN, ids=[p.name for p in GOLDEN])
def test_fast_answers_on_golden_requests_match_their_expected_mutate_response(case: Any) -> None:
    request, setup, expected = load_case(case)
    if setup:
        pytest.skip("fast path only checked on cases with the default policy")
    fast = admitter().answer_plain(request, mutating=True)
    if fast is None:
        return
    try:
        parse_review(request)
    except BadRequest:  # pragma: no cover - would be a fast-path bug
        pytest.fail("fast path answered a body the full parser refuses")
    assert fast["response"].pop("uid") == request["request"]["uid"]
    assert step_decision(fast["response"]) == expected["mutate"]
