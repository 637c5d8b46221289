"""Property tests of admission: for any pod, the patch applies, a second pass is a no-op, and the
HTTP handler answers every body with 200 or 4xx (never 5xx)."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import jsonpatch
import orjson
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accel.admission.plan import mutate
from accel.admission.validate import plan_validation
from serving.cluster_state import ClusterState
from serving.metrics import Metrics
from tests.builders import example_policy, make_context, make_inventory, review
from webhook.app import make_app

CTX = make_context()
PROFILES = [None, "a100-80gb", "large-any", "notebook-shared", "inference-mig", "gpu-any", "amd-mi300x",
            "premium-h200", "legacy-v100", "no-such-profile"]
NAMESPACES = ["nlp", "vision", "research", "platform", "unlabelled", "kube-system"]
PRODUCTS = ["NVIDIA-H200", "Tesla-T4", "NVIDIA-A100-SXM4-80GB", "NVIDIA-L4", "AMD_Instinct_MI300X_OAM"]

quantities = st.sampled_from(["0", "1", "2", "4", "8"])
resource_maps = st.dictionaries(
    st.sampled_from(["nvidia.com/gpu", "cpu", "memory", "amd.com/gpu", "nvidia.com/gpu.shared"]),
    quantities,
    max_size=3,
)


@st.composite
def containers(draw: Any, *, init: bool = False) -> dict[str, Any]:
    container: dict[str, Any] = {"name": draw(st.sampled_from(["a", "b", "c"])), "image": "x"}
    shape = draw(st.sampled_from(["both", "requests", "limits", "none", "empty"]))
    gpus = draw(resource_maps)
    if shape == "both":
        container["resources"] = {"requests": dict(gpus), "limits": dict(gpus)}
    elif shape in ("requests", "limits"):
        container["resources"] = {shape: dict(gpus)}
    elif shape == "empty":
        container["resources"] = {}
    if init and draw(st.booleans()):
        container["restartPolicy"] = "Always"
    return container


expressions = st.fixed_dictionaries(
    {
        "key": st.sampled_from(
            ["nvidia.com/gpu.product", "topology.kubernetes.io/zone", "amd.com/gpu.product-name"]
        ),
        "operator": st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]),
        "values": st.lists(st.sampled_from([*PRODUCTS, "z1", "z2"]), max_size=2),
    }
)


@st.composite
def pods(draw: Any) -> dict[str, Any]:
    namespace = draw(st.sampled_from(NAMESPACES))
    annotations = draw(
        st.dictionaries(st.sampled_from(["a/b", "x~y", "note"]), st.text(max_size=3), max_size=2)
    )
    profile = draw(st.sampled_from(PROFILES))
    if profile:
        annotations["accel.dev/profile"] = profile
    metadata: dict[str, Any] = {"generateName": "p-", "namespace": namespace}
    if annotations or draw(st.booleans()):
        metadata["annotations"] = annotations
    labels = draw(
        st.dictionaries(
            st.sampled_from(["team", "user", "job_type"]), st.sampled_from(["nlp", "u", "x"]), max_size=3
        )
    )
    if labels:
        metadata["labels"] = labels
    spec: dict[str, Any] = {"containers": draw(st.lists(containers(), min_size=1, max_size=3))}
    if draw(st.booleans()):
        spec["initContainers"] = draw(st.lists(containers(init=True), min_size=1, max_size=2))
    if draw(st.booleans()):
        terms = draw(
            st.lists(
                st.fixed_dictionaries({"matchExpressions": st.lists(expressions, min_size=1, max_size=2)}),
                min_size=1,
                max_size=2,
            )
        )
        spec["affinity"] = {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}
        }
    if draw(st.booleans()):
        spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    if draw(st.booleans()):
        spec["nodeSelector"] = {
            draw(st.sampled_from(["nvidia.com/gpu.product", "disk"])): draw(st.sampled_from(PRODUCTS))
        }
    if draw(st.booleans()):
        spec["schedulerName"] = "default-scheduler"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pod=pods())
def test_patch_applies_and_second_pass_is_a_no_op(pod: dict[str, Any]) -> None:
    namespace = pod["metadata"]["namespace"]
    original = copy.deepcopy(pod)
    first = mutate(pod, namespace=namespace, ctx=CTX)
    assert pod == original  # the input is never modified
    if not first.ops:
        return
    patched = jsonpatch.apply_patch(pod, list(first.ops))
    assert patched == first.document
    second = mutate(patched, namespace=namespace, ctx=CTX)
    assert second.allowed and second.ops == (), second.ops
    plan_validation(patched, namespace=namespace, ctx=CTX, request_uid="v", now=0.0, dry_run=False)


junk = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def bodies(draw: Any) -> bytes:
    kind = draw(st.sampled_from(["pod", "junk-request", "junk-json", "bytes"]))
    if kind == "pod":
        return orjson.dumps(review(draw(pods()), uid="u"))
    if kind == "junk-request":
        base = review({"metadata": {}}, uid="u")
        base["request"].update(
            draw(st.dictionaries(st.sampled_from(["uid", "kind", "object", "operation", "dryRun"]), junk))
        )
        return orjson.dumps(base)
    if kind == "junk-json":
        return orjson.dumps(draw(junk))
    return draw(st.binary(max_size=40))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(bodies(), min_size=1, max_size=8))
def test_handlers_never_answer_5xx(batch: list[bytes]) -> None:
    async def run() -> list[int]:
        state = ClusterState.static(example_policy(), make_inventory())
        app = make_app(state, metrics=Metrics(), ledger_store=None, replica_id="p")
        codes = []
        async with TestClient(TestServer(app)) as client:
            for body in batch:
                for path in ("/mutate", "/validate"):
                    response = await client.post(
                        path, data=body, headers={"Content-Type": "application/json"}
                    )
                    codes.append(response.status)
                    answer = await response.json()
                    assert ("response" in answer) == (response.status == 200)
        return codes

    assert all(code == 200 or 400 <= code < 500 for code in asyncio.run(run()))


@st.composite
def mangled_pods(draw: Any) -> dict[str, Any]:
    """A GPU pod with one field the planner reads replaced by junk of any JSON type."""
    pod = draw(pods())
    pod["metadata"].setdefault("annotations", {})["accel.dev/profile"] = "a100-80gb"
    target = draw(
        st.sampled_from(
            [
                ("metadata", "labels"),
                ("metadata", "annotations"),
                ("spec", "tolerations"),
                ("spec", "nodeSelector"),
                ("spec", "affinity"),
                ("spec", "containers"),
                ("spec", "initContainers"),
                ("spec",),
                ("metadata",),
            ]
        )
    )
    node = pod
    for key in target[:-1]:
        node = node[key]
    node[target[-1]] = draw(junk)
    return pod


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pod=mangled_pods())
def test_mangled_pods_get_a_decision_never_an_exception(pod: dict[str, Any]) -> None:
    decision = mutate(pod, namespace="nlp", ctx=CTX)
    assert decision.allowed or decision.finding is not None
    plan_validation(pod, namespace="nlp", ctx=CTX, request_uid="v", now=0.0, dry_run=False)
