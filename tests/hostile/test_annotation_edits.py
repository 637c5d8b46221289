"""A pod author edits their admitted pod's annotations (issue 21's open hole), over real TLS.

The author's pods are admitted the way the API server runs admission (/mutate, patch, /validate).
Then they try what `kubectl annotate --overwrite` and `kubectl label` send the API server as a pod
UPDATE: the type, the profile, the price, the placement, the Kueue queue label. Two defences:
1. /validate-update refuses every such change by anyone but accel's own service accounts.
2. With that webhook out of the way (failurePolicy Ignore during an outage), the edited pods are
   still charged exactly what they were admitted as: the next admissions see the same usage.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonpatch
import orjson
import pytest

from accel.admission.update import default_writers
from kube.fake import FakeCluster
from serving.cluster_state import ClusterState
from serving.metrics import Metrics
from serving.run import serving
from serving.tls import ReloadingTLS
from tests.builders import example_policy, gpu_pod, make_inventory, review
from tests.hostile.test_pod_authors import post
from tests.integration.tls_fixtures import client_context, make_cert_dir
from webhook.app import make_app

A100, V100 = "nvidia-a100-80gb", "nvidia-v100-32gb"
TEAMS = [
    {"name": "vision", "quota": {A100: 2, V100: 2, "*": 8}, "allowedProfiles": ["a100-80gb", "legacy-v100"]}
]
AUTHOR = "alice@example.com"
EXTENDER = "system:serviceaccount:accel-system:accel-extender"
EDITS: list[tuple[str, str, str | None]] = [  # (field, key, new value or None = removed)
    ("annotations", "accelerator.opendatahub.io/type", V100),
    ("annotations", "accelerator.opendatahub.io/type", None),
    ("annotations", "accel.dev/profile", "legacy-v100"),
    ("annotations", "opendatahub.io/hardware-profile-name", "legacy-v100"),
    ("annotations", "accel.dev/gpu-hour-price", "0.01"),
    ("annotations", "accel.dev/cost-per-hour", "0.01"),
    ("annotations", "accel.dev/quota-type", V100),
    ("annotations", "accel.dev/team", "platform"),
    ("annotations", "accel.dev/placement", '{"node": "elsewhere"}'),
    ("annotations", "accel.dev/devices", "0,1,2,3"),
    ("annotations", "accel.dev/job", "someone-elses-job"),
    ("labels", "kueue.x-k8s.io/queue-name", "team-queue"),
]


@contextlib.asynccontextmanager
async def webhook(
    tmp_path: Path, pods: list[dict[str, Any]] = ()
) -> AsyncIterator[tuple[int, ssl.SSLContext]]:  # type: ignore[assignment]
    certs = make_cert_dir(tmp_path)
    state = ClusterState.static(example_policy(teams=TEAMS), make_inventory(pods))
    app = make_app(state, metrics=Metrics(), ledger_store=FakeCluster(), replica_id="hostile",
                   annotation_writers=default_writers("accel-system"))  # fmt: skip
    async with serving(app, tls=ReloadingTLS(tmp_path)) as port:
        yield port, client_context(certs.bundle)


async def admit(session: aiohttp.ClientSession, port: int, ctx: ssl.SSLContext, name: str,
                profile: str = "a100-80gb") -> tuple[bool, dict[str, Any]]:  # fmt: skip
    """(allowed, the pod as stored) for one CREATE through /mutate and /validate."""
    pod = gpu_pod(namespace="vision", profile=profile, gpus="1", name=name)
    mutated = await post(session, port, "/mutate", review(pod, uid=f"m-{name}"), ctx)
    if not mutated["allowed"]:
        return False, pod
    if "patch" in mutated:
        pod = jsonpatch.apply_patch(pod, orjson.loads(base64.b64decode(mutated["patch"])))
    pod["metadata"]["uid"] = f"uid-{name}"
    validated = await post(session, port, "/validate", review(pod, uid=f"uid-{name}"), ctx)
    return bool(validated["allowed"]), pod


def edited(pod: dict[str, Any], field: str, key: str, value: str | None) -> dict[str, Any]:
    new = copy.deepcopy(pod)
    values = new["metadata"].setdefault(field, {})
    if value is None:
        values.pop(key, None)
    else:
        values[key] = value
    return new


def update(old: dict[str, Any], new: dict[str, Any], username: str) -> dict[str, Any]:
    body = review(new, uid="upd", operation="UPDATE")
    body["request"]["oldObject"] = old
    body["request"]["userInfo"] = {"username": username, "groups": ["system:authenticated"]}
    return body


@pytest.mark.parametrize("field,key,value", EDITS, ids=[f"{k}={v}" for _, k, v in EDITS])
async def test_an_author_edit_after_admission_is_refused(tmp_path: Path, field: str, key: str,
                                                         value: str | None) -> None:  # fmt: skip
    async with webhook(tmp_path) as (port, ctx), aiohttp.ClientSession() as session:
        allowed, pod = await admit(session, port, ctx, "train-0")
        assert allowed
        refused = await post(
            session, port, "/validate-update", update(pod, edited(pod, field, key, value), AUTHOR), ctx
        )
        change = edited(pod, field, key, value)
        by_accel = await post(session, port, "/validate-update", update(pod, change, EXTENDER), ctx)
    assert refused["allowed"] is False and refused["status"]["code"] == 403
    assert (
        key in refused["status"]["message"]
        and "cannot be changed after admission" in refused["status"]["message"]
    )
    assert by_accel["allowed"] is True


async def test_with_the_update_webhook_bypassed_edited_pods_keep_their_charge(tmp_path: Path) -> None:
    """Both A100 slots taken, then the pending pods re-annotated as V100 (type, profile, quota type):
    a third A100 pod is still refused and the V100 line still has both of its slots."""
    async with webhook(tmp_path) as (port, ctx), aiohttp.ClientSession() as session:
        admitted = [await admit(session, port, ctx, f"a100-{i}") for i in range(2)]
    assert all(ok for ok, _ in admitted)
    forged = {
        "accelerator.opendatahub.io/type": V100,
        "accel.dev/quota-type": V100,
        "accel.dev/profile": "legacy-v100",
    }
    pods = [copy.deepcopy(pod) for _, pod in admitted]
    for pod in pods:
        pod["metadata"]["annotations"].update(forged)
    async with webhook(tmp_path / "after", pods) as (port, ctx), aiohttp.ClientSession() as session:
        third_a100, _ = await admit(session, port, ctx, "a100-2")
        v100 = [(await admit(session, port, ctx, f"v100-{i}", profile="legacy-v100"))[0] for i in range(3)]
    assert third_a100 is False, "the edited pods still hold the A100 quota"
    assert v100 == [True, True, False], "the V100 line is exactly as free as before the edits"
