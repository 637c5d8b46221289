"""The extender's decision engine: filter, prioritize, preempt and bind plans over one cluster snapshot.

Per state generation it keeps an `accel.placement.index.ClusterIndex` (device model, node class
and topology class per node, as numpy columns by node position), rebuilt incrementally. A
request is then: node names -> positions (one dict lookup per name), positions -> class ids
(vectorised), one verdict or component score per *distinct* class (memoised per class id, valid
across generations), and a vectorised gather back to the names. Nodes with assumed binds are the
only ones re-classed per request.

`ExtenderCore` is assembled from one class per step over a shared state: accel.placement.state
(snapshot, learned mix, assumed binds, caches; its rules cover counting pods, assumed binds and
why all of it is per process), accel.placement.filter, accel.placement.prioritize,
accel.placement.bind and accel.placement.preempt. Import their names from those modules.

Rules:
1. The engine is pure: the caller passes the snapshot and `now`; IO (binding) stays outside.
"""

from __future__ import annotations

from accel.placement.bind import ExtenderBinder
from accel.placement.filter import ExtenderFilter
from accel.placement.preempt import ExtenderPreempter


class ExtenderCore(ExtenderFilter, ExtenderBinder, ExtenderPreempter):
    """Learned workload, assumed binds and per-generation caches; one per extender process.

    Filter, prioritize (through the binder, which explains with it), bind and preempt steps over one
    `ExtenderState` (see the module docstring).
    """
