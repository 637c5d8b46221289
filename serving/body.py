"""Read a JSON request body strictly: bounded size, bounded nesting, an object at the top.

`read_json(request)` is what every handler calls; anything wrong raises `BadRequest(reason)` (or
`BodyTooLarge`), which the error middleware in serving/app.py turns into a 400 (413) JSON answer.
The reason names what was wrong and how to fix it; it never echoes the body.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

MAX_JSON_DEPTH = 64
_CONTAINERS = (dict, list)  # a tuple: isinstance checks it faster than the `dict | list` union


class BadRequest(Exception):
    """The client sent something we cannot use; maps to 400 with `{"error": reason}`."""

    status = 400
    reject_reason = "malformed"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BodyTooLarge(BadRequest):
    """The body is over the server's limit; maps to 413."""

    status = 413
    reject_reason = "body_too_large"


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """True when containers nest deeper than `limit`.

    Level by level, no recursion (a hostile body cannot blow the stack), each level gathered by
    one comprehension: about 3x faster than a per-node stack, and every request pays it.
    """
    level = [value] if isinstance(value, _CONTAINERS) else []
    depth = 1
    while level:
        if depth > limit:
            return True
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, _CONTAINERS)
        ]
        depth += 1
    return False


def decode_object(raw: bytes) -> dict[str, Any]:
    """Bytes to a JSON object (no depth check): 400 for empty, invalid or non-object bodies."""
    if not raw.strip():
        raise BadRequest("empty body: send a JSON object")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest(f"body must be a JSON object, got {type(value).__name__}")
    return value


def parse_json_object(raw: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """Parse bytes into a JSON object with the same rules as `read_json` (usable without HTTP)."""
    value = decode_object(raw)
    # Nesting depth is at most the number of `{` and `[` in the text (strings included), so a body
    # with no more of them than the limit cannot exceed it: most bodies skip the walk (a C-level
    # count of ~1 us instead of ~10 us for an AdmissionReview of a pod).
    if raw.count(b"{") + raw.count(b"[") > max_depth and json_depth_exceeds(value, max_depth):
        raise BadRequest(f"JSON nests deeper than {max_depth} levels")
    return value


async def read_body(request: web.Request) -> bytes:
    """The raw body of a JSON request: 400 for a non-JSON Content-Type, 413 past `client_max_size`."""
    content_type = request.content_type
    if content_type and content_type not in ("application/json", "application/octet-stream", "text/plain"):
        raise BadRequest(f"Content-Type {content_type!r} is not JSON; send application/json")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise BodyTooLarge(f"body larger than {request.client_max_size} bytes") from exc


async def read_json(request: web.Request, *, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """The request body as a JSON object; size is capped by the app's `client_max_size`."""
    return parse_json_object(await read_body(request), max_depth=max_depth)
