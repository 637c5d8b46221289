"""Informer and ClusterWatcher against FakeCluster: sync, events, relist on 410, backoff, readiness."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from kube.errors import ApiError, Gone
from kube.fake import FakeCluster
from kube.informer import Backoff, ClusterWatcher, Informer
from kube.testing import (
    ManualClock,
    RecordingSleep,
    make_configmap,
    make_namespace,
    make_node,
    make_pod,
    until,
)

BACKOFF = Backoff(initial_s=0.5, max_s=4.0, factor=2.0, jitter=0.5)


@pytest.fixture
def cluster() -> FakeCluster:
    fake = FakeCluster()
    fake.apply(make_node("gpu-1"))
    fake.apply(make_pod("a", "team-a"))
    return fake


class Harness:
    def __init__(self, cluster: FakeCluster, kind: str = "pods") -> None:
        self.clock = ManualClock()
        self.sleep = RecordingSleep(self.clock)
        self.informer = Informer(cluster, kind, backoff=BACKOFF, clock=self.clock, sleep=self.sleep,  # type: ignore[arg-type]
                                 rand=lambda: 0.0)
        self.seen: list[tuple[str, str]] = []
        self.informer.add_callback(lambda t, o: self.seen.append((t, o["metadata"]["name"])))
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Harness:
        self.task = asyncio.create_task(self.informer.run())
        await until(lambda: self.informer.synced)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task

    def names(self) -> list[str]:
        return sorted(o["metadata"]["name"] for o in self.informer.items())


@pytest.mark.parametrize(
    "delta",
    [
        pytest.param(lambda c: c.apply(make_pod("b", "team-a")), id="pod-added"),
        pytest.param(lambda c: c.delete("pods", "a", "team-a"), id="pod-deleted"),
        pytest.param(
            lambda c: c.apply({**make_pod("a", "team-a"), "spec": {"nodeName": "gpu-1"}}), id="pod-modified"
        ),
    ],
)
async def test_watch_events_keep_store_equal_to_cluster(
    cluster: FakeCluster, delta: Callable[[FakeCluster], object]
) -> None:
    async with Harness(cluster) as h:
        before = h.informer.version
        delta(cluster)
        await until(lambda: h.informer.version > before)
        expected, _ = await cluster.list("pods")
        assert sorted(map(str, h.informer.items())) == sorted(map(str, expected))
        assert h.informer.relists == 1


async def test_initial_list_fires_added_callbacks_and_marks_synced(cluster: FakeCluster) -> None:
    async with Harness(cluster) as h:
        assert h.names() == ["a"]
        assert h.seen == [("ADDED", "a")]
        assert h.informer.last_sync == h.clock.now
        assert h.informer.get("team-a/a") is not None


async def test_compaction_410_relists_immediately_without_backoff(cluster: FakeCluster) -> None:
    async with Harness(cluster) as h:
        await until(lambda: cluster.open_watches == 1)
        cluster.compact()
        cluster.apply(make_pod("b", "team-a"))
        cluster.delete("pods", "a", "team-a")
        await until(lambda: h.names() == ["b"])
        assert h.informer.relists == 2
        assert h.sleep.delays == []
        assert ("DELETED", "a") in h.seen and ("ADDED", "b") in h.seen


async def test_410_on_watch_after_relist_backs_off_instead_of_spinning(cluster: FakeCluster) -> None:
    async with Harness(cluster) as h:
        await until(lambda: cluster.open_watches == 1)
        cluster.fail_next("watch pods", Gone("still too old"))  # the watch after the relist fails too
        cluster.compact()
        await until(lambda: h.informer.relists == 3 and not h.informer.failing and cluster.open_watches == 1)
        assert h.sleep.delays == [0.5]


async def test_unreachable_api_backs_off_exponentially_then_recovers(cluster: FakeCluster) -> None:
    async with Harness(cluster) as h:
        await until(lambda: cluster.open_watches == 1)
        cluster.set_unreachable(True)
        cluster.apply(make_pod("missed-while-down", "team-a"))  # another client still writes
        await until(lambda: len(h.sleep.delays) >= 5)
        assert h.sleep.delays[:5] == [0.5, 1.0, 2.0, 4.0, 4.0]
        assert h.informer.failing and "Unreachable" in (h.informer.last_error or "")
        cluster.set_unreachable(False)
        await until(lambda: not h.informer.failing)
        assert h.names() == ["a", "missed-while-down"]
        retries = len(h.sleep.delays)
        cluster.fail_next("pods", ApiError(500, "etcd timeout"))
        cluster.end_watches()
        await until(lambda: len(h.sleep.delays) > retries and not h.informer.failing)
        assert h.sleep.delays[retries] == 0.5  # backoff was reset by the successful relist


async def test_clean_watch_end_resumes_without_relist(cluster: FakeCluster) -> None:
    async with Harness(cluster) as h:
        await until(lambda: cluster.open_watches == 1)
        cluster.end_watches()
        await until(lambda: cluster.calls.count(("watch", "pods")) == 2)
        cluster.apply(make_pod("after", "team-a"))
        await until(lambda: "after" in h.names())
        assert h.informer.relists == 1


async def test_callback_errors_do_not_stop_the_informer(cluster: FakeCluster) -> None:
    async with Harness(cluster) as h:
        h.informer.add_callback(lambda t, o: 1 / 0)
        cluster.apply(make_pod("b", "team-a"))
        cluster.apply(make_pod("c", "team-a"))
        await until(lambda: h.names() == ["a", "b", "c"])


def test_backoff_delay_grows_caps_and_jitters() -> None:
    b = Backoff(initial_s=1.0, max_s=10.0, factor=2.0, jitter=0.5)
    assert [b.delay(n, 0.0) for n in range(6)] == [1, 2, 4, 8, 10, 10]
    assert b.delay(1, 1.0) == 3.0
    assert b.delay(10_000, 0.0) == 10.0


async def _watcher(cluster: FakeCluster) -> tuple[ClusterWatcher, ManualClock, asyncio.Task[None]]:
    clock = ManualClock()
    watcher = ClusterWatcher(cluster, clock=clock, sleep=RecordingSleep(), backoff=BACKOFF, rand=lambda: 0.0)
    return watcher, clock, asyncio.create_task(watcher.run())


async def test_cluster_watcher_readiness_follows_sync_failure_and_recovery(cluster: FakeCluster) -> None:
    cluster.apply(make_namespace("team-a"))
    cluster.apply(make_configmap("accel-policy", "accel-system", {"settings.yaml": "mode: enforce\n"}))
    cluster.apply(make_configmap("other", "accel-system", {}))
    watcher, clock, task = await _watcher(cluster)
    ok, reason = watcher.fresh(30)
    assert not ok and "not synced" in reason
    await watcher.wait_synced()
    assert watcher.fresh(30) == (True, "all informers synced and fresh")
    assert [o["metadata"]["name"] for o in watcher.policy.items()] == ["accel-policy"]

    clock.advance(120)  # quiet cluster: old last_sync alone is not a failure
    assert watcher.fresh(30)[0]
    cluster.bookmark()
    await until(lambda: all(i.last_sync == clock.now for i in watcher.informers))

    cluster.set_unreachable(True)
    await until(lambda: all(i.failing for i in watcher.informers))
    assert watcher.fresh(30)[0]  # failing, but not for longer than max_age yet
    clock.advance(31)
    ok, reason = watcher.fresh(30)
    assert not ok and "nodes: no successful list/watch for 31.0s" in reason and "Unreachable" in reason

    cluster.set_unreachable(False)
    await until(lambda: not any(i.failing for i in watcher.informers))
    assert watcher.fresh(30)[0]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_resource_version_is_the_last_list_event_or_bookmark_applied(cluster: FakeCluster) -> None:
    """Rule 8: the store reflects every change up to `resource_version` (the ledger's watermark)."""
    async with Harness(cluster) as h:
        assert h.informer.resource_version == cluster.resource_version  # the list's version
        cluster.apply(make_pod("b", "team-a"))
        await until(lambda: h.informer.resource_version == cluster.resource_version)
        assert "b" in h.names()
        cluster.apply(make_node("gpu-2"))  # another kind: the pods' version does not move...
        assert h.informer.resource_version != cluster.resource_version
        cluster.bookmark()  # ...until a BOOKMARK says nothing of this kind changed up to it
        await until(lambda: h.informer.resource_version == cluster.resource_version)
