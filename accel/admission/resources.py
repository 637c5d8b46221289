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
4. Every accelerator resource a typed profile's pod asks for must be the profile's target
   (`match_resources`, checked before any rename). The plain `nvidia.com/gpu` is the unambiguous
   "a GPU" spelling and is renamed by rule 1, unless the same container also asks for the target
   (then "both" is ambiguous: one of them would be dropped or double-charged). Anything else is
   denied, naming the resource the profile uses: another vendor's device (`amd.com/gpu` under an
   NVIDIA profile), a MIG slice of another size or under a profile or types without MIG (L4), a
   time-sliced replica (`*.shared`) under an exclusive profile, a whole device under a MIG
   profile. A generic profile (any GPU) takes any resource, but not a device and its `.shared`
   replica in one pod (whole GPUs and quarter GPUs cannot be one request).
"""

from __future__ import annotations

from collections.abc import Sequence

from accel.admission import messages as msg
from accel.admission.messages import Finding
from accel.admission.patches import PatchBuilder, Token
from accel.cluster.catalog import Catalog
from accel.cluster.labels import is_accelerator_resource
from accel.policy.models import Profile, Sharing

PLAIN_GPU = "nvidia.com/gpu"
MIG_PREFIX = "nvidia.com/mig-"
SHARED_SUFFIX = ".shared"
CONTAINER_LISTS = ("initContainers", "containers")


def _container_resources(builder: PatchBuilder) -> list[tuple[str, set[str]]]:
    """(container name, accelerator resources in its requests or limits) per container."""
    found: list[tuple[str, set[str]]] = []
    for list_name in CONTAINER_LISTS:
        for index, container in enumerate(builder.get(["spec", list_name]) or ()):
            resources = container.get("resources") if isinstance(container, dict) else None
            names: set[str] = set()
            for part in ("requests", "limits"):
                amounts = resources.get(part) if isinstance(resources, dict) else None
                names.update(
                    str(k)
                    for k in amounts or ()
                    if isinstance(amounts, dict) and is_accelerator_resource(str(k))
                )
            label = (
                str(container.get("name") or f"{list_name}[{index}]")
                if isinstance(container, dict)
                else f"{list_name}[{index}]"
            )
            found.append((label, names))
    return found


def _why(asked: str, profile: Profile, types: Sequence[str], catalog: Catalog) -> str:
    """Rule 4: why `asked` is not what `profile` gives, in the user's terms."""
    if asked.startswith(MIG_PREFIX):
        if profile.sharing is Sharing.MIG:
            return f"it gives {profile.mig_profile} MIG slices, not {asked.removeprefix(MIG_PREFIX)}"
        without = [t for t in types if (found := catalog.get(t)) is not None and not found.mig_profiles]
        if without:
            return f"{', '.join(without)} has no MIG; the profile gives {profile.sharing.value} GPUs"
        return f"it is a {profile.sharing.value} profile, not a MIG profile"
    if asked.endswith(SHARED_SUFFIX) and profile.sharing is not Sharing.TIME_SLICED:
        return f"it is a {profile.sharing.value} profile, not a time-sliced one"
    if profile.sharing is Sharing.MIG:
        return f"it gives {profile.mig_profile} MIG slices, not whole GPUs"
    vendor = asked.split(".", 1)[0]
    return f"its types ({', '.join(types)}) are not {vendor} devices"


def mixed_replicas(profile: Profile, asked: set[str]) -> Finding | None:
    """Rule 4, generic profiles: a device and its `.shared` replica in one pod is a denial."""
    for name in sorted(asked):
        if name.endswith(SHARED_SUFFIX) and name.removesuffix(SHARED_SUFFIX) in asked:
            device = name.removesuffix(SHARED_SUFFIX)
            return msg.resource_mismatch(
                profile.name,
                "(pod)",
                f"both {device} and {name}",
                f"{device} or {name}",
                "whole GPUs and time-sliced replicas cannot be one request",
            )
    return None


def match_resources(
    builder: PatchBuilder, profile: Profile, types: Sequence[str], target: str, catalog: Catalog
) -> Finding | None:
    """Rule 4: None when every accelerator resource of the pod fits `profile`, else the denial."""
    containers = _container_resources(builder)
    if profile.is_generic:
        return mixed_replicas(
            profile, set().union(*(names for _, names in containers)) if containers else set()
        )
    for container, names in containers:
        for name in sorted(names):
            if name == target:
                continue
            if name == PLAIN_GPU:
                if target in names:
                    return msg.resource_mismatch(
                        profile.name,
                        container,
                        f"both {PLAIN_GPU} and {target}",
                        target,
                        "one request per container; the two cannot be merged without dropping or "
                        "double-charging a unit",
                    )
                continue
            return msg.resource_mismatch(
                profile.name, container, name, target, _why(name, profile, types, catalog)
            )
    return None


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
