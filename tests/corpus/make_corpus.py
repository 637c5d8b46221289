"""Write the checked-in corpus of nasty requests: `python -m tests.corpus.make_corpus`.

Layout: `tests/corpus/<app>/<expect>-<case>.json|.bin`. Each file is one raw request body, POSTed
by tests/fuzz/test_corpus_replay.py to every POST route of that app. The prefix says what a
correct server answers:
- `bad-`: 4xx (400/413/415) with a JSON `{"error": ...}` body: the request is unusable.
- `any-`: any status below 500 with a JSON body: the server may accept it, deny it or call it
  malformed, but it must never crash, hang or leak a trace.
`tests/corpus/api/get-*.json` are GET requests instead: `{"path": ..., "headers": {...}}`.

The files are committed; this script documents how they were made and regenerates them.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EMOJI = "\U0001f680gpu\U0001f9e0"  # 4-byte UTF-8 code points
RTL = "\u202etrain\u202c\u200f"  # right-to-left override + marks
NUL = "a\u0000b"


def _pod(name: str = "fuzz-pod", namespace: str = "team-nlp", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"team": "nlp", "user": "alice", "job_type": "training"},
                     "annotations": {"accel.dev/profile": "a100-80gb"}, **meta},
        "spec": {"containers": [{"name": "main", "image": "busybox",
                                 "resources": {"requests": {"nvidia.com/gpu": "1"},
                                               "limits": {"nvidia.com/gpu": "1"}}}]},
    }  # fmt: skip


def review(obj: Any = None, **request: Any) -> dict[str, Any]:
    req = {
        "uid": "00000000-0000-4000-8000-000000000001",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": "team-nlp",
        "operation": "CREATE",
        "userInfo": {"username": "fuzz"},
        "object": _pod() if obj is None else obj,
    }
    req.update(request)
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req}


def _deep(depth: int) -> Any:
    value: Any = {}
    for _ in range(depth):
        value = {"a": value}
    return value


SYNTAX: dict[str, bytes] = {
    "bad-empty.bin": b"",
    "bad-whitespace-only.bin": b"  \n\t ",
    "bad-truncated-json.bin": b'{"apiVersion": "admission.k8s.io/v1", "request": {"uid": ',
    "bad-trailing-garbage.bin": b'{"a": 1} trailing',
    "bad-nan-literal.bin": b'{"a": NaN}',
    "bad-single-quotes.bin": b"{'a': 1}",
    "bad-nul-bytes.bin": b"\x00\x00\x00\x00",
    "bad-invalid-utf8.bin": b'{"a": "\xff\xfe\xfd"}',
    "bad-utf16-bom.bin": '{"a": 1}'.encode("utf-16"),
    "bad-lone-surrogate-escape.bin": b'{"request": {"uid": "\\ud800"}}',
    "bad-top-level-array.json": b"[]",
    "bad-top-level-string.json": b'"AdmissionReview"',
    "bad-top-level-number.json": b"42",
    "bad-top-level-null.json": b"null",
    "bad-deep-nesting.json": json.dumps(_deep(200)).encode(),
    "bad-deep-array-nesting.bin": b"[" * 5000 + b"]" * 5000,
}


def webhook_cases() -> dict[str, Any]:
    base = review()
    no_uid = copy.deepcopy(base)
    del no_uid["request"]["uid"]
    cases: dict[str, Any] = {
        "bad-empty-object.json": {},
        "bad-missing-request.json": {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"},
        "bad-request-null.json": {**base, "request": None},
        "bad-request-is-string.json": {**base, "request": "pod"},
        "bad-request-is-list.json": {**base, "request": [base["request"]]},
        "bad-missing-uid.json": no_uid,
        "bad-uid-is-number.json": review(uid=12345),
        "bad-uid-is-object.json": review(uid={"id": 1}),
        "bad-uid-empty.json": review(uid=""),
        "bad-wrong-api-version.json": {**base, "apiVersion": "admission.k8s.io/v1beta1"},
        "bad-wrong-kind.json": {**base, "kind": "TokenReview"},
        "bad-api-version-number.json": {**base, "apiVersion": 1},
        "any-object-is-string.json": review(obj="not a pod"),
        "any-object-is-list.json": review(obj=[1, 2]),
        "any-object-null-on-create.json": review(obj=None, operation="CREATE") | {},
        "any-object-is-a-node.json": review(
            obj={"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}}
        ),
        "any-operation-unknown.json": review(operation="EXPLODE"),
        "any-operation-delete.json": review(operation="DELETE", object=None, oldObject=_pod()),
        "any-dryrun-is-string.json": review(dryRun="yes"),
        "any-namespace-is-number.json": review(namespace=7),
        "any-emoji-names.json": review(obj=_pod(name=EMOJI, labels={"team": EMOJI, "user": EMOJI})),
        "any-rtl-marks.json": review(obj=_pod(name=RTL, annotations={"accel.dev/profile": RTL})),
        "any-nul-in-strings.json": review(
            obj=_pod(name=NUL, annotations={"accel.dev/profile": NUL}), namespace=NUL
        ),
        "any-unknown-profile-unicode.json": review(
            obj=_pod(annotations={"accel.dev/profile": "pr\u00f6file-\u00e9"})
        ),
        "any-very-long-name.json": review(obj=_pod(name="x" * 20000)),
        "any-labels-is-list.json": review(obj=_pod(labels=["team", "nlp"])),
        "any-annotations-values-not-strings.json": review(obj=_pod(annotations={"accel.dev/profile": 3})),
        "any-many-containers.json": _many_containers(300),
        "any-containers-not-list.json": _mutated(lambda p: p["spec"].__setitem__("containers", {"main": 1})),
        "any-containers-null.json": _mutated(lambda p: p["spec"].__setitem__("containers", None)),
        "any-container-is-string.json": _mutated(lambda p: p["spec"].__setitem__("containers", ["busybox"])),
        "any-resources-null.json": _mutated(
            lambda p: p["spec"]["containers"][0].__setitem__("resources", None)
        ),
        "any-gpu-negative.json": _gpus("-1"),
        "any-gpu-fraction.json": _gpus("0.5"),
        "any-gpu-huge.json": _gpus("1e100"),
        "any-gpu-garbage.json": _gpus("two"),
        "any-gpu-number-not-string.json": _gpus(2),
        "any-gpu-huge-integer.json": _gpus(10**40),
        "any-gpu-exponent-overflow.json": _gpus("9e999999999"),
        "any-gpu-emoji-quantity.json": _gpus(EMOJI),
        "any-affinity-garbage.json": _mutated(
            lambda p: p["spec"].__setitem__("affinity", {"nodeAffinity": "x"})
        ),
        "any-tolerations-not-list.json": _mutated(lambda p: p["spec"].__setitem__("tolerations", {"a": 1})),
        "any-spec-missing.json": _mutated(lambda p: p.pop("spec")),
        "any-metadata-missing.json": _mutated(lambda p: p.pop("metadata")),
        "any-duplicate-keys.bin": b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", '
        b'"request": {"uid": "1", "uid": "2", "object": {}}}',
    }
    return cases


def _mutated(change: Any) -> dict[str, Any]:
    pod = _pod()
    change(pod)
    return review(obj=pod)


def _gpus(value: Any) -> dict[str, Any]:
    def change(pod: dict[str, Any]) -> None:
        pod["spec"]["containers"][0]["resources"] = {"requests": {"nvidia.com/gpu": value},
                                                     "limits": {"nvidia.com/gpu": value}}  # fmt: skip

    return _mutated(change)


def _many_containers(count: int) -> dict[str, Any]:
    pod = _pod()
    pod["spec"]["containers"] = [dict(pod["spec"]["containers"][0], name=f"c{i}") for i in range(count)]
    return review(obj=pod)


def extender_cases() -> dict[str, Any]:
    args = {"Pod": _pod(uid="c1d2e3f4"), "Nodes": None, "NodeNames": ["gpu-a100-01", "gpu-h100-01"]}
    bind = {"PodName": "fuzz-pod", "PodNamespace": "team-nlp", "PodUID": "c1d2e3f4", "Node": "gpu-a100-01"}
    return {
        "bad-empty-object.json": {},
        "any-pod-null.json": {**args, "Pod": None},
        "any-pod-is-string.json": {**args, "Pod": "pod"},
        "any-nodenames-is-string.json": {**args, "NodeNames": "gpu-a100-01"},
        "any-nodenames-numbers.json": {**args, "NodeNames": [1, 2, 3]},
        "any-nodenames-unknown.json": {**args, "NodeNames": ["no-such-node", EMOJI, RTL, NUL]},
        "any-nodenames-many.json": {**args, "NodeNames": [f"node-{i}" for i in range(3000)]},
        "any-nodenames-duplicates.json": {**args, "NodeNames": ["gpu-a100-01"] * 500},
        "any-nodes-and-names-null.json": {**args, "NodeNames": None},
        "any-nodes-items-garbage.json": {
            "Pod": args["Pod"],
            "Nodes": {"items": [1, "x", None]},
            "NodeNames": None,
        },
        "any-nodes-items-null.json": {"Pod": args["Pod"], "Nodes": {"items": None}, "NodeNames": None},
        "any-lowercase-keys.json": {"pod": args["Pod"], "nodenames": args["NodeNames"]},
        "any-pod-gpu-garbage.json": {**args, "Pod": _gpus("lots")["request"]["object"]},
        "any-pod-emoji-names.json": {**args, "Pod": _pod(name=EMOJI, namespace=RTL)},
        "any-bind-missing-node.json": {k: v for k, v in bind.items() if k != "Node"},
        "any-bind-wrong-types.json": {"PodName": 1, "PodNamespace": [], "PodUID": {}, "Node": None},
        "any-bind-unknown-pod.json": {**bind, "PodName": EMOJI},
        "any-bind-nul-and-rtl.json": {**bind, "PodName": NUL, "Node": RTL},
        "any-bind-uid-mismatch.json": {**bind, "PodName": "llm-pretrain-0", "PodUID": "not-the-uid"},
        "any-bind-very-long.json": {**bind, "PodName": "p" * 50000},
        "any-webhook-review-sent-to-extender.json": review(),
    }


def api_cases() -> dict[str, Any]:
    return {
        "bad-empty-object-estimate.json": {},
        "any-estimate-negative.json": {
            "model": {"parameters": -1},
            "tokens": -5,
            "precision": "bf16",
            "gpus": -2,
        },
        "any-estimate-zero-tokens.json": {"model": "llama-3-8b", "tokens": 0, "precision": "fp8", "gpus": 8},
        "any-estimate-huge.json": {
            "model": {"parameters": 1e308},
            "tokens": 1e308,
            "precision": "fp32",
            "gpus": 10**30,
        },
        "any-estimate-wrong-types.json": {"model": ["x"], "tokens": "many", "precision": 16, "gpus": "all"},
        "any-estimate-unknown-model-emoji.json": {
            "model": EMOJI,
            "tokens": 1e9,
            "precision": "bf16",
            "gpus": 1,
        },
        "any-estimate-unknown-precision.json": {
            "model": "llama-3-8b",
            "tokens": 1e9,
            "precision": RTL,
            "gpus": 1,
        },
        "any-draft-nodes-not-list.json": {"nodes": "gpu-a100-01"},
        "any-draft-unknown-nodes.json": {"nodes": [EMOJI, NUL, RTL], "name": EMOJI},
        "any-draft-selector-garbage.json": {"selector": "===,,,!"},
        "any-draft-selector-unicode.json": {"selector": f"{RTL}={EMOJI}"},
        "any-draft-name-very-long.json": {"nodes": ["gpu-a100-01"], "name": "n" * 10000},
        "any-draft-both.json": {"nodes": ["gpu-a100-01"], "selector": "a=b"},
        "any-draft-many-nodes.json": {"nodes": [f"n{i}" for i in range(3000)]},
    }


API_GETS: dict[str, dict[str, Any]] = {
    "get-profile-emoji.json": {"path": f"/api/hardware-profiles/{EMOJI}"},
    "get-profile-rtl.json": {"path": f"/api/hardware-profiles/{RTL}"},
    "get-profile-percent-nul.json": {"path": "/api/hardware-profiles/a%00b"},
    "get-profile-dotdot.json": {"path": "/api/hardware-profiles/..%2F..%2Fetc%2Fpasswd"},
    "get-profile-very-long.json": {"path": "/api/hardware-profiles/" + "x" * 4000},
    "get-nodes-odd-query.json": {"path": f"/api/nodes?type={EMOJI}&sort={RTL}&sort=name&type=%00"},
    "get-nodes-bad-sort.json": {"path": "/api/nodes?sort=%27%3B%20DROP%20TABLE"},
    "get-bearer-garbage.json": {
        "path": "/api/hardware-profiles",
        "headers": {"Authorization": "Bearer \u00ff\u00fe"},
    },
    "get-bearer-empty.json": {"path": "/api/hardware-profiles", "headers": {"Authorization": "Bearer "}},
    "get-basic-auth.json": {"path": "/api/hardware-profiles", "headers": {"Authorization": "Basic dTpw"}},
    "get-bearer-huge.json": {"path": "/api/nodes", "headers": {"Authorization": "Bearer " + "t" * 6000}},
    "get-unknown-api-path.json": {"path": "/api/does-not-exist"},
    "get-openapi.json": {"path": "/api/openapi.json"},
}


def _write(app: str, cases: dict[str, Any]) -> None:
    folder = HERE / app
    folder.mkdir(exist_ok=True)
    for name, body in cases.items():
        raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode("utf-8")
        (folder / name).write_bytes(raw)


def main() -> None:
    _write("webhook", {**SYNTAX, **webhook_cases()})
    _write("extender", {**SYNTAX, **extender_cases()})
    _write("api", {**SYNTAX, **api_cases(), **API_GETS})


if __name__ == "__main__":
    main()
