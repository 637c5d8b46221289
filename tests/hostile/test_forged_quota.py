"""Issue 21 "forged reservation" over real TLS: two webhook replicas serving HTTPS on 127.0.0.1
share one quota ledger; a burst of 6 pods that all carry `accel.dev/reservation: fixed-id` is
admitted the way the API server admits (mutate, patch, the server's uid, validate), concurrently.
Exactly the quota (2) gets through, and no ledger entry uses the author's id."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from pathlib import Path
from typing import Any

import aiohttp
import jsonpatch

from accel.quota.ledger import Ledger
from accel.quota.rules import LEDGER_NAME
from kube.fake import FakeCluster
from serving.cluster_state import ClusterState
from serving.metrics import Metrics
from serving.run import serving
from serving.tls import ReloadingTLS
from tests.builders import example_policy, gpu_pod, make_inventory, review
from tests.hostile.test_pod_authors import post
from tests.integration.tls_fixtures import client_context, make_cert_dir
from webhook.app import make_app


async def test_a_forged_reservation_burst_over_tls_stays_within_quota(tmp_path: Path) -> None:
    certs = make_cert_dir(tmp_path)
    ctx = client_context(certs.bundle)
    ledger = FakeCluster()
    policy = example_policy(teams=[{"name": "nlp", "quota": {"nvidia-a100-80gb": 2, "*": 10}}])
    apps = [make_app(ClusterState.static(policy, make_inventory()), metrics=Metrics(), ledger_store=ledger,
                     replica_id=f"replica-{i}") for i in range(2)]
    async with contextlib.AsyncExitStack() as stack:
        ports = [await stack.enter_async_context(serving(app, tls=ReloadingTLS(tmp_path))) for app in apps]
        session = await stack.enter_async_context(aiohttp.ClientSession())

        async def admit(i: int) -> bool:
            pod: dict[str, Any] = gpu_pod(namespace="nlp", profile="a100-80gb", gpus="1",
                                          annotations={"accel.dev/reservation": "fixed-id"})
            mutated = await post(session, ports[i % 2], "/mutate", review(pod, uid=f"m{i}"), ctx)
            if not mutated["allowed"]:
                return False
            pod = jsonpatch.apply_patch(pod, json.loads(base64.b64decode(mutated["patch"])))
            assert "accel.dev/reservation" not in pod["metadata"]["annotations"]  # scrubbed
            pod["metadata"].update(uid=f"pod-{i}", name=f"train-{i}")  # the API server, before validation
            validated = await post(session, ports[(i + 1) % 2], "/validate", review(pod, uid=f"v{i}"), ctx)
            return bool(validated["allowed"])

        results = await asyncio.gather(*(admit(i) for i in range(6)))
    assert sum(results) == 2
    data, _ = await ledger.read(LEDGER_NAME)
    ids = set(Ledger.from_data(data).reservations)
    assert len(ids) == 2 and "fixed-id" not in ids and ids <= {f"pod-{i}" for i in range(6)}
