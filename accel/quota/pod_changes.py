"""Which pods a per-pod sum over the inventory must take out and put (back) in, generation to generation.

Team usage (accel.quota.charges), the jobs' types (accel.admission.jobs) and the ledger ids the watch
shows (accel.quota.watch) are sums of a per-pod value over every pod of the inventory. Walking every pod
per state generation (every 0.2 s while pods change) cost O(all pods): ~46 ms at 10,000 pods. They now
keep each pod's value and follow the changes. Rules:
1. Pods are compared by object identity: the inventory keeps the same `PodView` for a pod whose object
   did not change (accel.capacity.inventory.ParseCache), and a changed pod is a new object. The diff is
   a set difference of `id()`s (C speed); the previous generation's objects are held, so an id is
   never reused while it is compared.
2. A pod's value may read its node (a bound pod's charge and type: accel.capacity.inventory
   `pod_accelerator_type`, `pod_gpu_equivalents`). They read only the node's hardware facts, its
   `NodeAccelerators` object, which the inventory keeps when only the node's bound pods changed; so
   the pods naming a node are rechecked (taken out and put back in) exactly when the accelerators object
   of the node of that name changed, or the node came or went.
3. Everything else a value reads (policy, catalog, node labels' type index, namespace labels) is the
   caller's to compare: when one changed, `update(everything=True)` enters every pod (a fresh count;
   the indexes here stay incremental), or `in_namespaces` gives the pods of the namespaces to recheck.
4. The diff of one pair of pod sequences is remembered (`diff_by_id`, tuples only: immutable), so the
   sums following one chain of generations (watch ids, charges, job types) pay for it once.
5. A sequence showing one object twice is handed whole as entering and `update` says fresh (the sum
   then counts it as often as the sequence shows it, like the full walk); the next update is fresh too.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Mapping, Sequence
from itertools import filterfalse
from typing import Any, TypeVar

from accel.capacity.inventory import Inventory, NodeInventory
from accel.cluster.labels import NodeAccelerators
from accel.cluster.pods import PodView
from accel.quota.steps import finish_steps

T = TypeVar("T")

# Rule 4: the last diffs, as (before, after, (after by id, entering, leaving)); both sequences held.
_DIFFS: list[tuple[Sequence[Any], Sequence[Any], tuple[dict[int, Any], list[Any], list[Any]]]] = []
DIFF_STEP = 2048  # objects per step of `diff_steps`
_MAX_DIFFS = 4  # pods and nodes of the webhook's chain, and of one other (the extender's, a test's)


def diff_by_id(
    before: Sequence[T], before_by_id: Mapping[int, T], after: Sequence[T]
) -> tuple[dict[int, T], list[T], list[T]]:
    """(`after` by id, objects only in `after`, objects only in `before`); `before_by_id` is `before`
    by id (the caller kept it from the previous diff). The result is shared: read it, never change it."""
    return finish_steps(diff_steps(before, before_by_id, after))


def diff_steps(
    before: Sequence[T], before_by_id: Mapping[int, T], after: Sequence[T]
) -> Generator[None, None, tuple[dict[int, T], list[T], list[T]]]:
    """`diff_by_id` in steps of at most DIFF_STEP objects (~0.1 ms; at 10,000 pods the whole diff is
    a millisecond or two); the result is the generator's return value."""
    for old, new, found in _DIFFS:
        if old is before and new is after:
            return found
    current: dict[int, T] = {}
    for start in range(0, len(after), DIFF_STEP):
        if start:
            yield
        chunk = after[start:start + DIFF_STEP]
        current.update(zip(map(id, chunk), chunk, strict=True))
    if len(current) == len(before_by_id) and current.keys() == before_by_id.keys():
        entering: list[T] = []
        leaving: list[T] = []
    else:
        yield
        # filterfalse with a dict's own method runs in C without building a set (~1/3 faster)
        entering = [current[key] for key in filterfalse(before_by_id.__contains__, current)]
        leaving = []
        # `after` is what stayed plus `entering`, so len(before) - stayed objects left: none (only
        # creations, as between most generations) spares the second walk
        if len(before_by_id) > len(current) - len(entering):
            yield
            leaving = [before_by_id[key] for key in filterfalse(current.__contains__, before_by_id)]
    result = (current, entering, leaving)
    if type(before) is tuple and type(after) is tuple:  # immutable: the pair always has this diff
        _DIFFS.insert(0, (before, after, result))
        del _DIFFS[_MAX_DIFFS:]
    return result


class PodChanges:
    """One chain of inventories seen by one per-pod sum (module rules); `update` per inventory."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything (rule 3): the next `update` is fresh."""
        self._pods: Sequence[PodView] = ()
        self._pods_by_id: dict[int, PodView] = {}
        self._nodes: Sequence[NodeInventory] = ()
        self._nodes_by_id: dict[int, NodeInventory] = {}
        self._hardware: dict[str, NodeAccelerators] = {}  # node name -> its accelerators object (rule 2)
        self._bound: dict[str, dict[int, PodView]] = {}  # node name -> pods naming it, by id
        self._in_namespace: dict[str, dict[int, PodView]] = {}  # namespace -> its pods, by id
        self._fresh = True
        self.node_index: Mapping[str, NodeInventory] = {}  # name -> node of the last inventory

    def update(
        self, inventory: Inventory, *, everything: bool = False
    ) -> tuple[bool, list[PodView], list[PodView]]:
        """(fresh, leaving, entering) from the last inventory to `inventory`: a fresh update (the first,
        or `everything`: the caller's other inputs changed, rule 3) enters every pod and the caller starts
        its sums over; else it takes out `leaving` (pods gone, and pods to recheck), then puts in
        `entering` (pods new, and the same pods to recheck)."""
        fresh, pods = self._fresh, inventory.pods
        self.node_index = index = inventory.node_index() if fresh else self.node_index
        current, entering, leaving = diff_by_id(self._pods, self._pods_by_id, pods)
        if len(current) != len(pods):  # rule 5
            self.reset()
            self.node_index = inventory.node_index()
            return True, [], list(pods)
        recheck: dict[int, PodView] = {}
        nodes = inventory.nodes
        if nodes is not self._nodes:
            nodes_by_id, came, went = diff_by_id(self._nodes, self._nodes_by_id, nodes)
            if came or went:
                if not fresh:
                    self.node_index = index = inventory.node_index()
                hardware, bound = self._hardware, self._bound
                for name in {node.name for node in came} | {node.name for node in went}:
                    node = index.get(name)
                    accelerators = node.accelerators if node is not None else None
                    if hardware.get(name) is not accelerators:
                        if accelerators is None:
                            del hardware[name]
                        else:
                            hardware[name] = accelerators
                        recheck.update(bound.get(name, {}))
            self._nodes, self._nodes_by_id = nodes, nodes_by_id
        bound, in_namespace = self._bound, self._in_namespace
        for pod in leaving:
            recheck.pop(id(pod), None)
            node_name = pod.node_name
            if node_name:
                on_node = bound[node_name]
                del on_node[id(pod)]
                if not on_node:
                    del bound[node_name]
            of_namespace = in_namespace[pod.namespace]
            del of_namespace[id(pod)]
            if not of_namespace:
                del in_namespace[pod.namespace]
        for pod in entering:
            if pod.node_name:
                bound.setdefault(pod.node_name, {})[id(pod)] = pod
            in_namespace.setdefault(pod.namespace, {})[id(pod)] = pod
        self._pods, self._pods_by_id, self._fresh = pods, current, False
        if fresh or everything:
            return True, [], list(pods)
        if recheck:
            again = list(recheck.values())
            leaving, entering = leaving + again, entering + again
        return False, leaving, entering

    def in_namespaces(self, namespaces: Iterable[str]) -> list[PodView]:
        """The pods of the last inventory in `namespaces` (a caller's value read their labels)."""
        found: dict[int, PodView] = {}
        for namespace in namespaces:
            found.update(self._in_namespace.get(namespace, {}))
        return list(found.values())

