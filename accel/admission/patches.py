"""The one JSON Patch (RFC 6902) builder: every webhook patch op is made here.

A `PatchBuilder` wraps a private working copy of the incoming object and applies each op to that
copy as it records it, so every later op is checked against the object *as the API server will
see it at that point* (https://www.rfc-editor.org/rfc/rfc6902#section-4.1).

Invariants:
1. Path tokens are escaped per RFC 6901 section 3 (`~` -> `~0` first, then `/` -> `~1`).
2. `add` never targets a missing parent: the deepest missing ancestor is added whole instead
   (`add /metadata/annotations {"k": "v"}`), so the patch applies to the incoming object as is.
3. `/-` appends only to an array that exists; a missing array is added whole.
4. Setting a value equal to the current one records nothing: a patch builder run over its own
   output yields an empty patch (reinvocation safety).
5. `document` is always the incoming object with every recorded op applied.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

Token = str | int
Op = dict[str, Any]


class PatchError(ValueError):
    """An op that cannot apply to the document (e.g. stepping into a scalar)."""


_IMMUTABLE = (str, int, float, bool, type(None))
_MISSING: Any = object()


def _copy(value: Any) -> Any:
    """A deep copy of JSON data (a C-level round trip; much faster than copy.deepcopy); scalars
    are immutable and returned as they are (most values a webhook sets are strings)."""
    if type(value) in _IMMUTABLE:
        return value
    try:
        return orjson.loads(orjson.dumps(value))
    except TypeError:  # not plain JSON data (never from the API server); fall back
        return copy.deepcopy(value)


def escape(token: Token) -> str:
    """One reference token, escaped per RFC 6901 (`accel.dev/profile` -> `accel.dev~1profile`)."""
    return str(token).replace("~", "~0").replace("/", "~1")


def pointer(tokens: Sequence[Token]) -> str:
    """A JSON Pointer from raw tokens: `("metadata", "annotations", "a/b")` ->
    `/metadata/annotations/a~1b`."""
    return _pointer(tuple(tokens))


@functools.lru_cache(maxsize=4096)  # the webhook writes the same few dozen paths on every pod
def _pointer(tokens: tuple[Token, ...]) -> str:
    return "".join("/" + escape(token) for token in tokens)


def _child(node: Any, token: Token) -> tuple[bool, Any]:
    """(exists, value) of `node[token]`; raises PatchError when `node` cannot have children."""
    if isinstance(node, dict):
        return (token in node, node.get(token)) if isinstance(token, str) else (False, None)
    if isinstance(node, list):
        if isinstance(token, int) and 0 <= token < len(node):
            return True, node[token]
        return False, None
    raise PatchError(f"cannot step into {type(node).__name__} with {token!r}")


class PatchBuilder:
    """Records minimal ops against a working copy of `document` (see module invariants)."""

    __slots__ = ("_ops", "document")

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document: dict[str, Any] = _copy(document)
        self._ops: list[Op] = []

    @property
    def ops(self) -> list[Op]:
        return list(self._ops)

    def __bool__(self) -> bool:
        return bool(self._ops)

    def get(self, tokens: Sequence[Token], default: Any = None) -> Any:
        """The current value at `tokens`, or `default` when any part of the path is missing."""
        node: Any = self.document
        for token in tokens:
            if type(node) is dict and type(token) is str:  # the common step, without a call
                node = node.get(token, _MISSING)
                if node is _MISSING:
                    return default
                continue
            if not isinstance(node, dict | list):
                return default
            found, node = _child(node, token)
            if not found:
                return default
        return node

    def exists(self, tokens: Sequence[Token]) -> bool:
        sentinel = object()
        return self.get(tokens, sentinel) is not sentinel

    def set(self, tokens: Sequence[Token], value: Any) -> None:
        """Make `document[tokens] == value`: replace, add, or add the deepest missing parent whole."""
        if not tokens:
            raise PatchError("cannot replace the whole document")
        node: Any = self.document
        for depth, token in enumerate(tokens[:-1]):
            if type(node) is dict and type(token) is str:  # the common step, without a call
                child = node.get(token, _MISSING)
                found = child is not _MISSING
            else:
                found, child = _child(node, token)
            if not found or not isinstance(child, dict | list):
                nested: Any = _copy(value)
                for inner in reversed(tokens[depth + 1 :]):
                    if not isinstance(inner, str):
                        raise PatchError(
                            f"cannot create array index {inner!r} under missing "
                            f"{pointer(tokens[: depth + 1])}"
                        )
                    nested = {inner: nested}
                self._record("replace" if found else "add", tokens[: depth + 1], nested, node, token)
                return
            node = child
        last = tokens[-1]
        found, current = _child(node, last)
        if found and current == value:
            return
        self._record("replace" if found else "add", tokens, _copy(value), node, last)

    def set_members(self, tokens: Sequence[Token], values: Mapping[str, Any]) -> None:
        """`set([*tokens, key], value)` for each item in order (the same ops), walking to the
        object at `tokens` once instead of once per key."""
        parent = self.get(tokens)
        prefix = pointer(tokens)
        for key, value in values.items():
            if type(parent) is not dict:  # missing or not an object: `set` adds or reports it
                self.set([*tokens, key], value)
                parent = self.get(tokens)
                continue
            current = parent.get(key, _MISSING)
            if current is not _MISSING and current == value:
                continue
            op = "add" if current is _MISSING else "replace"
            self._ops.append({"op": op, "path": prefix + "/" + escape(key), "value": _copy(value)})
            parent[key] = _copy(value)

    def append(self, tokens: Sequence[Token], value: Any) -> None:
        """Append `value` to the array at `tokens` (created with just `value` when missing)."""
        current = self.get(tokens)
        if not isinstance(current, list):
            self.set(tokens, [value])
            return
        self._ops.append({"op": "add", "path": pointer(tokens) + "/-", "value": _copy(value)})
        current.append(_copy(value))

    def remove(self, tokens: Sequence[Token]) -> None:
        """Remove the member at `tokens` if it exists (nothing recorded otherwise)."""
        if not tokens or not self.exists(tokens):
            return
        parent = self.get(tokens[:-1])
        self._ops.append({"op": "remove", "path": pointer(tokens)})
        del parent[tokens[-1]]

    def _record(self, op: str, tokens: Sequence[Token], value: Any, parent: Any, key: Token) -> None:
        self._ops.append({"op": op, "path": pointer(tokens), "value": value})
        if isinstance(parent, list):
            if not isinstance(key, int) or key > len(parent):
                raise PatchError(f"index {key!r} is past the end of {pointer(tokens[:-1])}")
            if op == "add":
                parent.insert(key, _copy(value))
            else:
                parent[key] = _copy(value)
        else:
            parent[key] = _copy(value)
