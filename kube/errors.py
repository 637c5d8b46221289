"""Typed errors for everything that talks to the Kubernetes API server.

Callers never see `kubernetes_asyncio` exceptions or raw HTTP statuses: `kube/real.py` maps them here
at the edge (httpx-style), and `kube/fake.py` raises the same types, so code written against the
fake behaves identically against a cluster.

Hierarchy::

    KubeError
    ├── Gone          HTTP 410 / watch ERROR event with code 410: resourceVersion too old, relist
    ├── Conflict      HTTP 409: optimistic-concurrency or already-bound/uid-mismatch
    ├── NotFound      HTTP 404
    ├── Unreachable   transport failure or timeout: the API server could not be asked at all
    └── ApiError      any other non-2xx answer (status + reason + server message)
"""

from __future__ import annotations


class KubeError(Exception):
    """Base class for every API-server failure raised by `kube/`."""


class Gone(KubeError):
    """The requested resourceVersion is no longer available (HTTP 410): the caller must relist."""


class Conflict(KubeError):
    """HTTP 409: the object changed (resourceVersion precondition), exists already, or is bound."""


class NotFound(KubeError):
    """HTTP 404: the object (or its namespace) does not exist."""


class Unreachable(KubeError):
    """The API server could not be reached, or did not answer within the request timeout."""


class ApiError(KubeError):
    """Any other non-2xx answer; keeps the HTTP status so callers may branch on it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"API server answered HTTP {status}: {message}")
        self.status = status
        self.message = message


def error_for_status(status: int, message: str) -> KubeError:
    """Map an HTTP status (or a watch ERROR `Status.code`) to the typed error for it."""
    if status == 410:
        return Gone(message)
    if status == 409:
        return Conflict(message)
    if status == 404:
        return NotFound(message)
    return ApiError(status, message)
