"""Run one golden webhook case through the real app: mutate, apply the patch, validate.

A case folder holds `request.json` (the AdmissionReview the API server sends to /mutate),
`expected.json` (what comes back) and optionally `setup.json`: `settings` overrides, `teams`
(replacing teams.yaml), `pods` already in the cluster, `namespaceAnnotations`.
`expected.json` = {"mutate": response minus uid/patch + "patched" (the pod after the decoded patch,
when there is one) + "patchOps" (number of ops), "validate": the response to the validating call
with the mutated pod, "ledger": reservations written}.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import jsonpatch
import orjson
import yaml
from aiohttp.test_utils import TestClient, TestServer

from accel.cluster.catalog import load_builtin_catalog
from accel.policy.loading import parse_policy
from accel.quota.ledger import Ledger
from accel.quota.rules import LEDGER_NAME
from kube.fake import FakeCluster
from kube.testing import ManualClock
from serving.cluster_state import ClusterState
from serving.metrics import Metrics
from tests.builders import POLICY_DIR, make_inventory
from webhook.app import make_app

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden" / "webhook"
CLOCK_START = 1_000_000.0


def case_policy(setup: dict[str, Any]) -> Any:
    files = {p.name: p.read_text() for p in POLICY_DIR.glob("*.yaml")}
    settings = yaml.safe_load(files["settings.yaml"])
    settings.update(setup.get("settings", {}))
    files["settings.yaml"] = yaml.safe_dump(settings)
    if "teams" in setup:
        files["teams.yaml"] = yaml.safe_dump({"teams": setup["teams"]})
    return parse_policy(files, load_builtin_catalog())


def _response(answer: dict[str, Any], uid: str) -> dict[str, Any]:
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    response = dict(answer["response"])
    assert response.pop("uid") == uid
    return response


async def run_case(request: dict[str, Any], setup: dict[str, Any]) -> dict[str, Any]:
    """The observed `expected.json` content for one case."""
    inventory = make_inventory(setup.get("pods", ()), namespace_annotations=setup.get("namespaceAnnotations"))
    state = ClusterState.static(case_policy(setup), inventory)
    store = FakeCluster()
    app = make_app(
        state, metrics=Metrics(), ledger_store=store, clock=ManualClock(CLOCK_START), replica_id="golden"
    )
    async with TestClient(TestServer(app)) as client:
        uid = request["request"]["uid"]
        answer = await (await client.post("/mutate", data=orjson.dumps(request))).json()
        mutated = _response(answer, uid)
        result: dict[str, Any] = {"mutate": mutated}
        pod = request["request"]["object"]
        if "patch" in mutated:
            ops = json.loads(base64.b64decode(mutated.pop("patch")))
            pod = jsonpatch.apply_patch(pod, ops)
            mutated["patchOps"] = len(ops)
            mutated["patched"] = pod
        if not mutated["allowed"]:
            return result  # the API server stops at the first denial
        validating = json.loads(json.dumps(request))
        validating["request"]["uid"] = uid + "-validate"
        validating["request"]["object"] = _as_persisted(pod, uid)
        answer = await (await client.post("/validate", data=orjson.dumps(validating))).json()
        result["validate"] = _response(answer, uid + "-validate")
        result["ledger"] = await _ledger(store)
    return result


def _as_persisted(pod: Any, uid: str) -> Any:
    """The pod as the validating webhook sees it: the API server has set `metadata.uid` and the
    name generated from `generateName` (the mutating webhook sees neither; accel.quota invariant 2)."""
    if not isinstance(pod, dict) or not isinstance(pod.get("metadata", {}), dict):
        return pod  # malformed on purpose: sent as it is
    pod = json.loads(json.dumps(pod))
    meta = pod.setdefault("metadata", {})
    meta.setdefault("uid", "pod-" + uid)
    if not meta.get("name") and meta.get("generateName"):
        meta["name"] = meta["generateName"] + "x7k2p"
    return pod


async def _ledger(store: FakeCluster) -> dict[str, Any]:
    data, _ = await store.read(LEDGER_NAME)
    reservations = Ledger.from_data(data).reservations
    return {rid: {"team": r.team, "type": r.type, "amount": str(r.amount)} for rid, r in reservations.items()}


def load_case(directory: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    setup_file = directory / "setup.json"
    setup = json.loads(setup_file.read_text()) if setup_file.exists() else {}
    return (
        json.loads((directory / "request.json").read_text()),
        setup,
        json.loads((directory / "expected.json").read_text()),
    )
