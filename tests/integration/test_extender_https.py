"""The extender over real HTTPS on 127.0.0.1: filter -> prioritize -> bind, like kube-scheduler.

Binds go to the in-memory FakeCluster (kube/fake.py); the second pod's filter runs before any
watch update and must not get the GPU the first bind took.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp

from extender.app import make_app
from kube.fake import FakeCluster
from kube.testing import ManualClock
from serving.cluster_state import ClusterState
from serving.metrics import Metrics
from serving.run import serving
from serving.tls import ReloadingTLS
from tests.builders import inventory, named_gpu_pod, node_object, shared_example_policy
from tests.integration.tls_fixtures import client_context, make_cert_dir


async def test_schedule_two_pods_over_https(tmp_path: Path) -> None:
    certs = make_cert_dir(tmp_path)
    cluster = FakeCluster()
    first, second = named_gpu_pod("first", 1), named_gpu_pod("second", 1)
    cluster.apply(first)
    cluster.apply(second)
    inv = inventory([node_object("big", gpus=2), node_object("small", gpus=1)])
    app = make_app(
        ClusterState.static(shared_example_policy(), inv),
        metrics=Metrics(),
        binder=cluster,
        clock=ManualClock(),
    )
    async with serving(app, tls=ReloadingTLS(tmp_path)) as port, aiohttp.ClientSession() as session:
        base = f"https://127.0.0.1:{port}"
        ssl = client_context(certs.bundle)

        async def call(verb: str, body: object) -> object:
            async with session.post(f"{base}/{verb}", json=body, ssl=ssl) as resp:
                assert resp.status == 200
                return await resp.json()

        names = ["big", "small"]
        filtered = await call("filter", {"Pod": first, "Nodes": None, "NodeNames": names})
        assert filtered["NodeNames"] == names  # type: ignore[index]
        scores = await call("prioritize", {"Pod": first, "Nodes": None, "NodeNames": names})
        best = max(scores, key=lambda h: h["Score"])["Host"]  # type: ignore[call-overload]
        assert best == "small"  # binpack: fill the node that leaves no GPU idle
        bind = {"PodName": "first", "PodNamespace": "team-a", "PodUID": "uid-first", "Node": best}
        assert await call("bind", bind) == {"Error": ""}
        filtered = await call("filter", {"Pod": second, "Nodes": None, "NodeNames": names})
        assert filtered["NodeNames"] == ["big"]  # type: ignore[index]
        assert "small" in filtered["FailedNodes"]  # type: ignore[index]
        async with session.get(f"{base}/readyz", ssl=ssl) as resp:
            assert resp.status == 200
    bound = cluster.get("pods", "first", "team-a")
    assert bound is not None and bound["spec"]["nodeName"] == "small"
