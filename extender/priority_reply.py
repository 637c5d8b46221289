"""The prioritize reply (HostPriorityList) rendered from per-node fragments, no per-node work.

See `PriorityRenderer`: rows rendered once per node list, padded with JSON whitespace, gathered
with one numpy `take` per reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import numpy as np
import numpy.typing as npt
import orjson

from accel.placement.prioritize import Scores
from accel.placement.score_rules import MAX_EXTENDER_PRIORITY

SCORE_SLOTS = MAX_EXTENDER_PRIORITY + 1
MAX_ROW_BYTES = 96  # padded prioritize rows up to this width (names up to ~60 characters)


def render_priorities(scores: Sequence[tuple[str, int]]) -> bytes:
    """HostPriorityList: a top-level JSON array of {"Host", "Score"}."""
    return orjson.dumps([{"Host": host, "Score": score} for host, score in scores])


def host_fragment(host: str, score: int) -> bytes:
    """One HostPriority as JSON, byte for byte what render_priorities writes for it."""
    return b'{"Host":' + orjson.dumps(host) + b',"Score":%d}' % score


class PriorityRenderer:
    """Renders `Scores` as a HostPriorityList from fragments rendered once per node list.

    For every node of the index the SCORE_SLOTS possible `,{"Host":..,"Score":s}` fragments are
    rendered once, when the index's node list changes (a node added or removed; fragments of
    names seen before are reused), and kept at row `position * SCORE_SLOTS + score`. Rows are
    padded with spaces to one width (JSON whitespace, which every decoder skips), so a reply is
    one vectorised gather of rows and one copy: no per-node Python work at all. When the longest
    name would make rows wider than MAX_ROW_BYTES, rows are joined unpadded instead (exact
    `render_priorities` bytes). Replies naming a node the index does not know use
    render_priorities.
    """

    def __init__(self) -> None:
        self._names: tuple[str, ...] | None = None
        self._by_name: dict[str, tuple[bytes, ...]] = {}
        self._rows: npt.NDArray[np.void] | None = None  # padded rows (one item each), or None: use _flat
        self._flat: npt.NDArray[np.object_] = np.empty(0, dtype=object)

    def render(self, scores: Scores) -> bytes:
        if not scores.all_known:
            return render_priorities(scores.pairs())
        self._prepare(scores.index_names)
        at = scores.positions * SCORE_SLOTS + scores.scores
        if self._rows is not None:
            rows: bytes = self._rows.take(at).tobytes()
            return b"[" + rows[1:] + b"]"  # [1:] drops the first row's comma
        parts: list[bytes] = self._flat[at].tolist()
        return b"[" + b"".join(parts)[1:] + b"]"

    def _prepare(self, names: tuple[str, ...]) -> None:
        if names is self._names:
            return
        if names != self._names:
            old = self._by_name
            self._by_name = {
                n: old.get(n) or tuple(b"," + host_fragment(n, s) for s in range(SCORE_SLOTS)) for n in names
            }
            fragments = list(chain.from_iterable(map(self._by_name.__getitem__, names)))
            width = max(map(len, fragments), default=1)
            self._rows = padded_rows(fragments, width) if width <= MAX_ROW_BYTES else None
            self._flat = np.empty(0 if self._rows is not None else len(fragments), dtype=object)
            if self._rows is None:
                self._flat[:] = fragments
        self._names = names


def padded_rows(fragments: list[bytes], width: int) -> npt.NDArray[np.void]:
    """One `width`-byte item per fragment, right-padded with spaces (a 1-D array: `take` copies
    whole items, several times faster than gathering rows of a 2-D byte array)."""
    buffer = bytearray(b" " * (len(fragments) * width))
    for i, fragment in enumerate(fragments):
        buffer[i * width : i * width + len(fragment)] = fragment
    return np.frombuffer(bytes(buffer), dtype=np.dtype((np.void, width)))
