"""kube/real.py against a loopback HTTP API server speaking the real REST paths.

The server is a thin aiohttp adapter over `FakeCluster` (same semantics as the unit tests), so
these tests exercise what the unit tests cannot: kubernetes_asyncio auth/transport, URL and query
spelling, chunked watch streams with JSON lines, watch ERROR events carrying 410, HTTP 409/404
mapping, dropped connections — and they record every request for the RBAC table check.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from kubernetes_asyncio.client import ApiClient, Configuration

from kube import real
from kube.errors import Conflict, Gone, KubeError, NotFound, Unreachable
from kube.fake import FakeCluster
from kube.informer import Backoff, Informer
from kube.names import LEDGER_CONFIGMAP, LEDGER_KEY
from kube.permissions import API_CALLS, CALLS_BY_METHOD
from kube.real import KubeCluster
from kube.testing import RecordingSleep, make_node, make_pod

STATUS_CODES = {Gone: 410, Conflict: 409, NotFound: 404, Unreachable: 503}


def _status(exc: Exception) -> web.Response:
    code = next((c for t, c in STATUS_CODES.items() if isinstance(exc, t)), 500)
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": str(exc), "code": code}
    return web.json_response(body, status=code)


def make_api_server(cluster: FakeCluster, seen: list[tuple[str, str, str]]) -> web.Application:
    """REST adapter: records (group, resource, verb) of each request, answers from `cluster`."""

    async def collection(request: web.Request) -> web.StreamResponse:
        kind, ns = request.match_info["plural"], request.match_info.get("ns")
        name = request.query.get("fieldSelector", "").removeprefix("metadata.name=") or None
        if request.query.get("watch") in ("1", "true"):
            seen.append(("", kind, "watch"))
            assert request.query["allowWatchBookmarks"] == "true" and request.query["timeoutSeconds"]
            return await _watch(request, kind, ns, name)
        seen.append(("", kind, "list"))
        try:
            items, rv = await cluster.list(kind, ns, name=name)  # type: ignore[arg-type]
        except KubeError as exc:
            return _status(exc)
        for item in items:  # the API server omits apiVersion/kind on list items
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return web.json_response({"kind": "List", "metadata": {"resourceVersion": rv}, "items": items})

    async def _watch(request: web.Request, kind: str, ns: str | None, name: str | None) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        try:
            async for event in cluster.watch(kind, request.query["resourceVersion"], ns, name=name):  # type: ignore[arg-type]
                await response.write(
                    json.dumps({"type": event.type, "object": event.object}).encode() + b"\n"
                )
        except Gone as exc:  # the API server reports an expired version in-stream, as an ERROR event
            status = {
                "kind": "Status",
                "status": "Failure",
                "message": str(exc),
                "reason": "Expired",
                "code": 410,
            }
            await response.write(json.dumps({"type": "ERROR", "object": status}).encode() + b"\n")
        except Unreachable:
            assert request.transport is not None
            request.transport.abort()  # a dropped connection mid-stream
            return response
        await response.write_eof()
        return response

    async def configmap(request: web.Request) -> web.Response:
        name = request.match_info.get("name")
        try:
            if request.method == "GET":
                seen.append(("", "configmaps", "get"))
                data, version = await cluster.read(name or "")
                if version is None:
                    raise NotFound(f'configmaps "{name}" not found')
                return web.json_response(
                    {"metadata": {"name": name, "resourceVersion": version}, "data": data}
                )
            body = await request.json()
            seen.append(("", "configmaps", "create" if request.method == "POST" else "update"))
            expected = body["metadata"].get("resourceVersion") if request.method == "PUT" else None
            version = await cluster.write(body["metadata"]["name"], body["data"], expected)
            if version is None:
                raise Conflict(
                    "the object has been modified; please apply your changes to the latest version"
                )
            return web.json_response(
                {**body, "metadata": {**body["metadata"], "resourceVersion": version}}, status=201
            )
        except KubeError as exc:
            return _status(exc)

    async def lease(request: web.Request) -> web.Response:
        name = request.match_info.get("name")
        group = "coordination.k8s.io"
        try:
            if request.method == "GET":
                seen.append((group, "leases", "get"))
                found, version = await cluster.read_lease(name or "")
                if version is None:
                    raise NotFound(f'leases.coordination.k8s.io "{name}" not found')
                return web.json_response(found)
            body = await request.json()
            seen.append((group, "leases", "create" if request.method == "POST" else "update"))
            expected = body["metadata"].get("resourceVersion") if request.method == "PUT" else None
            version = await cluster.write_lease(
                body["metadata"]["name"], body["spec"], body["metadata"].get("annotations") or {}, expected
            )
            if version is None:
                raise Conflict("the object has been modified")
            return web.json_response(
                {**body, "metadata": {**body["metadata"], "resourceVersion": version}}, status=201
            )
        except KubeError as exc:
            return _status(exc)

    async def binding(request: web.Request) -> web.Response:
        seen.append(("", "pods/binding", "create"))
        body = await request.json()
        assert body["target"] == {"apiVersion": "v1", "kind": "Node", "name": body["target"]["name"]}
        meta = body["metadata"]
        try:
            await cluster.bind(
                request.match_info["ns"],
                request.match_info["name"],
                meta.get("uid", ""),
                body["target"]["name"],
                meta.get("annotations") or {},
            )
        except KubeError as exc:
            return _status(exc)
        return web.json_response({"kind": "Status", "status": "Success", "code": 201}, status=201)

    async def events(request: web.Request) -> web.Response:
        seen.append(("", "events", "create"))
        cluster.events.append(await request.json())
        return web.json_response({}, status=201)

    async def tokenreviews(request: web.Request) -> web.Response:
        seen.append(("authentication.k8s.io", "tokenreviews", "create"))
        user = await cluster.review((await request.json())["spec"]["token"])
        status = {
            "authenticated": user.authenticated,
            "user": {"username": user.username, "groups": list(user.groups)},
        }
        return web.json_response({"status": status}, status=201)

    app = web.Application()
    app.router.add_route("*", "/api/v1/namespaces/{ns}/configmaps/{name}", configmap)
    app.router.add_post("/api/v1/namespaces/{ns}/configmaps", configmap)
    app.router.add_route("*", "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}", lease)
    app.router.add_post("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases", lease)
    app.router.add_post("/api/v1/namespaces/{ns}/pods/{name}/binding", binding)
    app.router.add_post("/api/v1/namespaces/{ns}/events", events)
    app.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", tokenreviews)
    app.router.add_get("/api/v1/namespaces/{ns}/{plural}", collection)
    app.router.add_get("/api/v1/{plural}", collection)
    return app


@pytest.fixture
async def wired() -> AsyncIterator[tuple[FakeCluster, KubeCluster, list[tuple[str, str, str]]]]:
    cluster, seen = FakeCluster(), []  # type: ignore[var-annotated]
    runner = web.AppRunner(make_api_server(cluster, seen))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    configuration = Configuration(host=f"http://127.0.0.1:{port}")
    configuration.api_key = {"BearerToken": "test-token"}
    kube = KubeCluster(ApiClient(configuration), request_timeout_s=5)
    yield cluster, kube, seen
    await kube.close()
    cluster.end_watches()  # server-side watch handlers block on the fake; end them so shutdown is prompt
    await runner.cleanup()


async def eventually(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Poll with a deadline: the loopback server is real IO, not a fake clock."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.005)


async def test_informer_over_http_follows_events_relists_on_410_and_recovers(wired) -> None:  # type: ignore[no-untyped-def]
    cluster, kube, _ = wired
    cluster.apply(make_node("gpu-1"))
    sleep = RecordingSleep()
    informer = Informer(kube.source, "nodes", sleep=sleep, rand=lambda: 0.0, backoff=Backoff(initial_s=0.5))
    task = asyncio.create_task(informer.run())
    names = lambda: sorted(o["metadata"]["name"] for o in informer.items())  # noqa: E731
    await eventually(lambda: informer.synced and cluster.open_watches == 1)
    assert informer.items()[0]["kind"] == "Node" and informer.items()[0]["apiVersion"] == "v1"
    cluster.apply(make_node("gpu-2"))
    await eventually(lambda: names() == ["gpu-1", "gpu-2"])

    cluster.compact()  # in-stream ERROR 410 -> relist, no backoff
    cluster.delete("nodes", "gpu-1")
    await eventually(lambda: names() == ["gpu-2"] and informer.relists == 2)
    assert sleep.delays == []

    await eventually(lambda: cluster.open_watches == 1)
    cluster.set_unreachable(True)  # connection dropped, then 503s
    await eventually(lambda: len(sleep.delays) >= 3)
    assert "Unreachable" in (informer.last_error or "") or "ApiError" in (informer.last_error or "")
    cluster.apply(make_node("gpu-3"))
    cluster.set_unreachable(False)
    await eventually(lambda: names() == ["gpu-2", "gpu-3"] and not informer.failing)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_cas_over_http_two_writers_lose_no_update(wired) -> None:  # type: ignore[no-untyped-def]
    _, kube, _ = wired
    conflicts = 0

    async def bump(times: int) -> None:
        nonlocal conflicts
        for _ in range(times):
            while True:
                data, version = await kube.cas.read(LEDGER_CONFIGMAP)
                n = json.loads(data.get(LEDGER_KEY, "0"))
                await asyncio.sleep(0)
                if await kube.cas.write(LEDGER_CONFIGMAP, {LEDGER_KEY: json.dumps(n + 1)}, version):
                    break
                conflicts += 1

    await asyncio.gather(bump(10), bump(10))
    assert json.loads((await kube.cas.read(LEDGER_CONFIGMAP))[0][LEDGER_KEY]) == 20
    assert conflicts > 0
    assert await kube.cas.read("absent") == ({}, None)


async def test_bind_events_and_token_review_over_http(wired) -> None:  # type: ignore[no-untyped-def]
    cluster, kube, _ = wired
    pod = cluster.apply(make_pod("p", "team-a"))
    await kube.binder.bind(
        "team-a", "p", pod["metadata"]["uid"], "gpu-1", {"accelerator.opendatahub.io/type": "x"}
    )
    bound = cluster.get("pods", "p", "team-a") or {}
    assert bound["spec"]["nodeName"] == "gpu-1"
    assert bound["metadata"]["annotations"]["accelerator.opendatahub.io/type"] == "x"
    with pytest.raises(Conflict, match="already assigned"):
        await kube.binder.bind("team-a", "p", pod["metadata"]["uid"], "gpu-2", {})
    with pytest.raises(NotFound):
        await kube.binder.bind("team-a", "ghost", "", "gpu-2", {})

    await kube.events.record(pod, "Bound", "bound to gpu-1")
    assert (
        cluster.events[-1]["involvedObject"]["name"] == "p"
        and cluster.events[-1]["metadata"]["namespace"] == "team-a"
    )
    cluster.set_unreachable(True)
    await kube.events.record(pod, "Bound", "lost")  # best effort: must not raise
    cluster.set_unreachable(False)

    cluster.add_token("good", "alice", ("devs",))
    assert (await kube.tokens.review("good")).groups == ("devs",)
    assert not (await kube.tokens.review("bad")).authenticated


def test_every_real_method_is_in_the_permission_table() -> None:
    methods = {
        f"{cls.__name__}.{name}"
        for cls in (
            real.KubeObjectSource,
            real.KubeCasStore,
            real.KubeLeaseStore,
            real.KubeBinder,
            real.KubeEventRecorder,
            real.KubeTokenReviewer,
            real.KubeAnnotator,
        )
        for name, fn in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }
    assert methods == set(CALLS_BY_METHOD)


async def test_requests_sent_are_exactly_those_the_tables_declare(wired) -> None:  # type: ignore[no-untyped-def]
    cluster, kube, seen = wired
    cluster.apply(make_pod("p", "ns"))
    await kube.source.list("pods")
    await kube.source.list("configmaps", "accel-system", name="accel-policy")
    await kube.cas.write("doc", {"a": "1"}, None)
    _, version = await kube.cas.read("doc")
    await kube.cas.write("doc", {"a": "2"}, version)
    leases, lease = kube.leases, "accel-quota-ledger-leader"
    assert await leases.read_lease(lease) == ({}, None)
    first = await leases.write_lease(lease, {"holderIdentity": "a"}, {"k": "v"}, None)
    assert first is not None
    assert await leases.write_lease(lease, {"holderIdentity": "b"}, {}, None) is None  # exists already
    found, version = await leases.read_lease(lease)
    assert version == first and found["spec"]["holderIdentity"] == "a"
    assert found["metadata"]["annotations"] == {"k": "v"}
    assert await leases.write_lease(lease, {"holderIdentity": "b"}, {}, version)
    assert await leases.write_lease(lease, {"holderIdentity": "c"}, {}, version) is None  # stale version
    await kube.binder.bind("ns", "p", "", "n", {})
    await kube.events.record(make_node("n"), "R", "m")
    await kube.tokens.review("t")
    declared = {(g, r, v) for calls in CALLS_BY_METHOD.values() for g, r, v in calls}
    for group, resource, verb in seen:
        assert (group, "<kind>" if verb in ("list", "watch") else resource, verb) in declared
    granted = {
        (c.api_group, c.resource, c.verb) for comp in ("webhook", "extender", "api") for c in API_CALLS[comp]
    }
    assert set(seen) <= granted
