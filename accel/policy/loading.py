"""Parse and cross-validate policy files (mapping of file name -> YAML text) into a `Policy`.

Every error is collected, none is fatal on its own: YAML syntax, schema (pydantic) and
cross-reference problems are all reported together, each with its file and field path.

Every error once (issue 14 section 5):
1. A team or profile that fails its schema is still cross-checked through its raw fields, so a
   team with a bad quota AND an unknown profile reference gets both errors.
2. References are checked against every name the files define, also names of items invalid for
   another reason (their own error is enough). A file that cannot be read at all (YAML syntax
   error, reported with line and column) defines unknown names: references into it are not
   checked, so one syntax error is one error, not a cascade of "unknown profile".
3. An unknown name comes with "did you mean" (difflib's closest known name) and the known names.
4. A profile's types must share one accelerator resource (mixed-vendor profiles are refused): a
   pod requests one resource name, fixed when it is created, while the type is chosen later; an
   A100 + MI300X profile would admit pods that only one vendor's nodes can run. Split it into one
   profile per vendor. A time-sliced profile's sharedResourceName must be a name of its types'
   device (`nvidia.com/gpu.shared` or `nvidia.com/gpu` for NVIDIA types).
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from accel.cluster.catalog import UNKNOWN_TYPE, Catalog
from accel.policy.models import (
    ACCELERATORS_FILE,
    ALL_TYPES,
    MIG_PROFILE_PATTERN,
    POLICY_FILES,
    PROFILES_FILE,
    SETTINGS_FILE,
    TEAMS_FILE,
    ParsedPolicy,
    Policy,
    PolicyError,
    PolicyInvalid,
    Profile,
    Settings,
    Sharing,
    Team,
)
from accel.policy.odh_profiles import clash_errors, profiles_from_objects


def parse_policy(
    files: Mapping[str, str], catalog: Catalog, *, hardware_profiles: Sequence[Mapping[str, Any]] = ()
) -> ParsedPolicy:
    """Build a cross-validated policy or raise `PolicyInvalid` listing every problem.

    `hardware_profiles`: OpenDataHub HardwareProfile objects, mapped by `accel.policy.odh_profiles` and
    added to profiles.yaml's profiles (one namespace of names; a clash is an error naming both). Only
    those in `settings.hardwareProfileNamespaces` count; the others are ignored (issue 21: whoever
    may write objects in a namespace must not add profiles for every team, nor block the policy).
    """
    errors: list[PolicyError] = []
    for name in files:
        if name not in POLICY_FILES:
            errors.append(
                PolicyError(
                    file=name,
                    path="",
                    message=f"unknown policy key; expected one of {', '.join(POLICY_FILES)}",
                )
            )
    documents = {name: _load_yaml(name, files.get(name), errors) for name in POLICY_FILES}
    catalog = _apply_overrides(documents[ACCELERATORS_FILE], catalog, errors)
    settings = _build(SETTINGS_FILE, "", Settings, documents[SETTINGS_FILE], errors) or Settings()
    own = _build_indexed(PROFILES_FILE, "profiles", Profile, documents[PROFILES_FILE], errors)
    teams = _build_indexed(TEAMS_FILE, "teams", Team, documents[TEAMS_FILE], errors)
    profiles = [p for p in own.values() if p is not None]
    trusted = [o for o in hardware_profiles if _namespace(o) in settings.hardware_profile_namespaces]
    profiles += _external_profiles(trusted, profiles, catalog, errors)
    known = _KnownNames.of(documents, profiles, catalog, errors)
    errors.extend(_cross_check(documents, own, teams, profiles, known, catalog))
    if errors:
        raise PolicyInvalid(errors)
    built_teams = tuple(t for t in teams.values() if t is not None)
    return ParsedPolicy(
        policy=Policy(settings=settings, profiles=tuple(profiles), teams=built_teams), catalog=catalog
    )


@dataclass(frozen=True)
class _KnownNames:
    """The names references are checked against (module docstring, "every error once"): every
    profile/type the files *name*, also ones whose other fields are invalid (their own errors are
    reported already); None when the file defining them could not be read at all (a YAML syntax
    error), so its one error is not followed by an "unknown" error for every reference into it."""

    profiles: frozenset[str] | None
    types: frozenset[str] | None

    @staticmethod
    def of(documents: Mapping[str, Any], profiles: Sequence[Profile], catalog: Catalog,
           errors: Sequence[PolicyError]) -> _KnownNames:
        unreadable = {e.file for e in errors if e.message.startswith(INVALID_YAML)}
        named = _raw_names(documents[PROFILES_FILE], "profiles", "name")
        profile_names = (
            None
            if PROFILES_FILE in unreadable or named is None
            else frozenset(named) | {p.name for p in profiles}
        )
        extra = _raw_names(documents[ACCELERATORS_FILE], "accelerators", "name")
        types = (
            None
            if ACCELERATORS_FILE in unreadable or extra is None
            else frozenset(catalog.names()) | frozenset(extra)
        )
        return _KnownNames(profile_names, types)


def _raw_names(document: Any, key: str, field: str) -> list[str] | None:
    """The `field` of every item under `key` that has one; None when the document has no such list."""
    if document is None:
        return []
    items = document.get(key, []) if isinstance(document, dict) else None
    if not isinstance(items, list):
        return None
    return [str(item[field]) for item in items if isinstance(item, dict) and isinstance(item.get(field), str)]


def _namespace(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata")
    return str(metadata.get("namespace") or "") if isinstance(metadata, Mapping) else ""


def _external_profiles(
    objects: Sequence[Mapping[str, Any]], own: list[Profile], catalog: Catalog, errors: list[PolicyError]
) -> list[Profile]:
    """HardwareProfile objects as profiles; their errors are reported under the object's name."""
    if not objects:
        return []
    external, problems = profiles_from_objects(objects, catalog)
    errors.extend(problems)
    errors.extend(clash_errors(external, [p.name for p in own], profiles_file=PROFILES_FILE))
    for item in external:  # per-profile checks, reported against the object rather than profiles.yaml
        errors.extend(e.model_copy(update={"file": item.source, "path": e.path.split(".", 1)[-1]})
                      for e in _check_profile("profile", item.profile, catalog))
    taken = {p.name for p in own}
    kept: list[Profile] = []
    for item in external:  # a clash was reported above; keep one profile per name for the checks below
        if item.profile.name not in taken:
            taken.add(item.profile.name)
            kept.append(item.profile)
    return kept


INVALID_YAML = "invalid YAML"


def _load_yaml(name: str, text: str | None, errors: list[PolicyError]) -> Any:
    if text is None or not text.strip():
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        errors.append(PolicyError(file=name, path=where, message=f"{INVALID_YAML}: {problem}"))
        return None


def _apply_overrides(document: Any, catalog: Catalog, errors: list[PolicyError]) -> Catalog:
    if document is None:
        return catalog
    items = document.get("accelerators") if isinstance(document, dict) else None
    if not isinstance(items, list):
        errors.append(
            PolicyError(
                file=ACCELERATORS_FILE, path="accelerators", message="must be a list of accelerator types"
            )
        )
        return catalog
    good: list[Mapping[str, Any]] = []
    for index, item in enumerate(items):
        try:
            catalog.with_overrides([item])
            good.append(item)
        except (ValidationError, ValueError, TypeError, AttributeError) as exc:
            errors.extend(_pydantic_errors(ACCELERATORS_FILE, f"accelerators[{index}]", exc))
    return catalog.with_overrides(good)


def _build(file: str, path: str, model: type[Any], data: Any, errors: list[PolicyError]) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        errors.append(
            PolicyError(file=file, path=path, message=f"must be a mapping, got {type(data).__name__}")
        )
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors.extend(_pydantic_errors(file, path, exc))
        return None


def _build_indexed(
    file: str, key: str, model: type[Any], document: Any, errors: list[PolicyError]
) -> dict[int, Any]:
    """Each item of the list under `key` by its index in the file: the model, or None when invalid
    (its errors recorded), so later checks name the item's real index."""
    if document is None:
        return {}
    if not isinstance(document, dict) or not isinstance(document.get(key, []), list):
        errors.append(
            PolicyError(file=file, path=key, message=f"expected a mapping with a list under {key!r}")
        )
        return {}
    extra = sorted(set(document) - {key})
    if extra:
        errors.append(
            PolicyError(file=file, path=extra[0], message=f"unknown top-level key; only {key!r} is allowed")
        )
    return {
        i: _build(file, f"{key}[{i}]", model, item, errors) for i, item in enumerate(document.get(key) or [])
    }


def _pydantic_errors(file: str, prefix: str, exc: Exception) -> list[PolicyError]:
    if not isinstance(exc, ValidationError):
        return [PolicyError(file=file, path=prefix, message=str(exc))]
    found = []
    for error in exc.errors():
        location = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"])
        path = (prefix + location).lstrip(".")
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field (check the spelling; fields are camelCase)"
        found.append(PolicyError(file=file, path=path, message=message))
    return found


def _cross_check(
    documents: Mapping[str, Any],
    own: Mapping[int, Profile | None],
    teams: Mapping[int, Team | None],
    profiles: Sequence[Profile],
    known: _KnownNames,
    catalog: Catalog,
) -> Iterable[PolicyError]:
    """References between the files, each reported once (module docstring). Items that failed
    their schema are still checked through their raw fields, so a team with a bad quota still
    gets its unknown-profile reference reported."""
    yield from _duplicates(PROFILES_FILE, "profiles", [p.name for p in own.values() if p is not None])
    yield from _duplicates(TEAMS_FILE, "teams", [t.name for t in teams.values() if t is not None])
    settings = documents[SETTINGS_FILE]
    default = settings.get("defaultProfile") if isinstance(settings, dict) else None
    if isinstance(default, str) and known.profiles is not None and default not in known.profiles:
        yield PolicyError(
            file=SETTINGS_FILE, path="defaultProfile", message=_unknown("profile", default, known.profiles)
        )
    raw_profiles = _raw_list(documents[PROFILES_FILE], "profiles")
    for index, built in own.items():
        if built is not None:
            yield from _check_profile(f"profiles[{index}]", built, catalog, known.types)
        elif known.types is not None:
            yield from _check_raw_types(f"profiles[{index}]", raw_profiles[index], known.types)
    raw_teams = _raw_list(documents[TEAMS_FILE], "teams")
    for index in teams:
        yield from _check_team(f"teams[{index}]", raw_teams[index], known, catalog)


def _raw_list(document: Any, key: str) -> list[Any]:
    items = document.get(key) if isinstance(document, dict) else None
    return items if isinstance(items, list) else []


def _strings(value: Any) -> list[tuple[int, str]]:
    return [(i, v) for i, v in enumerate(value) if isinstance(v, str)] if isinstance(value, list) else []


def _check_raw_types(path: str, item: Any, types: frozenset[str]) -> Iterable[PolicyError]:
    """An invalid profile's accelerator type names (its schema errors are reported already)."""
    refs = item.get("accelerators") if isinstance(item, dict) else None
    for index, ref in enumerate(refs if isinstance(refs, list) else ()):
        name = ref.get("type") if isinstance(ref, dict) else None
        if isinstance(name, str) and (name not in types or name == UNKNOWN_TYPE):
            yield PolicyError(
                file=PROFILES_FILE,
                path=f"{path}.accelerators[{index}].type",
                message=_unknown("accelerator type", name, types),
            )


def _duplicates(file: str, key: str, names: list[str]) -> Iterable[PolicyError]:
    for name, count in Counter(names).items():
        if count > 1:
            index = names.index(name, names.index(name) + 1)
            yield PolicyError(
                file=file,
                path=f"{key}[{index}].name",
                message=f"duplicate name {name!r} (names must be unique)",
            )


def _check_profile(
    path: str, profile: Profile, catalog: Catalog, known_types: Iterable[str] | None = ()
) -> Iterable[PolicyError]:
    """One profile's own consistency. `known_types`: the type names references may use (() = the
    catalog's; None = unknown because accelerators.yaml is unreadable: not checked, rule 2)."""
    types = profile.types
    names = frozenset(known_types) if known_types else frozenset(catalog.names())
    for index, type_name in enumerate(types if known_types is not None else ()):
        if type_name not in names or type_name == UNKNOWN_TYPE:
            yield PolicyError(
                file=PROFILES_FILE,
                path=f"{path}.accelerators[{index}].type",
                message=_unknown("accelerator type", type_name, names),
            )
    yield from _check_resources(path, profile, catalog)
    if len(set(types)) != len(types):
        yield PolicyError(
            file=PROFILES_FILE, path=f"{path}.accelerators", message="lists the same type twice"
        )
    if profile.gpus.max is not None and profile.gpus.default > profile.gpus.max:
        yield PolicyError(
            file=PROFILES_FILE,
            path=f"{path}.gpus.default",
            message=f"default {profile.gpus.default} is above max {profile.gpus.max}",
        )
    yield from _check_sharing(path, profile, catalog)


def _check_resources(path: str, profile: Profile, catalog: Catalog) -> Iterable[PolicyError]:
    """Rule 4: one accelerator resource per profile."""
    devices: dict[str, list[str]] = {}
    for type_name in profile.types:
        if (found := catalog.get(type_name)) is not None:
            devices.setdefault(found.resource_name, []).append(type_name)
    if len(devices) > 1:
        spelled = ", ".join(f"{resource} ({', '.join(names)})" for resource, names in devices.items())
        yield PolicyError(
            file=PROFILES_FILE,
            path=f"{path}.accelerators",
            message=(
                f"mixes accelerator resources {spelled}: a pod requests one resource name when it is "
                "created, before "
                "the type is chosen, so only one vendor's nodes could run it; split it into one profile per "
                "vendor"
            ),
        )
    elif profile.sharing is Sharing.TIME_SLICED and devices:
        device = next(iter(devices))
        if profile.shared_resource_name.removesuffix(".shared") != device:
            yield PolicyError(
                file=PROFILES_FILE,
                path=f"{path}.sharedResourceName",
                message=(
                    f"{profile.shared_resource_name!r} is not a resource of {device} devices; use "
                    f"{device}.shared (device "
                    f"plugin renameByDefault=true) or {device} (renameByDefault=false)"
                ),
            )


def _check_sharing(path: str, profile: Profile, catalog: Catalog) -> Iterable[PolicyError]:
    if profile.sharing is not Sharing.MIG:
        if profile.mig_profile:
            yield PolicyError(
                file=PROFILES_FILE,
                path=f"{path}.migProfile",
                message=f"set, but sharing is {profile.sharing.value!r}; use sharing: mig or remove "
                "migProfile",
            )
        if profile.sharing is Sharing.EXCLUSIVE and profile.replicas not in (None, 1):
            yield PolicyError(
                file=PROFILES_FILE,
                path=f"{path}.replicas",
                message="replicas only apply to sharing: time-sliced",
            )
        return
    if not profile.mig_profile:
        yield PolicyError(
            file=PROFILES_FILE,
            path=f"{path}.migProfile",
            message="required when sharing is mig (e.g. 1g.10gb)",
        )
        return
    if not MIG_PROFILE_PATTERN.match(profile.mig_profile):
        yield PolicyError(
            file=PROFILES_FILE,
            path=f"{path}.migProfile",
            message=f"{profile.mig_profile!r} is not a MIG profile like 1g.10gb",
        )
        return
    if profile.is_generic:
        yield PolicyError(
            file=PROFILES_FILE,
            path=f"{path}.accelerators",
            message="a MIG profile must list the MIG-capable types it applies to",
        )
    for index, type_name in enumerate(profile.types):
        accel = catalog.get(type_name)
        if accel is not None and profile.mig_profile not in accel.mig_profiles:
            valid = ", ".join(accel.mig_profiles) or "none: this type does not support MIG"
            yield PolicyError(
                file=PROFILES_FILE,
                path=f"{path}.accelerators[{index}].type",
                message=f"MIG profile {profile.mig_profile} is not valid for {type_name} (valid: {valid})",
            )


def _check_team(path: str, item: Any, known: _KnownNames, catalog: Catalog) -> Iterable[PolicyError]:
    """A team's references, read from its raw fields (valid or not; wrong shapes are schema errors)."""
    if not isinstance(item, dict):
        return
    types, profiles = known.types, known.profiles
    if types is not None:
        quota = item.get("quota")
        for key in quota if isinstance(quota, dict) else ():
            if key != ALL_TYPES and (key not in types or key == UNKNOWN_TYPE):
                message = _unknown("accelerator type", str(key), types) + ' (or "*" for all types)'
                yield PolicyError(file=TEAMS_FILE, path=f"{path}.quota.{key}", message=message)
        for index, name in _strings(item.get("allowedTypes")):
            if name not in types:
                yield PolicyError(
                    file=TEAMS_FILE,
                    path=f"{path}.allowedTypes[{index}]",
                    message=_unknown("accelerator type", name, types),
                )
    if profiles is not None:
        for index, name in _strings(item.get("allowedProfiles")):
            if name not in profiles:
                yield PolicyError(
                    file=TEAMS_FILE,
                    path=f"{path}.allowedProfiles[{index}]",
                    message=_unknown("profile", name, profiles),
                )
        default = item.get("defaultProfile")
        if isinstance(default, str) and default not in profiles:
            yield PolicyError(
                file=TEAMS_FILE, path=f"{path}.defaultProfile", message=_unknown("profile", default, profiles)
            )


def _unknown(what: str, name: str, known: Iterable[str]) -> str:
    """`unknown profile 'x'`, with the closest known name (difflib) and the known ones."""
    choices = sorted(k for k in known if k != UNKNOWN_TYPE)
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    shown = ", ".join(choices[:12]) + (", ..." if len(choices) > 12 else "")
    return f"unknown {what} {name!r}{hint} (known: {shown or 'none'})"
