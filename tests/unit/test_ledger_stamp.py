"""accel.quota.ledger: stamping an entry's `seen` (a pruning pass) gives exactly what re-encoding gives."""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from accel.quota.ledger import LEDGER_KEY, Ledger, Reservation, _member, _replace_seen, _stamped_member

WORDS = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8)
VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)  # orjson's range
    | st.floats(allow_nan=False)
    | WORDS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(WORDS, inner, max_size=3),
    max_leaves=6,
)


def reencoded(rid: str, member: str, seen: int) -> str:
    """The definition: decode the entry, set "seen", encode it again."""
    entry = orjson.loads(member[len(orjson.dumps(rid).decode()) + 1:])
    entry["seen"] = seen
    return _member(rid, entry)


@settings(max_examples=300, deadline=None)
@given(
    rid=WORDS,
    entry=st.dictionaries(WORDS, VALUES, min_size=0, max_size=5),
    seen=st.integers(min_value=0, max_value=2**63 - 1),
    old_seen=st.none() | st.integers(min_value=0, max_value=2**40),
)
def test_stamped_member_equals_reencoding(
    rid: str, entry: dict[str, Any], seen: int, old_seen: int | None
) -> None:
    """Whatever a newer writer stored in the entry (nested "seen" keys, odd text, an empty entry,
    an older stamp), the stamped member is the re-encoded one."""
    if old_seen is not None:
        entry["seen"] = old_seen
    member = _member(rid, entry)
    assert _stamped_member(rid, member, seen) == reencoded(rid, member, seen)


@settings(max_examples=100, deadline=None)
@given(
    amount=st.fractions(min_value=0, max_value=64),
    seen=st.none() | st.integers(min_value=0, max_value=2**40),
    stamp=st.integers(min_value=0, max_value=2**40),
    job=WORDS,
)
def test_replace_seen_equals_dataclasses_replace(
    amount: Fraction, seen: int | None, stamp: int, job: str
) -> None:
    reservation = Reservation("uid-1", "nlp", "nvidia-h100-80gb", amount, "nlp", 1.5, 121.5, "r", job, "pod",
                              "bound", Fraction(1, 2), seen)
    assert _replace_seen(reservation, stamp) == dataclasses.replace(reservation, seen=stamp)


def test_pruned_document_is_the_plain_encoding() -> None:
    """After a pass that stamps some entries (rule 4), `to_data` is still exactly orjson's encoding
    of every entry (rule 1)."""
    entries = {
        f"u{i}": Reservation(f"u{i}", "nlp", "", Fraction(i + 1, 3), "nlp", 1.0, 100.0, "r", name=f"p{i}",
                             seen=5 if i % 3 == 0 else None)
        for i in range(9)
    }
    shown = frozenset({"u0", "u1", "u2", "u4"})
    ledger = Ledger(entries).registered("other", 4, 2.0).pruned(now=2.0, visible=shown, watermark=7)
    assert {rid: r.seen for rid, r in ledger.reservations.items()} == {
        "u0": 5, "u1": 7, "u2": 7, "u3": 5, "u4": 7, "u5": None, "u6": 5, "u7": None, "u8": None,
    }
    expected = orjson.dumps({
        "reservations": {rid: r.to_json() for rid, r in ledger.reservations.items()},
        "writers": {"other": {"watermark": 4, "at": 2.0}},
    })
    assert ledger.to_data()[LEDGER_KEY] == expected.decode()
