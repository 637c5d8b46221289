"""A filter decision as columns over the candidates, before it is spelled out per name.

`ExtenderCore.filter_columns` decides per *node class* and gathers the verdict kind back to the
candidates with numpy; `FilterColumns` holds that result. Two consumers: `outcome` spells it as
a `FilterOutcome` (name lists and reason dicts, the engine's public answer), and the extender's
reply renderer (`extender.filter_reply`) joins cached per-node JSON fragments straight from the
columns, so a 5000-node reply costs no per-name Python work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import compress

import numpy as np
import numpy.typing as npt

from accel.placement.columns import BoolColumn, IntColumn
from accel.placement.filter_rules import Verdict

OK, FAILED, UNRESOLVABLE = 0, 1, 2
KindColumn = npt.NDArray[np.int8]


@dataclass(frozen=True, slots=True)
class FilterOutcome:
    passed: list[str]
    failed: dict[str, str]
    unresolvable: dict[str, str]


@dataclass(frozen=True, slots=True)
class FilterColumns:
    """Per candidate (request order): position in `index_names` (len(index_names) when unknown),
    class id (-1 unknown) and kind (OK, FAILED, UNRESOLVABLE; unknown nodes FAILED); the verdict
    of every class present; `unknown_reason(name)` words the failure of a node not in the index."""

    names: Sequence[str]
    positions: IntColumn
    cids: IntColumn
    kinds: KindColumn
    verdicts: dict[int, Verdict]
    index_names: tuple[str, ...]
    unknown_reason: Callable[[str], str]

    @property
    def passing(self) -> BoolColumn:
        mask: BoolColumn = self.kinds == OK
        return mask


def kinds_of(cids: IntColumn, verdicts: dict[int, Verdict], classes: int) -> KindColumn:
    """The kind of every candidate from its class id (one gather; unknown ids are FAILED)."""
    kind_of = np.full(classes + 1, FAILED, dtype=np.int8)  # slot 0: unknown
    for cid, verdict in verdicts.items():
        kind_of[cid + 1] = OK if verdict.ok else UNRESOLVABLE if verdict.unresolvable else FAILED
    kinds: KindColumn = kind_of[cids + 1]
    return kinds


def outcome(cols: FilterColumns) -> FilterOutcome:
    """The columns as name lists and reason dicts, in request order (a repeated name keeps its
    first place, as dict insertion does)."""
    names, cids, kinds = cols.names, cols.cids, cols.kinds
    passing = cols.passing
    passed = list(compress(names, passing.tolist()))
    failed: dict[str, str] = {}
    unresolvable: dict[str, str] = {}
    if len(passed) == len(names):
        return FilterOutcome(passed, failed, unresolvable)
    if (cids < 0).any():  # unknown nodes: a reason naming each one, in request order
        for i in np.flatnonzero(~passing).tolist():
            name, cid = names[i], int(cids[i])
            if cid < 0:
                failed[name] = cols.unknown_reason(name)
            else:
                verdict = cols.verdicts[cid]
                (unresolvable if verdict.unresolvable else failed)[name] = verdict.reason
        return FilterOutcome(passed, failed, unresolvable)
    reason_of = np.empty(int(cids.max()) + 2, dtype=object)
    for cid, verdict in cols.verdicts.items():
        reason_of[cid + 1] = verdict.reason
    for kind, target in ((FAILED, failed), (UNRESOLVABLE, unresolvable)):
        mask = kinds == kind
        if mask.any():
            target.update(
                zip(compress(names, mask.tolist()), reason_of[cids[mask] + 1].tolist(), strict=True)
            )
    return FilterOutcome(passed, failed, unresolvable)
