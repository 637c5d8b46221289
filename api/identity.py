"""Who is calling the API, and which teams that makes them (NFR-003 visibility).

Rules (in order; the first that applies decides):
1. Bearer token: `Authorization: Bearer <token>` is checked with a TokenReview (cached per token
   for `TOKEN_CACHE_SECONDS`). A token the API server rejects is a 401 whatever else the request
   carries (a proxy header cannot rescue it); an unreachable API server a 503. Without a
   TokenReviewer (snapshot mode) tokens are ignored.
2. Trusted proxy: when `settings.api.trustedProxyHeader` is set, the request carries that header
   AND the connection proves it comes from the proxy, the header's value is the caller's groups,
   comma-separated (what oauth2-proxy's X-Forwarded-Groups sends); it wins over an accepted token
   (the proxy authenticated the user). Proof, per `settings.api.trustedProxyFrom`:
   `clientCertificate` (default): the TLS peer presented a certificate verified against the
   API's `--client-ca` whose CN is in `trustedProxyNames`; `loopback`: the peer is 127.0.0.0/8 or
   ::1 (the proxy is a sidecar in the same pod, the API listens where only it can connect).
   From anyone else the header is ignored: it grants nothing.
3. An accepted token without a trusted header: the reviewed user and groups.
4. Anything else is anonymous, unless the API was started for local use with
   `accel serve api --snapshot FILE --dev-identity GROUPS` (refused without `--snapshot`): then
   such a caller gets those groups (`dev_identity`), so the page can be viewed as a team.

Groups name teams in two ways: `team:<name>` names a team of the policy directly;
`system:serviceaccounts:<namespace>` (and a `system:serviceaccount:<namespace>:<sa>` user) names
the namespace, whose team label (settings.teamLabel) names the team. Unknown teams are ignored.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiohttp import web

from accel.capacity.inventory import Inventory
from accel.policy.models import ApiSettings, Policy
from kube.errors import KubeError
from kube.protocol import ReviewedUser, TokenReviewer
from serving.peers import is_loopback, peer_common_name

log = logging.getLogger(__name__)

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


def usage_scope(caller: Caller, *, policy: Policy, inventory: Inventory) -> tuple[frozenset[str] | None, str]:
    """The teams whose usage the caller may read (None: every team) and a line saying why: a caller
    in `settings.api.usageAdminGroups` reads every team's, anyone else their own teams' (rules above),
    an anonymous caller none."""
    admin = set(caller.groups) & set(policy.settings.api.usage_admin_groups)
    if admin:
        return None, f"every team (you are in {', '.join(sorted(admin))}, settings.api.usageAdminGroups)"
    teams = teams_of(caller, policy=policy, inventory=inventory)
    if teams is None:
        return frozenset(), (
            "no team: anonymous callers see no usage; send a bearer token "
            "(`Authorization: Bearer $(kubectl create token default -n <your namespace>)`)"
        )
    if not teams:
        return teams, (
            "no team: your identity names no team of the policy (a team:<name> group or a team namespace)"
        )
    return teams, f"your teams: {', '.join(sorted(teams))}"


class CallerResolver:
    """Turns a request into a `Caller` (rules 1-3), caching TokenReview answers per token."""

    def __init__(
        self,
        reviewer: TokenReviewer | None,
        *,
        clock: Callable[[], float],
        dev_identity: Caller | None = None,
    ) -> None:
        self._reviewer = reviewer
        self._clock = clock
        self.dev_identity = dev_identity  # rule 4's local-use stand-in for anonymous callers
        self._cache: dict[str, tuple[float, ReviewedUser]] = {}

    async def resolve(self, request: web.Request, *, settings: ApiSettings) -> Caller:
        user: ReviewedUser | None = None
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer ") and self._reviewer is not None:
            user = await self._review(auth[7:].strip())
            if not user.authenticated:  # rule 1: never rescued by a header
                raise web.HTTPUnauthorized(
                    reason="bearer token was rejected by the API server (TokenReview); get a fresh token"
                )
        header = settings.trusted_proxy_header
        if header and (value := request.headers.get(header)) is not None:
            if proves_proxy(request, settings):
                return Caller(username="", groups=_split_groups(value), anonymous=False)
            log.debug(
                "ignored %s from a peer that is not the trusted proxy", header, extra={"path": request.path}
            )
        if user is None:
            return self.dev_identity or Caller.nobody()
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
            raise web.HTTPServiceUnavailable(
                reason=f"cannot verify the bearer token now ({type(exc).__name__}); retry shortly"
            ) from exc
        if len(self._cache) >= TOKEN_CACHE_MAX:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= TOKEN_CACHE_MAX:
                self._cache.clear()
        self._cache[key] = (now + TOKEN_CACHE_SECONDS, user)
        return user


def proves_proxy(request: web.Request, settings: ApiSettings) -> bool:
    """Rule 2's proof that this connection comes from the trusted proxy."""
    if settings.trusted_proxy_from == "loopback":
        return is_loopback(request)
    return peer_common_name(request) in settings.trusted_proxy_names


def _split_groups(value: str) -> tuple[str, ...]:
    return tuple(g.strip() for g in value.split(",") if g.strip())


def visibility_key(teams: Iterable[str] | None) -> tuple[str, ...] | None:
    return None if teams is None else tuple(sorted(teams))
