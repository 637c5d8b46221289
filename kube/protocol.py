"""The seam between accel and the Kubernetes API server: seven small Protocols.

Everything above this seam (webhook, extender, api, cli) depends only on these Protocols and on
plain dicts — the JSON form of Kubernetes objects exactly as `kubectl get -o json` prints them
(lowerCamel keys) — so the pure core parses them itself and tests run against `kube.fake.FakeCluster`
instead of a mocked client library. Implementations: `kube.real` (kubernetes_asyncio), `kube.fake`
(in-memory API server), `kube.snapshot.SnapshotSource` (a file, read-only).

Rules every implementation keeps:
1. Errors are the typed ones from `kube.errors` (Gone, Conflict, NotFound, Unreachable, ApiError).
2. `list` returns the collection's resourceVersion; `watch` from that version yields every later
   change exactly once, in order; a version the server no longer holds raises `Gone`.
3. Returned dicts belong to the caller's *read-only* view: do not mutate them.
4. `EventRecorder.record` is best effort and never raises.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from kube.names import EVENT_SOURCE_COMPONENT, Kind

EventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"]
JsonObject = dict[str, Any]


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One event of a watch stream; for BOOKMARK only `metadata.resourceVersion` is meaningful."""

    type: EventType
    object: JsonObject

    @property
    def resource_version(self) -> str:
        meta = self.object.get("metadata") or {}
        return str(meta.get("resourceVersion", ""))


@dataclass(frozen=True, slots=True)
class ReviewedUser:
    """Result of a TokenReview: who the bearer token belongs to, if anyone."""

    username: str
    groups: tuple[str, ...] = field(default_factory=tuple)
    authenticated: bool = False


@runtime_checkable
class ObjectSource(Protocol):
    """List and watch one kind, cluster-wide or in one namespace, optionally one object by name."""

    async def list(
        self, kind: Kind, namespace: str | None = None, *, name: str | None = None
    ) -> tuple[list[JsonObject], str]:
        """Return (items, collection resourceVersion). `name` filters by fieldSelector metadata.name."""
        ...

    def watch(
        self,
        kind: Kind,
        resource_version: str,
        namespace: str | None = None,
        *,
        name: str | None = None,
        timeout_s: float | None = None,
    ) -> AsyncIterator[WatchEvent]:
        """Stream changes after `resource_version`, BOOKMARKs included; raise `Gone` on 410.

        The stream may end cleanly (server-side timeout, ~`timeout_s`); the caller then watches
        again from the last resourceVersion it saw.
        """
        ...


@runtime_checkable
class CasStore(Protocol):
    """Compare-and-swap document store (the quota ledger ConfigMap in the controller namespace)."""

    async def read(self, name: str) -> tuple[dict[str, str], str | None]:
        """Return (data, version); version None means the document does not exist (data is {})."""
        ...

    async def write(self, name: str, data: dict[str, str], expected_version: str | None) -> str | None:
        """Create (expected_version None) or replace iff unchanged; new version, or None on conflict."""
        ...


@runtime_checkable
class LeaseStore(Protocol):
    """coordination.k8s.io/v1 Leases in the controller namespace, written only by compare-and-swap
    (the quota ledger's leader: serving/ledger_leader.py)."""

    async def read_lease(self, name: str) -> tuple[JsonObject, str | None]:
        """Return (the Lease object, version); version None means there is no such Lease ({})."""
        ...

    async def write_lease(
        self, name: str, spec: JsonObject, annotations: dict[str, str], expected_version: str | None
    ) -> str | None:
        """Create (expected_version None) or replace spec and annotations iff unchanged; the new
        version, or None when another writer changed (or created) it first."""
        ...


@runtime_checkable
class Binder(Protocol):
    """Bind a pod to a node, copying `annotations` onto the pod in the same storage update."""

    async def bind(
        self, namespace: str, pod_name: str, pod_uid: str, node: str, annotations: dict[str, str]
    ) -> None:
        """Raise `Conflict` if already bound or the uid does not match, `NotFound` if no such pod."""
        ...


@runtime_checkable
class EventRecorder(Protocol):
    """core/v1 Events for humans (`kubectl describe`); best effort, never raises into the caller."""

    async def record(
        self,
        involved: JsonObject,
        reason: str,
        message: str,
        type: Literal["Normal", "Warning"] = "Normal",
        component: str = EVENT_SOURCE_COMPONENT,
    ) -> None:
        """`involved` is the object itself (apiVersion/kind/metadata) or an ObjectReference dict."""
        ...


@runtime_checkable
class Annotator(Protocol):
    """Merge-patch annotations onto one object (accel's notes on OpenDataHub HardwareProfiles)."""

    async def annotate(
        self, kind: Kind, namespace: str | None, name: str, annotations: dict[str, str | None]
    ) -> None:
        """Set each annotation (None removes it); raise `NotFound` if the object is gone."""
        ...


@runtime_checkable
class TokenReviewer(Protocol):
    """authentication.k8s.io/v1 TokenReview: ask the API server whose bearer token this is."""

    async def review(self, token: str) -> ReviewedUser:
        """Unauthenticated tokens return `ReviewedUser(authenticated=False)`; API failures raise."""
        ...
