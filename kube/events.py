"""Build core/v1 Event objects — one builder shared by the real recorder and the fake cluster.

An Event names the object it is about (`involvedObject`, an ObjectReference), a CamelCase `reason`
(e.g. `PolicyRejected`) and a human `message`; `kubectl describe` shows them under "Events".
Cluster-scoped objects (nodes) get their events in the `default` namespace, as kubelet does.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from kube.names import EVENT_SOURCE_COMPONENT

MAX_MESSAGE_CHARS = 1024  # the API server rejects event messages over 1 KiB
_REFERENCE_KEYS = ("apiVersion", "kind", "namespace", "name", "uid", "resourceVersion")


def involved_reference(involved: dict[str, Any]) -> dict[str, str]:
    """ObjectReference for `involved`: taken from an object's metadata, or kept if already a reference."""
    meta = involved.get("metadata")
    source = {**involved, **meta} if isinstance(meta, dict) else involved
    return {key: str(source[key]) for key in _REFERENCE_KEYS if source.get(key)}


def build_event(
    involved: dict[str, Any], reason: str, message: str, type: str, *, now: datetime,
    component: str = EVENT_SOURCE_COMPONENT,
) -> dict[str, Any]:
    """A complete `v1 Event` body, ready to POST to `/api/v1/namespaces/{ns}/events`; `component`
    names the controller reporting it (`source.component`, `reportingComponent`)."""
    ref = involved_reference(involved)
    namespace = ref.get("namespace", "default")
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    text = message if len(message) <= MAX_MESSAGE_CHARS else message[: MAX_MESSAGE_CHARS - 3] + "..."
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{ref.get('name', 'unknown')}.{secrets.token_hex(8)}", "namespace": namespace},
        "involvedObject": ref,
        "reason": reason,
        "message": text,
        "type": type,
        "source": {"component": component},
        "reportingComponent": component,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
