"""The webhook's answers to pods of one template (MutationMemo hits, `Admitter._moded`, the
rendered-once answer of `Admitter.respond`) equal the answers computed from scratch."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from accel.admission.context import build_context
from accel.admission.plan import apply_mode, mutate
from serving.cluster_state import ClusterState
from serving.metrics import Metrics
from tests.builders import example_policy, gpu_pod, make_inventory, review
from webhook.admitter import Admitter
from webhook.review import build_response, parse_review


def reference(body: dict[str, Any], **settings: Any) -> dict[str, Any]:
    """The answer with no memo: a fresh context, `mutate`, `apply_mode`, `build_response`."""
    parsed = example_policy(**settings)
    request = parse_review(body).request
    ctx = build_context(parsed, make_inventory())
    raw = mutate(request.object or {}, namespace=request.pod_namespace, ctx=ctx)
    return build_response(request.uid, apply_mode(raw, parsed.policy.settings.mode), mutating=True)


@pytest.mark.parametrize(
    "settings", [{}, {"mode": "dry-run"}, {"mode": "warn"}], ids=["enforce", "dry-run", "warn"]
)
@pytest.mark.parametrize(
    "pod",
    [
        gpu_pod(profile="large-any", gpus="2", labels={"app": "serve"}),
        gpu_pod(
            profile="a100-80gb", gpus="1", annotations={"accel.dev/team": "forged", "accel.dev/devices": "0"}
        ),
        gpu_pod(profile="no-such-profile"),
        gpu_pod(profile="premium-h200", gpus="99"),
    ],
    ids=["multi-type", "forged-annotations", "unknown-profile", "over-max"],
)
async def test_pods_of_one_template_get_the_answer_computed_from_scratch(
    pod: dict[str, Any], settings: dict[str, Any]
) -> None:
    admitter = Admitter(
        ClusterState.static(example_policy(**settings), make_inventory()),
        metrics=Metrics(),
        ledger=None,
        clock=lambda: 0.0,
        replica_id="t",
    )
    answers = []
    for uid in ("a", "b", "c", "d"):
        body = review(copy.deepcopy(pod), uid=uid)
        decision = await admitter.mutate(parse_review(body).request)
        answer = admitter.respond(uid, decision, mutating=True)
        assert answer == reference(body, **settings)
        answers.append(answer)
    assert [a["response"]["uid"] for a in answers] == ["a", "b", "c", "d"]
    assert admitter._mutations.hits == 2  # the first two pods are planned (MutationMemo rule 3)
