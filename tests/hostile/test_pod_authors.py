"""Pod authors are untrusted (issue 21): the hostile pod corpus against the webhook over real TLS.

Each `tests/hostile/pods/*.yaml` is one author's attempt: a pod (namespace, profile, labels,
annotations, resource) and what must come of it (`expect`). Every case runs the way the API server
runs admission: POST /mutate over HTTPS on 127.0.0.1, apply the returned JSON Patch, POST /validate
with the result. `bypass_reason` cases also run /validate on the author's pod as written (the
mutating webhook skipped, e.g. failurePolicy Ignore during an outage): validation must deny it,
since it never trusts a webhook-owned value it did not recompute.
"""

from __future__ import annotations

import base64
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonpatch
import orjson
import pytest
import yaml

from kube.fake import FakeCluster
from serving.cluster_state import ClusterState
from serving.metrics import Metrics
from serving.run import serving
from serving.tls import ReloadingTLS
from tests.builders import example_policy, gpu_pod, make_inventory, review
from tests.integration.tls_fixtures import client_context, make_cert_dir
from webhook.app import make_app

CORPUS = Path(__file__).resolve().parent / "pods"
CASES = sorted(CORPUS.glob("*.yaml"))
HUGE_VALUE_CHARS = 200_000  # `huge_annotations`: the API server accepts up to 256 KiB of annotations


def build_pod(case: dict[str, Any]) -> dict[str, Any]:
    resource = case.get("resource", "nvidia.com/gpu")
    annotations = dict(case.get("annotations") or {})
    for key in case.get("huge_annotations", ()):  # values too big to write into the YAML file
        annotations[key] = "h" * HUGE_VALUE_CHARS
    pod = gpu_pod(namespace=case["namespace"], profile=case.get("profile"), gpus=case.get("gpus", "1"),
                  labels=case.get("labels"), annotations=annotations or None, resource=resource)
    return pod


@contextlib.asynccontextmanager
async def webhook(tmp_path: Path, settings: dict[str, Any]) -> AsyncIterator[tuple[int, ssl.SSLContext]]:
    state = make_cert_dir(tmp_path)
    cluster = ClusterState.static(example_policy(**settings), make_inventory())
    app = make_app(cluster, metrics=Metrics(), ledger_store=FakeCluster(), replica_id="hostile")
    async with serving(app, tls=ReloadingTLS(tmp_path)) as port:
        yield port, client_context(state.bundle)


async def post(
    session: aiohttp.ClientSession, port: int, path: str, body: Any, ctx: ssl.SSLContext
) -> dict[str, Any]:
    async with session.post(f"https://127.0.0.1:{port}{path}", data=orjson.dumps(body), ssl=ctx,
                            headers={"Content-Type": "application/json"}) as response:
        assert response.status == 200, await response.text()
        return dict((await response.json())["response"])


def required_values(pod: dict[str, Any]) -> set[str]:
    affinity = (pod["spec"].get("affinity") or {}).get("nodeAffinity") or {}
    terms = (affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get(
        "nodeSelectorTerms"
    ) or []
    return {v for t in terms for e in t.get("matchExpressions", []) for v in e.get("values", [])}


def test_the_corpus_covers_every_author_case() -> None:
    names = {p.stem for p in CASES}
    assert {
        "forged-team-annotation",
        "forged-type-annotation",
        "forged-price",
        "forged-devices",
        "forged-placement",
        "team-label-in-unlabelled-namespace",
        "no-profile-restricted-team",
    } <= names


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
async def test_hostile_pod(path: Path, tmp_path: Path) -> None:
    case = yaml.safe_load(path.read_text())
    expect = case["expect"]
    pod = build_pod(case)
    async with webhook(tmp_path, case.get("settings", {})) as (port, ctx), aiohttp.ClientSession() as session:
        mutated = await post(session, port, "/mutate", review(pod, uid="m-1"), ctx)
        patched = pod
        if "patch" in mutated:
            assert mutated["allowed"], "a patch only comes with an allowed answer"
            patched = jsonpatch.apply_patch(pod, orjson.loads(base64.b64decode(mutated["patch"])))
        validated = (
            await post(session, port, "/validate", review(patched, uid="v-1"), ctx)
            if mutated["allowed"]
            else mutated
        )
        again = (
            await post(session, port, "/mutate", review(patched, uid="m-2"), ctx)
            if mutated["allowed"]
            else {}
        )
        bypassed = await post(session, port, "/validate", review(pod, uid="v-2"), ctx)

    decision = validated if mutated["allowed"] else mutated
    assert decision["allowed"] is expect["allowed"], decision
    if "reason" in expect:
        message = decision["status"]["message"]
        assert decision["auditAnnotations"]["decision"] == expect["reason"], decision
        assert expect.get("message", "") in message, message
    for answer in (decision, bypassed):  # the author's text, quoted in a denial, stays inert and short
        shown = (answer.get("status") or {}).get("message", "")
        if expect.get("message_printable"):
            assert shown.isprintable(), shown
        if "message_max" in expect:
            assert len(shown) <= expect["message_max"], len(shown)
    notes = (patched["metadata"].get("annotations") or {})
    for key, value in (expect.get("annotations") or {}).items():
        assert notes.get(key) == value, notes
    for key in expect.get("absent", ()):
        assert key not in notes, notes
    for key, value in (expect.get("not") or {}).items():
        assert notes.get(key) != value, notes
    if "scheduler" in expect:
        assert patched["spec"]["schedulerName"] == expect["scheduler"]
    for value in expect.get("affinity_excludes", ()):
        assert required_values(patched) and value not in required_values(patched), required_values(patched)
    if expect.get("untouched"):
        assert "patch" not in mutated and patched == pod
    if mutated["allowed"]:
        assert "patch" not in again, "reinvocation over our own patch is a no-op"
    if "bypass_reason" in expect:
        assert (
            bypassed["allowed"] is False
            and bypassed["auditAnnotations"]["decision"] == expect["bypass_reason"]
        ), bypassed
