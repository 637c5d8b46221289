"""Validate an object against a CustomResourceDefinition's structural OpenAPI v3 schema.

What the API server checks before CEL rules: types, `required`, `enum`, `pattern`, length and
size bounds, `anyOf`, int-or-string, list-map key uniqueness, and (unlike the server, which
silently prunes them) unknown fields, which are reported here so a typo cannot pass unnoticed.
CEL `x-kubernetes-validations` are not evaluated here; the kube-local e2e suite installs the same
CRDs into a real API server, which evaluates them. Returns every problem as `path: reason`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

CRD_DIR = Path(__file__).resolve().parents[1] / "data" / "crds"
_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "number": (int, float)}


def load_schema(crd_file: str, version: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRD_DIR / crd_file).read_text())
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema: dict[str, Any] = served["schema"]["openAPIV3Schema"]
    return schema


def validate(obj: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    where = path or "(root)"
    if "anyOf" in schema and not any(not validate(obj, s, path) for s in schema["anyOf"]):
        return [f"{where}: matches none of {schema['anyOf']}"]
    if schema.get("x-kubernetes-int-or-string"):
        if isinstance(obj, bool) or not isinstance(obj, int | str):
            return [f"{where}: must be an integer or a string"]
    elif "type" in schema and not _is_type(obj, schema["type"]):
        return [f"{where}: must be {schema['type']}, got {type(obj).__name__}"]
    problems = _scalar_checks(obj, schema, where)
    if isinstance(obj, dict):
        problems += _object_checks(obj, schema, path)
    if isinstance(obj, list):
        problems += _array_checks(obj, schema, path, where)
    return problems


def _is_type(obj: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(obj, int) and not isinstance(obj, bool)
    return isinstance(obj, _TYPES[name]) and not (name == "number" and isinstance(obj, bool))


def _scalar_checks(obj: Any, schema: dict[str, Any], where: str) -> list[str]:
    problems = []
    if "enum" in schema and obj not in schema["enum"]:
        problems.append(f"{where}: {obj!r} is not one of {schema['enum']}")
    if isinstance(obj, str):
        if "pattern" in schema and not re.search(schema["pattern"], obj):
            problems.append(f"{where}: {obj!r} does not match {schema['pattern']}")
        if len(obj) > schema.get("maxLength", len(obj)) or len(obj) < schema.get("minLength", 0):
            problems.append(f"{where}: length {len(obj)} out of bounds")
    return problems


def _object_checks(obj: dict[str, Any], schema: dict[str, Any], path: str) -> list[str]:
    problems = [
        f"{path or '(root)'}: missing required field {name!r}"
        for name in schema.get("required", [])
        if name not in obj
    ]
    if len(obj) > schema.get("maxProperties", len(obj)):
        problems.append(f"{path}: more than {schema['maxProperties']} properties")
    properties = schema.get("properties")
    extra = schema.get("additionalProperties")
    for key, value in obj.items():
        child = f"{path}.{key}" if path else key
        if properties is not None and key in properties:
            problems += validate(value, properties[key], child)
        elif isinstance(extra, dict):
            problems += validate(value, extra, child)
        elif (
            properties is not None
            and not schema.get("x-kubernetes-preserve-unknown-fields")
            and path != "metadata"
        ):
            problems.append(f"{child}: unknown field (the API server would prune it)")
    return problems


def _array_checks(obj: list[Any], schema: dict[str, Any], path: str, where: str) -> list[str]:
    problems = []
    if len(obj) > schema.get("maxItems", len(obj)) or len(obj) < schema.get("minItems", 0):
        problems.append(f"{where}: {len(obj)} items out of bounds")
    keys = schema.get("x-kubernetes-list-map-keys")
    if keys:
        seen = [tuple(item.get(k) for k in keys) for item in obj if isinstance(item, dict)]
        if len(seen) != len(set(seen)):
            problems.append(f"{where}: duplicate list-map keys {keys}")
    for index, item in enumerate(obj):
        problems += validate(item, schema.get("items", {}), f"{path}[{index}]")
    return problems
