"""HTTP handlers of the hardware-profile API: parse, call the core, render. No policy lives here."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from accel.capacity.nodeview import FILTER_ONLY_TYPES, SORT_KEYS, node_rows, unknown_type_filter
from accel.estimates.estimator import estimate
from accel.estimates.models_table import KNOWN_MODELS
from accel.estimates.rules import EstimateInputError, parse_estimate_request
from accel.profiles.availability import visible_profiles
from accel.profiles.discovery import SelectorError, as_json, draft_profile, select_nodes
from accel.quota.chargeback import parse_window, usage_from_pods, usage_report
from api.identity import CallerResolver, teams_of, usage_scope
from api.redaction import RedactionKeys, Redactor
from api.views import ProfileCache, dumps, node_json, observed
from serving.body import BadRequest, read_json
from serving.cluster_state import ClusterState, StateView
from serving.prometheus import PrometheusError, usage_from_prometheus

JSON = "application/json"


@dataclass
class ApiContext:
    state: ClusterState
    resolver: CallerResolver
    profiles: ProfileCache
    redaction: RedactionKeys = field(default_factory=RedactionKeys)

    def redactor(self, view: StateView) -> Redactor | None:
        """The Redactor when settings.api.redactNodeNames is on, else None."""
        api = view.parsed.policy.settings.api
        return self.redaction.redactor(api.redaction_key_file) if api.redact_node_names else None


CONTEXT = web.AppKey("accel_api_context", ApiContext)


def _json(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type=JSON)


def _view(request: web.Request) -> tuple[ApiContext, StateView]:
    ctx = request.app[CONTEXT]
    try:
        return ctx, ctx.state.view()
    except RuntimeError as exc:  # no policy in force yet
        raise web.HTTPServiceUnavailable(reason=f"not ready: {exc}") from None


async def _visible(request: web.Request, ctx: ApiContext, view: StateView) -> frozenset[str]:
    caller = await ctx.resolver.resolve(request, settings=view.parsed.policy.settings.api)

    def compute() -> frozenset[str]:
        teams = teams_of(caller, policy=view.parsed.policy, inventory=view.inventory)
        return visible_profiles(view.parsed.policy, teams)

    return ctx.profiles.visibility(view, caller, compute)


async def list_profiles(request: web.Request) -> web.Response:
    ctx, view = _view(request)
    visible = await _visible(request, ctx, view)
    return _json(ctx.profiles.list_body(view, visible, fresh=ctx.state.ready()[0]))


async def get_profile(request: web.Request) -> web.Response:
    ctx, view = _view(request)
    visible = await _visible(request, ctx, view)
    name = request.match_info["name"]
    item = ctx.profiles.item(view, name) if name in visible else None
    if item is None:
        known = ", ".join(sorted(visible)) or "(none visible to you)"
        raise web.HTTPNotFound(reason=f"unknown hardware profile {name!r}; known: {known}")
    return _json(dumps({**item, "observedAt": observed(view)}))


async def whoami(request: web.Request) -> web.Response:
    """Who the API takes the caller to be and which teams' profiles that shows (the page's header)."""
    ctx, view = _view(request)
    caller = await ctx.resolver.resolve(request, settings=view.parsed.policy.settings.api)
    teams = teams_of(caller, policy=view.parsed.policy, inventory=view.inventory)
    return _json(dumps({
        "anonymous": caller.anonymous,
        "username": caller.username,
        "groups": list(caller.groups),
        "teams": sorted(teams) if teams is not None else None,
        "devIdentity": caller is ctx.resolver.dev_identity,
        "observedAt": observed(view),
    }))


async def list_nodes(request: web.Request) -> web.Response:
    ctx, view = _view(request)
    types = [t for value in request.query.getall("type", []) for t in value.split(",") if t]
    sort = request.query.get("sort", "name")
    descending = sort.startswith("-") or request.query.get("order", "asc") == "desc"
    problem = unknown_type_filter(types, view.parsed.catalog)
    if problem:
        known = ", ".join(dict.fromkeys([*sorted(view.parsed.catalog.names()), *FILTER_ONLY_TYPES]))
        raise BadRequest(f"query parameter type: {problem}; known: {known}")
    try:
        rows = node_rows(
            view.inventory,
            view.parsed.catalog,
            type_filter=types,
            sort=sort.lstrip("-"),
            descending=descending,
        )
    except ValueError as exc:
        raise BadRequest(f"query parameter sort: {exc}") from None
    redactor = ctx.redactor(view)
    nodes = [node_json(row, redactor=redactor) for row in rows]
    if redactor is not None:  # the order of real names (the tie-breaker of every sort) is not shown either
        nodes.sort(key=_redacted_sort_key(sort.lstrip("-")), reverse=descending)
    return _json(
        dumps(
            {
                "nodes": nodes,
                "count": len(nodes),
                "redacted": redactor is not None,
                "sortKeys": SORT_KEYS,
                "observedAt": observed(view),
            }
        )
    )


def _redacted_sort_key(sort: str) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """node_rows' sort keys (accel.capacity.nodeview) over redacted rows: redacted ids break ties."""
    if sort == "zone":
        return lambda n: (n["zone"] or "", n["spine"] or "", n["leaf"] or "", n["name"])
    field_name = {"name": "name", "type": "type", "gpus": "gpus", "free": "free", "allocated": "allocated",
                  "memory": "memoryGb", "status": "status"}[sort]
    return lambda n: (n[field_name] or 0 if field_name == "memoryGb" else n[field_name], n["name"])


async def list_accelerators(request: web.Request) -> web.Response:
    _ctx, view = _view(request)
    types = [t.model_dump(mode="json", by_alias=True) for t in view.parsed.catalog]
    return _json(dumps({"accelerators": types, "observedAt": observed(view)}))


async def list_models(_request: web.Request) -> web.Response:
    models = [m.model_dump(mode="json", by_alias=True) for m in KNOWN_MODELS]
    return _json(dumps({"models": models}))


class DraftRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    nodes: tuple[str, ...] = ()
    selector: str = ""
    name: str | None = None


async def draft(request: web.Request) -> web.Response:
    ctx, view = _view(request)
    body = _parse(DraftRequest, await read_json(request))
    if not body.nodes and not body.selector:
        raise BadRequest('select nodes: send {"nodes": ["name", ...]} or {"selector": "key=value"}')
    redactor = ctx.redactor(view)
    if redactor is not None:
        return _json(dumps({**_redacted_draft(view, body, redactor), "observedAt": observed(view)}))
    try:
        chosen = select_nodes(view.inventory, names=body.nodes, selector=body.selector)
        result = as_json(
            draft_profile(chosen, view.inventory, view.parsed.catalog, name=body.name, selector=body.selector)
        )
    except SelectorError as exc:
        raise BadRequest(str(exc)) from None
    return _json(dumps({**result, "observedAt": observed(view)}))


def _redacted_draft(view: StateView, body: DraftRequest, redactor: Redactor) -> dict[str, Any]:
    """A draft while node names are redacted (api/redaction.py rule 3): nodes are chosen by redacted
    id only; a selector, a real name or an unknown id is refused with the same answer whether or
    not a node by that name exists, so the API never confirms a guess."""
    if body.selector:
        raise BadRequest(
            "selector: refused while node names are redacted (api.redactNodeNames): a label selector "
            "would confirm guessed names and labels; select nodes by the ids GET /api/nodes shows"
        )
    all_names = [n.name for n in view.inventory.nodes]
    by_id = {redactor.node(n): n for n in all_names}
    unknown = [n for n in body.nodes if n not in by_id]
    if unknown:
        raise BadRequest(
            f"nodes: {len(unknown)} entr{'y is' if len(unknown) == 1 else 'ies are'} not a node id; while "
            "node names "
            "are redacted, select nodes by the ids GET /api/nodes shows (node:...)"
        )
    try:
        chosen = select_nodes(view.inventory, names=[by_id[n] for n in body.nodes])
        drafted = draft_profile(chosen, view.inventory, view.parsed.catalog, name=body.name)
    except SelectorError as exc:
        raise BadRequest(redactor.text(str(exc), all_names)) from None
    # Node labels are redacted, so neither a nodeSelector nor the shared labels built from them is shown.
    hidden = drafted.profile.model_copy(update={"node_selector": {}})
    warnings = [redactor.text(w, all_names) for w in drafted.warnings]
    if drafted.profile.node_selector or drafted.shared_labels:
        warnings.append(
            "node labels left out (nodeSelector, sharedLabels): they are redacted (api.redactNodeNames)"
        )
    result = as_json(
        drafted.model_copy(update={"profile": hidden, "warnings": tuple(warnings), "shared_labels": {}})
    )
    return {
        **result,
        "nodes": [redactor.node(n) for n in result["nodes"]],
        "alsoMatches": [redactor.node(n) for n in result["alsoMatches"]],
    }


async def estimates(request: web.Request) -> web.Response:
    ctx, view = _view(request)
    visible = await _visible(request, ctx, view)
    data = await read_json(request)
    try:
        result = estimate(parse_estimate_request(data), view.parsed, visible=visible)
    except EstimateInputError as exc:
        errors = [e.model_dump() for e in exc.errors]
        return _json(dumps({"error": f"invalid estimate request: {exc}", "errors": errors}), status=400)
    return _json(dumps(result.model_dump(mode="json", by_alias=True)))


def _parse(model: type[DraftRequest], data: dict[str, Any]) -> DraftRequest:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(body)'}: {e['msg']}" for e in exc.errors()
        )
        raise BadRequest(f"invalid draft request: {problems}") from None


async def usage(request: web.Request) -> web.Response:
    """GPU-hours and cost per team and type over `?since=7d` (Prometheus, else current pods)."""
    ctx, view = _view(request)
    window = request.query.get("since", "7d")
    try:
        window_s = parse_window(window)
    except ValueError as exc:
        raise web.HTTPBadRequest(reason=f"since: {exc}") from None
    caller = await ctx.resolver.resolve(request, settings=view.parsed.policy.settings.api)
    teams, scope = usage_scope(caller, policy=view.parsed.policy, inventory=view.inventory)
    body = await usage_body(ctx.state, view, window, window_s, teams=teams)
    return _json(dumps({**body, "scope": scope}))


async def usage_body(state: ClusterState, view: StateView, window: str, window_s: float, *,
                     teams: frozenset[str] | None = None, now: float | None = None) -> dict[str, Any]:
    """The usage answer (shared by `accel usage`): Prometheus when `api.prometheusUrl` is set."""
    url = view.parsed.policy.settings.api.prometheus_url
    if url:
        try:
            rolled = await usage_from_prometheus(url, window_s)
        except PrometheusError as exc:
            raise web.HTTPBadGateway(reason=f"api.prometheusUrl: {exc}") from None
        return usage_report(rolled, window=window, window_s=window_s, source="prometheus", teams=teams)
    pods = state.watcher.pods.items() if state.watcher is not None else []
    rolled_pods = usage_from_pods(
        pods,
        policy=view.parsed.policy,
        catalog=view.parsed.catalog,
        inventory=view.inventory,
        window_s=window_s,
        now=time.time() if now is None else now,
    )
    return usage_report(rolled_pods, window=window, window_s=window_s, source="pods", teams=teams)
