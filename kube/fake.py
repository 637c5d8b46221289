"""`FakeCluster`: an in-memory Kubernetes API server implementing every Protocol in `kube.protocol`.

Tests and the demo run against it instead of a mocked client library, so it keeps the semantics
that the code above relies on:

1. Every change takes the next integer resourceVersion; `list` returns the current one.
2. `watch(kind, rv)` yields every matching change with version > rv, in order, exactly once;
   "" or "0" means "from now". A version older than the last compaction raises `Gone`.
3. CAS: create fails (None) when the document exists; replace fails (None) unless
   `expected_version` equals the stored resourceVersion. Losers re-read; no update is lost.
4. Binding sets `spec.nodeName`, merges annotations, adds the PodScheduled condition; `Conflict`
   if already bound or the uid differs; `NotFound` if there is no such pod.
5. Fault injection: `fail_next(op, exc)` (op = a kind, or "bindings", "events", "tokenreviews"),
   `set_unreachable(True)` (every call and open watch raises `Unreachable`), `set_latency(s)`,
   `compact()` (open watches and watches from any older version get `Gone`), `end_watches()`
   (server-side watch timeout), `bookmark()` (BOOKMARK to every open watch).
6. A ConfigMap whose data and binaryData hold more than 1 MiB (keys plus values, in bytes) is
   refused as the API server refuses it: HTTP 422, `ConfigMap "<name>" is invalid: []: Too long:
   must have at most 1048576 bytes` (`ApiError`), so nothing can pass here with a document a real
   cluster would not store.

The harness methods `apply`, `delete`, `get` act as other API clients (kubectl, kubelet): they are
never subject to injected faults. Objects handed out are deep copies. Stored objects are never
changed in place (every change stores a new object), so the watch history shares them instead of
copying each one: the quota ledger ConfigMap is rewritten on every admission, and a copy per write
into the history would cost more than the write itself.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from kube.errors import ApiError, Conflict, Gone, NotFound, Unreachable
from kube.events import build_event
from kube.names import (
    DEFAULT_CONTROLLER_NAMESPACE,
    EVENT_SOURCE_COMPONENT,
    KIND_BY_OBJECT_KIND,
    KINDS,
    RESOURCES,
    Kind,
    kind_of,
    object_key,
)
from kube.protocol import EventType, JsonObject, ReviewedUser, WatchEvent

_END = None  # queue sentinel: the server closed the watch stream cleanly
CONFIGMAP_MAX_BYTES = 1024 * 1024  # k8s.io/api/core/v1 MaxSecretSize, also the ConfigMap limit


def check_configmap_size(obj: JsonObject) -> None:
    """Rule 6: the API server's validation of a ConfigMap's total size."""
    total = 0
    for field_name in ("data", "binaryData"):
        for key, value in (obj.get(field_name) or {}).items():
            total += len(str(key).encode()) + len(str(value).encode())
    if total > CONFIGMAP_MAX_BYTES:
        name = (obj.get("metadata") or {}).get("name", "")
        raise ApiError(
            422, f'ConfigMap "{name}" is invalid: []: Too long: must have at most {CONFIGMAP_MAX_BYTES} bytes'
        )


@dataclass(eq=False)
class _Watcher:
    kind: Kind
    namespace: str | None
    name: str | None
    queue: asyncio.Queue[WatchEvent | Exception | None] = field(default_factory=asyncio.Queue)

    def matches(self, kind: Kind, obj: JsonObject) -> bool:
        meta = obj.get("metadata", {})
        return (
            kind == self.kind
            and (self.namespace is None or meta.get("namespace") == self.namespace)
            and (self.name is None or meta.get("name") == self.name)
        )


class FakeCluster:
    """In-memory API server: ObjectSource, CasStore, LeaseStore, Binder, EventRecorder and TokenReviewer
    at once."""

    def __init__(
        self,
        *,
        controller_namespace: str = DEFAULT_CONTROLLER_NAMESPACE,
        history_limit: int = 10_000,
        call_log_limit: int = 10_000,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.controller_namespace = controller_namespace
        self.events: deque[JsonObject] = deque(maxlen=call_log_limit)  # Events recorded, oldest dropped first
        # (operation, kind) of the latest Protocol calls that got through, oldest dropped first:
        # `accel serve --snapshot` and the demo run on this fake for hours, so nothing here may grow
        # without bound.
        self.calls: deque[tuple[str, str]] = deque(maxlen=call_log_limit)
        self._history_limit = history_limit
        self._sleep = sleep
        self._now = now
        self._rv = 1
        self._compacted_rv = 0
        self._objects: dict[Kind, dict[str, JsonObject]] = {kind: {} for kind in KINDS}
        self._history: deque[tuple[int, Kind, WatchEvent]] = deque()
        self._watchers: set[_Watcher] = set()
        self._failures: dict[str, deque[Exception]] = {}
        self._unreachable = False
        self._latency = 0.0
        self._tokens: dict[str, ReviewedUser] = {}

    # ---- fault injection -------------------------------------------------------------------

    def fail_next(self, op: str, exc: Exception, *, times: int = 1) -> None:
        """Make the next `times` calls for `op` raise `exc`.

        `op` is a kind ("pods"), "bindings", "events" or "tokenreviews" (any call on it), or a
        verb and kind ("watch pods", "list nodes", "update configmaps") for just that call.
        """
        self._failures.setdefault(op, deque()).extend([exc] * times)

    def set_unreachable(self, unreachable: bool) -> None:
        """While True every Protocol call raises `Unreachable` and open watch streams break."""
        self._unreachable = unreachable
        if unreachable:
            self._broadcast(lambda _w: Unreachable("fake API server is unreachable"))

    def set_latency(self, seconds: float) -> None:
        """Delay every Protocol call by `seconds` (through the injected `sleep`)."""
        self._latency = seconds

    def compact(self) -> None:
        """Forget history: open watches and watches from any version before now raise `Gone`."""
        self._rv += 1
        self._compacted_rv = self._rv
        self._history.clear()
        self._broadcast(lambda _w: Gone("too old resource version (compacted)"))

    def end_watches(self) -> None:
        """Close every open watch stream cleanly, as the server does when `timeoutSeconds` expires."""
        self._broadcast(lambda _w: _END)

    def bookmark(self) -> None:
        """Send a BOOKMARK with the current resourceVersion to every open watch."""
        for watcher in self._watchers:
            info = RESOURCES[watcher.kind]
            obj = {"kind": info.object_kind, "metadata": {"resourceVersion": str(self._rv)}}
            watcher.queue.put_nowait(WatchEvent("BOOKMARK", obj))

    def add_token(self, token: str, username: str, groups: tuple[str, ...] = ()) -> None:
        """Register a bearer token that `review` reports as authenticated."""
        self._tokens[token] = ReviewedUser(username=username, groups=groups, authenticated=True)

    @property
    def resource_version(self) -> str:
        return str(self._rv)

    @property
    def open_watches(self) -> int:
        return len(self._watchers)

    # ---- harness: other clients changing the cluster -----------------------------------------

    def apply(self, obj: JsonObject) -> JsonObject:
        """Create or replace `obj` (its `kind` picks the collection); returns the stored copy."""
        kind = kind_of(obj)
        if kind is None:
            raise ValueError(f"FakeCluster.apply: unsupported kind {obj.get('kind')!r}; use one of "
                             f"{sorted(KIND_BY_OBJECT_KIND)}")
        stored = copy.deepcopy(obj)
        if not stored.setdefault("metadata", {}).get("name"):
            raise ValueError("FakeCluster.apply: metadata.name is required")
        if kind == "configmaps":
            check_configmap_size(stored)
        return copy.deepcopy(self._put(kind, stored))

    def _put(self, kind: Kind, stored: JsonObject) -> JsonObject:
        """Store `stored` (owned by the fake from now on, never changed again) as a create or replace."""
        meta = stored["metadata"]
        key = object_key(stored)
        previous = self._objects[kind].get(key)
        if "uid" not in meta:
            meta["uid"] = previous["metadata"]["uid"] if previous else str(uuid.uuid4())
        if "creationTimestamp" not in meta:
            meta["creationTimestamp"] = self._now().strftime("%Y-%m-%dT%H:%M:%SZ")
        self._store(kind, key, stored, "MODIFIED" if previous else "ADDED")
        return stored

    def delete(self, kind: Kind, name: str, namespace: str | None = None) -> None:
        key = f"{namespace}/{name}" if namespace else name
        obj = self._objects[kind].pop(key, None)
        if obj is None:
            raise NotFound(f"{kind} {key!r} not found")
        self._rv += 1
        obj = {
            **obj,
            "metadata": {**obj["metadata"], "resourceVersion": str(self._rv)},
        }  # history keeps the old one
        self._publish(kind, WatchEvent("DELETED", obj))

    def get(self, kind: Kind, name: str, namespace: str | None = None) -> JsonObject | None:
        obj = self._objects[kind].get(f"{namespace}/{name}" if namespace else name)
        return copy.deepcopy(obj) if obj is not None else None

    # ---- ObjectSource -----------------------------------------------------------------------

    async def list(
        self, kind: Kind, namespace: str | None = None, *, name: str | None = None
    ) -> tuple[list[JsonObject], str]:
        await self._enter("list", kind)
        probe = _Watcher(kind, namespace, name)
        items = [copy.deepcopy(o) for o in self._objects[kind].values() if probe.matches(kind, o)]
        return items, str(self._rv)

    async def watch(
        self,
        kind: Kind,
        resource_version: str,
        namespace: str | None = None,
        *,
        name: str | None = None,
        timeout_s: float | None = None,
    ) -> AsyncIterator[WatchEvent]:
        """See `ObjectSource.watch`; `timeout_s` is ignored (use `end_watches()` to end streams)."""
        await self._enter("watch", kind)
        start = int(resource_version) if resource_version not in ("", "0") else self._rv
        if start < self._compacted_rv:
            raise Gone(f"too old resource version: {start} ({self._compacted_rv})")
        watcher = _Watcher(kind, namespace, name)
        backlog = [ev for rv, k, ev in self._history if rv > start and watcher.matches(k, ev.object)]
        self._watchers.add(watcher)  # registered together with the backlog snapshot: nothing missed
        try:
            for event in backlog:
                yield WatchEvent(event.type, copy.deepcopy(event.object))
            while True:
                item = await watcher.queue.get()
                if item is _END:
                    return
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self._watchers.discard(watcher)

    # ---- CasStore (ConfigMaps in the controller namespace) ----------------------------------

    async def read(self, name: str) -> tuple[dict[str, str], str | None]:
        await self._enter("get", "configmaps")
        obj = self._objects["configmaps"].get(f"{self.controller_namespace}/{name}")
        if obj is None:
            return {}, None
        return dict(obj.get("data") or {}), str(obj["metadata"]["resourceVersion"])

    async def write(self, name: str, data: dict[str, str], expected_version: str | None) -> str | None:
        current, ok = await self._cas_precondition("configmaps", name, expected_version)
        if not ok:
            return None
        configmap = {  # built fresh here: no defensive copy needed
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {**(current or {}).get("metadata", {}), "name": name,
                         "namespace": self.controller_namespace},
            "data": dict(data),
        }
        check_configmap_size(configmap)  # rule 6: 422, checked after the precondition as the API server does
        stored = self._put("configmaps", configmap)
        return str(stored["metadata"]["resourceVersion"])

    # ---- LeaseStore (Leases in the controller namespace) ----------------------------------------

    async def read_lease(self, name: str) -> tuple[JsonObject, str | None]:
        await self._enter("get", "leases")
        obj = self._objects["leases"].get(f"{self.controller_namespace}/{name}")
        if obj is None:
            return {}, None
        return copy.deepcopy(obj), str(obj["metadata"]["resourceVersion"])

    async def write_lease(
        self, name: str, spec: JsonObject, annotations: dict[str, str], expected_version: str | None
    ) -> str | None:
        current, ok = await self._cas_precondition("leases", name, expected_version)
        if not ok:
            return None
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {**(current or {}).get("metadata", {}), "name": name,
                         "namespace": self.controller_namespace, "annotations": dict(annotations)},
            "spec": copy.deepcopy(spec),
        }
        return str(self._put("leases", lease)["metadata"]["resourceVersion"])

    async def _cas_precondition(
        self, kind: Kind, name: str, expected_version: str | None
    ) -> tuple[JsonObject | None, bool]:
        """The stored object of a compare-and-swap write in the controller namespace, and whether the
        write may go ahead: a create (`expected_version` None) only when there is none (else 409
        AlreadyExists), an update only at that version (else 409 Conflict, or 404 when deleted
        meanwhile; the caller re-reads either way)."""
        await self._enter("create" if expected_version is None else "update", kind)
        current = self._objects[kind].get(f"{self.controller_namespace}/{name}")
        if expected_version is None:
            return current, current is None
        return current, current is not None and current["metadata"]["resourceVersion"] == expected_version

    # ---- Binder ------------------------------------------------------------------------------

    async def bind(
        self, namespace: str, pod_name: str, pod_uid: str, node: str, annotations: dict[str, str]
    ) -> None:
        await self._enter("create", "bindings")
        key = f"{namespace}/{pod_name}"
        pod = self._objects["pods"].get(key)
        if pod is None:
            raise NotFound(f'pods "{pod_name}" not found in namespace {namespace!r}')
        if pod_uid and pod["metadata"].get("uid") != pod_uid:
            raise Conflict(
                f"pod {key}: uid precondition failed (want {pod_uid}, have {pod['metadata'].get('uid')})"
            )
        spec = pod.get("spec") or {}
        if spec.get("nodeName"):
            raise Conflict(f'pod {pod_name} is already assigned to node "{spec["nodeName"]}"')
        pod = copy.deepcopy(pod)
        pod.setdefault("spec", {})["nodeName"] = node
        pod["metadata"]["annotations"] = {**(pod["metadata"].get("annotations") or {}), **annotations}
        status = pod.setdefault("status", {})
        conditions = [c for c in status.get("conditions", []) if c.get("type") != "PodScheduled"]
        # The API server stamps the transition time when it sets the condition at binding.
        scheduled_at = self._now().strftime("%Y-%m-%dT%H:%M:%SZ")
        status["conditions"] = [
            *conditions,
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": scheduled_at},
        ]
        self._store("pods", key, pod, "MODIFIED")

    # ---- EventRecorder -----------------------------------------------------------------------

    async def record(
        self,
        involved: JsonObject,
        reason: str,
        message: str,
        type: Literal["Normal", "Warning"] = "Normal",
        component: str = EVENT_SOURCE_COMPONENT,
    ) -> None:
        try:
            await self._enter("create", "events")
        except Exception:  # best effort by contract: a lost Event must not fail the caller
            return
        self.events.append(build_event(involved, reason, message, type, now=self._now(), component=component))

    # ---- Annotator ---------------------------------------------------------------------------

    async def annotate(
        self, kind: Kind, namespace: str | None, name: str, annotations: dict[str, str | None]
    ) -> None:
        await self._enter("patch", kind)
        current = self._objects[kind].get(f"{namespace}/{name}" if namespace else name)
        if current is None:
            raise NotFound(f"{kind} {name!r} not found")
        updated = copy.deepcopy(current)
        notes = {**(updated["metadata"].get("annotations") or {}), **annotations}
        updated["metadata"]["annotations"] = {k: v for k, v in notes.items() if v is not None}
        self._put(kind, updated)

    # ---- TokenReviewer -----------------------------------------------------------------------

    async def review(self, token: str) -> ReviewedUser:
        await self._enter("create", "tokenreviews")
        return self._tokens.get(token, ReviewedUser(username="", groups=(), authenticated=False))

    # ---- internals -----------------------------------------------------------------------------

    async def _enter(self, verb: str, op: str) -> None:
        if self._latency:
            await self._sleep(self._latency)
        if self._unreachable:
            raise Unreachable("fake API server is unreachable")
        for key in (f"{verb} {op}", op):
            pending = self._failures.get(key)
            if pending:
                raise pending.popleft()
        self.calls.append((verb, op))

    def _store(self, kind: Kind, key: str, obj: JsonObject, event_type: EventType) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self._objects[kind][key] = obj
        self._publish(kind, WatchEvent(event_type, obj))

    def _publish(self, kind: Kind, event: WatchEvent) -> None:
        self._history.append((self._rv, kind, event))
        while len(self._history) > self._history_limit:
            dropped_rv, _, _ = self._history.popleft()
            self._compacted_rv = dropped_rv
        for watcher in self._watchers:
            if watcher.matches(kind, event.object):
                watcher.queue.put_nowait(WatchEvent(event.type, copy.deepcopy(event.object)))

    def _broadcast(self, make: Callable[[_Watcher], Exception | None]) -> None:
        for watcher in self._watchers:
            watcher.queue.put_nowait(make(watcher))
