"""Issue 21, what API callers may see: per-team GPU-hours and cost (`GET /api/usage`).

A caller sees the profiles of its own teams; the usage of other teams (who runs what, and what
it costs) is theirs too. Before, an anonymous caller, or one whose teams the API cannot name, gets
every team's rows (the handler fell back to "all" when the caller had no team). Now: a caller's
own teams' rows, every team's for callers in `settings.api.usageAdminGroups`, none for anonymous
callers. The chargeback series go to the metrics listener (`--metrics-port`, test_metrics_port.py).
"""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.hostile.test_api_peers import api
from tests.unit.test_chargeback import fake_prometheus

TOKENS = {
    "vision-token": ("bob", ("team:vision", "system:authenticated")),
    "finops-token": ("system:serviceaccount:finops:reader", ("system:serviceaccounts:finops",)),
    "admin-token": ("root", ("system:masters", "system:authenticated")),
}


async def usage(tmp_path: Path, headers: dict[str, str], extra: str = "") -> tuple[set[str], str]:
    """The teams of the rows a caller gets, and the answer's `scope`; the counters hold one team's
    usage (vision)."""
    prometheus = await fake_prometheus()  # answers vision's GPU-hours and cost
    try:
        url = str(prometheus.make_url("")).rstrip("/")
        settings = f"api: {{trustedProxyHeader: X-Forwarded-Groups, prometheusUrl: '{url}'{extra}}}"
        async with (
            api(tmp_path, settings, TOKENS) as (base, pki),
            aiohttp.ClientSession() as session,
            session.get(f"{base}/api/usage?since=7d", ssl=pki.context(), headers=headers) as resp,
        ):
            assert resp.status == 200, await resp.text()
            body = await resp.json()
            return {row["team"] for row in body["rows"]}, body["scope"]
    finally:
        await prometheus.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_team_member_sees_only_their_own_teams_usage(tmp_path: Path) -> None:
    assert await usage(tmp_path, bearer("nlp-token")) == (set(), "your teams: nlp")
    assert await usage(tmp_path, bearer("vision-token")) == ({"vision"}, "your teams: vision")


async def test_an_anonymous_caller_sees_no_teams_usage(tmp_path: Path) -> None:
    rows, scope = await usage(tmp_path, {})
    assert rows == set() and "anonymous" in scope and "Bearer" in scope


async def test_a_spoofed_group_header_does_not_make_an_admin(tmp_path: Path) -> None:
    rows, _ = await usage(tmp_path, {"X-Forwarded-Groups": "system:masters,team:vision"})
    assert rows == set()


async def test_usage_admin_groups_see_every_team(tmp_path: Path) -> None:
    assert (await usage(tmp_path, bearer("admin-token")))[0] == {"vision"}
    assert (await usage(tmp_path, bearer("finops-token")))[0] == set()  # not an admin by default
    finops = ", usageAdminGroups: ['system:serviceaccounts:finops']"
    rows, scope = await usage(tmp_path, bearer("finops-token"), finops)
    assert rows == {"vision"} and "usageAdminGroups" in scope
    assert (await usage(tmp_path, bearer("admin-token"), finops))[0] == set()  # the list replaces the default
