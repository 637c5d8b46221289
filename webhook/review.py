"""The AdmissionReview wire format (admission.k8s.io/v1), typed once, and its one renderer.

Request: frozen pydantic models with the exact API spellings as aliases (protocols.md 2.1).
Response: `build_response` is the one pure function that turns a core `Decision` into the
AdmissionReview the API server accepts (protocols.md 2.2, `VerifyAdmissionResponse`):
1. `apiVersion`/`kind` are `admission.k8s.io/v1`/`AdmissionReview`; `response.uid` echoes the request.
2. `patch` (base64 of the JSON Patch text) and `patchType: JSONPatch` travel together, only from
   the mutating endpoint, only on an allowed answer, and only when there is at least one op.
3. `status` (code >= 400, message, reason, `status: Failure`) only on a denial.
4. `auditAnnotations` keys are at most 63 characters of `[A-Za-z0-9._-]`, start and end
   alphanumeric, no `/` (the API server prefixes them with the webhook name); others are dropped.

Fast path: `plain_pod_create` recognises, on the raw JSON and without building models, the
review most requests are (a well-formed Pod CREATE whose pod asks for no accelerator and names
no profile). It accepts only bodies `parse_review` would accept; anything else goes the full way.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Mapping
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from accel.admission.author_keys import owned_keys
from accel.admission.context import wants_accelerators
from accel.admission.plan import Decision
from serving.body import BadRequest

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"
AUDIT_KEY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
STATUS_REASONS: dict[int, str] = {
    400: "BadRequest",
    403: "Forbidden",
    409: "Conflict",
    422: "Invalid",
    429: "TooManyRequests",
    503: "ServiceUnavailable",
}


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")


class GroupVersionKind(_Wire):
    group: str = ""
    version: str = ""
    kind: str = ""


class UserInfo(_Wire):
    username: str = ""


class AdmissionRequest(_Wire):
    uid: str = Field(min_length=1)
    kind: GroupVersionKind
    namespace: str = ""
    name: str = ""
    operation: str
    sub_resource: str = Field(default="", alias="subResource")
    object: dict[str, Any] | None = None
    old_object: dict[str, Any] | None = Field(default=None, alias="oldObject")
    dry_run: bool = Field(default=False, alias="dryRun")
    user_info: UserInfo = Field(default_factory=UserInfo, alias="userInfo")

    @property
    def is_pod_create(self) -> bool:
        return (
            self.kind.kind == "Pod"
            and self.kind.group == ""
            and self.operation == "CREATE"
            and not self.sub_resource
        )

    @property
    def is_pod_update(self) -> bool:
        kind = self.kind
        return (
            kind.kind == "Pod" and kind.group == "" and self.operation == "UPDATE" and not self.sub_resource
        )

    @property
    def pod_namespace(self) -> str:
        """The request namespace (copied into the object by the API server since 1.24), else the object's."""
        meta = (self.object or {}).get("metadata") or {}
        return self.namespace or str(meta.get("namespace") or "")


class AdmissionReview(_Wire):
    api_version: Literal["admission.k8s.io/v1"] = Field(alias="apiVersion")
    kind: Literal["AdmissionReview"]
    request: AdmissionRequest


def parse_review(body: dict[str, Any]) -> AdmissionReview:
    """The typed review, or `BadRequest` naming every wrong field (never a traceback)."""
    try:
        review = AdmissionReview.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(body)'}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise BadRequest(f"not an admission.k8s.io/v1 AdmissionReview request: {problems}") from None
    request = review.request
    if request.is_pod_create and request.object is None:
        raise BadRequest("request.object: a Pod CREATE review must carry the pod; got null")
    return review


_OPTIONAL_STR = ("namespace", "name", "subResource")


def plain_pod_create(body: Any) -> tuple[str, str] | None:
    """(uid, namespace) when `body` is a valid v1 review of a Pod CREATE asking for no accelerator.

    Checks every field `AdmissionRequest` types (so a body the model would refuse with a 400 is
    never answered here) plus `wants_accelerators` on the pod; None = take the full path.
    """
    if type(body) is not dict or body.get("apiVersion") != API_VERSION or body.get("kind") != KIND:
        return None
    request = body.get("request")
    if type(request) is not dict:
        return None
    uid, kind, pod = request.get("uid"), request.get("kind"), request.get("object")
    if type(uid) is not str or not uid or type(kind) is not dict or type(pod) is not dict:
        return None
    if kind.get("kind") != "Pod" or kind.get("group", "") != "" or type(kind.get("version", "")) is not str:
        return None
    if request.get("operation") != "CREATE" or request.get("subResource"):
        return None
    if any(type(request.get(key, "")) is not str for key in _OPTIONAL_STR):
        return None
    old = request.get("oldObject")
    if type(request.get("dryRun", False)) is not bool or (old is not None and type(old) is not dict):
        return None
    if wants_accelerators(pod):
        return None
    metadata = pod.get("metadata")
    annotations = metadata.get("annotations") if type(metadata) is dict else None
    if type(annotations) is dict and owned_keys(annotations):
        return None  # accel-owned annotations to scrub (accel.admission.plan rule 8)
    namespace = (
        request.get("namespace") or (metadata.get("namespace") if type(metadata) is dict else "") or ""
    )
    return uid, str(namespace)


@functools.lru_cache(maxsize=1024)  # the webhook writes a handful of distinct keys
def _audit_key(key: str) -> bool:
    return AUDIT_KEY.fullmatch(key) is not None  # fullmatch: `$` alone lets "key\n" through


def _audit(values: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in values.items() if _audit_key(k)}


def build_response(uid: str, decision: Decision, *, mutating: bool) -> dict[str, Any]:
    """The AdmissionReview answer for `decision` (module rules 1-4)."""
    response: dict[str, Any] = {"uid": uid, "allowed": decision.allowed}
    if (
        mutating and decision.allowed and decision.ops
    ):  # a denial's ops (accel.admission rule 8) only count once admitted
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(orjson.dumps(list(decision.ops))).decode()
    if decision.warnings:
        response["warnings"] = list(decision.warnings)
    if decision.audit and (audit := _audit(decision.audit)):
        response["auditAnnotations"] = audit
    if not decision.allowed and decision.finding is not None:
        code = max(400, decision.finding.code)
        response["status"] = {
            "code": code,
            "reason": STATUS_REASONS.get(code, "Forbidden"),
            "message": decision.finding.message,
            "status": "Failure",
        }
    return {"apiVersion": API_VERSION, "kind": KIND, "response": response}
