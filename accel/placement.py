"""The extender's decision engine: filter, prioritize, preempt and bind plans over one cluster snapshot.

Per state generation it keeps an `accel.extender_index.ClusterIndex` (device model, node class
and topology class per node, as numpy columns by node position), rebuilt incrementally. A
request is then: node names -> positions (one dict lookup per name), positions -> class ids
(vectorised), one verdict or component score per *distinct* class (memoised per class id, valid
across generations), and a vectorised gather back to the names. Nodes with assumed binds are the
only ones re-classed per request.

`ExtenderCore` is assembled from one class per step over a shared state: accel.extender_state
(snapshot, learned mix, assumed binds, caches; its rules cover counting pods, assumed binds and
why all of it is per process), accel.extender_filter, accel.extender_scores,
accel.extender_bind and accel.extender_preempt. Their public names are re-exported here.

Rules:
1. The engine is pure: the caller passes the snapshot and `now`; IO (binding) stays outside.
"""

from __future__ import annotations

from accel.extender_bind import BindPlan, BindRefused, ExtenderBinder
from accel.extender_filter import ExtenderFilter
from accel.extender_index import ClusterIndex
from accel.extender_preempt import ExtenderPreempter
from accel.extender_scores import Scores
from accel.extender_state import FILTER_MEMO_LIMIT, MEMO_LIMIT, POD_CACHE_LIMIT, SEEN_UIDS_LIMIT
from accel.filter_columns import FilterColumns, FilterOutcome

__all__ = [
    "FILTER_MEMO_LIMIT",
    "MEMO_LIMIT",
    "POD_CACHE_LIMIT",
    "SEEN_UIDS_LIMIT",
    "BindPlan",
    "BindRefused",
    "ClusterIndex",
    "ExtenderCore",
    "FilterColumns",
    "FilterOutcome",
    "Scores",
]


class ExtenderCore(ExtenderFilter, ExtenderBinder, ExtenderPreempter):
    """Learned workload, assumed binds and per-generation caches; one per extender process.

    Filter, prioritize (through the binder, which explains with it), bind and preempt steps over one
    `ExtenderState` (see the module docstring).
    """
