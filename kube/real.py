"""kubernetes_asyncio implementations of the `kube.protocol` Protocols, over `RestTransport`.

Every method here makes exactly the API calls listed for it in `kube.permissions.CALLS_BY_METHOD`
(a test keeps the two in sync, and the RBAC manifests are checked against `API_CALLS`).
Watches ask for bookmarks and a server-side timeout; a watch `ERROR` event carrying a `Status`
(410 Gone above all) is raised as the typed error, so `Informer` relists.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Literal

from kubernetes_asyncio.client import ApiClient

from kube.errors import Conflict, NotFound, error_for_status
from kube.events import build_event
from kube.names import DEFAULT_CONTROLLER_NAMESPACE, EVENT_SOURCE_COMPONENT, RESOURCES, Kind
from kube.protocol import JsonObject, ReviewedUser, WatchEvent
from kube.rest import Query, RestTransport

log = logging.getLogger(__name__)
WATCH_READ_GRACE_S = 30.0  # silence tolerated beyond timeoutSeconds before the stream counts as dead


class KubeObjectSource:
    """`ObjectSource`: GET collection (list) and GET ?watch=1 (watch)."""

    def __init__(self, transport: RestTransport) -> None:
        self._rest = transport

    async def list(
        self, kind: Kind, namespace: str | None = None, *, name: str | None = None
    ) -> tuple[list[JsonObject], str]:
        info = RESOURCES[kind]
        body = await self._rest.request("GET", info.collection_path(namespace), query=_selector(name))
        version = info.api_prefix.removeprefix("/api/").removeprefix("/apis/")
        items = [
            {"apiVersion": version, "kind": info.object_kind, **item} for item in body.get("items") or []
        ]
        return items, str((body.get("metadata") or {}).get("resourceVersion", ""))

    async def watch(
        self,
        kind: Kind,
        resource_version: str,
        namespace: str | None = None,
        *,
        name: str | None = None,
        timeout_s: float | None = None,
    ) -> AsyncIterator[WatchEvent]:
        info = RESOURCES[kind]
        server_timeout = int(timeout_s) if timeout_s else 300
        query: Query = [("watch", "1"), ("allowWatchBookmarks", "true"),
                        ("resourceVersion", resource_version), ("timeoutSeconds", str(server_timeout)),
                        *_selector(name)]
        lines = self._rest.stream(info.collection_path(namespace), query=query,
                                  read_timeout_s=server_timeout + WATCH_READ_GRACE_S)
        async for line in lines:
            event_type, obj = line.get("type"), line.get("object") or {}
            if event_type == "ERROR":
                raise error_for_status(int(obj.get("code") or 500), str(obj.get("message", "watch error")))
            if event_type in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
                yield WatchEvent(event_type, obj)


async def cas_write(
    rest: RestTransport, collection: str, name: str, body: JsonObject, expected_version: str | None
) -> str | None:
    """Create `body` (`expected_version` None) or replace it at that resourceVersion (set in its
    metadata: the API server's precondition); the new version, or None when another writer won
    (409 Conflict or AlreadyExists, or 404: deleted meanwhile): the caller re-reads and retries."""
    try:
        if expected_version is None:
            stored = await rest.request("POST", collection, body=body)
        else:
            stored = await rest.request("PUT", f"{collection}/{name}", body=body)
    except (Conflict, NotFound):
        return None
    return str(stored["metadata"]["resourceVersion"])


class KubeCasStore:
    """`CasStore` on ConfigMaps in the controller namespace; version = metadata.resourceVersion."""

    def __init__(self, transport: RestTransport, namespace: str = DEFAULT_CONTROLLER_NAMESPACE) -> None:
        self._rest = transport
        self._collection = RESOURCES["configmaps"].collection_path(namespace)
        self._namespace = namespace

    async def read(self, name: str) -> tuple[dict[str, str], str | None]:
        try:
            body = await self._rest.request("GET", f"{self._collection}/{name}")
        except NotFound:
            return {}, None
        return dict(body.get("data") or {}), str(body["metadata"]["resourceVersion"])

    async def write(self, name: str, data: dict[str, str], expected_version: str | None) -> str | None:
        meta: JsonObject = {"name": name, "namespace": self._namespace}
        if expected_version is not None:
            meta["resourceVersion"] = expected_version  # the precondition: 409 if it changed
        body: JsonObject = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}
        return await cas_write(self._rest, self._collection, name, body, expected_version)


class KubeLeaseStore:
    """`LeaseStore` on coordination.k8s.io/v1 Leases in the controller namespace."""

    def __init__(self, transport: RestTransport, namespace: str = DEFAULT_CONTROLLER_NAMESPACE) -> None:
        self._rest = transport
        self._collection = RESOURCES["leases"].collection_path(namespace)
        self._namespace = namespace

    async def read_lease(self, name: str) -> tuple[JsonObject, str | None]:
        try:
            body = await self._rest.request("GET", f"{self._collection}/{name}")
        except NotFound:
            return {}, None
        return body, str(body["metadata"]["resourceVersion"])

    async def write_lease(
        self, name: str, spec: JsonObject, annotations: dict[str, str], expected_version: str | None
    ) -> str | None:
        meta: JsonObject = {"name": name, "namespace": self._namespace, "annotations": dict(annotations)}
        if expected_version is not None:
            meta["resourceVersion"] = expected_version  # the precondition: 409 if it changed
        body: JsonObject = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
                            "spec": spec}
        return await cas_write(self._rest, self._collection, name, body, expected_version)


class KubeBinder:
    """`Binder`: POST a v1 Binding (annotations land on the pod in the same update)."""

    def __init__(self, transport: RestTransport) -> None:
        self._rest = transport

    async def bind(
        self, namespace: str, pod_name: str, pod_uid: str, node: str, annotations: dict[str, str]
    ) -> None:
        meta: JsonObject = {"name": pod_name, "namespace": namespace, "annotations": dict(annotations)}
        if pod_uid:
            meta["uid"] = pod_uid
        body = {"apiVersion": "v1", "kind": "Binding", "metadata": meta,
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        await self._rest.request("POST", f"/api/v1/namespaces/{namespace}/pods/{pod_name}/binding", body=body)


class KubeEventRecorder:
    """`EventRecorder`: POST core/v1 Events; failures are logged, never raised."""

    def __init__(
        self, transport: RestTransport, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._rest = transport
        self._now = now

    async def record(
        self,
        involved: JsonObject,
        reason: str,
        message: str,
        type: Literal["Normal", "Warning"] = "Normal",
        component: str = EVENT_SOURCE_COMPONENT,
    ) -> None:
        event = build_event(involved, reason, message, type, now=self._now(), component=component)
        try:
            await self._rest.request(
                "POST", f"/api/v1/namespaces/{event['metadata']['namespace']}/events", body=event
            )
        except Exception as exc:  # best effort by contract: a lost Event must not fail the caller
            log.warning("could not record event %s on %s: %s", reason, event["involvedObject"], exc)


class KubeAnnotator:
    """`Annotator`: PATCH metadata.annotations as a JSON merge patch (nothing else is touched)."""

    def __init__(self, transport: RestTransport) -> None:
        self._rest = transport

    async def annotate(
        self, kind: Kind, namespace: str | None, name: str, annotations: dict[str, str | None]
    ) -> None:
        path = f"{RESOURCES[kind].collection_path(namespace)}/{name}"
        await self._rest.request("PATCH", path, body={"metadata": {"annotations": annotations}},
                                 content_type="application/merge-patch+json")


class KubeTokenReviewer:
    """`TokenReviewer`: POST authentication.k8s.io/v1 TokenReview."""

    def __init__(self, transport: RestTransport) -> None:
        self._rest = transport

    async def review(self, token: str) -> ReviewedUser:
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        answer = await self._rest.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", body=body)
        status = answer.get("status") or {}
        user = status.get("user") or {}
        return ReviewedUser(username=str(user.get("username", "")), groups=tuple(user.get("groups") or ()),
                            authenticated=bool(status.get("authenticated")))


class KubeCluster:
    """All the Protocols over one `ApiClient`, for wiring (`make_app(..., cluster.source, ...)`)."""

    def __init__(
        self,
        api_client: ApiClient,
        *,
        controller_namespace: str = DEFAULT_CONTROLLER_NAMESPACE,
        request_timeout_s: float = 30.0,
    ) -> None:
        self.transport = RestTransport(api_client, request_timeout_s=request_timeout_s)
        self.source = KubeObjectSource(self.transport)
        self.cas = KubeCasStore(self.transport, controller_namespace)
        self.leases = KubeLeaseStore(self.transport, controller_namespace)
        self.binder = KubeBinder(self.transport)
        self.events = KubeEventRecorder(self.transport)
        self.tokens = KubeTokenReviewer(self.transport)
        self.annotator = KubeAnnotator(self.transport)

    async def close(self) -> None:
        await self.transport.api_client.close()


def _selector(name: str | None) -> Query:
    return [("fieldSelector", f"metadata.name={name}")] if name is not None else []
