"""webhook.admitter: a new state generation is built in steps by the admission that first sees it
(accel.admission.context.context_steps); admissions arriving meanwhile decide with the previous
generation's context. The context is the same as one built at once, a synchronous `context()` or
a cancelled builder finishes the build (never left half done), and quota stays exact."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from typing import Any

import pytest

import webhook.admitter as admitter_module
from accel.admission.context import AdmissionContext, build_context, context_steps, finish_steps
from kube.fake import FakeCluster
from serving.cluster_state import ClusterState
from serving.ledger import LedgerClient
from serving.metrics import Metrics
from tests.builders import example_policy, gpu_pod, make_inventory, review
from tests.unit.test_validation_memo import stored
from webhook.admitter import Admitter
from webhook.review import AdmissionRequest, parse_review

TEAMS = [{"name": "nlp", "quota": {"nvidia-a100-80gb": 4, "*": 4}}]


def running(n: int) -> dict[str, Any]:
    pod = gpu_pod(profile="a100-80gb", gpus="1")
    pod["metadata"].update(name=f"run-{n}", uid=f"run-{n}")
    pod["spec"]["nodeName"] = "a100-1"
    return pod


def request(n: int, ctx: AdmissionContext) -> AdmissionRequest:
    pod = stored(gpu_pod(profile="a100-80gb", gpus="1"), ctx, n=n)
    return parse_review(review(pod, uid=f"req-{n}")).request


@pytest.fixture
def steps_seen(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The admitter's builds, step by step ("step" per pause, "done" at the end)."""
    seen: list[str] = []

    def traced(*args: Any, **kwargs: Any) -> Iterator[None]:
        steps = context_steps(*args, **kwargs)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                seen.append("done")
                return done.value  # type: ignore[no-any-return]
            seen.append("step")
            yield

    monkeypatch.setattr(admitter_module, "context_steps", traced)
    return seen


def world(pods: list[dict[str, Any]]) -> tuple[ClusterState, Admitter]:
    state = ClusterState.static(example_policy(teams=TEAMS), make_inventory(pods), watermark=1)
    admitter = Admitter(state, metrics=Metrics(), ledger=LedgerClient(FakeCluster()), clock=lambda: 1.0,
                        replica_id="t")
    return state, admitter


def test_steps_build_the_same_context_as_at_once() -> None:
    parsed, inventory = example_policy(teams=TEAMS), make_inventory([running(1), running(2)])
    whole = build_context(parsed, inventory, generation=3, now=2.0, watermark=7)
    stepped = finish_steps(context_steps(parsed, inventory, generation=3, now=2.0, watermark=7))
    for name in ("usage", "visible", "free_units", "present_types", "job_types", "excluded", "watermark"):
        assert getattr(stepped, name) == getattr(whole, name), name


async def test_admissions_meanwhile_use_the_previous_generation_and_quota_stays_exact(
    steps_seen: list[str],
) -> None:
    """Team quota 4: one pod running, two admitted (in the ledger). The next generation shows the
    admitted pods; six admissions race it. Exactly one more fits, whichever generation each one
    decides with; some decided with the previous one while the first built the new one."""
    state, admitter = world([running(1)])
    first = admitter.context()
    steps_seen.clear()
    for n in (1, 2):
        assert (await admitter.validate(request(n, first))).allowed
    admitted = [stored(gpu_pod(profile="a100-80gb", gpus="1"), first, n=n) for n in (1, 2)]
    for pod in admitted:
        pod["spec"]["nodeName"] = "a100-1"
    state.update_static(inventory=make_inventory([running(1), *admitted]), watermark=2)
    generations: list[int] = []
    plan = admitter._validations.plan

    def recording(pod: Any, **kwargs: Any) -> Any:
        generations.append(kwargs["ctx"].generation)
        return plan(pod, **kwargs)

    admitter._validations.plan = recording  # type: ignore[method-assign]
    answers = await asyncio.gather(*(admitter.validate(request(n, first)) for n in range(3, 9)))
    outcomes = sorted((a.allowed, a.reason) for a in answers)
    assert outcomes == [(False, "quota-exceeded")] * 5 + [(True, "allowed")]
    assert steps_seen.count("step") >= 2 and steps_seen[-1] == "done"
    new = admitter.context().generation
    assert new != first.generation and admitter._steps is None
    # the builder decides with the new generation, the others meanwhile with the previous one
    assert generations.count(new) >= 1 and generations.count(first.generation) >= 1


async def test_a_synchronous_context_finishes_the_build(steps_seen: list[str]) -> None:
    state, admitter = world([running(1)])
    first = admitter.context()
    steps_seen.clear()
    state.update_static(inventory=make_inventory([running(1), running(2)]), watermark=2)
    builder = asyncio.ensure_future(admitter.validate(request(1, first)))
    await asyncio.sleep(0)
    assert admitter._steps is not None and steps_seen == ["step"]  # paused after its first step
    now = admitter.context()  # e.g. the reconciler: finishes the steps at once, builds nothing more
    assert steps_seen[-1] == "done" and steps_seen.count("step") >= 2 and admitter._steps is None
    assert now is not first and now.usage["nlp"] == {"nvidia-a100-80gb": 2}
    assert (await builder).allowed
    assert admitter.context() is now and steps_seen.count("done") == 1


async def test_a_cancelled_builder_still_puts_the_new_generation_in_force(steps_seen: list[str]) -> None:
    state, admitter = world([])
    first = admitter.context()
    steps_seen.clear()
    state.update_static(inventory=make_inventory([running(1)]), watermark=2)
    builder = asyncio.ensure_future(admitter.validate(request(1, first)))
    await asyncio.sleep(0)
    assert admitter._steps is not None
    builder.cancel()
    with pytest.raises(asyncio.CancelledError):
        await builder
    assert admitter._steps is None and steps_seen[-1] == "done"
    assert admitter._ctx is not None and admitter._ctx.usage["nlp"] == {"nvidia-a100-80gb": 1}
    assert (await admitter.validate(request(2, first))).allowed  # and the next admission decides with it
    assert steps_seen.count("done") == 1


def test_the_first_context_is_built_at_once() -> None:
    _, admitter = world([running(1)])
    ctx = admitter.context()
    assert copy.copy(ctx.usage) == {"nlp": {"nvidia-a100-80gb": 1}}
