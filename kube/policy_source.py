"""Hot reload of the policy ConfigMap `accel-policy` (controller namespace).

The ConfigMap's `data` (file name -> YAML text: settings.yaml, profiles.yaml, teams.yaml) and
`PolicyMeta` (version, who changed it, when) go to `on_policy(data, meta)`, owned by the policy
engineers: it validates, swaps in the new policy if good, and returns the list of error messages
(empty = accepted). Rules:
1. Each resourceVersion is offered once (a relist that finds it unchanged does not re-offer it).
2. A rejection is logged and recorded as a Warning Event `PolicyRejected` on the ConfigMap with
   the precise messages; the caller's last good policy stays in force and we keep watching.
3. Deleting the ConfigMap is logged; the last good policy stays (no policy is never "safer").
4. An exception from `on_policy` is treated as a rejection, never stops the watch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kube.informer import Informer
from kube.protocol import EventRecorder, EventType, JsonObject

log = logging.getLogger(__name__)

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
REJECTED_REASON = "PolicyRejected"
ACCEPTED_REASON = "PolicyAccepted"


@dataclass(frozen=True, slots=True)
class PolicyMeta:
    """Where a policy version came from: for logs, metrics, the API and Events."""

    resource_version: str
    changed_by: str  # newest managedFields manager, "kubectl (last-applied)" or "unknown"
    changed_at: str | None  # RFC 3339 time of that change, else creationTimestamp
    name: str
    namespace: str


PolicyCallback = Callable[[dict[str, str], PolicyMeta], Sequence[str]]


def policy_meta(configmap: JsonObject) -> PolicyMeta:
    """Extract `PolicyMeta` from a ConfigMap dict (the newest managedFields entry names "who")."""
    meta = configmap.get("metadata") or {}
    fields = [f for f in meta.get("managedFields") or [] if isinstance(f, dict) and f.get("manager")]
    newest = max(fields, key=lambda f: str(f.get("time", "")), default=None)
    if newest is not None:
        who, when = str(newest["manager"]), newest.get("time")
    elif LAST_APPLIED in (meta.get("annotations") or {}):
        who, when = "kubectl (last-applied)", None
    else:
        who, when = "unknown", None
    return PolicyMeta(
        resource_version=str(meta.get("resourceVersion", "")),
        changed_by=who,
        changed_at=str(when) if when else meta.get("creationTimestamp"),
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace", "")),
    )


class PolicySource:
    """Feeds policy ConfigMap changes seen by `informer` to `on_policy`; reports rejections."""

    def __init__(self, informer: Informer, on_policy: PolicyCallback, *, events: EventRecorder) -> None:
        self._on_policy = on_policy
        self._events = events
        self._offered: str | None = None
        self._accepted_any = False  # whether a rejection leaves a last good policy in force
        self._pending: set[asyncio.Task[None]] = set()
        self.last_errors: list[str] = []  # messages of the latest rejection ([] after an acceptance)
        informer.add_callback(self._changed)

    def _changed(self, event_type: EventType, configmap: JsonObject) -> None:
        meta = policy_meta(configmap)
        if event_type == "DELETED":
            log.warning(
                "policy ConfigMap %s/%s deleted; keeping the last good policy", meta.namespace, meta.name
            )
            self._offered = None
            return
        if meta.resource_version == self._offered:
            return
        self._offered = meta.resource_version
        data = {str(k): str(v) for k, v in (configmap.get("data") or {}).items()}
        try:
            errors = list(self._on_policy(data, meta))
        except Exception as exc:
            log.exception("policy callback failed on %s", meta.resource_version)
            errors = [f"internal error while validating the policy: {type(exc).__name__}: {exc}"]
        self.last_errors = errors
        if not errors:
            self._accepted_any = True
            log.info("policy version %s by %s accepted", meta.resource_version, meta.changed_by)
            return
        message = "; ".join(errors)
        kept = "the last good policy stays" if self._accepted_any else "no valid policy loaded yet"
        log.error(
            "policy version %s by %s rejected, %s: %s", meta.resource_version, meta.changed_by, kept, message
        )
        task = asyncio.get_running_loop().create_task(
            self._events.record(configmap, REJECTED_REASON, message, type="Warning"))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        """Wait until every Event this source started has been sent (tests, shutdown)."""
        while self._pending:
            await asyncio.gather(*list(self._pending))
