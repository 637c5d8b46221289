"""`Informer`: list+watch one kind into an in-memory store; `ClusterWatcher`: the set a server needs.

The extender and webhook answer from this store, never from a list call per request
(design.md "The extender"). Reliability rules, in the spirit of client-go's reflector:

1. Start: list, replace the store, then watch from the list's resourceVersion.
2. Every event and BOOKMARK advances the resourceVersion the next watch resumes from; a watch that
   ends cleanly (server timeout) resumes at once from there.
3. `Gone` (410) relists at once; a second Gone in a row, and any other error, waits
   `Backoff` (exponential with jitter; reset by a successful list) before relisting.
4. A relist replaces the store and fires callbacks only for the differences (ADDED/MODIFIED/DELETED).
5. `version` bumps on every change to the store, so consumers may cache derived state per version.
8. `resource_version` is the version of the last list, event or BOOKMARK applied: the store
   reflects every change of the kind up to it (the quota ledger's watch watermark).
6. `last_sync` is the monotonic time of the last successful list, event, bookmark or clean watch
   end; `fresh()` is false while a kind is failing and `last_sync` is older than `max_age_s`.
7. An `optional` informer is for a custom resource whose CRD may not be installed: a list answered
   404 empties the store, counts as synced (`absent` is true) and is retried every
   `absent_recheck_s`, so installing the CRD later is picked up without a restart. Optional
   informers hold back readiness only until their first answer (objects, 404 or an error such as
   a missing RBAC grant: logged and kept in `last_error`, never blocking the server).
Callback exceptions are logged and never stop the informer.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from kube.errors import Gone, NotFound, error_for_status
from kube.names import (
    DEFAULT_CONTROLLER_NAMESPACE,
    HARDWARE_PROFILE_KINDS,
    POLICY_CONFIGMAP,
    Kind,
    object_key,
)
from kube.protocol import EventType, JsonObject, ObjectSource, WatchEvent

log = logging.getLogger(__name__)

ChangeCallback = Callable[[EventType, JsonObject], None]
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry number `attempt` (0-based): min(max_s, initial_s * factor**attempt) * (1 +
    jitter*u)."""

    initial_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5

    def delay(self, attempt: int, unit_random: float) -> float:
        base = min(self.max_s, self.initial_s * self.factor ** min(attempt, 64))
        return base * (1.0 + self.jitter * unit_random)


class Informer:
    """Keeps `items()` equal to the API server's view of one kind (optionally one namespace/name)."""

    def __init__(
        self,
        source: ObjectSource,
        kind: Kind,
        *,
        namespace: str | None = None,
        name: str | None = None,
        backoff: Backoff = Backoff(),
        watch_timeout_s: float = 300.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        optional: bool = False,
        absent_recheck_s: float = 10.0,
    ) -> None:
        self.kind = kind
        self.optional = optional
        self.absent = False  # optional kind whose API is not served (CRD not installed)
        self._absent_recheck_s = absent_recheck_s
        self.namespace = namespace
        self.name = name
        self.synced = False
        self.last_sync: float | None = None
        self.version = 0
        self.resource_version = ""  # rule 8: the store reflects every change up to this version
        self.relists = 0  # successful lists so far
        self.last_error: str | None = None
        self.failing = False
        self._source = source
        self._backoff = backoff
        self._watch_timeout_s = watch_timeout_s
        self._clock = clock
        self._sleep = sleep
        self._rand = rand
        self._store: dict[str, JsonObject] = {}
        self._callbacks: list[ChangeCallback] = []
        self._synced_event = asyncio.Event()
        self._gone_in_a_row = 0  # reset by any watch event: progress proves the relist worked

    def items(self) -> list[JsonObject]:
        """Snapshot of the store (a new list; the dicts are shared and must not be mutated)."""
        return list(self._store.values())

    def store(self) -> Mapping[str, JsonObject]:
        """The store itself, read-only and not copied (`namespace/name` or `name` -> object, in the
        order it holds them): valid until the next change, which a caller must not await across."""
        return MappingProxyType(self._store)

    def get(self, key: str) -> JsonObject | None:
        """Object by `namespace/name` (or `name` when cluster-scoped)."""
        return self._store.get(key)

    def add_callback(self, callback: ChangeCallback) -> None:
        """Call `callback(event_type, obj)` after each change is applied to the store."""
        self._callbacks.append(callback)

    async def wait_synced(self) -> None:
        """Return once the first list has completed."""
        await self._synced_event.wait()

    async def run(self) -> None:
        """List and watch until cancelled; never returns otherwise and never raises API errors."""
        attempt = 0
        while True:
            try:
                resource_version = await self._relist()
                attempt = 0
                await self._watch(resource_version)
            except asyncio.CancelledError:
                raise
            except NotFound as exc:
                if not self.optional:
                    self._gone_in_a_row = 0
                    self._note_failure(exc)
                    await self._sleep(self._backoff.delay(attempt, self._rand()))
                    attempt += 1
                    continue
                self._mark_absent()
                await self._sleep(self._absent_recheck_s)
            except Gone as exc:
                self._gone_in_a_row += 1
                self._note_failure(exc)
                if self._gone_in_a_row > 1:
                    await self._sleep(self._backoff.delay(attempt, self._rand()))
                    attempt += 1
            except Exception as exc:
                self._gone_in_a_row = 0
                self._note_failure(exc)
                await self._sleep(self._backoff.delay(attempt, self._rand()))
                attempt += 1

    def _mark_absent(self) -> None:
        """Rule 7: the kind is not served; behave as an empty, synced collection."""
        if not self.absent:
            log.info("informer %s: not served by the API server (CRD not installed); rechecking every %gs",
                     self.kind, self._absent_recheck_s)
        self.absent = True
        gone = list(self._store.values())
        self._store = {}
        if gone:
            self.version += 1
        for obj in gone:
            self._notify("DELETED", obj)
        self._mark_alive()
        if not self.synced:
            self.synced = True
            self._synced_event.set()

    async def _relist(self) -> str:
        items, resource_version = await self._source.list(self.kind, self.namespace, name=self.name)
        self.absent = False
        fresh = {object_key(obj): obj for obj in items}
        changes: list[tuple[EventType, JsonObject]] = [
            ("DELETED", old) for key, old in self._store.items() if key not in fresh
        ]
        for key, obj in fresh.items():
            old = self._store.get(key)
            if old is None:
                changes.append(("ADDED", obj))
            elif _rv(old) != _rv(obj):
                changes.append(("MODIFIED", obj))
        self._store = fresh
        self.resource_version = resource_version
        self.relists += 1
        self._mark_alive()
        if not self.synced:
            self.synced = True
            self._synced_event.set()
        if changes:
            self.version += 1
        for event_type, obj in changes:
            self._notify(event_type, obj)
        return resource_version

    async def _watch(self, resource_version: str) -> None:
        while True:
            stream = self._source.watch(
                self.kind, resource_version, self.namespace, name=self.name, timeout_s=self._watch_timeout_s
            )
            try:
                async for event in stream:
                    resource_version = self._apply(event) or resource_version
            finally:
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()  # release the connection / fake watcher now, not at GC
            self._mark_alive()  # clean end = server-side timeout: the server is alive

    def _apply(self, event: WatchEvent) -> str:
        if event.type == "ERROR":
            status = event.object
            raise error_for_status(int(status.get("code", 500)), str(status.get("message", "watch error")))
        self._gone_in_a_row = 0
        if event.type != "BOOKMARK":
            key = object_key(event.object)
            if event.type == "DELETED":
                self._store.pop(key, None)
            else:
                self._store[key] = event.object
            self.version += 1
        if event.resource_version:
            self.resource_version = event.resource_version
        if event.type != "BOOKMARK":
            self._notify(event.type, event.object)
        self._mark_alive()
        return event.resource_version

    def _notify(self, event_type: EventType, obj: JsonObject) -> None:
        for callback in self._callbacks:
            try:
                callback(event_type, obj)
            except Exception:
                log.exception("informer %s: change callback failed for %s", self.kind, object_key(obj))

    def _mark_alive(self) -> None:
        self.last_sync = self._clock()
        self.failing = False

    def _note_failure(self, exc: Exception) -> None:
        self.failing = True
        self.last_error = f"{type(exc).__name__}: {exc}"
        log.warning("informer %s: list/watch failed, will relist: %s", self.kind, self.last_error)


def _rv(obj: JsonObject) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


class ClusterWatcher:
    """Informers for nodes, pods, namespaces and the policy ConfigMap, with one readiness verdict."""

    def __init__(
        self,
        source: ObjectSource,
        *,
        controller_namespace: str = DEFAULT_CONTROLLER_NAMESPACE,
        policy_name: str = POLICY_CONFIGMAP,
        backoff: Backoff = Backoff(),
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        def make(
            kind: Kind, namespace: str | None = None, name: str | None = None, optional: bool = False
        ) -> Informer:
            return Informer(source, kind, namespace=namespace, name=name, backoff=backoff,
                            clock=clock, sleep=sleep, rand=rand, optional=optional)

        self._clock = clock
        self.nodes = make("nodes")
        self.pods = make("pods")
        self.namespaces = make("namespaces")
        self.policy = make("configmaps", controller_namespace, policy_name)
        # OpenDataHub HardwareProfiles, both API groups, all namespaces; absent CRD = no objects.
        self.hardware_profiles = tuple(make(kind, optional=True) for kind in HARDWARE_PROFILE_KINDS)

    @property
    def informers(self) -> tuple[Informer, ...]:
        return (self.nodes, self.pods, self.namespaces, self.policy, *self.hardware_profiles)

    def hardware_profile_objects(self) -> list[JsonObject]:
        """Every HardwareProfile currently known, of either API group."""
        return [obj for informer in self.hardware_profiles for obj in informer.items()]

    async def run(self) -> None:
        """Run every informer until cancelled."""
        async with asyncio.TaskGroup() as group:
            for informer in self.informers:
                group.create_task(informer.run(), name=f"informer-{informer.kind}")

    async def wait_synced(self) -> None:
        """Return once every informer has listed once."""
        await asyncio.gather(
            *(informer.wait_synced() for informer in self.informers if not informer.optional)
        )

    def fresh(self, max_age_s: float) -> tuple[bool, str]:
        """(ready, reason) for /readyz: all synced, and none failing for longer than `max_age_s`."""
        now = self._clock()
        problems: list[str] = []
        for informer in self.informers:
            label = informer.kind if informer.name is None else f"{informer.kind}/{informer.name}"
            if informer.optional:  # rule 7: only its first answer (objects, 404 or an error) is awaited
                if not informer.synced and informer.last_error is None:
                    problems.append(f"{label}: first list pending")
                continue
            if not informer.synced:
                problems.append(f"{label}: not synced yet (last error: {informer.last_error or 'none'})")
            elif informer.failing and informer.last_sync is not None and now - informer.last_sync > max_age_s:
                age = now - informer.last_sync
                problems.append(f"{label}: no successful list/watch for {age:.1f}s > {max_age_s:g}s "
                                f"(last error: {informer.last_error})")
        return (False, "; ".join(problems)) if problems else (True, "all informers synced and fresh")
