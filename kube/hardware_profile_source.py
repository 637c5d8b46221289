"""Hot reload of OpenDataHub HardwareProfiles: every change re-validates the whole policy.

HardwareProfiles (either API group, any namespace) are profiles too (accel.policy.odh_profiles), so a
change to one is a policy change: `on_change(objects, meta)` (owned by `ClusterState`) validates
the policy ConfigMap's files together with every HardwareProfile now known and returns the
errors ([] = accepted). Rules, as for the ConfigMap (kube.policy_source):
1. Each distinct content (spec and annotations, minus the annotations accel itself writes onto
   the object: serving.hardware_profile_notes) is offered once, so accel's own notes never
   trigger a re-validation.
2. A rejection is logged and recorded as a Warning Event `PolicyRejected` on the HardwareProfile
   that changed; the last good policy stays in force and we keep watching.
3. A deletion is a change like any other (the profile disappears from the policy).
4. An exception from `on_change` is treated as a rejection, never stops the watch.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence

from accel.policy.odh_profiles import AVAILABILITY_ANNOTATION, DETECTED_TYPES_ANNOTATION
from kube.informer import ClusterWatcher
from kube.policy_source import REJECTED_REASON, PolicyMeta, policy_meta
from kube.protocol import EventRecorder, EventType, JsonObject

log = logging.getLogger(__name__)

ACCEL_NOTES = frozenset({DETECTED_TYPES_ANNOTATION, AVAILABILITY_ANNOTATION})
HardwareProfilesCallback = Callable[[list[JsonObject], PolicyMeta], Sequence[str]]


class HardwareProfileSource:
    """Feeds HardwareProfile changes seen by `watcher` to `on_change`; reports rejections."""

    def __init__(
        self, watcher: ClusterWatcher, on_change: HardwareProfilesCallback, *, events: EventRecorder
    ) -> None:
        self._watcher = watcher
        self._on_change = on_change
        self._events = events
        self._offered: dict[str, str] = {}  # apiVersion namespace/name -> content fingerprint last offered
        self._pending: set[asyncio.Task[None]] = set()
        self.last_errors: list[str] = []
        for informer in watcher.hardware_profiles:
            informer.add_callback(self._changed)

    def _changed(self, event_type: EventType, obj: JsonObject) -> None:
        meta = policy_meta(obj)
        key = f"{obj.get('apiVersion')} {meta.namespace}/{meta.name}"
        if event_type == "DELETED":
            self._offered.pop(key, None)
        elif self._offered.get(key) == (fingerprint := _fingerprint(obj)):
            return
        else:
            self._offered[key] = fingerprint
        try:
            errors = list(self._on_change(self._watcher.hardware_profile_objects(), meta))
        except Exception as exc:
            log.exception("HardwareProfile callback failed on %s/%s", meta.namespace, meta.name)
            errors = [f"internal error while validating the policy: {type(exc).__name__}: {exc}"]
        self.last_errors = errors
        if not errors:
            log.info(
                "HardwareProfile %s/%s %s: policy accepted", meta.namespace, meta.name, event_type.lower()
            )
            return
        message = "; ".join(errors)
        log.error("HardwareProfile %s/%s %s: policy rejected, last good policy stays: %s",
                  meta.namespace, meta.name, event_type.lower(), message)
        if event_type == "DELETED":
            return  # no object left to carry the Event
        task = asyncio.get_running_loop().create_task(
            self._events.record(obj, REJECTED_REASON, message, type="Warning")
        )
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        """Wait until every Event this source started has been sent (tests, shutdown)."""
        while self._pending:
            await asyncio.gather(*list(self._pending))


def _fingerprint(obj: JsonObject) -> str:
    """Rule 1: what matters for the policy, as one comparable string."""
    notes = {
        k: v
        for k, v in ((obj.get("metadata") or {}).get("annotations") or {}).items()
        if k not in ACCEL_NOTES
    }
    return json.dumps([obj.get("spec"), notes], sort_keys=True, default=str)
