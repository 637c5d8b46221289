"""Write the golden webhook cases' inputs, and expectations only on request (tests/golden/README.md).

    python -m tests.golden.webhook.make_cases                      # inputs; expectations of new cases
    python -m tests.golden.webhook.make_cases --update-expected NAME...   # re-derive these cases
    python -m tests.golden.webhook.make_cases --update-expected    # re-derive every case

Requests and setups are defined here (`cases()`); tests/unit/test_webhook_golden.py checks that
the committed request.json/setup.json are exactly what this script writes. An `expected.json` is
derived from the current code (tests.unit.webhook_harness.decision) and printed as a diff against
the committed one: read every changed line and commit it only if the new decision is the intended
one. The test compares against the committed JSON, never against this script.
"""

from __future__ import annotations

import asyncio
import copy
import difflib
import json
import sys
from collections.abc import Callable
from typing import Any

from tests.builders import gpu_pod, review
from tests.unit.webhook_harness import GOLDEN_DIR, check_wire, decision, run_case

Pod = dict[str, Any]
Case = tuple[dict[str, Any], dict[str, Any]]  # (request, setup)


def _edit(pod: Pod, change: Callable[[Pod], None]) -> Pod:
    pod = copy.deepcopy(pod)
    change(pod)
    return pod


def _owner(kind: str, name: str, api: str = "apps/v1") -> list[dict[str, Any]]:
    return [{"apiVersion": api, "kind": kind, "name": name, "uid": f"owner-{name}", "controller": True,
             "blockOwnerDeletion": True}]


def _bound(
    node: str, count: int, *, namespace: str = "nlp", profile: str = "a100-80gb", i: int = 0, **kw: Any
) -> Pod:
    pod = gpu_pod(
        namespace=namespace, profile=profile, gpus=str(count), name=f"running-{node}-{i}", node=node, **kw
    )
    pod["status"]["phase"] = "Running"
    return pod


def deployment_pod() -> Pod:
    pod = gpu_pod(
        profile="a100-80gb", gpus="2", labels={"app": "train-llm", "pod-template-hash": "7d9f8c6b5"}
    )
    pod["metadata"]["ownerReferences"] = _owner("ReplicaSet", "train-llm-7d9f8c6b5")
    pod["spec"]["tolerations"] = [
        {
            "key": "node.kubernetes.io/not-ready",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 300,
        }
    ]
    return pod


def job_pod() -> Pod:
    pod = gpu_pod(profile="legacy-v100", namespace="vision", gpus="1",
                  labels={"batch.kubernetes.io/job-name": "eval", "job-name": "eval"})
    pod["metadata"]["generateName"] = "eval-"
    pod["metadata"]["ownerReferences"] = _owner("Job", "eval", "batch/v1")
    pod["spec"]["restartPolicy"] = "Never"
    return pod


def pytorchjob_pod() -> Pod:
    pod = gpu_pod(
        profile="large-any",
        gpus="8",
        name="llama-worker-0",
        labels={
            "training.kubeflow.org/job-name": "llama",
            "training.kubeflow.org/replica-type": "worker",
            "training.kubeflow.org/replica-index": "0",
        },
    )
    pod["metadata"]["ownerReferences"] = _owner("PyTorchJob", "llama", "kubeflow.org/v1")
    pod["spec"]["containers"][0]["name"] = "pytorch"
    return pod


def ray_pod() -> Pod:
    pod = gpu_pod(profile="premium-h200", gpus="2",
                  labels={"ray.io/node-type": "worker", "ray.io/cluster": "rl", "ray.io/group": "gpu-group"})
    pod["metadata"]["generateName"] = "rl-gpu-group-worker-"
    pod["metadata"]["ownerReferences"] = _owner("RayCluster", "rl", "ray.io/v1")
    return pod


def with_affinity(pod: Pod) -> None:
    pod["spec"]["affinity"] = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["eu-1a"]}
                        ]
                    },
                    {
                        "matchExpressions": [
                            {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["eu-1b"]}
                        ]
                    },
                ]
            },
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 10,
                    "preference": {
                        "matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]
                    },
                }
            ],
        },
        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []},
    }


def two_containers(pod: Pod) -> None:
    second = copy.deepcopy(pod["spec"]["containers"][0])
    second["name"] = "helper"
    pod["spec"]["containers"].append(second)


def init_gpu(pod: Pod, *, sidecar: bool = False) -> None:
    init = {"name": "warmup", "image": "tool:1", "resources": {"limits": {"nvidia.com/gpu": "1"}}}
    if sidecar:
        init["restartPolicy"] = "Always"
    pod["spec"]["initContainers"] = [init]


def requests_only(pod: Pod) -> None:
    pod["spec"]["containers"][0]["resources"] = {"requests": {"nvidia.com/gpu": "1", "cpu": "2"}}


def no_gpu(pod: Pod) -> None:
    pod["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "1"}, "limits": {"cpu": "1"}}


def tricky_annotations(pod: Pod) -> None:
    pod["metadata"]["annotations"]["example.com/a~b"] = "x"
    pod["metadata"]["annotations"]["example.com/c/d"] = "y"


FORGED = {
    "accel.dev/team": "nlp",
    "accelerator.opendatahub.io/type": "nvidia-h200-141gb",
    "accel.dev/cost-per-hour": "0.01",
    "accel.dev/gpu-hour-price": "0.01",
    "accel.dev/devices": "nvidia.com/gpu=0",
    "accel.dev/placement": "leaf-x",
}


def both_spellings(pod: Pod, other: str) -> None:
    resources = pod["spec"]["containers"][0]["resources"]
    for part in ("requests", "limits"):
        resources[part][other] = "1"


def mk(name: str, pod: Pod, setup: dict[str, Any] | None = None, **kw: Any) -> tuple[str, Case]:
    return name, (review(pod, uid=f"uid-{name}", **kw), setup or {})


def admitted_pod() -> Pod:
    """A pod as the webhooks admitted it (what the author may then try to edit in place)."""
    pod = gpu_pod(name="train-0", annotations={
        "accelerator.opendatahub.io/type": "nvidia-a100-80gb", "accel.dev/gpu-hour-price": "2.50",
        "accel.dev/cost-per-hour": "2.50", "accel.dev/team": "nlp", "example.com/owner": "alice"})
    pod["metadata"]["uid"] = "pod-uid-train-0"
    pod["spec"]["nodeName"] = "a100-1"
    return pod


def mk_update(
    name: str, change: Callable[[Pod], None], *, user: str = "alice@example.com"
) -> tuple[str, Case]:
    """A pod UPDATE (accel.admission.update) by `user`: the admitted pod edited by `change`."""
    old = admitted_pod()
    request = review(_edit(old, change), uid=f"uid-{name}", operation="UPDATE")
    request["request"]["oldObject"] = old
    request["request"]["userInfo"] = {"username": user}
    return name, (request, {})


def _annotate(values: dict[str, str | None]) -> Callable[[Pod], None]:
    def change(pod: Pod) -> None:
        notes = pod["metadata"]["annotations"]
        for key, value in values.items():
            if value is None:
                notes.pop(key, None)
            else:
                notes[key] = value
    return change


def _deleting(pod: Pod) -> None:
    pod["metadata"]["deletionTimestamp"] = "2026-12-05T06:00:00Z"
    _annotate({"accel.dev/profile": None})(pod)


EXTENDER_SA = "system:serviceaccount:accel-system:accel-extender"
FULL_A100 = [_bound("a100-1", 8, i=0), _bound("a100-1", 8, i=1)]
STAR_ONLY_TEAM = [{"name": "nlp", "quota": {"*": 64}}]


def cases() -> dict[str, Case]:
    p = gpu_pod
    listed = [
        mk("deployment-a100-two-gpus", deployment_pod()),
        mk("job-legacy-v100-custom-price", job_pod()),
        mk("pytorchjob-worker-large-any-quota-type-h200", pytorchjob_pod()),
        mk("ray-worker-premium-h200", ray_pod()),
        mk("own-affinity-anded-into-every-term", _edit(p(), with_affinity)),
        mk(
            "own-gpu-toleration-not-duplicated",
            _edit(
                p(),
                lambda x: x["spec"].__setitem__(
                    "tolerations", [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
                ),
            ),
        ),
        mk("multi-container-mig-both-renamed", _edit(p(profile="inference-mig"), two_containers)),
        mk(
            "multi-container-time-sliced-over-profile-max-denied",
            _edit(p(profile="notebook-shared", namespace="vision"), two_containers),
        ),
        mk("init-container-gpu-mig-renamed", _edit(p(profile="inference-mig"), init_gpu)),
        mk(
            "sidecar-gpu-counted-and-renamed",
            _edit(p(profile="inference-mig", namespace="platform"), lambda x: init_gpu(x, sidecar=True)),
        ),
        mk("time-sliced-notebook-quarter-gpu", p(profile="notebook-shared", namespace="vision")),
        mk("mig-inference-slice", p(profile="inference-mig", namespace="platform")),
        mk(
            "generic-profile-unrestricted-team-like-plain-gpu",
            p(profile="gpu-any", gpus="2"),
            {"teams": STAR_ONLY_TEAM},
        ),
        mk("generic-profile-type-quota-team-narrowed-to-quota-type", p(profile="gpu-any", gpus="2")),
        mk("generic-profile-allowed-types-never-h100", p(profile="gpu-any", namespace="vision", gpus="2")),
        mk(
            "generic-profile-allowed-types-star-quota-affinity-over-candidates",
            p(profile="gpu-any", gpus="1"),
            {
                "teams": [
                    {
                        "name": "nlp",
                        "quota": {"*": 64},
                        "allowedTypes": ["nvidia-h100-80gb", "nvidia-a100-80gb"],
                    }
                ]
            },
        ),
        mk(
            "generic-profile-no-allowed-type-for-amd-denied",
            p(profile="gpu-any", namespace="vision", gpus="1", resource="amd.com/gpu"),
        ),
        mk("plain-gpu-gets-default-profile", p(profile=None, gpus="1")),
        mk("profile-without-gpu-request-gets-default-count", p(profile="a100-80gb", gpus=None)),
        mk("large-any-default-eight-gpus", p(profile="large-any", gpus=None, namespace="research")),
        mk("unknown-profile-denied", p(profile="h300-dreams")),
        mk("missing-required-labels-denied", _edit(p(), lambda x: x["metadata"]["labels"].pop("user"))),
        mk("over-quota-per-type-denied", p(gpus="2"), {"pods": FULL_A100}),
        mk(
            "over-quota-total-denied",
            p(profile="premium-h200", gpus="8", namespace="platform"),
            {"teams": [{"name": "platform", "quota": {"*": 4}}], "settings": {"maxGpusPerPod": 16}},
        ),
        mk(
            "contradictory-affinity-denied",
            _edit(
                p(profile="premium-h200"),
                lambda x: x["spec"].__setitem__(
                    "affinity",
                    {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [
                                    {
                                        "matchExpressions": [
                                            {
                                                "key": "nvidia.com/gpu.product",
                                                "operator": "In",
                                                "values": ["Tesla-T4"],
                                            }
                                        ]
                                    }
                                ]
                            }
                        }
                    },
                ),
            ),
        ),
        mk(
            "contradictory-node-selector-denied",
            _edit(
                p(profile="premium-h200"),
                lambda x: x["spec"].__setitem__("nodeSelector", {"nvidia.com/gpu.product": "NVIDIA-L4"}),
            ),
        ),
        mk("excluded-namespace-passthrough", p(namespace="kube-system")),
        mk("non-gpu-pod-passthrough", _edit(p(profile=None), no_gpu)),
        mk("dry-run-request-evaluates-without-reserving", p(gpus="2"), dry_run=True),
        mk("dry-run-request-over-quota-still-denied", p(gpus="2"), {"pods": FULL_A100}, dry_run=True),
        mk(
            "warn-mode-over-quota-admitted-with-warning",
            p(gpus="2"),
            {"pods": FULL_A100, "settings": {"mode": "warn"}},
        ),
        mk(
            "warn-mode-unknown-profile-admitted-with-warning",
            p(profile="nope"),
            {"settings": {"mode": "warn"}},
        ),
        mk("dry-run-mode-no-patch-audit-only", p(gpus="2"), {"settings": {"mode": "dry-run"}}),
        mk(
            "dry-run-mode-would-deny-in-audit",
            p(gpus="2"),
            {"pods": FULL_A100, "settings": {"mode": "dry-run"}},
        ),
        mk("team-label-mismatch-denied", p(labels={"team": "vision"})),
        mk("profile-not-allowed-for-team-denied", p(profile="premium-h200", namespace="vision")),
        mk("too-many-gpus-for-profile-denied", p(profile="a100-80gb", gpus="9")),
        mk(
            "multi-type-falls-back-to-next-type-with-room",
            p(profile="large-any", gpus="8"),
            {
                "pods": [
                    _bound("h200-1", 8, profile="premium-h200", i=0),
                    _bound("h200-1", 8, profile="premium-h200", i=1),
                ]
            },
        ),
        mk(
            "pytorchjob-worker-follows-its-jobs-type",
            pytorchjob_pod(),
            {
                "pods": [
                    _bound(
                        "h100-1", 8, profile="large-any", labels={"training.kubeflow.org/job-name": "llama"}
                    )
                ]
            },
        ),
        mk(
            "multi-type-star-quota-preferred-affinity",
            p(profile="large-any", gpus="8"),
            {"teams": STAR_ONLY_TEAM},
        ),
        mk("amd-profile-renames-to-amd-resource", p(profile="amd-mi300x", namespace="research", gpus="4")),
        mk("namespace-without-team-denied", p(namespace="unlabelled", labels={"team": ""})),
        mk(
            "odh-profile-annotation-accepted",
            p(profile=None, annotations={"opendatahub.io/hardware-profile-name": "a100-80gb"}),
        ),
        mk("annotation-keys-escaped", _edit(p(), tricky_annotations)),
        mk(
            "request-without-limit-gets-limit",
            _edit(p(profile="notebook-shared", namespace="vision"), requests_only),
        ),
        mk(
            "namespace-default-profile-annotation",
            p(profile=None, namespace="vision"),
            {"namespaceAnnotations": {"vision": {"accel.dev/default-profile": "legacy-v100"}}},
        ),
        mk("delete-operation-passthrough", p(), operation="DELETE"),
        # issue 14 section 1: no profile and no default the team may use
        mk(
            "no-profile-no-default-denied",
            p(profile=None, namespace="vision"),
            {"settings": {"defaultProfile": None}},
        ),
        mk("no-profile-restricted-team-gets-narrowed-default", p(profile=None, namespace="vision", gpus="2")),
        # issue 14 section 4: the request must match the profile
        mk("amd-resource-under-nvidia-profile-denied", p(profile="a100-80gb", resource="amd.com/gpu")),
        mk("mig-slice-of-other-size-denied", p(profile="inference-mig", resource="nvidia.com/mig-3g.40gb")),
        mk(
            "plain-and-shared-in-one-container-denied",
            _edit(
                p(profile="notebook-shared", namespace="vision"),
                lambda x: both_spellings(x, "nvidia.com/gpu.shared"),
            ),
        ),
        # issue 21: forged annotations overwritten or removed (remove/replace ops), warn mode admits scrubbed
        mk(
            "forged-annotations-overwritten-or-removed",
            p(profile="a100-80gb", namespace="vision", annotations=FORGED),
        ),
        mk(
            "warn-mode-denied-pod-admitted-scrubbed",
            p(profile="premium-h200", namespace="vision", annotations=FORGED),
            {"settings": {"mode": "warn"}},
        ),
        mk(
            "pod-team-label-in-unlabelled-namespace-team-less",
            p(profile="a100-80gb", namespace="unlabelled", labels={"team": "nlp"}),
        ),
        # reason codes the corpus had no case for (issue 17: every code has a case that breaks with it)
        mk("disabled-profile-denied", p(profile="legacy-v100", namespace="vision"),
           {"profiles": {"legacy-v100": {"enabled": False}}}),
        mk("team-without-policy-entry-denied", p(), {"teams": [{"name": "vision", "quota": {"*": 4}}]}),
        mk("no-type-of-profile-allowed-for-team-denied", p(profile="large-any", namespace="vision"),
           {"teams": [{"name": "vision", "quota": {"*": 4}, "allowedTypes": ["nvidia-l4-24gb"]}]}),
        mk("node-name-on-allowed-node-typed-and-priced", p(node="a100-1")),
        mk("node-name-on-other-type-denied", p(node="h100-1")),
        mk("node-name-not-an-accelerator-node-denied", p(node="cpu-9")),
        mk("malformed-tolerations-denied", _edit(p(), lambda x: x["spec"].__setitem__("tolerations", "all"))),
        # pod UPDATE (issue 21 hole): keys accel decided at admission stay as accel wrote them
        mk_update("update-author-changes-type-annotation-denied",
                  _annotate({"accelerator.opendatahub.io/type": "nvidia-h100-80gb"})),
        mk_update("update-author-removes-profile-and-price-denied",
                  _annotate({"accel.dev/profile": None, "accel.dev/gpu-hour-price": None})),
        mk_update("update-author-edits-own-annotation-allowed", _annotate({"example.com/owner": "bob"})),
        mk_update("update-extender-writes-placement-allowed", _annotate({"accel.dev/placement": "{}"}),
                  user=EXTENDER_SA),
        mk_update("update-of-a-pod-being-deleted-allowed", _deleting),
        mk("unusable-profile-type-nothing-identifies-denied",
           p(profile="amd-mi300x", namespace="research", gpus="8", resource="habana.ai/gaudi"),
           {"profiles": {"amd-mi300x": {"accelerators": [{"type": "intel-gaudi-32gb"}]}}}),
    ]
    return dict(listed)


def case_files(request: dict[str, Any], setup: dict[str, Any]) -> dict[str, str]:
    """The input files of one case, as committed."""
    request = copy.deepcopy(request)
    if request["request"]["operation"] == "DELETE":
        request["request"]["oldObject"], request["request"]["object"] = request["request"]["object"], None
    files = {"request.json": json.dumps(request, indent=2, sort_keys=True) + "\n"}
    if setup:
        files["setup.json"] = json.dumps(setup, indent=2, sort_keys=True) + "\n"
    return files


def _as_text(expectation: dict[str, Any]) -> str:
    return json.dumps(expectation, indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    update = "--update-expected" in argv
    only = {a for a in argv if not a.startswith("--")}
    all_cases = cases()
    if unknown := only - set(all_cases):
        print(f"no such case: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    changed = 0
    for name, (request, setup) in all_cases.items():
        folder = GOLDEN_DIR / name
        folder.mkdir(parents=True, exist_ok=True)
        for file_name, text in case_files(request, setup).items():
            (folder / file_name).write_text(text)
        expected = folder / "expected.json"
        if expected.exists() and not (update and (not only or name in only)):
            continue
        request_sent = json.loads((folder / "request.json").read_text())
        observed = asyncio.run(run_case(request_sent, setup))
        check_wire(observed)
        new = _as_text(decision(observed))
        old = expected.read_text() if expected.exists() else ""
        if new != old:
            changed += 1
            sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                                       f"a/{name}/expected.json", f"b/{name}/expected.json"))
            expected.write_text(new)
    print(f"{len(all_cases)} cases in {GOLDEN_DIR}; {changed} expectation(s) written: review each diff above "
          "(and `git diff tests/golden`) before committing")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
