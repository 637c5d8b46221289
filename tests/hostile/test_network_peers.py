"""Issue 21, network peers: the extender's verbs answer only kube-scheduler (mTLS), over real TLS.

Every call goes through a real TLS handshake on 127.0.0.1 to the real extender app, binding into
the in-memory API server (kube/fake.py); the pod's nodeName is the proof that nothing was bound.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from extender.app import make_app
from kube.fake import FakeCluster
from kube.testing import ManualClock
from serving.cluster_state import ClusterState
from serving.metrics import Metrics
from serving.run import serving
from serving.tls import ReloadingTLS
from tests.builders import inventory, named_gpu_pod, node_object, shared_example_policy
from tests.hostile.peer_fixtures import SCHEDULER, Pki, make_pki

BIND = {"PodName": "victim", "PodNamespace": "team-a", "PodUID": "uid-victim", "Node": "big"}
VERBS: dict[str, Any] = {
    "filter": {"Pod": named_gpu_pod("victim", 1), "Nodes": None, "NodeNames": ["big"]},
    "prioritize": {"Pod": named_gpu_pod("victim", 1), "Nodes": None, "NodeNames": ["big"]},
    "preempt": {"Pod": named_gpu_pod("victim", 1), "NodeNameToMetaVictims": {}},
    "bind": BIND,
}


@asynccontextmanager
async def extender(tmp_path: Path) -> AsyncIterator[tuple[str, Pki, FakeCluster]]:
    pki = make_pki(tmp_path)
    cluster = FakeCluster()
    cluster.apply(named_gpu_pod("victim", 1))
    app = make_app(
        ClusterState.static(shared_example_policy(), inventory([node_object("big", gpus=2)])),
        metrics=Metrics(), binder=cluster, clock=ManualClock(), client_names=(SCHEDULER,),
    )
    async with serving(app, tls=ReloadingTLS(tmp_path, client_ca=tmp_path / "ca.crt")) as port:
        yield f"https://127.0.0.1:{port}", pki, cluster


def node_of(cluster: FakeCluster) -> str | None:
    pod = cluster.get("pods", "victim", "team-a")
    assert pod is not None
    return pod["spec"].get("nodeName")


async def post(base: str, verb: str, ctx: ssl.SSLContext) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{base}/{verb}", json=VERBS[verb], ssl=ctx) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


@pytest.mark.parametrize("verb", ["bind", "filter", "prioritize", "preempt"])
async def test_verbs_without_a_client_certificate_are_refused_with_401(tmp_path: Path, verb: str) -> None:
    async with extender(tmp_path) as (base, pki, cluster):
        status, body = await post(base, verb, pki.context())
        assert status == 401
        assert "client certificate required" in body["error"] and SCHEDULER in body["error"]
        assert node_of(cluster) is None


async def test_probes_and_metrics_stay_open_without_a_certificate(tmp_path: Path) -> None:
    async with extender(tmp_path) as (base, pki, _cluster):
        await post(base, "bind", pki.context())
        async with aiohttp.ClientSession() as session:
            for path in ("/healthz", "/readyz", "/metrics"):
                async with session.get(f"{base}{path}", ssl=pki.context()) as resp:
                    assert resp.status == 200, path
                    text = await resp.text()
    assert 'accel_http_rejected_total{app="extender",reason="unauthenticated"} 1.0' in text


async def test_the_scheduler_certificate_binds(tmp_path: Path) -> None:
    async with extender(tmp_path) as (base, pki, cluster):
        for verb in ("filter", "prioritize", "preempt"):
            status, _ = await post(base, verb, pki.context("scheduler"))
            assert status == 200, verb
        status, body = await post(base, "bind", pki.context("scheduler"))
        assert (status, body) == (200, {"Error": ""})
        assert node_of(cluster) == "big"


async def test_a_certificate_for_someone_else_from_the_same_ca_gets_403(tmp_path: Path) -> None:
    async with extender(tmp_path) as (base, pki, cluster):
        for client in ("other", "proxy"):
            status, body = await post(base, "bind", pki.context(client))
            assert status == 403 and "may not call /bind" in body["error"], client
        assert node_of(cluster) is None


@pytest.mark.parametrize("client", ["stranger-scheduler", "serving"])
async def test_a_foreign_or_server_only_certificate_fails_the_handshake(tmp_path: Path, client: str) -> None:
    """A CN of accel-scheduler from another CA, or the server's own serverAuth-only pair, is no key."""
    async with extender(tmp_path) as (base, pki, cluster):
        with pytest.raises(aiohttp.ClientError):
            await post(base, "bind", pki.context(client))
        assert node_of(cluster) is None


async def test_webhook_opt_in_client_certificate_refuses_strangers_and_reserves_nothing(
    tmp_path: Path,
) -> None:
    """`accel serve webhook --client-name kube-apiserver`: an AdmissionReview from any other peer
    is 401/403 before it is read, so it cannot reserve quota in the ledger (FakeCluster)."""
    from tests.builders import example_policy, gpu_pod, make_inventory, review
    from webhook.app import make_app as make_webhook

    pki = make_pki(tmp_path)
    cluster = FakeCluster()
    app = make_webhook(ClusterState.static(example_policy(), make_inventory()), metrics=Metrics(),
                       ledger_store=cluster, replica_id="r", client_names=("kube-apiserver",))  # fmt: skip
    body = review(gpu_pod(), uid="uid-forged")
    async with serving(app, tls=ReloadingTLS(tmp_path, client_ca=tmp_path / "ca.crt")) as port:
        base = f"https://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            for client, expected in ((None, 401), ("scheduler", 403)):
                async with session.post(f"{base}/validate", json=body, ssl=pki.context(client)) as resp:
                    assert resp.status == expected, client
            assert cluster.get("configmaps", "accel-quota-ledger", "accel-system") is None
            async with session.post(f"{base}/validate", json=body, ssl=pki.context("apiserver")) as resp:
                assert resp.status == 200 and (await resp.json())["response"]["uid"] == "uid-forged"


async def test_a_client_ca_added_to_the_bundle_is_trusted_after_the_reload_poll(tmp_path: Path) -> None:
    """CA rollover: the scheduler's certificate from the next CA works once the rotated ca.crt is polled."""
    from certs.issue import create_ca, create_client_cert
    from certs.state import write_atomic
    from tests.integration.tls_fixtures import NOW

    pki = make_pki(tmp_path)
    next_ca = create_ca(now=NOW)
    pki.clients["next-scheduler"] = create_client_cert(next_ca, common_name=SCHEDULER, now=NOW)
    cluster = FakeCluster()
    cluster.apply(named_gpu_pod("victim", 1))
    app = make_app(
        ClusterState.static(shared_example_policy(), inventory([node_object("big", gpus=2)])),
        metrics=Metrics(),
        binder=cluster,
        clock=ManualClock(),
        client_names=(SCHEDULER,),
    )
    tls = ReloadingTLS(tmp_path, client_ca=tmp_path / "ca.crt", poll_interval=3600)
    async with serving(app, tls=tls) as port:
        base = f"https://127.0.0.1:{port}"
        with pytest.raises(aiohttp.ClientError):
            await post(base, "bind", pki.context("next-scheduler"))
        write_atomic(tmp_path / "ca.crt", pki.ca.cert_pem + next_ca.cert_pem)
        tls.check_and_reload()  # what the poll task does every poll_interval
        status, _ = await post(
            base, "filter", pki.context("next-scheduler")
        )  # as kube-scheduler: filter, then bind
        assert status == 200
        assert await post(base, "bind", pki.context("next-scheduler")) == (200, {"Error": ""})
    assert node_of(cluster) == "big"
