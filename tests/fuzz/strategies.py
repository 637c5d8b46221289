"""Hypothesis strategies for hostile request bodies: raw bytes, arbitrary JSON, and valid requests
with one part broken (the inputs that get past a JSON parser and reach the decision code).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import strategies as st

from tests.corpus.make_corpus import _pod, review

ODD_CHARS = st.characters(codec=None, categories=("L", "M", "N", "P", "S", "Z", "C"))
NASTY_TEXT = st.one_of(
    st.text(ODD_CHARS, max_size=40),
    st.sampled_from(["", "\u0000", "\u202e\u200f", "\U0001f680" * 3, "\ud800", "\udfff", "-1", "1e999", "0.5",
                     "NaN", "9" * 60, "nvidia.com/gpu", "a100-80gb", "../../etc", " ", "true", "null"]),
)  # fmt: skip
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64), NASTY_TEXT,
    st.floats(allow_nan=False, allow_infinity=False),
)  # fmt: skip
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(NASTY_TEXT, inner, max_size=4)),
    max_leaves=20,
)

BASES: dict[str, dict[str, Any]] = {
    "/mutate": review(),
    "/validate": review(),
    "/filter": {"Pod": _pod(uid="u-1"), "Nodes": None, "NodeNames": ["gpu-a100-01", "gpu-h100-01"]},
    "/prioritize": {"Pod": _pod(uid="u-1"), "Nodes": None, "NodeNames": ["gpu-a100-01", "gpu-h100-01"]},
    "/bind": {"PodName": "llm-pretrain-0", "PodNamespace": "team-nlp", "PodUID": "x", "Node": "gpu-h200-01"},
    "/api/estimates": {"model": "llama-3-8b", "tokens": 1e9, "precision": "bf16", "gpus": 8},
    "/api/hardware-profiles/draft": {"nodes": ["gpu-a100-01"], "name": "drafted"},
}


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside `value` (dict keys and list indices), the root included."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths(child, (*prefix, index))
    return found


def _apply(doc: Any, path: tuple[Any, ...], action: str, new: Any) -> Any:
    if not path:
        return new
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    if action == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    elif action == "wrap":
        parent[path[-1]] = [parent[path[-1]]]
    else:
        parent[path[-1]] = new
    return doc


@st.composite
def broken_request(draw: st.DrawFn, route: str) -> bytes:
    """The route's valid request with 1-3 values replaced, deleted or wrapped, then encoded."""
    doc = copy.deepcopy(BASES.get(route, BASES["/mutate"]))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths(doc)))
        doc = _apply(doc, path, draw(st.sampled_from(["replace", "delete", "wrap"])), draw(JSON_VALUES))
    return encode(doc, ascii_only=draw(st.booleans()))


def encode(doc: Any, *, ascii_only: bool) -> bytes:
    """JSON bytes; with `ascii_only=False`, lone surrogates go out as (invalid) raw UTF-8 bytes."""
    text = json.dumps(doc, ensure_ascii=ascii_only)
    return text.encode("utf-8", errors="surrogatepass")


@st.composite
def any_body(draw: st.DrawFn, route: str) -> bytes:
    """Raw bytes, arbitrary JSON, or a broken valid request for `route`."""
    kind = draw(st.sampled_from(["bytes", "json", "broken", "broken"]))
    if kind == "bytes":
        return draw(st.binary(max_size=512))
    if kind == "json":
        return encode(draw(JSON_VALUES), ascii_only=draw(st.booleans()))
    return draw(broken_request(route))
