"""A small, pure-Python kustomize for the subset of features `manifests/` uses.

Why: `make test` must check the assembled manifests on machines without `kubectl`/`kustomize`.
Where the real tool is on PATH, tests/unit/test_manifests.py builds with both and requires the
same objects, so this module cannot silently drift from kustomize.

Supported (anything else in a kustomization.yaml is an error naming the key, not ignored):
1. `resources`: YAML files (multi-document) and directories holding a kustomization.yaml.
2. `configMapGenerator` with `files` (`key=path` or `path`), `literals`, `namespace` and
   `options` (`labels`, `annotations`, `disableNameSuffixHash: true`); name-suffix hashes are
   not implemented, so `disableNameSuffixHash` must be true.
3. `images`: `name` -> `newName`/`newTag`/`digest` on every container of every pod template.
4. `patches` (`path` or inline `patch`) and `patchesStrategicMerge`: strategic-merge patches
   matched by kind + name (+ namespace); lists of containers, volumes, env, ports, volumeMounts
   merge by their key, other lists are replaced, `null` deletes a key.
6. `components`: directories holding a `kind: Component` kustomization (built like a
   kustomization, with the same rules); their objects join the parent's after its resources and
   generators, before the parent's images and patches, as kustomize orders them.
5. kustomize's default load restrictor: a file (resource, patch, generator source) must lie in or
   below its kustomization's directory, symlinks resolved; only other kustomization directories
   (bases) may be elsewhere. So whatever builds here builds with plain `kubectl apply -k`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

SUPPORTED_KEYS = frozenset(
    {
        "apiVersion",
        "kind",
        "resources",
        "components",
        "configMapGenerator",
        "images",
        "patches",
        "patchesStrategicMerge",
    }
)
# Strategic-merge keys for the core lists our patches touch (from k8s.io/api struct tags).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
}


class KustomizeError(ValueError):
    """A kustomization this module cannot build; the message names the file and the key."""


def build(directory: Path) -> list[Obj]:
    """Assemble the kustomization in `directory` into a list of objects (order not significant)."""
    kfile = directory / "kustomization.yaml"
    if not kfile.is_file():
        raise KustomizeError(f"{directory}: no kustomization.yaml (a resource directory needs one)")
    spec = yaml.safe_load(kfile.read_text()) or {}
    unknown = set(spec) - SUPPORTED_KEYS
    if unknown:
        raise KustomizeError(
            f"{kfile}: unsupported keys {sorted(unknown)}; extend kustomize_lite or drop them"
        )
    objects: list[Obj] = []
    for entry in spec.get("resources", []):
        objects.extend(_load_resource(directory, directory / entry, where=f"{kfile}: resources"))
    for index, generator in enumerate(spec.get("configMapGenerator", [])):
        objects.append(
            _generate_configmap(directory, generator, where=f"{kfile}: configMapGenerator[{index}]")
        )
    for entry in spec.get("components", []):
        component = directory / entry
        kind = (
            (yaml.safe_load((component / "kustomization.yaml").read_text()) or {}).get("kind")
            if component.is_dir()
            else None
        )
        if kind != "Component":
            raise KustomizeError(
                f"{kfile}: components: {component} is not a directory with a `kind: Component` "
                "kustomization.yaml"
            )
        objects.extend(build(component))
    for image in spec.get("images", []):
        for obj in objects:
            _set_image(obj, image)
    for patch in _patches(directory, spec, kfile):
        _apply_patch(objects, patch, where=str(kfile))
    return objects


def load_documents(path: Path) -> list[Obj]:
    """Every non-empty YAML document in `path`, each required to be a mapping."""
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    for index, doc in enumerate(docs):
        if not isinstance(doc, dict):
            raise KustomizeError(f"{path}: document {index} is a {type(doc).__name__}, expected a mapping")
    return docs


def _within_root(directory: Path, path: Path, *, where: str) -> Path:
    """Rule 5: the file, or an error naming it and the root it escapes."""
    if not path.resolve().is_relative_to(directory.resolve()):
        raise KustomizeError(f"{where}: {path} is not in or below {directory}; kustomize's default "
                             "load restrictor refuses it (move the file under the kustomization)")
    return path


def _load_resource(directory: Path, path: Path, *, where: str) -> list[Obj]:
    if path.is_dir():
        return build(path)
    if not path.is_file():
        raise KustomizeError(f"{where}: resource {path} does not exist")
    return load_documents(_within_root(directory, path, where=where))


def _generate_configmap(directory: Path, generator: Obj, *, where: str) -> Obj:
    options = generator.get("options", {})
    if not options.get("disableNameSuffixHash"):
        raise KustomizeError(
            f"{where}: name-suffix hashes are not implemented; set options.disableNameSuffixHash"
        )
    data: dict[str, str] = {}
    for item in generator.get("files", []):
        key, _, rel = item.partition("=") if "=" in item else (Path(item).name, "", item)
        source = directory / rel
        if not source.is_file():
            raise KustomizeError(f"{where}: file {source} does not exist")
        _within_root(directory, source, where=where)
        data[key] = source.read_text()
    for literal in generator.get("literals", []):
        key, _, value = literal.partition("=")
        data[key] = value
    metadata: Obj = {"name": generator["name"]}
    if "namespace" in generator:
        metadata["namespace"] = generator["namespace"]
    for field in ("labels", "annotations"):
        if options.get(field):
            metadata[field] = {str(k): str(v) for k, v in options[field].items()}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def pod_specs(obj: Obj) -> Iterator[Obj]:
    """The pod specs inside a workload object (Deployment, Job, CronJob, Pod, ...)."""
    spec = obj.get("spec", {})
    if obj.get("kind") == "Pod":
        yield spec
    elif obj.get("kind") == "CronJob":
        yield spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})
    elif "template" in spec:
        yield spec["template"].get("spec", {})


def _set_image(obj: Obj, image: Obj) -> None:
    for pod in pod_specs(obj):
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            name, tag = _split_image(container.get("image", ""))
            if name != image["name"]:
                continue
            new = image.get("newName", name)
            if "digest" in image:
                container["image"] = f"{new}@{image['digest']}"
            else:
                new_tag = image.get("newTag", tag)
                container["image"] = f"{new}:{new_tag}" if new_tag else new


def _split_image(ref: str) -> tuple[str, str]:
    if "@" in ref:
        return ref.split("@", 1)[0], ""
    head, sep, tag = ref.rpartition(":")
    if sep and "/" not in tag:
        return head, tag
    return ref, ""


def _patches(directory: Path, spec: Obj, kfile: Path) -> Iterator[Obj]:
    for index, entry in enumerate(spec.get("patches", [])):
        if "target" in entry:
            raise KustomizeError(
                f"{kfile}: patches[{index}].target is not supported; name the object in the patch"
            )
        if "path" in entry:
            yield from load_documents(
                _within_root(directory, directory / entry["path"], where=f"{kfile}: patches")
            )
        elif "patch" in entry:
            yield from (doc for doc in yaml.safe_load_all(entry["patch"]) if doc)
        else:
            raise KustomizeError(f"{kfile}: patches[{index}] needs `path` or `patch`")
    for rel in spec.get("patchesStrategicMerge", []):
        yield from load_documents(
            _within_root(directory, directory / rel, where=f"{kfile}: patchesStrategicMerge")
        )


def _apply_patch(objects: list[Obj], patch: Obj, *, where: str) -> None:
    meta = patch.get("metadata", {})
    matches = [
        obj
        for obj in objects
        if obj.get("kind") == patch.get("kind")
        and obj.get("metadata", {}).get("name") == meta.get("name")
        and meta.get("namespace", obj.get("metadata", {}).get("namespace"))
        == obj.get("metadata", {}).get("namespace")
    ]
    if len(matches) != 1:
        raise KustomizeError(
            f"{where}: patch for {patch.get('kind')}/{meta.get('name')} matches {len(matches)} objects"
        )
    merged = strategic_merge(matches[0], patch)
    matches[0].clear()
    matches[0].update(merged)


def strategic_merge(base: Any, patch: Any, field: str = "") -> Any:
    """Merge `patch` into a copy of `base` with strategic-merge-patch rules (see module doc)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = copy.deepcopy(base)
        for key, value in patch.items():
            if isinstance(key, str) and key.startswith("$"):
                raise KustomizeError(f"patch directive {key} is not supported")
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = strategic_merge(out[key], value, key)
            else:
                out[key] = copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(patch, list) and field in MERGE_KEYS:
        key = MERGE_KEYS[field]
        out_list = copy.deepcopy(base)
        for item in patch:
            found = next((i for i, old in enumerate(out_list) if old.get(key) == item.get(key)), None)
            if found is None:
                out_list.append(copy.deepcopy(item))
            else:
                out_list[found] = strategic_merge(out_list[found], item)
        return out_list
    return copy.deepcopy(patch)
