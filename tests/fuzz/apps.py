"""The three real apps over the example cluster, built the way `accel serve` builds them.

Shared by the fuzz suite, the corpus replay, the fault tests and the soak: one place knows how to
make `webhook.app`, `extender.app` and `api.app` from a `ClusterState` plus a `FakeCluster` (the
in-memory API server that holds the quota ledger, takes bindings and reviews tokens). An app whose
package has not landed yet is reported as missing (`available()`), so callers can skip it.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from accel.capacity.inventory import build_inventory
from accel.cluster.catalog import load_builtin_catalog
from accel.policy.loading import parse_policy
from accel.policy.models import ParsedPolicy
from cli.state import read_policy_files
from kube.fake import FakeCluster
from kube.names import Kind
from kube.snapshot import load_snapshot
from serving.cluster_state import ClusterState
from serving.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_SNAPSHOT = ROOT / "examples" / "cluster.yaml"
EXAMPLE_POLICY = ROOT / "examples" / "policy"
APP_NAMES: tuple[str, ...] = ("webhook", "extender", "api")
API_TOKEN = "fuzz-token"  # a bearer token the FakeCluster's TokenReview accepts
SNAPSHOT_KINDS: tuple[Kind, ...] = ("namespaces", "nodes", "configmaps", "pods")


def available(name: str) -> bool:
    """True when `<name>/app.py` exists and imports."""
    try:
        importlib.import_module(f"{name}.app")
    except ModuleNotFoundError as exc:
        if exc.name in (name, f"{name}.app"):
            return False
        raise
    return True


def routes(name: str) -> tuple[str, ...]:
    """The app's own `ROUTES` (the manifests' contract), probes and /metrics left out."""
    module = importlib.import_module(f"{name}.app")
    served: tuple[str, ...] = module.ROUTES
    return tuple(r for r in served if r not in ("/healthz", "/readyz", "/metrics"))


@functools.cache
def example_files() -> dict[str, str]:
    return read_policy_files(EXAMPLE_POLICY)


@functools.cache
def example_objects() -> dict[str, tuple[dict[str, Any], ...]]:
    snapshot = load_snapshot(EXAMPLE_SNAPSHOT)
    return {kind: tuple(snapshot.of(kind)) for kind in SNAPSHOT_KINDS}


def example_cluster(**kwargs: Any) -> FakeCluster:
    """A FakeCluster loaded with examples/cluster.yaml and accepting `API_TOKEN`."""
    cluster = FakeCluster(**kwargs)
    for kind in SNAPSHOT_KINDS:
        for obj in example_objects()[kind]:
            cluster.apply(obj)
    cluster.add_token(API_TOKEN, "fuzz@example.com", ("system:authenticated",))
    return cluster


def example_parsed() -> ParsedPolicy:
    return parse_policy(example_files(), load_builtin_catalog())


def static_state(*, clock: Callable[[], float] | None = None) -> ClusterState:
    """A fixed ClusterState: the example policy over the example snapshot."""
    parsed = example_parsed()
    objs = example_objects()
    inventory = build_inventory(
        objs["nodes"], objs["pods"], objs["namespaces"], catalog=parsed.catalog, policy=parsed.policy
    )
    if clock is None:
        return ClusterState.static(parsed, inventory)
    return ClusterState.static(parsed, inventory, clock=clock)


@dataclass
class AppDeps:
    """What an app factory may take besides the state; None = the factory's default."""

    cluster: FakeCluster
    metrics: Metrics
    clock: Callable[[], float] | None = None
    replica_id: str = "replica-0"


def make_app(name: str, state: ClusterState, deps: AppDeps) -> web.Application:
    """`<name>.app.make_app(state, metrics=..., <its IO deps>)`, as cli/serve.py wires it."""
    module = importlib.import_module(f"{name}.app")
    extra: dict[str, Any] = {}
    if deps.clock is not None:
        extra["clock"] = deps.clock
    if name == "webhook":
        extra.update(ledger_store=deps.cluster, replica_id=deps.replica_id)
    elif name == "extender":
        extra.update(binder=deps.cluster, events=deps.cluster)
    elif name == "api":
        extra.update(token_reviewer=deps.cluster)
    app: web.Application = module.make_app(state, metrics=deps.metrics, **extra)
    return app


def auth_headers(name: str) -> dict[str, str]:
    """Headers a well-behaved client of `name` sends (the API wants a bearer token)."""
    return {"Authorization": f"Bearer {API_TOKEN}"} if name == "api" else {}
