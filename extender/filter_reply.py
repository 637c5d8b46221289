"""The NodeNames-form filter reply joined from cached per-node JSON fragments.

At 5000 nodes, spelling the filter decision as a Python list and two dicts and encoding them cost
more than the decision. `FilterRenderer` keeps, per node of the index, its JSON fragments
`,"name"` (a NodeNames item) and `,"name":` (a FailedNodes key), rebuilt only when the index's node
list changes, and gathers them by position with numpy: a reply is a few gathers and one
`bytes.join`, with no per-name Python work.

The reply is `wire.render_filter(args, outcome(cols))` up to JSON whitespace: same keys in the same
order, orjson's encoding of every string. With one name length, NodeNames is a gather of exact
fixed-width rows (byte for byte, so it is also the key prioritize's body is matched against);
FailedNodes rows are padded with spaces to one width (two gathers instead of a join of 2 x 4000
fragments) when that adds at most PAD_SHARE, and are byte for byte equal when names and reasons
each have one length. The reply is produced only when every candidate is in the index and none
is repeated (a repeated name collapses in the reply's dicts); otherwise `render` answers None and
the caller renders the generic way.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import orjson

from accel.placement.columns import IntColumn
from accel.placement.filter_columns import FAILED, OK, UNRESOLVABLE, FilterColumns
from accel.placement.filter_rules import Verdict
from extender.priority_reply import padded_rows

ObjectColumn = npt.NDArray[np.object_]
PLAIN_LISTS_KEPT = 16
REPLIES_KEPT = 16
PAD_SHARE = 0.125  # FailedNodes as fixed-width rows when padding adds at most this share of a row


@dataclass(frozen=True, slots=True)
class Passed:
    """The passed names as JSON (as the scheduler will send them to prioritize), list, positions."""

    key: bytes
    names: list[str]
    positions: IntColumn


@dataclass(frozen=True, slots=True)
class FilterReply:
    """A rendered reply; `passed` is None when every candidate or none passed (prioritize then
    gets the filter's own list, or is not called)."""

    body: bytes
    passed: Passed | None = None


def _joined(parts: ObjectColumn, open_: bytes, close: bytes) -> bytes:
    """open_ + the parts joined, less the first part's leading comma + close."""
    return open_ + b"".join(parts.tolist())[1:] + close


class FilterRenderer:
    """Renders `FilterColumns` as the filter reply (module docstring)."""

    def __init__(self, *, replies_kept: int = REPLIES_KEPT) -> None:
        """`replies_kept`: rendered replies kept per columns object (0: none)."""
        self.replies_kept = replies_kept
        self._names: tuple[str, ...] | None = None
        self._items: ObjectColumn = np.empty(0, dtype=object)  # ,"name"
        self._item_rows: npt.NDArray[np.void] | None = None  # the same as rows, when all one width
        self._keys: ObjectColumn = np.empty(0, dtype=object)  # ,"name":
        self._key_rows: npt.NDArray[np.void] = padded_rows([], 1)  # the same, padded to one width
        self._key_min = 0
        self._objects: ObjectColumn = np.empty(0, dtype=object)  # name
        self._plain: OrderedDict[int, tuple[IntColumn, int, bool]] = OrderedDict()
        self._replies: OrderedDict[int, tuple[FilterColumns, FilterReply]] = OrderedDict()

    def render(self, cols: FilterColumns) -> FilterReply | None:
        """The reply, or None when a candidate is unknown or repeated (render_filter's case).
        The same columns object (ExtenderCore.filter_columns memo) gets the same reply object."""
        found = self._replies.get(id(cols))
        if found is not None and found[0] is cols:
            self._replies.move_to_end(id(cols))
            return found[1]
        reply = self._render(cols)
        if reply is not None:
            self._replies[id(cols)] = (cols, reply)
            while len(self._replies) > self.replies_kept:
                self._replies.popitem(last=False)
        return reply

    def _render(self, cols: FilterColumns) -> FilterReply | None:
        if not self._plain_list(cols):
            return None
        self._prepare(cols.index_names)
        pos, cids, kinds = cols.positions, cols.cids, cols.kinds
        passing = cols.passing
        at = pos[passing]
        if self._item_rows is not None:  # one name length: the rows are the exact fragments
            names_json = b"[" + self._item_rows.take(at).tobytes()[1:] + b"]"
        else:
            names_json = _joined(self._items[at], b"[", b"]")
        parts = [b'{"Nodes":null,"NodeNames":', names_json]
        for label, kind in ((b',"FailedNodes":', FAILED), (b',"FailedAndUnresolvableNodes":', UNRESOLVABLE)):
            mask = kinds == kind
            reasons = {c: orjson.dumps(v.reason) for c, v in cols.verdicts.items() if _kind(v) == kind}
            parts += (label, self._failed(pos[mask], cids[mask], reasons) if mask.any() else b"{}")
        parts.append(b',"Error":""}')
        body = b"".join(parts)
        if not len(at) or len(at) == len(pos):
            return FilterReply(body)
        return FilterReply(body, Passed(names_json, self._objects[at].tolist(), at))

    def _failed(self, at: IntColumn, cids: IntColumn, reasons: dict[int, bytes]) -> bytes:
        """The `{"name":"reason",..}` object of the failed candidates at positions `at`.

        Rows of one width (a key padded after its colon, a reason after its closing quote: JSON
        whitespace), gathered with two takes, when padding adds at most PAD_SHARE to the shortest
        row; otherwise the exact fragments interleaved and joined."""
        widths = [len(r) for r in reasons.values()]
        shortest = self._key_min + min(widths)
        key_width, reason_width = self._key_rows.itemsize, max(widths)
        if key_width + reason_width - shortest > shortest * PAD_SHARE:
            pairs = np.empty(2 * len(at), dtype=object)
            pairs[0::2] = self._keys[at]
            reason_of = np.empty(int(cids.max()) + 1, dtype=object)
            reason_of[list(reasons)] = list(reasons.values())
            pairs[1::2] = reason_of[cids]
            return _joined(pairs, b"{", b"}")
        slot = np.zeros(int(cids.max()) + 1, dtype=np.intp)
        slot[list(reasons)] = range(len(reasons))
        rows = np.empty(len(at), dtype=[("key", np.void, key_width), ("reason", np.void, reason_width)])
        rows["key"] = self._key_rows.take(at)
        rows["reason"] = padded_rows(list(reasons.values()), reason_width).take(slot[cids])
        return b"{" + rows.tobytes()[1:] + b"}"

    def _plain_list(self, cols: FilterColumns) -> bool:
        """Every candidate known and none repeated; cached per positions array (remembered lists
        come back as the same array object, which the cache holds so its id stays unique)."""
        pos, size = cols.positions, len(cols.index_names)
        found = self._plain.get(id(pos))
        if found is not None and found[0] is pos and found[1] == size:
            return found[2]
        plain = not len(pos) or (int(pos.max()) < size and int(np.bincount(pos, minlength=size).max()) <= 1)
        self._plain[id(pos)] = (pos, size, plain)
        while len(self._plain) > PLAIN_LISTS_KEPT:
            self._plain.popitem(last=False)
        return plain

    def _prepare(self, names: tuple[str, ...]) -> None:
        if names is self._names:
            return
        encoded = [orjson.dumps(name) for name in names]
        items = [b"," + e for e in encoded]
        self._items = _objects(items)
        width = max(map(len, items), default=1)
        self._item_rows = padded_rows(items, width) if min(map(len, items), default=width) == width else None
        keys = [b"," + e + b":" for e in encoded]
        self._keys = _objects(keys)
        self._key_min = min(map(len, keys), default=0)
        self._key_rows = padded_rows(keys, max(map(len, keys), default=1))
        self._objects = _objects(list(names))
        self._names = names


def _kind(verdict: Verdict) -> int:
    return OK if verdict.ok else UNRESOLVABLE if verdict.unresolvable else FAILED


def _objects(values: Sequence[object]) -> ObjectColumn:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out
