"""Golden protocol cases: tests/golden/extender/<case>/{cluster,request,expected}.json.

The verb is the case name's first word (filter, prioritize, bind). `cluster.json` is a v1 List of
the nodes and pods the extender's watches would hold; `request.json` is the exact body
kube-scheduler sends (the docs examples among them); `expected.json` the exact reply.
After an intended change, ACCEL_UPDATE_GOLDEN=1 rewrites the files that differ and fails for each
(never a silent pass); review the diff before committing (tests/golden/README.md).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from accel.capacity.inventory import build_inventory
from extender.app import make_app
from kube.fake import FakeCluster
from kube.testing import ManualClock
from serving.cluster_state import ClusterState
from serving.metrics import Metrics
from tests.builders import shared_example_policy

CASES = Path(__file__).resolve().parents[1] / "golden" / "extender"
UPDATE = os.environ.get("ACCEL_UPDATE_GOLDEN") == "1"


def _cases() -> list[Path]:
    return sorted(p for p in CASES.iterdir() if p.is_dir())


@pytest.mark.parametrize("case", _cases(), ids=lambda p: p.name)
async def test_golden(aiohttp_client: Any, case: Path) -> None:
    verb = case.name.split("-", 1)[0]
    objects = json.loads((case / "cluster.json").read_text())["items"]
    nodes = [o for o in objects if o["kind"] == "Node"]
    pods = [o for o in objects if o["kind"] == "Pod"]
    parsed = shared_example_policy()
    inv = build_inventory(nodes, pods, [], catalog=parsed.catalog, policy=parsed.policy)
    cluster = FakeCluster()
    for pod in pods:
        if not pod["spec"].get("nodeName"):
            cluster.apply(pod)
    app = make_app(ClusterState.static(parsed, inv), metrics=Metrics(), binder=cluster, clock=ManualClock())
    client = await aiohttp_client(app)
    request = json.loads((case / "request.json").read_text())
    if verb == "bind":  # kube-scheduler filters before it binds; the extender learns the pod there
        pod = next(p for p in pods if p["metadata"].get("uid") == request["PodUID"])
        await client.post("/filter", json={"Pod": pod, "Nodes": None, "NodeNames": [request["Node"]]})
    resp = await client.post(f"/{verb}", json=request)
    assert resp.status == 200
    got = await resp.json()
    expected_path = case / "expected.json"
    if (UPDATE or not expected_path.exists()) and (
            not expected_path.exists() or json.loads(expected_path.read_text()) != got):
        expected_path.write_text(json.dumps(got, indent=2) + "\n")
        pytest.fail(f"{case.name}/expected.json written from the current code: review `git diff {CASES}` "
                    "(tests/golden/README.md), then rerun without ACCEL_UPDATE_GOLDEN")
    assert got == json.loads(expected_path.read_text())
