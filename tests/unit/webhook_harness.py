"""Run one golden webhook case through the real app (mutate, apply the patch, validate) and
reduce what came back to the decision the case asserts. tests/golden/README.md says how to add a
case and how to regenerate expectations.

A case folder holds `request.json` (the AdmissionReview the API server sends to /mutate),
`expected.json` (the decision) and optionally `setup.json`: `settings` overrides, `teams`
(replacing teams.yaml), `profiles` (field overrides per profile name, e.g. `{"a100-80gb":
{"enabled": false}}`), `pods` already in the cluster, `namespaceAnnotations`.

`expected.json` = {"mutate": step, "validate": step (absent when mutation denied: the API server
stops at the first denial), "ledger": reservations written}; for a pod UPDATE (operation UPDATE,
sent to /validate-update only, accel.admission.update) it is {"update": step}. A step is
- `allowed`: the answer;
- `decision`: audit annotation `decision`, the stable reason code (`quota-exceeded`, `mutated`,
  `warned-unknown-profile`, `would-deny-quota-exceeded`, ...; null when the webhook gives none);
- `reasons` (only when several rules broke): audit annotation `reasons`, every code in order;
- `audit` (only when there are any): the other audit annotations (profile, team, reserved, ...),
  without the prose `message` of dry-run mode;
- `status` (denials only): `{"code", "reason"}` of the Status, not its message;
- `warnings` (only when there are any): how many, not their text;
- `patch` (only when there is one): the decoded JSON Patch ops, sorted (`patch_key`): the code
  does not promise an order, only that the patch applies, which `check_wire` checks.
Message and warning texts are asserted in tests/unit/test_webhook_messages.py, one test per
denial code family, so a wording change breaks one test that says what it checks, not dozens.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonpatch
import orjson
import yaml
from aiohttp.test_utils import TestClient, TestServer

import accel.admission
from accel.admission.update import default_writers
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
FINDING_CODE = re.compile(r'Finding\(\s*"([a-z-]+)"')
ACCEL_NAMESPACE = "accel-system"  # accel's service accounts live here (annotation writers of UPDATE cases)
MAX_WARNING_CHARS = 256  # the API server truncates longer warnings (protocols.md)
# Audit keys not kept in a step's `audit`: decision and reasons have keys of their own, message is prose.
NOT_IN_AUDIT = ("decision", "reasons", "message")


@dataclass
class Observed:
    """Everything one case's run gave back, before it is reduced to the decision."""

    request: dict[str, Any]
    mutate: dict[str, Any] | None  # the /mutate response minus uid; None for a pod UPDATE
    validate: dict[str, Any] | None  # the /validate response minus uid; None when mutation denied
    ledger: dict[str, Any] | None  # reservations written; None when mutation denied
    update: dict[str, Any] | None = None  # the /validate-update response of a pod UPDATE

    @property
    def ops(self) -> list[dict[str, Any]] | None:
        """The decoded JSON Patch of the mutating answer, None when it sent none."""
        return decode_patch(self.mutate) if self.mutate is not None else None

    @property
    def responses(self) -> list[dict[str, Any]]:
        return [r for r in (self.mutate, self.validate, self.update) if r is not None]

    @property
    def patched(self) -> Any:
        """The pod after the mutating webhook's patch (the request's pod when there is none)."""
        pod = self.request["request"]["object"]
        ops = self.ops
        return jsonpatch.apply_patch(pod, ops) if ops is not None else pod


def case_policy(setup: dict[str, Any]) -> Any:
    files = {p.name: p.read_text() for p in POLICY_DIR.glob("*.yaml")}
    settings = yaml.safe_load(files["settings.yaml"])
    settings.update(setup.get("settings", {}))
    files["settings.yaml"] = yaml.safe_dump(settings)
    if "teams" in setup:
        files["teams.yaml"] = yaml.safe_dump({"teams": setup["teams"]})
    if "profiles" in setup:
        profiles = yaml.safe_load(files["profiles.yaml"])
        for profile in profiles["profiles"]:
            profile.update(setup["profiles"].get(profile["name"], {}))
        files["profiles.yaml"] = yaml.safe_dump(profiles)
    return parse_policy(files, load_builtin_catalog())


def _response(answer: dict[str, Any], uid: str) -> dict[str, Any]:
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    response = dict(answer["response"])
    assert response.pop("uid") == uid
    return response


def decode_patch(response: dict[str, Any]) -> list[dict[str, Any]] | None:
    if "patch" not in response:
        return None
    assert response.get("patchType") == "JSONPatch", response
    ops = json.loads(base64.b64decode(response["patch"]))
    assert isinstance(ops, list)
    return ops


def _app(setup: dict[str, Any], store: FakeCluster) -> Any:
    inventory = make_inventory(setup.get("pods", ()), namespace_annotations=setup.get("namespaceAnnotations"))
    state = ClusterState.static(case_policy(setup), inventory)
    return make_app(state, metrics=Metrics(), ledger_store=store, clock=ManualClock(CLOCK_START),
                    replica_id="golden", annotation_writers=default_writers(ACCEL_NAMESPACE))


async def run_case(
    request: dict[str, Any], setup: dict[str, Any], *, store: FakeCluster | None = None
) -> Observed:
    """Send the case's review to /mutate, then (unless denied) the patched pod to /validate; a pod
    UPDATE goes to /validate-update only (the webhooks registered for UPDATE, manifests/base).
    `store` holds the quota ledger (a fresh FakeCluster unless a test injects faults into one)."""
    store = store if store is not None else FakeCluster()
    async with TestClient(TestServer(_app(setup, store))) as client:
        uid = request["request"]["uid"]
        if request["request"]["operation"] == "UPDATE":
            answer = await (await client.post("/validate-update", data=orjson.dumps(request))).json()
            return Observed(request, None, None, None, update=_response(answer, uid))
        answer = await (await client.post("/mutate", data=orjson.dumps(request))).json()
        mutated = _response(answer, uid)
        observed = Observed(request, mutated, None, None)
        if not mutated["allowed"]:
            return observed  # the API server stops at the first denial
        validating = json.loads(json.dumps(request))
        validating["request"]["uid"] = uid + "-validate"
        validating["request"]["object"] = _as_persisted(observed.patched, uid)
        answer = await (await client.post("/validate", data=orjson.dumps(validating))).json()
        observed.validate = _response(answer, uid + "-validate")
        observed.ledger = await _ledger(store)
    return observed


async def validate_only(request: dict[str, Any], setup: dict[str, Any]) -> dict[str, Any]:
    """The /validate response to the request's pod as it is, as when the mutating webhook was
    skipped (failurePolicy Ignore, a reinvocation by another webhook, or a forged pod)."""
    async with TestClient(TestServer(_app(setup, FakeCluster()))) as client:
        uid = request["request"]["uid"]
        validating = json.loads(json.dumps(request))
        validating["request"]["object"] = _as_persisted(validating["request"]["object"], uid)
        return _response(await (await client.post("/validate", data=orjson.dumps(validating))).json(), uid)


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


# ---- the decision a case asserts --------------------------------------------------------------


def patch_key(op: dict[str, Any]) -> str:
    """Sort key of one op: path first, so ops on one field sit together in the expectation."""
    return json.dumps([op.get("path"), op.get("op"), op.get("from"), op.get("value")], sort_keys=True)


def step_decision(response: dict[str, Any]) -> dict[str, Any]:
    """One AdmissionReview response reduced to what a case asserts (module docstring)."""
    audit = dict(response.get("auditAnnotations") or {})
    step: dict[str, Any] = {"allowed": response["allowed"], "decision": audit.get("decision")}
    if "reasons" in audit:
        step["reasons"] = audit["reasons"].split(",")
    if rest := {k: v for k, v in audit.items() if k not in NOT_IN_AUDIT}:
        step["audit"] = rest
    if "status" in response:
        step["status"] = {"code": response["status"]["code"], "reason": response["status"]["reason"]}
    if response.get("warnings"):
        step["warnings"] = len(response["warnings"])
    if (ops := decode_patch(response)) is not None:
        step["patch"] = sorted(ops, key=patch_key)
    return step


def decision(observed: Observed) -> dict[str, Any]:
    """The `expected.json` content for one case."""
    result: dict[str, Any] = {}
    if observed.mutate is not None:
        result["mutate"] = step_decision(observed.mutate)
    if observed.update is not None:
        result["update"] = step_decision(observed.update)
    if observed.validate is not None:
        result["validate"] = step_decision(observed.validate)
        result["ledger"] = observed.ledger
    return result


def check_wire(observed: Observed) -> None:
    """What every answer must keep whatever the case (protocols.md, AdmissionReview response):
    the patch applies to the pod as sent; a denial carries a Failure status with a 4xx/5xx code
    and a message; warnings are non-empty and short enough not to be cut; dry-run mode explains a
    would-be denial in the audit annotation `message`."""
    observed.patched  # noqa: B018 - raises when the patch does not apply to the incoming pod
    for response in observed.responses:
        status = response.get("status")
        if response["allowed"]:
            assert status is None, response
        else:
            assert status is not None and status["status"] == "Failure" and status["code"] >= 400, response
            assert status["message"].strip(), response
        for warning in response.get("warnings") or ():
            assert warning.startswith("accel: ") and len(warning) <= MAX_WARNING_CHARS, warning
        audit = response.get("auditAnnotations") or {}
        if str(audit.get("decision", "")).startswith("would-deny-"):
            assert audit.get("message", "").strip(), audit
        if "reasons" in audit:  # the first broken rule names the decision (accel.admission.validate rule 5)
            assert audit["decision"].endswith(audit["reasons"].split(",")[0]), audit


def reason_codes() -> set[str]:
    """Every denial reason code the admission package defines (`Finding("<code>", ...)`)."""
    package = Path(accel.admission.__file__).parent
    return {code for source in package.glob("*.py") for code in FINDING_CODE.findall(source.read_text())}


def load_case(directory: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    setup_file = directory / "setup.json"
    setup = json.loads(setup_file.read_text()) if setup_file.exists() else {}
    request = json.loads((directory / "request.json").read_text())
    return request, setup, json.loads((directory / "expected.json").read_text())
