"""Annotate each OpenDataHub HardwareProfile with what accel sees: detected types and availability.

Annotations, not `status`: the published CRD gives `status` no schema (`type: object`, no
`x-kubernetes-preserve-unknown-fields`), so the API server would prune any field written there
(tests/data/crds/README.md). Rules:
1. Only HardwareProfiles that are accel profiles now (in the policy in force, from that very
   object) are annotated; CPU-only ones and rejected ones are left alone.
2. A profile is patched only when its annotations would change (they hold no timestamps).
3. The API server runs this every `interval_s` once its state is ready; every replica may, the
   patches are idempotent. Failures are logged and retried next round.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from accel.policy.odh_profiles import profile_from_object, status_annotations
from accel.profiles.availability import profile_summaries
from kube.errors import KubeError
from kube.names import kind_of
from kube.protocol import Annotator
from serving.cluster_state import ClusterState

log = logging.getLogger(__name__)


async def annotate_round(state: ClusterState, annotator: Annotator) -> int:
    """One round (rules 1-2); returns how many HardwareProfiles were patched."""
    if state.watcher is None:
        return 0
    view = state.view()
    summaries = {s.name: s for s in profile_summaries(view.parsed, view.inventory)}
    patched = 0
    for obj in state.watcher.hardware_profile_objects():
        mapped, _errors = profile_from_object(obj, view.parsed.catalog)
        summary = summaries.get(mapped.profile.name) if mapped else None
        in_force = view.parsed.policy.profile(mapped.profile.name) if mapped else None
        kind = kind_of(obj)
        if mapped is None or summary is None or in_force != mapped.profile or kind is None:
            continue
        detected = [t.type for t in summary.by_type if t.nodes > 0]
        wanted = status_annotations(
            detected,
            available=summary.available,
            available_gpus=summary.available_gpus,
            total_gpus=summary.total_gpus,
            price_per_gpu_hour=summary.price_per_gpu_hour,
        )
        meta = obj.get("metadata") or {}
        current = meta.get("annotations") or {}
        if all(current.get(k) == v for k, v in wanted.items()):
            continue
        await annotator.annotate(kind, meta.get("namespace"), str(meta.get("name")), dict(wanted))
        patched += 1
    return patched


def run_hardware_profile_notes(state: ClusterState, annotator: Annotator, *, interval_s: float = 30.0
                               ) -> Callable[[web.Application], AsyncIterator[None]]:
    """aiohttp cleanup context running `annotate_round` every `interval_s` (rule 3)."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval_s)
            if not state.ready()[0]:
                continue
            try:
                await annotate_round(state, annotator)
            except (KubeError, RuntimeError) as exc:
                log.warning("could not annotate HardwareProfiles, retrying in %gs: %s", interval_s, exc)

    async def context(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(loop(), name="hardware-profile-notes")
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    return context
