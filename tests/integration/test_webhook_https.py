"""The webhook over real HTTPS on 127.0.0.1: wire format, 400s, readiness, and exact quota with two
replicas admitting 500 pods concurrently against one shared ledger (FakeCluster as the CasStore)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections import Counter
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp
import jsonpatch
import orjson
import pytest
from aiohttp import web

from accel.cluster.catalog import load_builtin_catalog
from accel.quota.ledger import Ledger
from accel.quota.rules import LEDGER_NAME
from kube.fake import FakeCluster
from serving.cluster_state import ClusterState
from serving.metrics import Metrics
from serving.run import serving
from serving.tls import ReloadingTLS
from tests.builders import example_policy, gpu_pod, make_inventory, review
from tests.integration.tls_fixtures import client_context, make_cert_dir
from webhook.app import ROUTES, make_app


def running(app: web.Application, tls: ReloadingTLS) -> contextlib.AbstractAsyncContextManager[int]:
    """Serve `app` over HTTPS on a free loopback port for the block; yields the port."""
    return serving(app, tls=tls)


@pytest.fixture
def tls_dir(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    state = make_cert_dir(tmp_path)
    return tmp_path, client_context(state.bundle)


def webhook_app(state: Any, store: FakeCluster | None, replica: str, **kw: Any) -> web.Application:
    return make_app(
        state, metrics=Metrics(), ledger_store=store, replica_id=replica, max_concurrency=1000, **kw
    )


async def post(
    session: aiohttp.ClientSession, port: int, path: str, body: Any, ctx: ssl.SSLContext
) -> tuple[int, Any]:
    async with session.post(f"https://127.0.0.1:{port}{path}", data=orjson.dumps(body), ssl=ctx,
                            headers={"Content-Type": "application/json"}) as response:
        return response.status, await response.json()


async def admit(
    session: aiohttp.ClientSession, port: int, pod: dict[str, Any], uid: str, ctx: ssl.SSLContext
) -> dict[str, Any]:
    """What the API server does: /mutate, apply the patch, /validate the result."""
    status, answer = await post(session, port, "/mutate", review(pod, uid=uid), ctx)
    assert status == 200, answer
    mutated = answer["response"]
    if not mutated["allowed"]:
        return mutated
    if "patch" in mutated:
        pod = jsonpatch.apply_patch(pod, orjson.loads(base64.b64decode(mutated["patch"])))
    status, answer = await post(session, port, "/validate", review(pod, uid=uid + "-v"), ctx)
    assert status == 200, answer
    assert "patch" not in answer["response"] and "patchType" not in answer["response"]
    return dict(answer["response"])


def test_routes_constant_lists_what_the_app_serves() -> None:
    app = webhook_app(ClusterState.static(example_policy(), make_inventory()), None, "r")
    served = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    assert set(ROUTES) <= served


async def test_mutate_over_https_returns_a_v1_review_with_base64_patch(
    tls_dir: tuple[Path, ssl.SSLContext],
) -> None:
    cert_dir, ctx = tls_dir
    state = ClusterState.static(example_policy(), make_inventory())
    async with (
        running(webhook_app(state, FakeCluster(), "r1"), ReloadingTLS(cert_dir)) as port,
        aiohttp.ClientSession() as s,
    ):
        status, answer = await post(s, port, "/mutate", review(gpu_pod(), uid="abc"), ctx)
        assert status == 200
        assert (answer["apiVersion"], answer["kind"], answer["response"]["uid"]) == (
            "admission.k8s.io/v1",
            "AdmissionReview",
            "abc",
        )
        assert answer["response"]["patchType"] == "JSONPatch"
        ops = orjson.loads(base64.b64decode(answer["response"]["patch"]))
        assert {"op": "replace", "path": "/spec/schedulerName", "value": "accel-scheduler"} in ops
        assert all("/" not in key and len(key) <= 63 for key in answer["response"]["auditAnnotations"])


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}), "request"),
        (orjson.dumps({"apiVersion": "v1beta1", "kind": "AdmissionReview", "request": {}}), "apiVersion"),
        (
            orjson.dumps(review(gpu_pod()) | {"request": {**review(gpu_pod())["request"], "object": None}}),
            "request.object",
        ),
    ],
    ids=["garbage", "no-request", "wrong-version", "create-without-object"],
)
async def test_malformed_review_is_400_with_a_reason(
    tls_dir: tuple[Path, ssl.SSLContext], body: bytes, fragment: str
) -> None:
    cert_dir, ctx = tls_dir
    state = ClusterState.static(example_policy(), make_inventory())
    async with (
        running(webhook_app(state, None, "r1"), ReloadingTLS(cert_dir)) as port,
        aiohttp.ClientSession() as s,
    ):
        for path in ("/mutate", "/validate"):
            async with s.post(f"https://127.0.0.1:{port}{path}", data=body, ssl=ctx,
                              headers={"Content-Type": "application/json"}) as response:
                answer = await response.json()
                assert response.status == 400 and fragment in answer["error"], answer
                assert "Traceback" not in answer["error"]


async def test_readyz_is_false_until_a_policy_is_loaded(tls_dir: tuple[Path, ssl.SSLContext]) -> None:
    cert_dir, ctx = tls_dir
    state = ClusterState(catalog=load_builtin_catalog(), namespace="accel-system")
    async with (
        running(webhook_app(state, None, "r1"), ReloadingTLS(cert_dir)) as port,
        aiohttp.ClientSession() as s,
    ):
        async with s.get(f"https://127.0.0.1:{port}/readyz", ssl=ctx) as response:
            assert response.status == 503
        state.update_static(example_policy(), make_inventory())
        async with s.get(f"https://127.0.0.1:{port}/readyz", ssl=ctx) as response:
            assert response.status == 200


@pytest.mark.parametrize(
    ("profile", "namespace", "accel_type", "limit"),
    [
        ("a100-80gb", "nlp", "nvidia-a100-80gb", Fraction(16)),
        ("notebook-shared", "vision", "nvidia-l4-24gb", Fraction(2)),
    ],
    ids=["whole-a100s-quota-16", "time-sliced-l4-quarters-quota-2"],
)
async def test_two_replicas_500_concurrent_admissions_fill_quota_exactly(
    tls_dir: tuple[Path, ssl.SSLContext], profile: str, namespace: str, accel_type: str, limit: Fraction
) -> None:
    cert_dir, ctx = tls_dir
    store = FakeCluster()
    tls = ReloadingTLS(cert_dir)
    states = [ClusterState.static(example_policy(), make_inventory()) for _ in range(2)]
    async with running(webhook_app(states[0], store, "a"), tls) as port_a, \
            running(webhook_app(states[1], store, "b"), tls) as port_b, \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:
        pod = gpu_pod(profile=profile, namespace=namespace, gpus="1")
        answers = await asyncio.gather(*(
            admit(session, (port_a, port_b)[i % 2], pod, f"pod-{i}", ctx) for i in range(500)
        ))
    allowed = [a for a in answers if a["allowed"]]
    reasons = Counter(a["status"]["message"].split(" ")[0] for a in answers if not a["allowed"])
    data, _ = await store.read(LEDGER_NAME)
    held = Ledger.from_data(data).reservations
    charged = sum((r.amount for r in held.values()), Fraction(0))
    assert charged == limit, (charged, reasons)
    assert len(allowed) == len(held) and {r.type for r in held.values()} == {accel_type}
    assert all(not a["allowed"] and a["status"]["code"] in (403, 429) for a in answers if a not in allowed)
