"""`accel serve`: once the state is ready the extender builds its index, then the heap is frozen."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import pytest

from cli.serve import ClusterDeps, make_component_app
from extender.app import EXTENDER, make_app, warm_up
from kube.fake import FakeCluster
from serving.cluster_state import ClusterState
from serving.metrics import Metrics
from tests.builders import inventory, node_object, shared_example_policy


@pytest.fixture
def unfreeze() -> Iterator[None]:
    yield
    gc.unfreeze()


def _state() -> ClusterState:
    return ClusterState.static(shared_example_policy(), inventory([node_object("n0"), node_object("n1")]))


def test_warm_up_builds_the_extender_index_only_when_it_can() -> None:
    state = _state()
    app = make_app(state, metrics=Metrics())
    state.ready = lambda *_: (False, "watches not synced")  # type: ignore[method-assign]
    assert warm_up(app) is False and app[EXTENDER].core is None
    del state.ready  # back to the class's method
    assert warm_up(app) is True and app[EXTENDER].core is not None
    assert warm_up(make_app(_state(), metrics=Metrics()).__class__()) is False  # not an extender app


@pytest.mark.usefixtures("unfreeze")
async def test_extender_app_freezes_the_heap_after_warming_its_index() -> None:
    cluster: Any = FakeCluster()
    deps = ClusterDeps(source=cluster, cas=cluster, binder=cluster, events=cluster, tokens=cluster)
    gc.unfreeze()
    state = _state()
    state.run = _forever  # type: ignore[method-assign]  # static state: no watches to run
    app = make_component_app("extender", state, deps, Metrics())
    contexts: list[Any] = [ctx(app) for ctx in app.cleanup_ctx]  # async generators
    for ctx in contexts:
        await ctx.__anext__()
    for _ in range(10):  # the state is ready at once: the task needs a few loop turns, no waiting
        await asyncio.sleep(0)
    assert gc.get_freeze_count() > 0
    assert app[EXTENDER].core is not None  # index built before the freeze
    for ctx in reversed(contexts):
        with pytest.raises(StopAsyncIteration):
            await ctx.__anext__()


async def _forever() -> None:
    await asyncio.Event().wait()
