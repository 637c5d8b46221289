"""FakeCluster keeps the API-server semantics the rest of accel relies on (CAS, binding, watch, faults)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest

from kube.errors import ApiError, Conflict, Gone, NotFound, Unreachable
from kube.fake import CONFIGMAP_MAX_BYTES, FakeCluster
from kube.names import LEDGER_CONFIGMAP, LEDGER_KEY
from kube.protocol import Binder, CasStore, EventRecorder, ObjectSource, TokenReviewer, WatchEvent
from kube.testing import RecordingSleep, make_node, make_pod, until


def test_fake_implements_every_protocol() -> None:
    cluster = FakeCluster()
    for protocol in (ObjectSource, CasStore, Binder, EventRecorder, TokenReviewer):
        assert isinstance(cluster, protocol), protocol.__name__


async def _increment(store: CasStore, times: int, conflicts: list[int]) -> None:
    """The ledger owner's loop: read, modify, write-if-unchanged, retry on conflict."""
    for _ in range(times):
        while True:
            data, version = await store.read(LEDGER_CONFIGMAP)
            count = json.loads(data.get(LEDGER_KEY, '{"n": 0}'))["n"]
            if await store.write(LEDGER_CONFIGMAP, {LEDGER_KEY: json.dumps({"n": count + 1})}, version):
                break
            conflicts.append(1)


async def test_cas_two_concurrent_writers_lose_no_update() -> None:
    cluster = FakeCluster(sleep=RecordingSleep())
    cluster.set_latency(0.01)  # every call yields, so the two writers interleave between read and write
    conflicts: list[int] = []
    await asyncio.gather(_increment(cluster, 25, conflicts), _increment(cluster, 25, conflicts))
    data, version = await cluster.read(LEDGER_CONFIGMAP)
    assert json.loads(data[LEDGER_KEY]) == {"n": 50}
    assert conflicts, "the writers never raced: the test would not catch a lost update"
    assert (
        version == cluster.get("configmaps", LEDGER_CONFIGMAP, "accel-system")["metadata"]["resourceVersion"]
    )


@pytest.mark.parametrize(("setup", "expected_version", "wins"), [
    pytest.param(None, None, True, id="create-when-absent-succeeds"),
    pytest.param({"k": "v"}, None, False, id="create-when-present-conflicts"),
    pytest.param(None, "5", False, id="replace-when-absent-conflicts"),
    pytest.param({"k": "v"}, "stale", False, id="replace-with-stale-version-conflicts"),
    pytest.param({"k": "v"}, "current", True, id="replace-with-current-version-succeeds"),
])
async def test_cas_write_table(
    setup: dict[str, str] | None, expected_version: str | None, wins: bool
) -> None:
    cluster = FakeCluster()
    if setup is not None:
        assert await cluster.write("doc", setup, None)
    _, current = await cluster.read("doc")
    version = current if expected_version == "current" else expected_version
    new_version = await cluster.write("doc", {"k": "new"}, version)
    data, stored_version = await cluster.read("doc")
    assert (new_version is not None) is wins
    assert (data == {"k": "new"}) is wins
    if wins:
        assert new_version == stored_version


async def test_cas_read_of_missing_document_returns_no_version() -> None:
    assert await FakeCluster().read("absent") == ({}, None)


async def test_bind_sets_node_merges_annotations_and_is_watched() -> None:
    cluster = FakeCluster()
    pod = cluster.apply(make_pod("p", "team-a", annotations={"keep": "1"}))
    _, rv = await cluster.list("pods")
    stream = cluster.watch("pods", rv)
    await cluster.bind(
        "team-a", "p", pod["metadata"]["uid"], "gpu-1", {"accelerator.opendatahub.io/type": "x"}
    )
    event = await anext(stream)
    assert event.type == "MODIFIED"
    assert event.object["spec"]["nodeName"] == "gpu-1"
    assert event.object["metadata"]["annotations"] == {"keep": "1", "accelerator.opendatahub.io/type": "x"}
    (scheduled,) = [c for c in event.object["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert (
        scheduled["status"] == "True" and scheduled["lastTransitionTime"]
    )  # stamped, as the API server does
    await stream.aclose()


@pytest.mark.parametrize(("name", "uid", "error"), [
    pytest.param("bound", None, Conflict, id="already-bound-conflicts"),
    pytest.param("free", "other-uid", Conflict, id="uid-mismatch-conflicts"),
    pytest.param("ghost", "", NotFound, id="missing-pod-not-found"),
])
async def test_bind_errors(name: str, uid: str | None, error: type[Exception]) -> None:
    cluster = FakeCluster()
    cluster.apply(make_pod("bound", "ns", node="gpu-0", uid="u-bound"))
    cluster.apply(make_pod("free", "ns", uid="u-free"))
    with pytest.raises(error):
        await cluster.bind("ns", name, uid if uid is not None else f"u-{name}", "gpu-1", {})
    assert (cluster.get("pods", "free", "ns") or {})["spec"].get("nodeName") is None


async def test_two_concurrent_binds_exactly_one_wins() -> None:
    cluster = FakeCluster()
    cluster.apply(make_pod("p", "ns", uid="u"))
    results = await asyncio.gather(
        cluster.bind("ns", "p", "u", "n1", {}), cluster.bind("ns", "p", "u", "n2", {}), return_exceptions=True
    )
    assert sorted(type(r).__name__ for r in results) == ["Conflict", "NoneType"]


async def test_watch_replays_from_version_in_order_and_filters() -> None:
    cluster = FakeCluster()
    _, rv = await cluster.list("pods")
    cluster.apply(make_pod("a", "ns1"))
    cluster.apply(make_node("n"))
    cluster.apply(make_pod("b", "ns2"))
    cluster.delete("pods", "a", "ns1")
    events = [e async for e in _take(cluster.watch("pods", rv), 3)]
    assert [(e.type, e.object["metadata"]["name"]) for e in events] == [
        ("ADDED", "a"),
        ("ADDED", "b"),
        ("DELETED", "a"),
    ]
    only_ns2 = [e async for e in _take(cluster.watch("pods", rv, "ns2"), 1)]
    assert [e.object["metadata"]["name"] for e in only_ns2] == ["b"]


async def _take(stream: object, n: int):  # type: ignore[no-untyped-def]
    it = stream.__aiter__()  # type: ignore[attr-defined]
    for _ in range(n):
        yield await anext(it)
    await it.aclose()


async def test_history_replays_each_version_as_it_was_and_hands_out_private_copies() -> None:
    """The history shares stored objects (no copy per write), so nothing may change them later."""
    cluster = FakeCluster()
    _, rv = await cluster.list("configmaps")
    first = await cluster.write("ledger", {"k": "1"}, None)
    await cluster.write("ledger", {"k": "2"}, first)
    cluster.apply(make_pod("p", "ns", uid="u"))
    await cluster.bind("ns", "p", "u", "n1", {"a": "b"})
    cluster.delete("configmaps", "ledger", cluster.controller_namespace)
    replay = [e async for e in _take(cluster.watch("configmaps", rv), 3)]
    seen = [
        (e.type, e.object["metadata"]["resourceVersion"], (e.object.get("data") or {}).get("k"))
        for e in replay
    ]
    assert seen[:2] == [("ADDED", first, "1"), ("MODIFIED", str(int(first) + 1), "2")]
    assert seen[2][0] == "DELETED" and int(seen[2][1]) > int(first) + 1
    replay[0].object["data"]["k"] = "tampered"
    again = [e async for e in _take(cluster.watch("configmaps", rv), 1)]
    assert again[0].object["data"]["k"] == "1"
    pods = [e async for e in _take(cluster.watch("pods", rv), 2)]
    assert "nodeName" not in pods[0].object["spec"] and pods[1].object["spec"]["nodeName"] == "n1"


async def test_watch_from_compacted_version_is_gone_and_history_limit_compacts() -> None:
    cluster = FakeCluster(history_limit=2)
    _, rv = await cluster.list("nodes")
    for i in range(3):
        cluster.apply(make_node(f"n{i}"))
    with pytest.raises(Gone):
        await anext(cluster.watch("nodes", rv))
    cluster.compact()
    _, fresh_rv = await cluster.list("nodes")
    stream = cluster.watch("nodes", fresh_rv)
    cluster.apply(make_node("n9"))
    assert (await anext(stream)).object["metadata"]["name"] == "n9"
    await stream.aclose()


async def test_faults_unreachable_and_fail_next() -> None:
    cluster = FakeCluster()
    cluster.fail_next("list nodes", Unreachable("boom"))
    with pytest.raises(Unreachable):
        await cluster.list("nodes")
    assert (await cluster.list("nodes"))[0] == []
    _, rv = await cluster.list("nodes")
    stream = cluster.watch("nodes", rv)
    pending = asyncio.ensure_future(anext(stream))
    await until(lambda: cluster.open_watches == 1)
    cluster.set_unreachable(True)
    with pytest.raises(Unreachable):
        await pending
    for call in (cluster.list("pods"), cluster.read("x"), cluster.review("t")):
        with pytest.raises(Unreachable):
            await call
    await cluster.record(make_node("n"), "R", "m")  # best effort: swallowed
    assert list(cluster.events) == []


async def test_bookmark_carries_current_version() -> None:
    cluster = FakeCluster()
    _, rv = await cluster.list("nodes")
    stream = cluster.watch("nodes", rv)
    pending = asyncio.ensure_future(anext(stream))
    await until(lambda: cluster.open_watches == 1)
    cluster.apply(make_pod("p", "ns"))  # another kind moves the version
    cluster.bookmark()
    event: WatchEvent = await pending
    assert (event.type, event.resource_version) == ("BOOKMARK", cluster.resource_version)


async def test_events_and_token_reviews() -> None:
    cluster = FakeCluster(now=lambda: datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
    await cluster.record(
        cluster.apply(make_pod("p", "ns")), "PolicyRejected", "teams.yaml: bad", type="Warning"
    )
    (event,) = cluster.events
    assert event["involvedObject"]["kind"] == "Pod" and event["involvedObject"]["namespace"] == "ns"
    assert (event["reason"], event["type"], event["lastTimestamp"]) == (
        "PolicyRejected",
        "Warning",
        "2025-01-02T03:04:05Z",
    )
    cluster.add_token("t0k", "system:serviceaccount:a:b", ("system:serviceaccounts",))
    user = await cluster.review("t0k")
    assert (user.authenticated, user.username, user.groups) == (
        True,
        "system:serviceaccount:a:b",
        ("system:serviceaccounts",),
    )
    assert not (await cluster.review("nope")).authenticated


def test_apply_rejects_unknown_kind_with_fix() -> None:
    with pytest.raises(ValueError, match="unsupported kind 'Service'"):
        FakeCluster().apply({"kind": "Service", "metadata": {"name": "s"}})


async def test_a_configmap_over_one_mib_is_refused_as_the_api_server_refuses_it() -> None:
    fake = FakeCluster()
    key = "ledger.json"
    fits = {key: "x" * (CONFIGMAP_MAX_BYTES - len(key))}  # keys count too: exactly 1 MiB in all
    version = await fake.write("accel-quota-ledger", fits, None)
    assert version is not None
    with pytest.raises(ApiError) as refused:
        await fake.write("accel-quota-ledger", {key: fits[key] + "é"}, version)  # 2 bytes over
    assert refused.value.status == 422
    assert refused.value.message == (
        'ConfigMap "accel-quota-ledger" is invalid: []: Too long: must have at most 1048576 bytes'
    )
    assert (await fake.read("accel-quota-ledger")) == (fits, version)  # nothing stored
    with pytest.raises(ApiError):
        fake.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big", "namespace": "x"},
                    "binaryData": {"a": "x" * CONFIGMAP_MAX_BYTES}})
