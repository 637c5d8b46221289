"""What each pod is charged (type, GPU-equivalents), memoised by what the charge depends on.

`accel.capacity.inventory.team_usage` walks every accelerator pod with exact `Fraction` arithmetic (about
3 ms at 300 pods, 10 ms on a loaded box), and validation charges every GPU pod the same way. The
webhook needs team usage on every state generation (every 0.2 s while pods churn), and that walk
blocked the event loop long enough to set the webhook's p99. Rules:
1. A pod's charge is `accel.capacity.inventory.pod_accelerator_type` and `pod_gpu_equivalents`, which read
   only: the policy (and its catalog), the pod's node when it is bound to one the inventory has,
   its required node-affinity terms and nodeSelector (immutable), the label values and
   time-slicing the nodes carry (`TypeIndex.token`) and its accelerator requests; never an
   annotation (issue 21: they stay editable after admission). `ChargeMemo.charge` keys the
   result on exactly those (the node's hardware, its `NodeAccelerators`, and the policy by
   identity: both are frozen, and the inventory keeps a node's hardware object across generations
   while only its bound pods change; a new token clears the memo), so pods of one
   Deployment or Job, and a pod validated now and seen in the watch later, are charged once.
2. `ChargeMemo.usage(parsed, inventory)` equals `team_usage(inventory, catalog=, policy=)` key for
   key (a team with pods on a type has that key, even at 0: each key counts its pods too). A pod's
   team is its namespace's label (never its own); sums are integer numerators per (team, type,
   denominator), one `Fraction` per key at the end.
3. The memo is cleared when the policy object changes or it holds MAX_ENTRIES keys, so it never
   grows without bound nor keeps old nodes alive for long.
4. `usage` keeps its sums and each counted pod's (team, type, amount) from one call to the next and
   updates them from what changed (accel.quota.pod_changes): pods gone or changed are taken out, pods
   new or changed put in, and the pods bound to a node whose hardware changed are recharged; so a
   generation costs O(changes), not O(pods) (~46 ms at 10,000 pods before). A namespace whose team
   changed (the namespace -> team map is computed per call only when the inventory's namespace labels
   are another object) has its pods recounted. Everything else a pod's count reads starts a fresh
   count: another policy object (its catalog, Kueue scope, team label), another `TypeIndex.token`
   (pending pods' types). A count left half done (a build abandoned) makes the next call fresh; one
   overtaken by a newer call between its steps leaves the sums to that one and finishes with a walk
   of its own (`_walk`).
5. `usage_steps` is `usage` in steps of at most STEP changed pods (accel.admission.context.context_steps:
   a generation that replaces every pod of the view costs milliseconds, and the event loop runs other
   admissions in between). Other calls may run between its steps (a `charge` for the previous
   generation's inventory); each step syncs again, so a memo reset meanwhile only costs recomputation.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from fractions import Fraction

from accel.capacity.inventory import (
    Inventory,
    NodeInventory,
    pod_accelerator_type,
    pod_gpu_equivalents,
)
from accel.cluster.labels import NodeAccelerators
from accel.cluster.pods import PodView, Terms
from accel.policy.kueue import kueue_scope, pod_is_queued
from accel.policy.models import ParsedPolicy
from accel.quota.pod_changes import PodChanges
from accel.quota.steps import finish_steps

MAX_ENTRIES = 4096
STEP = 128  # changed pods per step of `ChargeMemo.usage_steps` (~0.3 ms)

# (the node's hardware by id, the pod's node selection and accelerator requests)
ChargeKey = tuple[int, Terms | None, tuple[tuple[str, str], ...], tuple[tuple[str, int], ...]]


class ChargeMemo:
    """Pod charges kept across state generations (module rules); one per webhook replica."""

    def __init__(self) -> None:
        self._parsed: ParsedPolicy | None = None
        self._token: frozenset[tuple[str, str, str]] | None = None  # node label values the memo is for
        self._charges: dict[ChargeKey, tuple[NodeAccelerators | None, str, Fraction]] = {}
        # Rule 4: the last `usage` call's sums, kept and updated from what changed (accel.quota.pod_changes).
        self._pods = PodChanges()
        self._entries: dict[int, tuple[str, tuple[str, int], int]] = {}  # id(pod) -> (team, key, numerator)
        self._sums: dict[str, dict[tuple[str, int], list[int]]] = {}  # team -> key -> [numerator, pods]
        self._fold_parsed: ParsedPolicy | None = None  # what the sums were counted under
        self._fold_token: frozenset[tuple[str, str, str]] | None = None
        self._namespaces: Mapping[str, Mapping[str, str]] | None = None
        self._label = ""
        self._teams: dict[str, str | None] = {}  # namespace -> team, under `_label`
        self._folding = False  # a fold is between its first and last step
        self._epoch = 0  # folds started: a fold overtaken by a newer one stops updating the sums
        self.computed = 0  # charges computed (memo misses) over the memo's life

    def charge(self, pod: PodView, inventory: Inventory, parsed: ParsedPolicy) -> tuple[str, Fraction]:
        """(type, GPU-equivalents) the pod uses or will use (rule 1)."""
        self._sync(parsed, inventory)
        node = inventory.node(pod.node_name) if pod.node_name else None
        return self._charge(pod, node, inventory, parsed)

    def _charge(
        self, pod: PodView, node: NodeInventory | None, inventory: Inventory, parsed: ParsedPolicy
    ) -> tuple[str, Fraction]:
        """`charge` once `_sync` ran for this (policy, inventory): `usage` syncs once per call, not per
        pod (the inventory's type index is behind a pydantic private attribute: ~5 us a look-up)."""
        selector, requests = tuple(pod.node_selector.items()), tuple(pod.accelerators.items())
        # A bound pod's charge reads only its node's hardware (`NodeAccelerators`, kept by the inventory
        # while only the node's bound pods change: every bind makes a new node object, not new hardware).
        hardware = node.accelerators if node is not None else None
        key = (id(hardware), pod.required_terms, selector, requests)
        found = self._charges.get(key)
        if found is None or found[0] is not hardware:  # the entry holds it: its id is not reused
            policy = parsed.policy
            accel_type = pod_accelerator_type(pod, inventory, parsed.catalog)
            found = (hardware, accel_type, pod_gpu_equivalents(pod, inventory, parsed.catalog, policy))
            if len(self._charges) >= MAX_ENTRIES:  # rule 3, also within one `usage` call
                self._charges = {}
            self._charges[key] = found
            self.computed += 1
        return found[1], found[2]

    def _sync(self, parsed: ParsedPolicy, inventory: Inventory) -> None:
        """Rules 1 and 3: start afresh on a new policy, a full memo, or new node label values."""
        index = inventory.type_index(parsed.catalog)
        if index.token is not self._token:
            if index.token == self._token:
                index.token = self._token  # interned: the next check of this inventory is `is`
            else:
                self._token, self._charges = index.token, {}
        if parsed is not self._parsed or len(self._charges) >= MAX_ENTRIES:
            self._parsed, self._charges = parsed, {}

    def usage(self, parsed: ParsedPolicy, inventory: Inventory) -> dict[str, dict[str, Fraction]]:
        """team -> type -> GPU-equivalents of bound and pending non-terminal pods (rule 2)."""
        return finish_steps(self.usage_steps(parsed, inventory))

    def usage_steps(
        self, parsed: ParsedPolicy, inventory: Inventory
    ) -> Generator[None, None, dict[str, dict[str, Fraction]]]:
        """`usage` in steps of at most STEP changed pods, pausing between them (rule 5); the usage is the
        generator's return value."""
        self._sync(parsed, inventory)
        token = inventory.type_index(parsed.catalog).token
        label = parsed.policy.settings.team_label
        namespaces = inventory.namespace_labels
        teams, before = self._teams, self._teams
        if namespaces is not self._namespaces or label != self._label:
            teams = {name: labels.get(label) for name, labels in namespaces.items()}
        recount = (
            self._folding  # rule 4: a fold left half done (or still running: `_epoch` stops it)
            or parsed is not self._fold_parsed
            or (token is not self._fold_token and token != self._fold_token)
        )
        self._fold_parsed, self._fold_token, self._teams = parsed, token, teams
        self._namespaces, self._label = namespaces, label
        fresh, leaving, entering = self._pods.update(inventory, everything=recount)
        if fresh:
            self._entries, self._sums = {}, {}
        elif teams is not before and teams != before:  # recount the pods of namespaces whose team changed
            moved = [name for name in teams.keys() | before.keys() if teams.get(name) != before.get(name)]
            new = set(map(id, entering))  # counted with the new teams anyway
            again = [pod for pod in self._pods.in_namespaces(moved) if id(pod) not in new]
            leaving, entering = leaving + again, entering + again
        self._folding, self._epoch = True, self._epoch + 1
        epoch, entries, sums = self._epoch, self._entries, self._sums
        for start in range(0, len(leaving), STEP):
            if start:
                yield
                if self._epoch != epoch:
                    return self._walk(parsed, inventory)
            for pod in leaving[start:start + STEP]:
                found = entries.pop(id(pod), None)
                if found is not None:
                    team, key, numerator = found
                    per_team = sums[team]
                    cell = per_team[key]
                    cell[0] -= numerator
                    cell[1] -= 1
                    if not cell[1]:
                        del per_team[key]
                        if not per_team:
                            del sums[team]
        queued = kueue_scope(parsed.policy)
        nodes = self._pods.node_index
        for start in range(0, len(entering), STEP):
            if start or leaving:
                yield
                if self._epoch != epoch:
                    return self._walk(parsed, inventory)
                self._sync(parsed, inventory)  # a charge meanwhile for another inventory may have reset it
            for pod in entering[start:start + STEP]:
                pod_team = teams.get(pod.namespace)  # never the pod's own label (accel.admission.resolve)
                if not pod_team or pod_is_queued(pod, queued, pod_team):  # accel.policy.kueue rule 2
                    continue
                node = nodes.get(pod.node_name) if pod.node_name else None
                accel_type, amount = self._charge(pod, node, inventory, parsed)
                pod_key = (accel_type, amount.denominator)
                entries[id(pod)] = (pod_team, pod_key, amount.numerator)
                of_team = sums.setdefault(pod_team, {})
                counted = of_team.get(pod_key)
                if counted is None:
                    of_team[pod_key] = [amount.numerator, 1]
                else:
                    counted[0] += amount.numerator
                    counted[1] += 1
        self._folding = False
        return _usage(sums)

    def _walk(self, parsed: ParsedPolicy, inventory: Inventory) -> dict[str, dict[str, Fraction]]:
        """The usage by a walk of every pod, at once, leaving the fold alone: for a fold another one
        overtook between two steps (the newer one owns the kept sums now; rule 4)."""
        self._sync(parsed, inventory)
        label, queued = parsed.policy.settings.team_label, kueue_scope(parsed.policy)
        sums: dict[str, dict[tuple[str, int], list[int]]] = {}
        for pod in inventory.pods:
            team = inventory.team_of(pod.namespace, label)
            if not team or pod_is_queued(pod, queued, team):
                continue
            node = inventory.node(pod.node_name) if pod.node_name else None
            accel_type, amount = self._charge(pod, node, inventory, parsed)
            cell = sums.setdefault(team, {}).setdefault((accel_type, amount.denominator), [0, 0])
            cell[0] += amount.numerator
            cell[1] += 1
        return _usage(sums)


def _usage(sums: dict[str, dict[tuple[str, int], list[int]]]) -> dict[str, dict[str, Fraction]]:
    """team -> type -> GPU-equivalents from the integer numerators per (team, type, denominator): one
    `Fraction` per key (exact; summing Fractions per pod cost more than the rest of the walk)."""
    usage: dict[str, dict[str, Fraction]] = {}
    for team, per_key in sums.items():
        types = usage[team] = {}
        for (accel_type, denominator), (numerator, _) in per_key.items():
            types[accel_type] = types.get(accel_type, Fraction(0)) + Fraction(numerator, denominator)
    return usage
