"""kube.rest.decode_json: every API server answer and watch line is decoded here (orjson first)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kube.rest import decode_json

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(JSON_VALUES)
def test_decodes_what_the_standard_library_decodes(value: object) -> None:
    raw = json.dumps(value).encode()
    assert decode_json(raw) == json.loads(raw)


def test_integers_beyond_64_bits_and_lone_surrogates_still_decode() -> None:
    """JSON allows both (a CRD's unstructured field may hold either); orjson refuses the surrogate."""
    raw = b'{"big": 123456789012345678901234567890, "text": "\\ud800"}'
    assert decode_json(raw) == {"big": 123456789012345678901234567890, "text": "\ud800"}


@pytest.mark.parametrize("number", [-(2**63) - 1, 2**64, 10**30, -(10**25)])
def test_integers_beyond_64_bits_stay_exact_integers(number: int) -> None:
    """orjson would round them to floats without a word (hypothesis found -9223372036854775809)."""
    value = decode_json(f'{{"n": {number}}}'.encode())["n"]
    assert value == number and isinstance(value, int)


@pytest.mark.parametrize("raw", [b"", b"{", b'{"a": }', b"\xff\xfe"])
def test_invalid_json_raises_value_error(raw: bytes) -> None:
    """Callers catch ValueError (kube.rest._status_message) as they did with json.loads."""
    with pytest.raises(ValueError):
        decode_json(raw)
