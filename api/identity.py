"""Who is calling the API, and which teams that makes them (NFR-003 visibility).

Rules (in order; the first that applies decides):
1. Trusted proxy: when `settings.api.trustedProxyHeader` is set and the request carries that
   header, its value is the caller's groups, comma-separated (what oauth2-proxy's
   X-Forwarded-Groups sends). Only set it when every request passes through that proxy.
2. Bearer token: `Authorization: Bearer <token>` is checked with a TokenReview (cached per token
   for `TOKEN_CACHE_SECONDS`). A token the API server rejects is a 401; an unreachable API
   server a 503. Without a TokenReviewer (snapshot mode) tokens are ignored.
3. Anything else is anonymous.

Groups name teams in two ways: `team:<name>` names a team of the policy directly;
`system:serviceaccounts:<namespace>` (and a `system:serviceaccount:<namespace>:<sa>` user) names
the namespace, whose team label (settings.teamLabel) names the team. Unknown teams are ignored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiohttp import web

from accel.capacity.inventory import Inventory
from accel.policy.models import Policy
from kube.errors import KubeError
from kube.protocol import ReviewedUser, TokenReviewer

TEAM_GROUP_PREFIX = "team:"
SA_GROUP_PREFIX = "system:serviceaccounts:"
SA_USER_PREFIX = "system:serviceaccount:"
TOKEN_CACHE_SECONDS = 60.0
TOKEN_CACHE_MAX = 10_000


@dataclass(frozen=True)
class Caller:
    """An identified caller (`username` may be empty behind a proxy) or the anonymous one."""

    username: str
    groups: tuple[str, ...]
    anonymous: bool

    @classmethod
    def nobody(cls) -> Caller:
        return cls(username="", groups=(), anonymous=True)


def teams_of(caller: Caller, *, policy: Policy, inventory: Inventory) -> frozenset[str] | None:
    """The caller's teams under the rules above; None for an anonymous caller."""
    if caller.anonymous:
        return None
    namespaces = [g[len(SA_GROUP_PREFIX):] for g in caller.groups if g.startswith(SA_GROUP_PREFIX)]
    if caller.username.startswith(SA_USER_PREFIX):
        namespaces.append(caller.username[len(SA_USER_PREFIX):].split(":", 1)[0])
    named = [g[len(TEAM_GROUP_PREFIX):] for g in caller.groups if g.startswith(TEAM_GROUP_PREFIX)]
    label = policy.settings.team_label
    named += [team for ns in namespaces if (team := inventory.team_of(ns, label))]
    return frozenset(t for t in named if policy.team(t) is not None)


class CallerResolver:
    """Turns a request into a `Caller` (rules 1-3), caching TokenReview answers per token."""

    def __init__(self, reviewer: TokenReviewer | None, *, clock: Callable[[], float]) -> None:
        self._reviewer = reviewer
        self._clock = clock
        self._cache: dict[str, tuple[float, ReviewedUser]] = {}

    async def resolve(self, request: web.Request, *, proxy_header: str | None) -> Caller:
        if proxy_header and (value := request.headers.get(proxy_header)) is not None:
            return Caller(username="", groups=_split_groups(value), anonymous=False)
        auth = request.headers.get("Authorization", "")
        if not auth.lower().startswith("bearer ") or self._reviewer is None:
            return Caller.nobody()
        user = await self._review(auth[7:].strip())
        if not user.authenticated:
            raise web.HTTPUnauthorized(reason="bearer token was rejected by the API server (TokenReview); get a fresh token")
        return Caller(username=user.username, groups=tuple(user.groups), anonymous=False)

    async def _review(self, token: str) -> ReviewedUser:
        key = hashlib.sha256(token.encode()).hexdigest()  # never keep raw tokens in memory longer than needed
        now = self._clock()
        cached = self._cache.get(key)
        if cached and cached[0] > now:
            return cached[1]
        assert self._reviewer is not None
        try:
            user = await self._reviewer.review(token)
        except (KubeError, TimeoutError) as exc:  # API server down or slow
            raise web.HTTPServiceUnavailable(reason=f"cannot verify the bearer token now ({type(exc).__name__}); retry shortly") from exc
        if len(self._cache) >= TOKEN_CACHE_MAX:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= TOKEN_CACHE_MAX:
                self._cache.clear()
        self._cache[key] = (now + TOKEN_CACHE_SECONDS, user)
        return user


def _split_groups(value: str) -> tuple[str, ...]:
    return tuple(g.strip() for g in value.split(",") if g.strip())


def visibility_key(teams: Iterable[str] | None) -> tuple[str, ...] | None:
    return None if teams is None else tuple(sorted(teams))
