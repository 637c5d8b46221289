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
   result on exactly those (the node and policy by identity: both are frozen, and the inventory
   keeps unchanged nodes across generations; a new token clears the memo), so pods of one
   Deployment or Job, and a pod validated now and seen in the watch later, are charged once.
2. `ChargeMemo.usage(parsed, inventory)` equals `team_usage(inventory, catalog=, policy=)` key for
   key (a team with pods on a type has that key, even at 0). The team is looked up per pod each
   time (namespace labels change without the pod changing); sums are integer numerators per
   (team, type, denominator), one `Fraction` per key at the end.
3. The memo is cleared when the policy object changes or it holds MAX_ENTRIES keys, so it never
   grows without bound nor keeps old nodes alive for long.
4. `usage` also remembers each pod object's charge until its next call (only pods still in the
   inventory), so a generation costs one dict lookup per unchanged pod, not a key built per pod.
5. `usage_steps` is `usage` in steps (accel.admission.context.context_steps: a generation that
   replaces every pod of the view costs milliseconds, and the event loop runs other admissions in
   between). Other calls may run between its steps (a `charge` for the previous generation's
   inventory); each step syncs again, so a memo reset meanwhile only costs recomputation.
"""

from __future__ import annotations

from collections.abc import Generator
from fractions import Fraction

from accel.capacity.inventory import (
    Inventory,
    NodeInventory,
    pod_accelerator_type,
    pod_gpu_equivalents,
)
from accel.cluster.pods import PodView, Terms
from accel.policy.kueue import kueue_scope, pod_is_queued
from accel.policy.models import ParsedPolicy

MAX_ENTRIES = 4096
STEP = 128  # pods per step of `ChargeMemo.usage_steps` (~0.3 ms)

ChargeKey = tuple[int, Terms | None, tuple[tuple[str, str], ...], tuple[tuple[str, int], ...]]  # node by id


class ChargeMemo:
    """Pod charges kept across state generations (module rules); one per webhook replica."""

    def __init__(self) -> None:
        self._parsed: ParsedPolicy | None = None
        self._token: frozenset[tuple[str, str, str]] | None = None  # node label values the memo is for
        self._charges: dict[ChargeKey, tuple[NodeInventory | None, str, Fraction]] = {}
        # Rule 4: by pod object, from the previous `usage` call (pod and node held: ids stay theirs).
        self._by_pod: dict[int, tuple[PodView, NodeInventory | None, ParsedPolicy, str, Fraction]] = {}
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
        key = (id(node), pod.required_terms, selector, requests)
        found = self._charges.get(key)
        if found is None or found[0] is not node:  # the entry holds its node: its id is not reused
            policy = parsed.policy
            accel_type = pod_accelerator_type(pod, inventory, parsed.catalog)
            found = (node, accel_type, pod_gpu_equivalents(pod, inventory, parsed.catalog, policy))
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
                self._token, self._charges, self._by_pod = index.token, {}, {}
        if parsed is not self._parsed or len(self._charges) >= MAX_ENTRIES:
            self._parsed, self._charges = parsed, {}

    def usage(self, parsed: ParsedPolicy, inventory: Inventory) -> dict[str, dict[str, Fraction]]:
        """team -> type -> GPU-equivalents of bound and pending non-terminal pods (rule 2)."""
        steps = self.usage_steps(parsed, inventory)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                usage: dict[str, dict[str, Fraction]] = done.value
                return usage

    def usage_steps(
        self, parsed: ParsedPolicy, inventory: Inventory
    ) -> Generator[None, None, dict[str, dict[str, Fraction]]]:
        """`usage` in steps of at most STEP pods, pausing between them (rule 5); the usage is the
        generator's return value."""
        self._sync(parsed, inventory)
        label = parsed.policy.settings.team_label
        sums: dict[str, dict[tuple[str, int], int]] = {}
        previous, current = self._by_pod, {}
        queued = kueue_scope(parsed.policy)
        pods = inventory.pods
        for start in range(0, len(pods), STEP):
            if start:
                yield
                self._sync(parsed, inventory)  # a charge meanwhile for another inventory may have reset it
            for pod in pods[start:start + STEP]:
                # never the pod's own label (accel.admission.resolve)
                team = inventory.team_of(pod.namespace, label)
                if not team or pod_is_queued(pod, queued, team):  # accel.policy.kueue rule 2: Kueue books
                    continue
                node = inventory.node(pod.node_name) if pod.node_name else None
                seen = previous.get(id(pod))
                if seen is None or seen[0] is not pod or seen[1] is not node or seen[2] is not parsed:
                    seen = (pod, node, parsed, *self._charge(pod, node, inventory, parsed))
                current[id(pod)] = seen
                accel_type, amount = seen[3], seen[4]
                per_team = sums.setdefault(team, {})
                key = (accel_type, amount.denominator)
                per_team[key] = per_team.get(key, 0) + amount.numerator
        usage: dict[str, dict[str, Fraction]] = {}
        for team, per_key in sums.items():
            types = usage[team] = {}
            for (accel_type, denominator), numerator in per_key.items():
                types[accel_type] = types.get(accel_type, Fraction(0)) + Fraction(numerator, denominator)
        self._by_pod = current
        return usage
