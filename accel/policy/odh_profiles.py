"""OpenDataHub `HardwareProfile` custom resources as accel profiles (pure mapping, no IO).

Two API groups carry the same idea (schemas vendored in tests/data/crds/, from the public
opendatahub-operator and odh-dashboard repositories):
- `infrastructure.opendatahub.io/v1alpha1` (current): `spec.identifiers[]`, `spec.scheduling`
  of `type: Node` (`node.nodeSelector`, `node.tolerations`) or `type: Queue`
  (`kueue.localQueueName`, `kueue.priorityClass`);
- `dashboard.opendatahub.io/v1` (deprecated): `spec.identifiers[]`, `spec.nodeSelectors[]`
  (`{key, value}`) and `spec.tolerations[]`.

Mapping rules (README "OpenDataHub and Kueue"):
1. Only a profile with exactly one accelerator identifier (`resourceType: Accelerator`, or, where
   the schema has no resourceType, an accelerator resource name such as `nvidia.com/gpu`) is an
   accel profile; CPU/memory-only profiles are not accel's business and map to nothing.
2. GPU counts: `defaultCount` -> `gpus.default`, `maxCount` -> `gpus.max` (integers, or strings
   holding one). `minCount` has no accel equivalent (accel never raises a pod's request).
3. Sharing from the identifier: `<vendor>/gpu` exclusive; `*.shared` time-sliced (that name is the
   shared resource name; replicas from annotation `accel.dev/time-slicing-replicas`); `nvidia.com/
   mig-<profile>` MIG with that profile.
4. Types, ordered by preference: annotation `accel.dev/accelerator-types` (comma-separated
   canonical names) wins; else every product label in the node selector (`nvidia.com/gpu.product`,
   `amd.com/gpu.product-name`, `gpu.intel.com/product`, `cloud.google.com/gke-accelerator`) read
   through the label normalisation. Those keys are then dropped from the profile's nodeSelector:
   accel's node affinity names every product spelling of the type, where a selector pins one.
   Neither = a generic profile (any GPU).
5. `accel.dev/cost-per-gpu-hour` overrides the catalog price; `spec.enabled`, `displayName`,
   `description` carry over; a Queue-scheduled profile records its LocalQueue (`kueueLocalQueue`).
6. Every problem is a `PolicyError` whose file names the object, e.g.
   `HardwareProfile opendatahub/h200 (infrastructure.opendatahub.io/v1alpha1)`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError

from accel.cluster.catalog import UNKNOWN_TYPE, Catalog
from accel.cluster.labels import is_accelerator_resource, normalise_product
from accel.policy.models import PolicyError, Profile

INFRASTRUCTURE_API = "infrastructure.opendatahub.io/v1alpha1"
DASHBOARD_API = "dashboard.opendatahub.io/v1"
TYPES_ANNOTATION = "accel.dev/accelerator-types"
PRICE_ANNOTATION = "accel.dev/cost-per-gpu-hour"
REPLICAS_ANNOTATION = "accel.dev/time-slicing-replicas"
# Written by accel onto each HardwareProfile (annotations, not status: see README).
DETECTED_TYPES_ANNOTATION = "accel.dev/detected-accelerator-types"
AVAILABILITY_ANNOTATION = "accel.dev/availability"
POD_NAMESPACE_ANNOTATION = "opendatahub.io/hardware-profile-namespace"
PRODUCT_KEYS: Mapping[str, str | None] = {  # node label key -> vendor whose types it names
    "nvidia.com/gpu.product": "nvidia",
    "amd.com/gpu.product-name": "amd",
    "gpu.intel.com/product": "intel",
    "cloud.google.com/gke-accelerator": None,
}
_MIG_RESOURCE = re.compile(r"^nvidia\.com/mig-(\d+g\.\d+gb(?:\+me)?)$")


@dataclass(frozen=True, slots=True)
class ExternalProfile:
    """A profile that comes from a HardwareProfile object rather than profiles.yaml."""

    profile: Profile
    source: str  # human name of the object, used as the `file` of every error about it
    namespace: str
    local_queue: str | None = None


def source_name(obj: Mapping[str, Any]) -> str:
    meta = _mapping(obj.get("metadata"))
    return (
        f"HardwareProfile {meta.get('namespace', '')}/{meta.get('name', '')} ({obj.get('apiVersion', '?')})"
    )


def profiles_from_objects(
    objects: Iterable[Mapping[str, Any]], catalog: Catalog
) -> tuple[list[ExternalProfile], list[PolicyError]]:
    """Map every HardwareProfile (rule 1 skips non-accelerator ones); all errors at once."""
    found: list[ExternalProfile] = []
    errors: list[PolicyError] = []
    for obj in sorted(objects, key=source_name):
        mapped, problems = profile_from_object(obj, catalog)
        errors.extend(problems)
        if mapped is not None:
            found.append(mapped)
    return found, errors


def profile_from_object(
    obj: Mapping[str, Any], catalog: Catalog
) -> tuple[ExternalProfile | None, list[PolicyError]]:
    """One HardwareProfile -> (accel profile or None, errors); never raises."""
    source = source_name(obj)
    errors: list[PolicyError] = []

    def err(path: str, message: str) -> None:
        errors.append(PolicyError(file=source, path=path, message=message))

    meta, spec = _mapping(obj.get("metadata")), _mapping(obj.get("spec"))
    annotations = {str(k): str(v) for k, v in _mapping(meta.get("annotations")).items()}
    identifiers = [(i, _mapping(item)) for i, item in enumerate(_list(spec.get("identifiers")))]
    accelerators = [(i, item) for i, item in identifiers if _is_accelerator(item)]
    if not accelerators:
        return None, []
    if len(accelerators) > 1:
        names = ", ".join(str(item.get("identifier")) for _, item in accelerators)
        err(
            "spec.identifiers",
            f"names {len(accelerators)} accelerators ({names}); accel maps one accelerator per profile: "
            "split it",
        )
        return None, errors
    index, identifier = accelerators[0]
    selector, tolerations, queue = _scheduling(obj, spec, err)
    fields: dict[str, Any] = {
        "name": meta.get("name"),
        "displayName": str(spec.get("displayName") or ""),
        "description": str(spec.get("description") or ""),
        "enabled": spec.get("enabled") is not False,
        "gpus": _counts(identifier, f"spec.identifiers[{index}]", err),
        "tolerations": tolerations,
        "kueueLocalQueue": queue,
        **_sharing(
            str(identifier.get("identifier") or ""), annotations, f"spec.identifiers[{index}].identifier", err
        ),
    }
    types, kept_selector = _types(annotations, selector, catalog, err)
    fields["accelerators"] = [{"type": t} for t in types]
    fields["nodeSelector"] = kept_selector
    if PRICE_ANNOTATION in annotations:
        fields["costPerGpuHour"] = _price(annotations[PRICE_ANNOTATION], err)
    if errors:
        return None, errors
    try:
        profile = Profile.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        for problem in exc.errors():
            where = ".".join(str(part) for part in problem["loc"])
            err(_spec_path(where), str(problem["msg"]).removeprefix("Value error, "))
        return None, errors
    return ExternalProfile(profile, source, str(meta.get("namespace") or ""), queue), []


def _is_accelerator(identifier: Mapping[str, Any]) -> bool:
    kind = identifier.get("resourceType")
    if kind is not None:
        return bool(kind == "Accelerator")
    return is_accelerator_resource(str(identifier.get("identifier") or ""))


def _scheduling(
    obj: Mapping[str, Any], spec: Mapping[str, Any], err: Any
) -> tuple[dict[str, str], list[Any], str | None]:
    """(nodeSelector, tolerations, LocalQueue name) from either API group's spelling."""
    if str(obj.get("apiVersion", "")).startswith("dashboard.opendatahub.io/"):
        selector: dict[str, str] = {}
        for i, item in enumerate(_list(spec.get("nodeSelectors"))):
            entry = _mapping(item)
            if not entry.get("key"):
                err(f"spec.nodeSelectors[{i}].key", "missing: every node selector needs a key")
                continue
            selector[str(entry["key"])] = str(entry.get("value") or "")
        return selector, _list(spec.get("tolerations")), None
    scheduling = _mapping(spec.get("scheduling"))
    node, kueue = _mapping(scheduling.get("node")), _mapping(scheduling.get("kueue"))
    selector = {str(k): str(v) for k, v in _mapping(node.get("nodeSelector")).items()}
    queue = (
        str(kueue["localQueueName"])
        if scheduling.get("type") == "Queue" and kueue.get("localQueueName")
        else None
    )
    return selector, _list(node.get("tolerations")), queue


def _counts(identifier: Mapping[str, Any], path: str, err: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for field, key in (("defaultCount", "default"), ("maxCount", "max")):
        value = identifier.get(field)
        if value is None:
            continue
        number = _whole(value)
        if number is None or number < (1 if key == "max" else 0):
            err(
                f"{path}.{field}",
                f"{value!r} is not a whole number of accelerators (at least {1 if key == 'max' else 0})",
            )
        else:
            counts[key] = number
    if "max" in counts and counts.get("default", 1) > counts["max"]:
        err(f"{path}.defaultCount", f"default {counts.get('default', 1)} is above maxCount {counts['max']}")
    return counts


def _whole(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _sharing(resource: str, annotations: Mapping[str, str], path: str, err: Any) -> dict[str, Any]:
    if mig := _MIG_RESOURCE.match(resource):
        return {"sharing": "mig", "migProfile": mig.group(1)}
    if resource.endswith(".shared"):
        fields: dict[str, Any] = {"sharing": "time-sliced", "sharedResourceName": resource}
        if REPLICAS_ANNOTATION in annotations:
            replicas = _whole(annotations[REPLICAS_ANNOTATION])
            if replicas is None or replicas < 1:
                err(
                    f"metadata.annotations[{REPLICAS_ANNOTATION}]",
                    f"{annotations[REPLICAS_ANNOTATION]!r} is not a whole number >= 1",
                )
            else:
                fields["replicas"] = replicas
        return fields
    if "/" not in resource:
        err(path, f"{resource!r} is not an extended resource name like nvidia.com/gpu")
    return {"sharing": "exclusive"}


def _types(
    annotations: Mapping[str, str], selector: Mapping[str, str], catalog: Catalog, err: Any
) -> tuple[list[str], dict[str, str]]:
    """Rule 4: (ordered canonical types, node selector left to inject)."""
    if TYPES_ANNOTATION in annotations:
        path = f"metadata.annotations[{TYPES_ANNOTATION}]"
        named = [t.strip() for t in annotations[TYPES_ANNOTATION].split(",") if t.strip()]
        for name in named:
            if name not in catalog or name == UNKNOWN_TYPE:
                err(
                    path,
                    f"unknown accelerator type {name!r} (canonical names like nvidia-h200-141gb; add new "
                    "ones in accelerators.yaml)",
                )
        if len(set(named)) != len(named):
            err(path, "lists the same type twice")
        return named, dict(selector)
    types: list[str] = []
    kept: dict[str, str] = {}
    for key, value in selector.items():
        if key not in PRODUCT_KEYS:
            kept[key] = value
            continue
        found = _type_of_label(key, value, catalog)
        if found is None:
            err(
                f"nodeSelector[{key}]",
                f"{value!r} names no known accelerator type; add it to accelerators.yaml "
                f"(productLabels) or set the {TYPES_ANNOTATION} annotation",
            )
        elif found not in types:
            types.append(found)
    return types, kept


def _type_of_label(key: str, value: str, catalog: Catalog) -> str | None:
    if key == "cloud.google.com/gke-accelerator":
        return next((t.name for t in catalog if value in t.gke_accelerators), None)
    found = normalise_product(value, catalog, vendor=PRODUCT_KEYS[key]).accelerator_type
    return None if found == UNKNOWN_TYPE else found


def _price(text: str, err: Any) -> Decimal | None:
    try:
        price = Decimal(text.strip())
    except InvalidOperation:
        price = Decimal(-1)
    if not price.is_finite() or price < 0:
        err(
            f"metadata.annotations[{PRICE_ANNOTATION}]",
            f"{text!r} is not a price (a non-negative decimal, e.g. 3.50)",
        )
        return None
    return price


def _spec_path(model_path: str) -> str:
    renames = {"name": "metadata.name", "enabled": "spec.enabled"}
    head, _, rest = model_path.partition(".")
    return renames.get(head, head) + (f".{rest}" if rest else "")


def clash_errors(
    external: Sequence[ExternalProfile], configmap_names: Sequence[str], *, profiles_file: str
) -> list[PolicyError]:
    """Profiles from profiles.yaml and from HardwareProfiles share one namespace of names."""
    errors: list[PolicyError] = []
    seen: dict[str, str] = {}
    for index, name in enumerate(configmap_names):
        seen.setdefault(name, f"{profiles_file} profiles[{index}]")
    for item in external:
        name = item.profile.name
        if name in seen:
            errors.append(PolicyError(file=item.source, path="metadata.name", message=(
                f"profile name {name!r} is also defined by {seen[name]}; profiles.yaml and HardwareProfiles "
                "share one set of names: rename or delete one of them")))
        else:
            seen[name] = item.source
    return errors


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def status_annotations(
    detected_types: Sequence[str],
    *,
    available: bool,
    available_gpus: float,
    total_gpus: float,
    price_per_gpu_hour: float | None,
) -> dict[str, str]:
    """What accel writes onto a HardwareProfile: the types it found on nodes and the availability
    (no timestamps, so an unchanged profile is never rewritten)."""
    price = "" if price_per_gpu_hour is None else f', "pricePerGpuHour": {price_per_gpu_hour:g}'
    return {
        DETECTED_TYPES_ANNOTATION: ",".join(detected_types),
        AVAILABILITY_ANNOTATION: (
            f'{{"available": {str(available).lower()}, "availableGpus": {available_gpus:g}, '
            f'"totalGpus": {total_gpus:g}{price}}}'
        ),
    }
