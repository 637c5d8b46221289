"""Cluster snapshots from a file (`--snapshot FILE`), and `SnapshotSource`, an `ObjectSource` over one.

Accepted input, YAML or JSON (JSON is YAML, so one parser reads both):
- a `v1 List` as `kubectl get nodes,namespaces,pods,configmaps -A -o yaml` prints,
- a single object (`kubectl get node gpu-1 -o yaml`),
- a multi-document YAML stream (`---`) of either.
Items are grouped by kind (`nodes`, `pods`, `namespaces`, `configmaps`, `leases`, OpenDataHub
`HardwareProfile`s of either API group); objects of other
kinds (a `kubectl get all` dump) are counted in `Snapshot.skipped` and otherwise ignored.
Malformed input raises `SnapshotError` naming the file, the document and the item index.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from accel.cluster.text_decode import TextDecodeError, decode_text
from kube.names import KINDS, RESOURCES, Kind, kind_of
from kube.protocol import JsonObject, WatchEvent


class SnapshotError(ValueError):
    """The snapshot file cannot be used; the message says where and how to fix it."""


@dataclass(frozen=True)
class Snapshot:
    """Objects of a snapshot by kind, plus the List's resourceVersion ("0" when it has none)."""

    items: dict[Kind, list[JsonObject]]
    resource_version: str = "0"
    skipped: dict[str, int] = field(default_factory=dict)

    def of(self, kind: Kind) -> list[JsonObject]:
        return self.items.get(kind, [])


def load_snapshot(path: str | Path) -> Snapshot:
    """Read and group a snapshot file; raise `SnapshotError` (file, document, item) on bad input."""
    where = Path(path)
    try:
        data = where.read_bytes()
    except OSError as exc:
        raise SnapshotError(f"{where}: cannot read snapshot: {exc.strerror or exc}") from exc
    try:
        text = decode_text(data, str(where))
    except TextDecodeError as exc:
        raise SnapshotError(str(exc)) from exc
    return parse_snapshot(text, source=str(where))


def parse_snapshot(text: str, *, source: str = "<snapshot>") -> Snapshot:
    """Parse snapshot text (see module docstring); `source` names the input in error messages."""
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise SnapshotError(f"{source}: not valid YAML or JSON{at}: {getattr(exc, 'problem', exc)}") from exc
    if not documents:
        raise SnapshotError(f"{source}: empty snapshot; expected a v1 List as printed by "
                            "`kubectl get nodes,namespaces,pods,configmaps -A -o yaml`")
    grouped: dict[Kind, list[JsonObject]] = {kind: [] for kind in KINDS}
    skipped: dict[str, int] = {}
    resource_version = "0"
    for doc_index, doc in enumerate(documents):
        where = f"{source}: document {doc_index + 1}" if len(documents) > 1 else source
        if not isinstance(doc, dict):
            raise SnapshotError(
                f"{where}: expected a mapping (a v1 List or an object), got {type(doc).__name__}"
            )
        if doc.get("kind") == "List" or (doc.get("kind") is None and "items" in doc):
            items = doc.get("items")
            if not isinstance(items, list):
                raise SnapshotError(f"{where}: 'items' must be a list of objects")
            resource_version = str((doc.get("metadata") or {}).get("resourceVersion") or resource_version)
            for index, item in enumerate(items):
                _add(item, f"{where}: items[{index}]", grouped, skipped)
        else:
            _add(doc, where, grouped, skipped)
    return Snapshot(items=grouped, resource_version=resource_version, skipped=skipped)


def _add(item: Any, where: str, grouped: dict[Kind, list[JsonObject]], skipped: dict[str, int]) -> None:
    if not isinstance(item, dict):
        raise SnapshotError(f"{where}: expected an object mapping, got {type(item).__name__}")
    object_kind = item.get("kind")
    if not isinstance(object_kind, str) or not object_kind:
        raise SnapshotError(
            f"{where}: missing 'kind' (e.g. kind: Node); export with `kubectl get ... -o yaml`"
        )
    meta = item.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise SnapshotError(f"{where}: {object_kind} without metadata.name")
    kind = kind_of(item)
    if kind is None:
        skipped[object_kind] = skipped.get(object_kind, 0) + 1
        return
    if RESOURCES[kind].namespaced and not meta.get("namespace"):
        raise SnapshotError(f"{where}: {object_kind} {meta['name']!r} has no metadata.namespace; "
                            "export with `-A` so namespaced objects keep their namespace")
    grouped[kind].append(item)


class SnapshotSource:
    """A read-only `ObjectSource` over a loaded snapshot: servers run on it exactly as on a cluster.

    `list` returns the snapshot's items; `watch` yields nothing and blocks until cancelled.
    """

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    async def list(
        self, kind: Kind, namespace: str | None = None, *, name: str | None = None
    ) -> tuple[list[JsonObject], str]:
        items = [
            obj for obj in self.snapshot.of(kind)
            if (namespace is None or obj["metadata"].get("namespace") == namespace)
            and (name is None or obj["metadata"]["name"] == name)
        ]
        return items, self.snapshot.resource_version

    async def watch(
        self,
        kind: Kind,
        resource_version: str,
        namespace: str | None = None,
        *,
        name: str | None = None,
        timeout_s: float | None = None,
    ) -> AsyncIterator[WatchEvent]:
        await asyncio.Event().wait()  # a snapshot never changes: block until the caller cancels
        return
        yield  # pragma: no cover - makes this an async generator
