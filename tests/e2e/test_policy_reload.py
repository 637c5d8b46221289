"""Policy hot reload end to end: a change takes effect in seconds; a broken one is refused."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import yaml

from tests.e2e import cluster
from tests.e2e.kubectl import wait_until

RELOAD_DEADLINE_S = 15


@pytest.fixture
def restore_policy(e2e: cluster.E2ECluster) -> Iterator[None]:
    yield
    cluster.apply_policy(e2e.kubectl, cluster.e2e_policy())


def _price(e2e: cluster.E2ECluster, ns: str) -> float:
    pod = cluster.gpu_pod("price", team="e2e-reload", gpus=1, profile="a100-only")
    pod["metadata"]["namespace"] = ns
    return float(e2e.kubectl.create(pod, dry_run=True)["metadata"]["annotations"]["accel.dev/gpu-hour-price"])


def _with_a100_price(price: float) -> dict[str, str]:
    data = cluster.e2e_policy()
    profiles = yaml.safe_load(data["profiles.yaml"])
    next(p for p in profiles["profiles"] if p["name"] == "a100-only")["costPerGpuHour"] = price
    return data | {"profiles.yaml": yaml.safe_dump(profiles)}


def test_policy_change_applies_within_seconds_and_broken_policy_keeps_last_good(
    e2e: cluster.E2ECluster, team_namespace: Callable[[str], str], restore_policy: None
) -> None:
    ns = team_namespace("e2e-reload")
    cluster.apply_policy(e2e.kubectl, _with_a100_price(7.25))
    wait_until(
        lambda: _price(e2e, ns) == pytest.approx(7.25), timeout_s=RELOAD_DEADLINE_S, what="new price in force"
    )

    broken = _with_a100_price(9.5) | {"teams.yaml": "teams:\n- name: [not, a, string]\n  quota: nope\n"}
    cluster.apply_policy(e2e.kubectl, broken)

    def rejected_event() -> bool:
        events = e2e.kubectl.get("events", namespace=cluster.NS)["items"]
        return any(ev["involvedObject"].get("name") == "accel-policy" and ev.get("reason") == "PolicyRejected"
                   and ev.get("type") == "Warning" for ev in events)  # fmt: skip

    wait_until(rejected_event, timeout_s=RELOAD_DEADLINE_S, what="PolicyRejected event on accel-policy")
    assert _price(e2e, ns) == pytest.approx(7.25), "the last good policy stays in force"
