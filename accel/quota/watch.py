"""The ledger ids the pod watch accounts for, kept per state generation from what changed.

`accel.quota.rules.watch_ids` is the definition (invariant 2): every pod the watch shows now, its
`bound/<uid>` when bound; every pod it showed within `keep_s` and no longer shows (both ids); every
uid the watch showed deleted (both ids, except a bind conversion of a pod still shown unbound).
Rebuilt from scratch it walks every pod remembered for the reservation TTL on every state
generation (at 1,500 pods/s: ~180,000 uids, ~300 ms every 0.2 s, a stall of the event loop that
every in-flight admission waits for). `WatchIds` gives the same set, updating only the uids whose
state changed since the previous generation:

1. Present pods are diffed by object identity against the previous generation's pods (the
   inventory keeps an unchanged pod's object: accel.capacity.inventory.ParseCache); a changed pod
   is a new object (new resourceVersion) under the same uid. The diff runs in C (dict/set ops), once
   per generation for every sum that follows it (accel.quota.pod_changes rule 4).
2. A pod that leaves the view is remembered with the last time a view showed it (the previous
   generation's `now`) in a heap ordered by that time; each update pops exactly the entries the
   from-scratch rule would drop (`now - when > keep_s`), whatever `now` and `keep_s` do.
3. The deleted uids are diffed by set (the cluster state hands the same frozenset while unchanged).
4. `visible` is a new frozenset only when some id joined or left it; otherwise the previous object
   is handed on, so a ledger already clean for it stays clean (accel.quota.ledger `is_clean`).
5. `update_steps` is `update` in steps of at most STEP pods or uids (a generation may replace every
   pod of the view; accel.admission.context.context_steps lets the event loop run in between).

One `WatchIds` follows one chain of generations (the webhook's contexts, the extender's gate).
Building from an older context continues from the latest generation fed: its pods were shown by
the watch too, so remembering them keeps invariant 2's meaning.
"""

from __future__ import annotations

import heapq
from collections.abc import Generator, Sequence
from typing import Protocol

from accel.quota.pod_changes import diff_steps
from accel.quota.rules import BOUND_PREFIX

STEP = 128  # pods or uids per step of `WatchIds.update_steps` (~0.2 ms)


class WatchedPod(Protocol):
    """What `WatchIds` reads of a pod of the view (accel.cluster.pods.PodView has it)."""

    @property
    def uid(self) -> str: ...

    @property
    def node_name(self) -> str | None: ...


class WatchIds:
    """Incremental `watch_ids` (module docstring). `update` per generation; `visible` after it."""

    def __init__(self) -> None:
        self.visible: frozenset[str] = frozenset()
        self._shown: Sequence[WatchedPod] = ()  # the last view's pods
        self._pods: dict[int, WatchedPod] = {}  # id(pod) -> pod of the last view (alive: ids stay unique)
        self._present: dict[str, list[int]] = {}  # uid -> [copies shown, bound copies shown]
        self._gone: dict[str, tuple[float, bool]] = {}  # uid -> (last time shown, bound then), not shown now
        self._expiry: list[tuple[float, str]] = []  # heap of (last time shown, uid); stale when _gone differs
        self._deleted: frozenset[str] = frozenset()
        self._ids: set[str] = set()
        self._now: float | None = None  # `now` of the previous update (when a pod leaving was last shown)

    def update(
        self, pods: Sequence[WatchedPod], *, now: float, keep_s: float, deleted: frozenset[str] = frozenset()
    ) -> frozenset[str]:
        """The ids the watch accounts for with the view `pods` at `now` (= `watch_ids`'s first result)."""
        for _ in self.update_steps(pods, now=now, keep_s=keep_s, deleted=deleted):
            pass
        return self.visible

    def update_steps(
        self, pods: Sequence[WatchedPod], *, now: float, keep_s: float, deleted: frozenset[str] = frozenset()
    ) -> Generator[None, None, None]:
        """`update` in steps of at most STEP pods or uids, pausing between them (a generation may
        replace every pod of the view: accel.admission.context.context_steps lets other work run in
        between). `visible` changes only once every step has run; no other update may start before."""
        touched: set[str] = set()
        # shared with the charges and job types that follow (accel.quota.pod_changes rule 4)
        current, entering, leaving = yield from diff_steps(self._shown, self._pods, pods)
        if entering or leaving:
            for start in range(0, len(entering), STEP):  # first: a changed pod never counts as gone
                if start:
                    yield
                for pod in entering[start:start + STEP]:
                    self._enter(pod, touched)
            for start in range(0, len(leaving), STEP):
                yield
                for pod in leaving[start:start + STEP]:
                    self._leave(pod, touched)
        self._shown, self._pods = pods, current
        self._expire(now, keep_s, touched)
        if deleted is not self._deleted:
            touched.update(deleted.symmetric_difference(self._deleted))
            self._deleted = deleted
        changed = False
        uids = list(touched)
        for start in range(0, len(uids), STEP):
            yield
            for uid in uids[start:start + STEP]:
                changed |= self._refresh(uid)
        if changed:
            self.visible = frozenset(self._ids)
        self._now = now

    def seen(self) -> dict[str, tuple[float, bool]]:
        """`watch_ids`'s `Seen` memo of the last update (for tests and diagnosis: walks everything)."""
        memo = {uid: (self._now or 0.0, counts[1] > 0) for uid, counts in self._present.items()}
        memo.update(self._gone)
        return memo

    def _enter(self, pod: WatchedPod, touched: set[str]) -> None:
        uid = pod.uid
        if not uid:
            return
        counts = self._present.setdefault(uid, [0, 0])
        counts[0] += 1
        bound = bool(pod.node_name)
        counts[1] += bound
        self._gone.pop(uid, None)  # its heap entry goes stale
        touched.add(uid)

    def _leave(self, pod: WatchedPod, touched: set[str]) -> None:
        uid = pod.uid
        if not uid:
            return
        counts = self._present[uid]
        counts[0] -= 1
        counts[1] -= bool(pod.node_name)
        touched.add(uid)
        if counts[0] == 0:
            del self._present[uid]
            when = self._now if self._now is not None else 0.0
            self._gone[uid] = (when, bool(pod.node_name))  # the flag only informs `seen()`
            heapq.heappush(self._expiry, (when, uid))

    def _expire(self, now: float, keep_s: float, touched: set[str]) -> None:
        heap, gone = self._expiry, self._gone
        while heap and now - heap[0][0] > keep_s:
            when, uid = heapq.heappop(heap)
            entry = gone.get(uid)
            if entry is not None and entry[0] == when:
                del gone[uid]
                touched.add(uid)
        if len(heap) > 2 * len(gone) + 1024:  # stale entries of pods that came back: rebuild
            self._expiry = [(when, uid) for uid, (when, _) in gone.items()]
            heapq.heapify(self._expiry)

    def _refresh(self, uid: str) -> bool:
        """Put `uid`'s ids in or out of the set from its state (the rules of `watch_ids`); True if
        the set changed."""
        counts = self._present.get(uid)
        is_deleted = uid in self._deleted
        if counts is not None:
            member = True
            # a bound copy shows the conversion; a deleted uid still shown unbound keeps it counted
            bound = counts[1] == counts[0] if is_deleted else counts[1] > 0
        else:
            member = bound = is_deleted or uid in self._gone
        ids, key, changed = self._ids, BOUND_PREFIX + uid, False
        for item, wanted in ((uid, member), (key, bound)):
            if wanted != (item in ids):
                changed = True
                if wanted:
                    ids.add(item)
                else:
                    ids.remove(item)
        return changed
