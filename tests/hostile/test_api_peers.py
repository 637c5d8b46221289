"""Issue 21, network peers: the API's trusted proxy header is trusted only from the proxy.

Real TLS on 127.0.0.1 with the API's `--client-ca` (the proxy's CA) loaded: only a connection that
presents the proxy's client certificate (CN accel-api-proxy) may name the caller's groups in
X-Forwarded-Groups; from anyone else the header grants nothing, and a bearer token that failed
review stays 401 whatever header comes with it.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from api.app import make_app
from kube.fake import FakeCluster
from kube.testing import ManualClock
from serving.cluster_state import ClusterState
from serving.metrics import Metrics
from serving.run import serving
from serving.tls import ReloadingTLS
from tests.hostile.peer_fixtures import Pki, make_pki
from tests.integration.test_api import sample_inventory, sample_policy

CERT_PROXY = "api: {trustedProxyHeader: X-Forwarded-Groups}"  # trustedProxyFrom defaults to clientCertificate
SPOOF = {"X-Forwarded-Groups": "team:nlp,team:vision,team:research"}
ANONYMOUS = {"notebook-shared", "gpu-any"}
RESEARCH = {"large-any", "amd-mi300x", "notebook-shared", "gpu-any"}


@asynccontextmanager
async def api(
    tmp_path: Path,
    settings: str = CERT_PROXY,
    tokens: Mapping[str, tuple[str, tuple[str, ...]]] | None = None,
) -> AsyncIterator[tuple[str, Pki]]:
    """The API over TLS; `tokens` (token -> user, groups) are known to its TokenReview besides nlp-token."""
    pki = make_pki(tmp_path)
    parsed = sample_policy(settings)
    cluster = FakeCluster()
    cluster.add_token("nlp-token", "alice", ("team:nlp", "system:authenticated"))
    for token, (user, groups) in (tokens or {}).items():
        cluster.add_token(token, user, groups)
    app = make_app(
        ClusterState.static(parsed, sample_inventory(parsed)),
        metrics=Metrics(),
        token_reviewer=cluster,
        clock=ManualClock(),
    )
    async with serving(app, tls=ReloadingTLS(tmp_path, client_ca=tmp_path / "ca.crt")) as port:
        yield f"https://127.0.0.1:{port}", pki


async def profiles(base: str, ctx: ssl.SSLContext, headers: dict[str, str]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{base}/api/hardware-profiles", ssl=ctx, headers=headers) as resp,
    ):
        body = await resp.json()
        return resp.status, {p["name"] for p in body["profiles"]} if resp.status == 200 else body


@pytest.mark.parametrize(
    "client", [None, "scheduler", "other"], ids=["no-certificate", "scheduler-cert", "other-cert"]
)
async def test_spoofed_group_header_without_the_proxy_certificate_grants_nothing(
    tmp_path: Path, client: str | None
) -> None:
    async with api(tmp_path) as (base, pki):
        assert await profiles(base, pki.context(client), SPOOF) == (200, ANONYMOUS)


async def test_proxy_certificate_from_a_foreign_ca_fails_the_handshake(tmp_path: Path) -> None:
    async with api(tmp_path) as (base, pki):
        with pytest.raises(aiohttp.ClientError):
            await profiles(base, pki.context("stranger-proxy"), SPOOF)


async def test_the_proxy_certificate_makes_the_header_count(tmp_path: Path) -> None:
    async with api(tmp_path) as (base, pki):
        assert await profiles(base, pki.context("proxy"), {"X-Forwarded-Groups": "team:research"}) == (
            200,
            RESEARCH,
        )


@pytest.mark.parametrize("client", [None, "proxy"], ids=["spoofer", "real-proxy"])
async def test_a_rejected_token_stays_401_even_with_the_header(tmp_path: Path, client: str | None) -> None:
    headers = {**SPOOF, "Authorization": "Bearer forged-token"}
    async with api(tmp_path) as (base, pki):
        status, body = await profiles(base, pki.context(client), headers)
        assert status == 401 and "TokenReview" in body["error"]


async def test_an_accepted_token_with_a_spoofed_header_is_just_the_token(tmp_path: Path) -> None:
    async with api(tmp_path) as (base, pki):
        _, token_only = await profiles(base, pki.context(), {"Authorization": "Bearer nlp-token"})
        assert await profiles(base, pki.context(), {**SPOOF, "Authorization": "Bearer nlp-token"}) == (
            200,
            token_only,
        )
        assert token_only != ANONYMOUS


async def test_loopback_proof_trusts_a_sidecar_on_127_0_0_1(tmp_path: Path) -> None:
    """trustedProxyFrom: loopback (the proxy is a sidecar): this test client is on 127.0.0.1."""
    async with api(tmp_path, "api: {trustedProxyHeader: X-Forwarded-Groups, trustedProxyFrom: loopback}") as (
        base,
        pki,
    ):
        assert await profiles(base, pki.context(), {"X-Forwarded-Groups": "team:research"}) == (200, RESEARCH)
