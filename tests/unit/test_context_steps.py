"""webhook.admitter: with other admissions in flight, a new state generation is built by a task in
steps (accel.admission.context.context_steps) while admissions decide with the previous generation's
context; alone, an admission builds it at once. The context is the same as one built at once, a
synchronous `context()` or a cancelled task finishes the build (never left half done), a failing
build fails the next admission visibly, and quota stays exact."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

import webhook.admitter as admitter_module
from accel.admission.context import AdmissionContext, build_context, context_steps
from accel.quota.steps import finish_steps
from kube.fake import FakeCluster
from serving.cluster_state import ClusterState
from serving.ledger import LedgerClient
from serving.metrics import Metrics
from tests.builders import example_policy, gpu_pod, make_inventory, review
from tests.unit.test_validation_memo import stored
from webhook.admitter import Admitter
from webhook.app import ADMITTER, make_app
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


async def test_alone_an_admission_waits_for_the_new_generation(steps_seen: list[str]) -> None:
    """Nothing else in flight (a sequential caller): it decides with the newest generation."""
    state, admitter = world([running(1)])
    first = admitter.context()
    steps_seen.clear()
    state.update_static(inventory=make_inventory([running(1), running(2)]), watermark=2)
    admitter.in_flight = 1  # this admission only (webhook.app counts it)
    assert (await admitter.validate(request(1, first))).allowed
    assert steps_seen[-1] == "done" and admitter._steps is None
    assert admitter._ctx is not None and admitter._ctx.usage["nlp"] == {"nvidia-a100-80gb": 2}


async def test_with_others_in_flight_a_task_builds_it_and_quota_stays_exact(steps_seen: list[str]) -> None:
    """Team quota 4: one pod running, two admitted (in the ledger). The next generation shows the
    admitted pods; six admissions race it while others are in flight. They decide with the previous
    generation until a task has built the new one in steps, with the event loop running between
    them; exactly one more pod fits, whichever generation decided."""
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
    admitter.in_flight = 6
    answers = []
    for n in range(3, 6):  # one per turn of the event loop while the task builds
        answers.append(asyncio.ensure_future(admitter.validate(request(n, first))))
        await asyncio.sleep(0)
    assert admitter._builder is not None
    await admitter._builder
    assert steps_seen.count("step") >= 2 and steps_seen[-1] == "done" and admitter._steps is None
    answers += [asyncio.ensure_future(admitter.validate(request(n, first))) for n in range(6, 9)]
    outcomes = sorted((a.allowed, a.reason) for a in await asyncio.gather(*answers))
    assert outcomes == [(False, "quota-exceeded")] * 5 + [(True, "allowed")]
    new = admitter.context().generation
    assert generations[:3] == [first.generation] * 3  # none waited for the build
    assert new != first.generation and generations[3:] == [new] * 3  # then the new one is in force
    assert admitter._ctx is not None and admitter._ctx.usage["nlp"] == {"nvidia-a100-80gb": 3}


async def test_a_synchronous_context_finishes_the_build(steps_seen: list[str]) -> None:
    state, admitter = world([running(1)])
    first = admitter.context()
    steps_seen.clear()
    state.update_static(inventory=make_inventory([running(1), running(2)]), watermark=2)
    admitter.in_flight = 2
    assert (await admitter.mutate(request(1, first))).allowed  # starts the task (mutate never awaits)
    for _ in range(3):
        await asyncio.sleep(0)
    assert admitter._steps is not None and "step" in steps_seen and "done" not in steps_seen
    now = admitter.context()  # e.g. the reconciler: finishes the steps at once, builds nothing more
    assert steps_seen[-1] == "done" and steps_seen.count("step") >= 2 and admitter._steps is None
    assert now is not first and now.usage["nlp"] == {"nvidia-a100-80gb": 2}
    assert admitter._builder is not None
    await admitter._builder
    assert admitter.context() is now and steps_seen.count("done") == 1


async def test_a_cancelled_build_still_puts_the_new_generation_in_force(steps_seen: list[str]) -> None:
    """The loop closing cancels the task: its steps are finished (the watch ids stay whole)."""
    state, admitter = world([])
    first = admitter.context()
    steps_seen.clear()
    state.update_static(inventory=make_inventory([running(1)]), watermark=2)
    admitter.in_flight = 2
    await admitter.mutate(request(1, first))
    await asyncio.sleep(0)
    assert admitter._steps is not None and admitter._builder is not None
    admitter._builder.cancel()
    with pytest.raises(asyncio.CancelledError):
        await admitter._builder
    assert admitter._steps is None and steps_seen[-1] == "done" and steps_seen.count("done") == 1
    assert admitter._ctx is not None and admitter._ctx.usage["nlp"] == {"nvidia-a100-80gb": 1}


async def test_a_failing_build_fails_the_next_admission_visibly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never decisions from an old generation forever: after a build raised in the task, the next
    admission builds at once and gets the error."""
    state, admitter = world([])
    first = admitter.context()

    def broken(*args: Any, **kwargs: Any) -> Iterator[None]:
        yield
        raise RuntimeError("broken build")

    monkeypatch.setattr(admitter_module, "context_steps", broken)
    state.update_static(inventory=make_inventory([running(1)]), watermark=2)
    admitter.in_flight = 2
    await admitter.validate(request(1, first))  # decided with the previous generation
    assert admitter._builder is not None
    await admitter._builder
    with pytest.raises(RuntimeError, match="broken build"):
        await admitter.validate(request(2, first))


async def test_the_webhook_counts_the_admissions_in_flight() -> None:
    """webhook.app counts every admission it is answering (GPU, plain, malformed), so a build waits
    for no one when alone and never sees a count left behind by a failed request."""
    state = ClusterState.static(example_policy(teams=TEAMS), make_inventory([]), watermark=1)
    store = FakeCluster()
    app = make_app(state, metrics=Metrics(), ledger_store=store, clock=lambda: 1.0, replica_id="t")
    admitter = app[ADMITTER]
    seen: list[int] = []
    validate = admitter.validate

    async def counting(request: AdmissionRequest) -> Any:
        seen.append(admitter.in_flight)
        return await validate(request)

    admitter.validate = counting  # type: ignore[method-assign]
    first = admitter.context()
    plain = gpu_pod(profile=None, gpus=None)
    async with TestClient(TestServer(app)) as client:
        bodies = [review(stored(gpu_pod(profile="a100-80gb", gpus="1"), first, n=n), uid=f"r{n}")
                  for n in range(1, 4)]
        answers = await asyncio.gather(
            *(client.post("/validate", json=body) for body in bodies),
            client.post("/validate", json=review(plain, uid="plain")),
            client.post("/validate", data=b"{not json"),
        )
        assert [a.status for a in answers] == [200, 200, 200, 200, 400]
    assert max(seen) >= 2 and admitter.in_flight == 0
