"""Parse and cross-validate policy files (mapping of file name -> YAML text) into a `Policy`.

Every error is collected, none is fatal on its own: YAML syntax, schema (pydantic) and
cross-reference problems are all reported together, each with its file and field path.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml
from pydantic import ValidationError

from accel.catalog import UNKNOWN_TYPE, Catalog
from accel.odh_profiles import clash_errors, profiles_from_objects
from accel.policy import (
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


def parse_policy(files: Mapping[str, str], catalog: Catalog, *, hardware_profiles: Sequence[Mapping[str, Any]] = ()) -> ParsedPolicy:
    """Build a cross-validated policy or raise `PolicyInvalid` listing every problem.

    `hardware_profiles`: OpenDataHub HardwareProfile objects, mapped by `accel.odh_profiles` and
    added to profiles.yaml's profiles (one namespace of names; a clash is an error naming both).
    """
    errors: list[PolicyError] = []
    for name in files:
        if name not in POLICY_FILES:
            errors.append(PolicyError(file=name, path="", message=f"unknown policy key; expected one of {', '.join(POLICY_FILES)}"))
    documents = {name: _load_yaml(name, files.get(name), errors) for name in POLICY_FILES}
    catalog = _apply_overrides(documents[ACCELERATORS_FILE], catalog, errors)
    settings = _build(SETTINGS_FILE, "", Settings, documents[SETTINGS_FILE], errors) or Settings()
    profiles = _build_list(PROFILES_FILE, "profiles", Profile, documents[PROFILES_FILE], errors)
    teams = _build_list(TEAMS_FILE, "teams", Team, documents[TEAMS_FILE], errors)
    profiles += _external_profiles(hardware_profiles, profiles, catalog, errors)
    errors.extend(_cross_check(settings, profiles, teams, catalog))
    if errors:
        raise PolicyInvalid(errors)
    return ParsedPolicy(policy=Policy(settings=settings, profiles=tuple(profiles), teams=tuple(teams)), catalog=catalog)


def _external_profiles(objects: Sequence[Mapping[str, Any]], own: list[Profile], catalog: Catalog, errors: list[PolicyError]) -> list[Profile]:
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


def _load_yaml(name: str, text: str | None, errors: list[PolicyError]) -> Any:
    if text is None or not text.strip():
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        errors.append(PolicyError(file=name, path=where, message=f"invalid YAML: {problem}"))
        return None


def _apply_overrides(document: Any, catalog: Catalog, errors: list[PolicyError]) -> Catalog:
    if document is None:
        return catalog
    items = document.get("accelerators") if isinstance(document, dict) else None
    if not isinstance(items, list):
        errors.append(PolicyError(file=ACCELERATORS_FILE, path="accelerators", message="must be a list of accelerator types"))
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
        errors.append(PolicyError(file=file, path=path, message=f"must be a mapping, got {type(data).__name__}"))
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors.extend(_pydantic_errors(file, path, exc))
        return None


def _build_list(file: str, key: str, model: type[Any], document: Any, errors: list[PolicyError]) -> list[Any]:
    if document is None:
        return []
    if not isinstance(document, dict) or not isinstance(document.get(key, []), list):
        errors.append(PolicyError(file=file, path=key, message=f"expected a mapping with a list under {key!r}"))
        return []
    extra = sorted(set(document) - {key})
    if extra:
        errors.append(PolicyError(file=file, path=extra[0], message=f"unknown top-level key; only {key!r} is allowed"))
    built = (_build(file, f"{key}[{i}]", model, item, errors) for i, item in enumerate(document.get(key) or []))
    return [item for item in built if item is not None]


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


def _cross_check(settings: Settings, profiles: list[Profile], teams: list[Team], catalog: Catalog) -> Iterable[PolicyError]:
    yield from _duplicates(PROFILES_FILE, "profiles", [p.name for p in profiles])
    yield from _duplicates(TEAMS_FILE, "teams", [t.name for t in teams])
    profile_names = {p.name for p in profiles}
    if settings.default_profile and settings.default_profile not in profile_names:
        yield PolicyError(file=SETTINGS_FILE, path="defaultProfile", message=_unknown("profile", settings.default_profile, profile_names))
    for index, profile in enumerate(profiles):
        yield from _check_profile(f"profiles[{index}]", profile, catalog)
    for index, team in enumerate(teams):
        yield from _check_team(f"teams[{index}]", team, profile_names, catalog)


def _duplicates(file: str, key: str, names: list[str]) -> Iterable[PolicyError]:
    for name, count in Counter(names).items():
        if count > 1:
            index = names.index(name, names.index(name) + 1)
            yield PolicyError(file=file, path=f"{key}[{index}].name", message=f"duplicate name {name!r} (names must be unique)")


def _check_profile(path: str, profile: Profile, catalog: Catalog) -> Iterable[PolicyError]:
    types = profile.types
    for index, type_name in enumerate(types):
        if type_name not in catalog or type_name == UNKNOWN_TYPE:
            yield PolicyError(file=PROFILES_FILE, path=f"{path}.accelerators[{index}].type", message=_unknown("accelerator type", type_name, catalog.names()))
    if len(set(types)) != len(types):
        yield PolicyError(file=PROFILES_FILE, path=f"{path}.accelerators", message="lists the same type twice")
    if profile.gpus.max is not None and profile.gpus.default > profile.gpus.max:
        yield PolicyError(file=PROFILES_FILE, path=f"{path}.gpus.default", message=f"default {profile.gpus.default} is above max {profile.gpus.max}")
    yield from _check_sharing(path, profile, catalog)


def _check_sharing(path: str, profile: Profile, catalog: Catalog) -> Iterable[PolicyError]:
    if profile.sharing is not Sharing.MIG:
        if profile.mig_profile:
            yield PolicyError(file=PROFILES_FILE, path=f"{path}.migProfile", message=f"set, but sharing is {profile.sharing.value!r}; use sharing: mig or remove migProfile")
        if profile.sharing is Sharing.EXCLUSIVE and profile.replicas not in (None, 1):
            yield PolicyError(file=PROFILES_FILE, path=f"{path}.replicas", message="replicas only apply to sharing: time-sliced")
        return
    if not profile.mig_profile:
        yield PolicyError(file=PROFILES_FILE, path=f"{path}.migProfile", message="required when sharing is mig (e.g. 1g.10gb)")
        return
    if not MIG_PROFILE_PATTERN.match(profile.mig_profile):
        yield PolicyError(file=PROFILES_FILE, path=f"{path}.migProfile", message=f"{profile.mig_profile!r} is not a MIG profile like 1g.10gb")
        return
    if profile.is_generic:
        yield PolicyError(file=PROFILES_FILE, path=f"{path}.accelerators", message="a MIG profile must list the MIG-capable types it applies to")
    for index, type_name in enumerate(profile.types):
        accel = catalog.get(type_name)
        if accel is not None and profile.mig_profile not in accel.mig_profiles:
            valid = ", ".join(accel.mig_profiles) or "none: this type does not support MIG"
            yield PolicyError(file=PROFILES_FILE, path=f"{path}.accelerators[{index}].type", message=f"MIG profile {profile.mig_profile} is not valid for {type_name} (valid: {valid})")


def _check_team(path: str, team: Team, profile_names: set[str], catalog: Catalog) -> Iterable[PolicyError]:
    for key in team.quota:
        if key != ALL_TYPES and (key not in catalog or key == UNKNOWN_TYPE):
            yield PolicyError(file=TEAMS_FILE, path=f"{path}.quota.{key}", message=_unknown("accelerator type", key, catalog.names()) + ' (or "*" for all types)')
    for index, name in enumerate(team.allowed_profiles or ()):
        if name not in profile_names:
            yield PolicyError(file=TEAMS_FILE, path=f"{path}.allowedProfiles[{index}]", message=_unknown("profile", name, profile_names))
    for index, name in enumerate(team.allowed_types or ()):
        if name not in catalog:
            yield PolicyError(file=TEAMS_FILE, path=f"{path}.allowedTypes[{index}]", message=_unknown("accelerator type", name, catalog.names()))
    if team.default_profile and team.default_profile not in profile_names:
        yield PolicyError(file=TEAMS_FILE, path=f"{path}.defaultProfile", message=_unknown("profile", team.default_profile, profile_names))


def _unknown(what: str, name: str, known: Iterable[str]) -> str:
    choices = sorted(k for k in known if k != UNKNOWN_TYPE)
    shown = ", ".join(choices[:12]) + (", ..." if len(choices) > 12 else "")
    return f"unknown {what} {name!r} (known: {shown or 'none'})"
