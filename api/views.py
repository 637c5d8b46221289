"""Rendering for the API: JSON bodies, node redaction and the per-generation response cache.

Rules:
1. Everything a GET answers is a function of (state generation, readiness, the caller's
   visibility set); rendered bytes are cached under exactly that key and the cache is dropped
   when the generation moves, so 100 clients asking the same question cost one render.
2. Redaction (settings.api.redactNodeNames): `node_json` with a `Redactor` (api/redaction.py,
   keyed HMAC) replaces the node name and the zone/spine/leaf values and drops the labels.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from datetime import datetime
from typing import Any

import orjson

from accel.capacity.nodeview import NodeRow
from accel.profiles.availability import profile_summaries
from accel.profiles.summary import ProfileSummary
from api.redaction import TOPOLOGY_FIELDS, Redactor
from serving.cluster_state import StateView

CACHE_MAX_ENTRIES = 256


def camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def node_json(row: NodeRow, *, redactor: Redactor | None) -> dict[str, Any]:
    """One node-view row as JSON; with a redactor, identities hidden (api/redaction.py rule 3)."""
    data = {camel(k): v for k, v in row.model_dump(mode="json").items()}
    if redactor is not None:
        data["name"] = redactor.node(row.name)
        for level in TOPOLOGY_FIELDS:
            data[level] = redactor.value(level, data[level])
        data["labels"] = {}
    return data


def observed(view: StateView) -> str:
    return iso(view.observed_at)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def dumps(data: Any) -> bytes:
    return orjson.dumps(data)


class ProfileCache:
    """Summaries computed once per generation; rendered bodies cached per (generation, ready, visibility)."""

    def __init__(self) -> None:
        self._generation = -1
        self._summaries: dict[str, ProfileSummary] = {}
        self._items: dict[str, dict[str, Any]] = {}
        self._bodies: dict[tuple[bool, frozenset[str] | None], bytes] = {}
        self._visibility: dict[Hashable, frozenset[str]] = {}

    def _refresh(self, view: StateView) -> None:
        if view.generation == self._generation:
            return
        summaries = profile_summaries(view.parsed, view.inventory)
        self._summaries = {s.name: s for s in summaries}
        self._items = {s.name: s.model_dump(mode="json", by_alias=True) for s in summaries}
        self._bodies = {}
        self._visibility = {}
        self._generation = view.generation

    def visibility(
        self, view: StateView, caller: Hashable, compute: Callable[[], frozenset[str]]
    ) -> frozenset[str]:
        """The caller's visible profile names, computed once per generation and caller identity."""
        self._refresh(view)
        found = self._visibility.get(caller)
        if found is None:
            if len(self._visibility) >= CACHE_MAX_ENTRIES:
                self._visibility.clear()
            found = self._visibility[caller] = compute()
        return found

    def summaries(self, view: StateView) -> Mapping[str, ProfileSummary]:
        self._refresh(view)
        return self._summaries

    def item(self, view: StateView, name: str) -> dict[str, Any] | None:
        self._refresh(view)
        return self._items.get(name)

    def list_body(self, view: StateView, visible: frozenset[str], *, fresh: bool) -> bytes:
        self._refresh(view)
        key = (fresh, visible)
        body = self._bodies.get(key)
        if body is None:
            if len(self._bodies) >= CACHE_MAX_ENTRIES:
                self._bodies.clear()
            items = [item for name, item in self._items.items() if name in visible]
            body = dumps({"profiles": items, "observedAt": observed(view), "stale": not fresh})
            self._bodies[key] = body
        return body
