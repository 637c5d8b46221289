"""RBAC as sets of atomic grants, to compare the manifests with `kube/permissions.py: API_CALLS`.

A `Grant` is one (apiGroup, resource, verb, resourceName-or-any, namespace-or-cluster) the
authorizer would allow. Rules follow the Kubernetes RBAC authorizer:
1. A ClusterRoleBinding grants its ClusterRole cluster-wide; a RoleBinding grants its Role (or a
   ClusterRole) in the binding's namespace only.
2. A rule with resourceNames never grants `create` (the authorizer sees no name at create time),
   and grants `list`/`watch` only to requests filtered to that name by fieldSelector.
3. Built-in ClusterRoles (`system:*`) are not in the manifests; they are reported by name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]
ANY_NAME = None  # resource_name of a grant from a rule without resourceNames
CLUSTER = None  # namespace of a cluster-wide grant


@dataclass(frozen=True)
class Grant:
    api_group: str
    resource: str
    verb: str
    resource_name: str | None
    namespace: str | None


@dataclass(frozen=True)
class Call:
    """One API call a component makes (normalised from an API_CALLS entry)."""

    api_group: str
    resource: str
    verb: str
    namespaced: bool  # True: only in the controller namespace
    resource_names: tuple[str, ...]


@dataclass(frozen=True)
class SubjectAccess:
    grants: frozenset[Grant]
    builtin_cluster_roles: frozenset[str]


def access_of(objects: Iterable[Obj], *, namespace: str, service_account: str) -> SubjectAccess:
    """Everything RBAC objects in `objects` grant to one ServiceAccount (rule 1, rule 3)."""
    objs = list(objects)
    roles = {
        (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
        for o in objs
        if o["kind"] in ("Role", "ClusterRole")
    }
    grants: set[Grant] = set()
    builtin: set[str] = set()
    for binding in objs:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if not any(_is_subject(s, namespace, service_account) for s in binding.get("subjects", [])):
            continue
        ref = binding["roleRef"]
        scope = binding["metadata"].get("namespace") if binding["kind"] == "RoleBinding" else CLUSTER
        role_ns = scope if ref["kind"] == "Role" else None
        role = roles.get((ref["kind"], role_ns, ref["name"]))
        if role is None:
            builtin.add(ref["name"])
            continue
        for rule in role.get("rules", []):
            grants.update(_expand(rule, scope))
    return SubjectAccess(frozenset(grants), frozenset(builtin))


def _is_subject(subject: Obj, namespace: str, name: str) -> bool:
    return (
        subject.get("kind") == "ServiceAccount"
        and subject.get("name") == name
        and subject.get("namespace") == namespace
    )


def _expand(rule: Obj, namespace: str | None) -> set[Grant]:
    names = rule.get("resourceNames") or [ANY_NAME]
    return {
        Grant(group, resource, verb, name, namespace)
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
        for name in names
    }


def normalise_calls(raw: Iterable[Any]) -> list[Call]:
    """Read API_CALLS entries (dataclass/NamedTuple attributes or mapping keys, either spelling)."""
    return [
        Call(
            api_group=str(_field(entry, "api_group", "apiGroup")),
            resource=str(_field(entry, "resource")),
            verb=str(_field(entry, "verb")),
            namespaced=bool(_field(entry, "namespaced_to_controller_ns", "namespaced")),
            resource_names=tuple(_field(entry, "resource_names", "resourceNames", default=()) or ()),
        )
        for entry in raw
    ]


def _field(entry: Any, *names: str, default: Any = KeyError) -> Any:
    for name in names:
        if isinstance(entry, Mapping) and name in entry:
            return entry[name]
        if hasattr(entry, name):
            return getattr(entry, name)
    if default is KeyError:
        raise KeyError(f"API_CALLS entry {entry!r} has none of the fields {names}")
    return default


def missing_grants(calls: Iterable[Call], grants: frozenset[Grant], controller_ns: str) -> list[str]:
    """Calls the grants do not allow, as readable strings (rule 2)."""
    missing = []
    for call in calls:
        scopes = {controller_ns, CLUSTER} if call.namespaced else {CLUSTER}
        names = call.resource_names if call.resource_names and call.verb != "create" else (ANY_NAME,)
        for name in names:
            ok = any(
                Grant(call.api_group, call.resource, call.verb, n, s) in grants
                for s in scopes
                for n in {name, ANY_NAME}
            )
            if not ok:
                missing.append(_describe(call, name, controller_ns))
    return missing


def excess_grants(calls: Iterable[Call], grants: frozenset[Grant], controller_ns: str) -> list[str]:
    """Grants that no call needs: wider scope, other names, other verbs or resources."""
    needed: set[Grant] = set()
    for call in calls:
        scope = controller_ns if call.namespaced else CLUSTER
        if call.resource_names and call.verb != "create":
            needed.update(
                Grant(call.api_group, call.resource, call.verb, n, scope) for n in call.resource_names
            )
        else:
            needed.add(Grant(call.api_group, call.resource, call.verb, ANY_NAME, scope))
    return sorted(_describe_grant(g) for g in grants - needed)


def _describe(call: Call, name: str | None, controller_ns: str) -> str:
    where = f"namespace {controller_ns}" if call.namespaced else "cluster-wide"
    return (
        f"{call.verb} {call.api_group or 'core'}/{call.resource}"
        + (f" name={name}" if name else "")
        + f" ({where})"
    )


def _describe_grant(g: Grant) -> str:
    where = f"namespace {g.namespace}" if g.namespace else "cluster-wide"
    return (
        f"{g.verb} {g.api_group or 'core'}/{g.resource}"
        + (f" name={g.resource_name}" if g.resource_name else "")
        + f" ({where})"
    )
