"""What every answer to a hostile request must look like, whichever app and route.

`check_answer` is the one oracle shared by the corpus replay, the hypothesis suites and the soak:
1. Never a 5xx (503 from back-pressure is asked for separately, never from a single request).
2. A JSON body. A 4xx carries `{"error": "<non-empty reason>"}`.
3. No traceback or Python internals leak into the body.
4. `expect="bad"` demands a 4xx; `expect="any"` accepts any status below 500.
5. A 200 from the webhook is a v1 AdmissionReview whose `response.uid` echoes a usable request uid.
"""

from __future__ import annotations

from typing import Any

import orjson

CLIENT_ERRORS = frozenset({400, 401, 403, 404, 405, 413, 414, 415, 422, 431})
LEAKS = (b"Traceback", b'File "/', b"site-packages", b"pydantic_core")


class BadAnswer(AssertionError):
    """The server broke one of the rules above; the message says which and for what request."""


def _decode(body: bytes, where: str) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadAnswer(f"{where}: body is not JSON: {body[:200]!r}") from None


def request_uid(raw: bytes) -> str | None:
    """The AdmissionReview request uid in `raw`, if it is a usable non-empty string."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    request = value.get("request") if isinstance(value, dict) else None
    uid = request.get("uid") if isinstance(request, dict) else None
    return uid if isinstance(uid, str) and uid else None


def check_answer(app: str, route: str, status: int, body: bytes, *, sent: bytes, expect: str = "any") -> Any:
    """Assert the rules in the module docstring; returns the decoded JSON body."""
    where = f"{app} {route} ({len(sent)}-byte body {sent[:80]!r}) -> {status}"
    if status >= 500:
        raise BadAnswer(f"{where}: server error: {body[:300]!r}")
    for leak in LEAKS:
        if leak in body:
            raise BadAnswer(f"{where}: internals leaked ({leak!r}): {body[:300]!r}")
    data = _decode(body, where)
    if status >= 400:
        if status not in CLIENT_ERRORS:
            raise BadAnswer(f"{where}: unexpected client error status")
        error = data.get("error") if isinstance(data, dict) else None
        if not isinstance(error, str) or not error.strip():
            raise BadAnswer(f"{where}: a 4xx must carry a JSON error reason, got {data!r:.200}")
    elif expect == "bad":
        raise BadAnswer(f"{where}: an unusable request was accepted: {body[:200]!r}")
    if app == "webhook" and status == 200:
        _check_review(where, data, request_uid(sent))
    return data


def _check_review(where: str, data: Any, uid: str | None) -> None:
    if not isinstance(data, dict) or data.get("apiVersion") != "admission.k8s.io/v1":
        raise BadAnswer(f"{where}: 200 that is not an admission.k8s.io/v1 AdmissionReview: {data!r:.200}")
    if data.get("kind") != "AdmissionReview":
        raise BadAnswer(f"{where}: kind is {data.get('kind')!r}, not AdmissionReview")
    response = data.get("response")
    if not isinstance(response, dict) or not isinstance(response.get("allowed"), bool):
        raise BadAnswer(f"{where}: response.allowed missing: {data!r:.200}")
    if uid is None or response.get("uid") != uid:
        raise BadAnswer(f"{where}: response.uid {response.get('uid')!r} does not echo request uid {uid!r}")
