"""GPU resource names and counts in a pod spec, as a hardware profile wants them.

Rules (protocols.md section 3, "No overcommit"):
1. Time-sliced profiles ask for `profile.shared_resource_name` (e.g. `nvidia.com/gpu.shared`), MIG
   profiles for `nvidia.com/mig-<profile>`, exclusive profiles for the device plugin's own name
   when all their types share one (`amd.com/gpu` for an AMD-only profile). The plain request
   (`nvidia.com/gpu`) is renamed in `requests` AND `limits` of every container, init container
   and sidecar, with the same quantity; nothing is ever written to `requests` only: a request
   without a limit gets the equal limit the API server would otherwise demand.
2. A pod that asks for no accelerator at all gets `profile.gpus.default` units of the target
   resource on its first container (requests and limits).
3. Already-renamed pods produce no ops (second pass is a no-op).
"""

from __future__ import annotations

from collections.abc import Sequence

from accel.catalog import Catalog
from accel.labels import is_accelerator_resource
from accel.patches import PatchBuilder, Token
from accel.policy import Profile, Sharing

PLAIN_GPU = "nvidia.com/gpu"
CONTAINER_LISTS = ("initContainers", "containers")


def target_resource(profile: Profile, types: Sequence[str], catalog: Catalog) -> str:
    """The resource name pods of `profile` (restricted to `types`) must ask for."""
    if profile.sharing is Sharing.TIME_SLICED:
        return profile.shared_resource_name
    if profile.sharing is Sharing.MIG and profile.mig_profile:
        return f"nvidia.com/mig-{profile.mig_profile}"
    names = {t.resource_name for name in types if (t := catalog.get(name)) is not None}
    return names.pop() if len(names) == 1 else PLAIN_GPU


def _rename_in(builder: PatchBuilder, base: list[Token], source: str, target: str) -> None:
    requests = builder.get([*base, "requests"])
    limits = builder.get([*base, "limits"])
    request = requests.get(source) if isinstance(requests, dict) else None
    limit = limits.get(source) if isinstance(limits, dict) else None
    if request is None and limit is None:
        return
    quantity = limit if limit is not None else request
    if request is not None:
        if target not in requests:
            builder.set([*base, "requests", target], request)
        builder.remove([*base, "requests", source])
    if not (isinstance(limits, dict) and target in limits):
        builder.set([*base, "limits", target], quantity)
    if limit is not None:
        builder.remove([*base, "limits", source])


def rename_resources(builder: PatchBuilder, target: str) -> None:
    """Rule 1 over every container list of the pod in the builder."""
    if target == PLAIN_GPU:
        return
    for list_name in CONTAINER_LISTS:
        containers = builder.get(["spec", list_name])
        if not isinstance(containers, list):
            continue
        for index, container in enumerate(containers):
            if isinstance(container, dict) and isinstance(container.get("resources"), dict):
                _rename_in(builder, ["spec", list_name, index, "resources"], PLAIN_GPU, target)


def ensure_limits(builder: PatchBuilder, target: str) -> None:
    """Give every container that requests `target` without a limit the equal limit (rule 1)."""
    for list_name in CONTAINER_LISTS:
        for index, container in enumerate(builder.get(["spec", list_name]) or ()):
            resources = container.get("resources") if isinstance(container, dict) else None
            requests = resources.get("requests") if isinstance(resources, dict) else None
            if isinstance(requests, dict) and target in requests:
                limits = resources.get("limits")  # type: ignore[union-attr]
                if not (isinstance(limits, dict) and target in limits):
                    builder.set(["spec", list_name, index, "resources", "limits", target], requests[target])


def asks_for_accelerators(builder: PatchBuilder) -> bool:
    for list_name in CONTAINER_LISTS:
        for container in builder.get(["spec", list_name]) or ():
            resources = container.get("resources") if isinstance(container, dict) else None
            for part in ("requests", "limits"):
                amounts = resources.get(part) if isinstance(resources, dict) else None
                if isinstance(amounts, dict) and any(is_accelerator_resource(str(k)) for k in amounts):
                    return True
    return False


def add_default_count(builder: PatchBuilder, target: str, count: int) -> None:
    """Rule 2: `count` units of `target` on the first container when the pod asks for none."""
    if count <= 0 or asks_for_accelerators(builder) or not builder.get(["spec", "containers"]):
        return
    base: list[Token] = ["spec", "containers", 0, "resources"]
    builder.set([*base, "requests", target], str(count))
    builder.set([*base, "limits", target], str(count))
