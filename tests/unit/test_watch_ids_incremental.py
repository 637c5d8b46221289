"""accel.quota.watch.WatchIds: the incremental ledger ids equal the from-scratch `watch_ids`.

The property replays random streams of state generations (new pods, binds, pods changed to a new
object, deletions, relists that replace every object, duplicated and empty uids, time passing keep_s
or going back, keep_s changing, deleted uids) through both and compares the id set after each, the
`Seen` memo while uids are unique, and the identity rule the ledger relies on: a new frozenset exactly
when the set changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from accel.quota.rules import BOUND_PREFIX, watch_ids
from accel.quota.watch import WatchIds

UIDS = [f"u{i}" for i in range(8)] + [""]
TIME_STEPS = [0.0, 1.0, 5.0, 9.99, 10.0, 10.01, 25.0, -3.0]  # keep_s is 5, 10 or 30: both sides of it


@dataclass(eq=False)
class Pod:
    uid: str
    node_name: str | None = None


def reference(pods: list[Pod], seen: dict[str, tuple[float, bool]], now: float, keep_s: float,
              deleted: frozenset[str]) -> tuple[frozenset[str], dict[str, tuple[float, bool]]]:
    shown = ((p.uid, bool(p.node_name)) for p in pods)
    return watch_ids(shown, seen, now=now, keep_s=keep_s, deleted=deleted)


step = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(UIDS), st.booleans()),
    st.tuples(st.just("bind"), st.integers(0, 20), st.booleans()),
    st.tuples(st.just("remove"), st.integers(0, 20), st.booleans()),
    st.tuples(st.just("relist"), st.just(0), st.booleans()),
    st.tuples(st.just("time"), st.sampled_from(TIME_STEPS), st.booleans()),
    st.tuples(st.just("keep"), st.sampled_from([5.0, 10.0, 30.0]), st.booleans()),
    st.tuples(st.just("deleted"), st.frozensets(st.sampled_from(UIDS[:-1]), max_size=4), st.booleans()),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(step, max_size=6), min_size=1, max_size=25))
def test_incremental_equals_from_scratch(generations: list[list[tuple[object, object, bool]]]) -> None:
    incremental = WatchIds()
    pods: list[Pod] = []
    seen: dict[str, tuple[float, bool]] = {}
    now, keep_s, deleted = 100.0, 10.0, frozenset[str]()
    last_ref: frozenset[str] | None = None
    last_inc: frozenset[str] | None = None
    unique = True
    for steps in generations:
        for kind, arg, flag in steps:
            if kind == "add":
                pods.append(Pod(str(arg), "node-a" if flag else None))
            elif kind == "bind" and pods:
                i = int(str(arg)) % len(pods)
                pods[i] = Pod(pods[i].uid, "node-b" if flag else None)  # a changed pod is a new object
            elif kind == "remove" and pods:
                pods.pop(int(str(arg)) % len(pods))
            elif kind == "relist":
                pods = [Pod(p.uid, p.node_name) for p in pods]
            elif kind == "time":
                now += float(str(arg))
            elif kind == "keep":
                keep_s = float(str(arg))
            elif kind == "deleted":
                assert isinstance(arg, frozenset)
                deleted = arg if arg != deleted or flag else deleted  # the same object or an equal new one
        expected, seen = reference(pods, seen, now, keep_s, deleted)
        got = incremental.update(tuple(pods), now=now, keep_s=keep_s, deleted=deleted)
        assert got == expected
        assert isinstance(got, frozenset)
        if last_inc is not None:
            assert (got is last_inc) == (expected == last_ref)  # a new object exactly when it changed
        last_ref, last_inc = expected, got
        uids = [p.uid for p in pods if p.uid]
        unique = unique and len(uids) == len(set(uids))  # with a duplicate, the memo's flag is any copy's
        if unique:
            assert incremental.seen() == seen


def test_a_gone_pod_counts_until_keep_s_after_it_was_last_shown() -> None:
    memo = WatchIds()
    memo.update((Pod("a", "n1"), Pod("b")), now=0.0, keep_s=10.0)
    gone = memo.update((Pod("b"),), now=4.0, keep_s=10.0)  # a last shown at 0.0
    assert {"a", BOUND_PREFIX + "a", "b"} == gone
    assert memo.update((Pod("b"),), now=10.0, keep_s=10.0) is gone  # nothing changed: the same object
    expired = memo.update((Pod("b"),), now=10.5, keep_s=10.0)
    assert expired == {"b"}
    assert memo.update((Pod("b"),), now=0.0, keep_s=10.0) == {"b"}  # dropped for good, as watch_ids does


def test_a_pod_shown_again_is_not_expired_by_its_old_departure() -> None:
    memo = WatchIds()
    memo.update((Pod("a"),), now=0.0, keep_s=10.0)
    memo.update((), now=1.0, keep_s=10.0)  # gone, last shown at 0.0
    memo.update((Pod("a"),), now=2.0, keep_s=10.0)  # back
    assert memo.update((Pod("a"),), now=50.0, keep_s=10.0) == {"a"}
    memo.update((), now=51.0, keep_s=10.0)  # gone again, last shown at 50.0
    assert memo.update((), now=60.0, keep_s=10.0) == {"a", BOUND_PREFIX + "a"}
    assert memo.update((), now=60.5, keep_s=10.0) == frozenset()


def test_a_shorter_keep_s_drops_the_older_gone_pods_at_once() -> None:
    memo = WatchIds()
    memo.update((Pod("old"), Pod("new")), now=0.0, keep_s=100.0)
    memo.update((Pod("new"),), now=20.0, keep_s=100.0)  # old last shown at 0.0
    memo.update((), now=40.0, keep_s=100.0)  # new last shown at 20.0
    assert memo.update((), now=45.0, keep_s=30.0) == {"new", BOUND_PREFIX + "new"}


def test_stale_expiry_entries_stay_bounded_under_flapping_pods() -> None:
    memo = WatchIds()
    for i in range(5000):
        memo.update((Pod("flap"),) if i % 2 else (), now=0.0, keep_s=10.0)
    assert len(memo._expiry) <= 2 * len(memo._gone) + 1024
