"""Small numpy helpers for the extender's per-candidate columns (class ids, scores).

Id columns hold small non-negative ids with -1 for "unknown"; lookups indexed by `id + 1` keep
slot 0 for the unknown id, so a gather never needs a mask.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

IntColumn = npt.NDArray[np.intp]
BoolColumn = npt.NDArray[np.bool_]
FloatColumn = npt.NDArray[np.float64]


def present_ids(ids: IntColumn) -> list[int]:
    """The distinct ids in a column, ascending, without the unknown id (-1)."""
    if not len(ids):
        return []
    counts = np.bincount(ids + 1)
    found: list[int] = np.flatnonzero(counts[1:]).tolist()
    return found


def id_column(values: dict[int, float], size: int) -> FloatColumn:
    """A float lookup indexed by id + 1 for ids 0..size-1 (slot 0 = unknown); 0.0 where unset."""
    out = np.zeros(size + 1)
    if values:
        out[np.fromiter(values, dtype=np.intp, count=len(values)) + 1] = list(values.values())
    return out
